//! Recall/QPS plots of `squash bench` as PNG bytes: recall@10 on x, queries per second on a
//! log-scale y, one line with markers per engine.
//!
//! Pure: draws into an in-memory RGB buffer and encodes it; writing the file is the caller's
//! job. Text is rendered by plotters' `ab_glyph` engine from a font compiled into the binary
//! (a Latin-1 subset of DejaVu Sans, `shared/assets/README.md`), so plots look the same on every
//! machine and no system font lookup is needed.

use std::sync::OnceLock;

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{format_qps, RECALL_TARGET};
use squash_core::error::{Error, Result};

/// Plot size in pixels: wide enough for a legend of six engines beside the curves.
pub const PLOT_WIDTH: u32 = 960;
/// See [`PLOT_WIDTH`].
pub const PLOT_HEIGHT: u32 = 640;

/// The font family name the font is registered under, and every text style uses.
const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// Series colours: squash first (it is always the first series), then well separated hues.
const COLORS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// One engine's curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text (the engine).
    pub name: String,
    /// (recall@10, QPS) pairs, in drawing order.
    pub points: Vec<(f64, f64)>,
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::corrupt(
            "DejaVuSans-subset.ttf",
            0,
            "the compiled-in font does not parse",
        ))
    }
}

fn plot_error(title: &str, error: impl std::fmt::Display) -> Error {
    Error::invalid(format!("plot '{title}'"), error.to_string())
}

/// Returns the x (recall) and y (QPS) ranges that show every point with a margin; points
/// with a QPS of 0 or less cannot sit on a log scale and are left out.
///
/// The QPS range runs between powers of ten, because plotters places log-scale ticks from the
/// first power of ten inside the range: a range of 180..1,600 would get a single tick.
fn axis_ranges(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let drawable = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
    };
    let min_recall = drawable().map(|(x, _)| *x).fold(f64::INFINITY, f64::min);
    let min_qps = drawable().map(|(_, y)| *y).fold(f64::INFINITY, f64::min);
    let max_qps = drawable().map(|(_, y)| *y).fold(0.0, f64::max);
    if !min_recall.is_finite() {
        return ((RECALL_TARGET - 0.05, 1.005), (1.0, 10.0));
    }
    // Always show the target line and 1.0; round the left edge down to a multiple of 0.02.
    let x_low = ((min_recall.min(RECALL_TARGET) - 0.02).max(0.0) * 50.0).floor() / 50.0;
    let y_low = 10f64.powf((min_qps / 1.3).log10().floor());
    let y_high = 10f64.powf((max_qps * 1.3).log10().ceil());
    ((x_low, 1.005), (y_low, y_high))
}

/// Labels a log-scale tick only at 1, 2 and 5 times a power of ten, so the nine ticks of a
/// decade do not crowd each other; the others keep their grid line.
fn log_tick_label(value: f64) -> String {
    if !(value.is_finite() && value > 0.0) {
        return String::new();
    }
    let leading = (value / 10f64.powf(value.log10().floor())).round();
    if [1.0, 2.0, 5.0, 10.0].contains(&leading) {
        format_qps(value)
    } else {
        String::new()
    }
}

/// Draws `series` under `title` and returns the PNG file's bytes.
pub fn plot_png(title: &str, series: &[Series]) -> Result<Vec<u8>> {
    register_font()?;
    let mut pixels = vec![0u8; (PLOT_WIDTH * PLOT_HEIGHT * 3) as usize];
    let ((x_low, x_high), (y_low, y_high)) = axis_ranges(series);
    {
        let root =
            BitMapBackend::with_buffer(&mut pixels, (PLOT_WIDTH, PLOT_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_FAMILY, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x_low..x_high, (y_low..y_high).log_scale())
            .map_err(|e| plot_error(title, e))?;
        chart
            .configure_mesh()
            .x_desc("recall@10")
            .y_desc("queries per second (log scale)")
            .label_style((FONT_FAMILY, 15))
            .axis_desc_style((FONT_FAMILY, 17))
            .y_labels(30)
            .x_label_formatter(&|x| format!("{x:.2}"))
            .y_label_formatter(&|y| log_tick_label(*y))
            .light_line_style(RGBColor(242, 242, 242))
            .draw()
            .map_err(|e| plot_error(title, e))?;
        let target_style = RGBColor(80, 80, 80).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                [(RECALL_TARGET, y_low), (RECALL_TARGET, y_high)],
                6,
                4,
                target_style,
            ))
            .map_err(|e| plot_error(title, e))?
            .label(format!("recall@10 = {RECALL_TARGET}"))
            .legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, target_style)
            });
        for (position, one) in series.iter().enumerate() {
            let color = COLORS[position % COLORS.len()];
            let drawable: Vec<(f64, f64)> = one
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
                .collect();
            chart
                .draw_series(LineSeries::new(
                    drawable.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| plot_error(title, e))?
                .label(one.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    drawable
                        .iter()
                        .map(|&point| Circle::new(point, 4, color.filled())),
                )
                .map_err(|e| plot_error(title, e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FONT_FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_error(title, e))?;
        root.present().map_err(|e| plot_error(title, e))?;
    }
    encode_png(&pixels, PLOT_WIDTH, PLOT_HEIGHT).map_err(|e| plot_error(title, e))
}

fn encode_png(
    rgb: &[u8],
    width: u32,
    height: u32,
) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("png header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut pixels).expect("png frame");
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn has_color(pixels: &[u8], color: RGBColor) -> bool {
        pixels
            .chunks_exact(3)
            .any(|rgb| rgb == [color.0, color.1, color.2])
    }

    #[test]
    fn a_plot_is_a_png_with_every_series_and_the_title_drawn() {
        let series = vec![
            Series {
                name: "squash".into(),
                points: vec![(0.82, 900.0), (0.95, 420.0), (0.99, 150.0), (1.0, 33.0)],
            },
            Series {
                name: "faiss-hnsw".into(),
                points: vec![(0.90, 3000.0), (0.985, 1200.0)],
            },
        ];
        let bytes = plot_png("glove-6b-50-angular: unfiltered", &series).expect("plot");
        assert_eq!(bytes[..8], PNG_SIGNATURE);
        assert!(bytes.len() > 10_000, "only {} bytes", bytes.len());
        let (width, height, pixels) = decode(&bytes);
        assert_eq!((width, height), (PLOT_WIDTH, PLOT_HEIGHT));
        assert!(has_color(&pixels, COLORS[0]), "squash's colour is missing");
        assert!(
            has_color(&pixels, COLORS[1]),
            "the second series' colour is missing"
        );
        // The caption is the only thing drawn in the top rows: text rendering works.
        let top_rows = &pixels[..(PLOT_WIDTH * 40 * 3) as usize];
        assert!(top_rows.iter().any(|&value| value < 128), "no title drawn");
    }

    #[test]
    fn a_plot_without_drawable_points_is_still_a_png() {
        let series = vec![Series {
            name: "brute-force".into(),
            points: vec![(1.0, 0.0)],
        }];
        let bytes = plot_png("empty", &series).expect("plot");
        assert_eq!(bytes[..8], PNG_SIGNATURE);
        assert_eq!(decode(&bytes).0, PLOT_WIDTH);
        assert_eq!(plot_png("none", &[]).expect("plot")[..8], PNG_SIGNATURE);
    }
}
