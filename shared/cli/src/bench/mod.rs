//! The side-by-side benchmark's data: recall/QPS points of squash and of other engines, the
//! `squash-bench-points/1` JSON files that carry them, the search settings squash sweeps, and
//! the Markdown tables built from the points.
//!
//! This module and [`plot`] are pure: parsing takes bytes and a display name, rendering
//! returns a string or PNG bytes. [`run`] is the I/O driver behind `squash bench` (builds,
//! timed sweeps, files).
//!
//! A table cell answers "how fast at good recall": the highest QPS among an engine's settings
//! with recall@10 >= [`RECALL_TARGET`], or, when no setting gets there, the best recall reached.

pub mod plot;
pub mod run;

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use squash_core::error::{Error, Result};
use squash_core::protocol::SearchOptions;

/// Schema tag of a points file; a file with another tag is refused rather than misread.
pub const POINTS_SCHEMA: &str = "squash-bench-points/1";

/// Recall@10 a setting must reach to count as "good recall" in the tables. 0.95 is the level
/// at which ann-benchmarks-style comparisons usually quote throughput.
pub const RECALL_TARGET: f64 = 0.95;

/// Engine name of squash's own points.
pub const SQUASH_ENGINE: &str = "squash";

/// One measured setting of one engine on one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchPoint {
    /// Engine, e.g. `squash`, `faiss-hnsw`, `brute-force`.
    pub engine: String,
    /// Data set (folder name), e.g. `glove-6b-50-angular`.
    pub dataset: String,
    /// Workload name from the data set's workloads.json.
    pub workload: String,
    /// The engine's search setting, e.g. `efSearch=64`.
    pub setting: String,
    /// Mean recall@10, scored by distance against the exact ground truth.
    pub recall_at_10: f64,
    /// Queries per second.
    pub qps: f64,
    /// Threads the engine searched with.
    pub threads: u32,
    /// Queries the measurement ran.
    pub num_queries: u64,
    /// Wall time of the index build, when the engine has one.
    #[serde(default)]
    pub build_seconds: Option<f64>,
    /// Size of the index, when the engine has one.
    #[serde(default)]
    pub index_bytes: Option<u64>,
    /// Any further fields of the producer, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BenchPoint {
    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.engine, &self.dataset, &self.workload, &self.setting)
    }
}

/// A points file (`peers.json`, `results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsFile {
    /// Always [`POINTS_SCHEMA`].
    pub schema: String,
    /// When the points were measured (free text, ISO 8601 by convention).
    #[serde(default)]
    pub date: String,
    /// Where the points were measured (free text).
    #[serde(default)]
    pub machine: String,
    /// The points.
    pub points: Vec<BenchPoint>,
}

impl PointsFile {
    /// Returns a file of `points` with the current schema.
    pub fn new(date: String, machine: String, points: Vec<BenchPoint>) -> PointsFile {
        PointsFile {
            schema: POINTS_SCHEMA.to_string(),
            date,
            machine,
            points,
        }
    }

    /// Returns the file as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("results", format!("cannot encode: {e}")))
    }
}

/// Parses a points file; `source` (its path) names it in errors.
///
/// Refuses a missing or unknown `schema` before reading anything else, then any point with an
/// empty name, a recall outside 0..=1, a negative or non-finite QPS or build time, or 0 threads.
pub fn parse_points_file(source: &str, bytes: &[u8]) -> Result<PointsFile> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(source, format!("not valid JSON: {e}")))?;
    match value.get("schema") {
        Some(serde_json::Value::String(schema)) if schema == POINTS_SCHEMA => {}
        Some(serde_json::Value::String(schema)) => {
            return Err(Error::invalid(
                source,
                format!("unknown schema '{schema}' (this build reads '{POINTS_SCHEMA}')"),
            ))
        }
        Some(_) => return Err(Error::invalid(source, "schema must be a string")),
        None => {
            return Err(Error::invalid(
                source,
                format!("no schema (expected \"schema\": \"{POINTS_SCHEMA}\")"),
            ))
        }
    }
    let file: PointsFile = serde_path_to_error::deserialize(value)
        .map_err(|e| Error::invalid(format!("{source}: {}", e.path()), e.inner().to_string()))?;
    for (position, point) in file.points.iter().enumerate() {
        check_point(point).map_err(|(field, reason)| {
            Error::invalid(format!("{source}: points[{position}].{field}"), reason)
        })?;
    }
    Ok(file)
}

fn check_point(point: &BenchPoint) -> std::result::Result<(), (&'static str, &'static str)> {
    for (field, text) in [
        ("engine", &point.engine),
        ("dataset", &point.dataset),
        ("workload", &point.workload),
    ] {
        if text.trim().is_empty() {
            return Err((field, "must not be empty"));
        }
    }
    if !(point.recall_at_10.is_finite() && (0.0..=1.0).contains(&point.recall_at_10)) {
        return Err(("recall_at_10", "must be within 0..=1"));
    }
    if !(point.qps.is_finite() && point.qps >= 0.0) {
        return Err(("qps", "must be a finite number >= 0"));
    }
    if point.threads == 0 {
        return Err(("threads", "must be at least 1"));
    }
    if point
        .build_seconds
        .is_some_and(|seconds| !(seconds.is_finite() && seconds >= 0.0))
    {
        return Err(("build_seconds", "must be a finite number >= 0"));
    }
    Ok(())
}

/// Returns `ours` followed by the points of `others` that measure something else: a point of
/// `others` with the same engine, data set, workload and setting as an earlier point is
/// dropped, so a rerun of squash replaces stale squash points in a peers file.
pub fn merge_points(ours: Vec<BenchPoint>, others: Vec<BenchPoint>) -> Vec<BenchPoint> {
    let mut merged = ours;
    let mut seen: HashSet<(String, String, String, String)> =
        merged.iter().map(|point| owned_key(point.key())).collect();
    for point in others {
        if seen.insert(owned_key(point.key())) {
            merged.push(point);
        }
    }
    merged
}

fn owned_key(key: (&str, &str, &str, &str)) -> (String, String, String, String) {
    (
        key.0.to_string(),
        key.1.to_string(),
        key.2.to_string(),
        key.3.to_string(),
    )
}

/// What a table cell shows for one engine on one workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellChoice<'a> {
    /// The fastest setting with recall@10 >= the target.
    AtTarget(&'a BenchPoint),
    /// No setting reached the target: the one with the best recall (the faster on a tie).
    BestRecall(&'a BenchPoint),
}

impl<'a> CellChoice<'a> {
    /// Returns the chosen point.
    pub fn point(&self) -> &'a BenchPoint {
        match self {
            CellChoice::AtTarget(point) | CellChoice::BestRecall(point) => point,
        }
    }
}

/// Chooses the cell for `points` (one engine, one workload); `None` when there are none.
///
/// At the target, ties in QPS go to the better recall.
pub fn choose_cell<'a>(
    points: impl IntoIterator<Item = &'a BenchPoint>,
    target: f64,
) -> Option<CellChoice<'a>> {
    let points: Vec<&'a BenchPoint> = points.into_iter().collect();
    let at_target = points
        .iter()
        .copied()
        .filter(|point| point.recall_at_10 >= target)
        .max_by(|a, b| {
            a.qps
                .total_cmp(&b.qps)
                .then(a.recall_at_10.total_cmp(&b.recall_at_10))
        });
    if let Some(point) = at_target {
        return Some(CellChoice::AtTarget(point));
    }
    points
        .into_iter()
        .max_by(|a, b| {
            a.recall_at_10
                .total_cmp(&b.recall_at_10)
                .then(a.qps.total_cmp(&b.qps))
        })
        .map(CellChoice::BestRecall)
}

/// A search setting squash sweeps, with its label in the points.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSetting {
    /// Label, e.g. `cf=1.5 minp=2 rerank=10 keep=0.3` or `exact`.
    pub label: String,
    /// The knobs.
    pub options: SearchOptions,
}

/// Centroid factor, minimum partitions, re-rank factor and Hamming keep share of the
/// approximate settings, from fast and coarse to slow and thorough; the sweep ends with the
/// exact mode. The third one is the default (see [`squash_core::protocol::SearchKnobs`]).
const APPROXIMATE_SETTINGS: [(f32, usize, usize, f32); 4] = [
    (1.1, 1, 2, 0.05),
    (1.2, 1, 4, 0.15),
    (1.3, 1, 10, 0.3),
    (1.5, 1, 20, 0.6),
];

/// Engines in the points that are references, not competitors: never in bold. `matching-rows`
/// is numpy scoring only the rows that pass the filter, gathered contiguously beforehand (the
/// least work an exact answer needs; `scripts/bench/engines.py`).
const REFERENCE_ENGINES: [&str; 1] = ["matching-rows"];

/// Returns the settings `squash bench` sweeps: four approximate ones and the exact mode, or
/// with `quick` only the fastest and the exact one (the two ends of the curve).
pub fn sweep_settings(quick: bool) -> Vec<SweepSetting> {
    let mut settings: Vec<SweepSetting> = APPROXIMATE_SETTINGS
        .iter()
        .map(
            |&(centroid_factor, min_partitions, rerank_factor, hamming_keep)| {
                let options = SearchOptions {
                    exact: false,
                    centroid_factor: Some(centroid_factor),
                    probe_rows: None,
                    min_partitions: Some(min_partitions),
                    max_partitions: None,
                    rerank_factor: Some(rerank_factor),
                    hamming_keep: Some(hamming_keep),
                };
                SweepSetting {
                    label: setting_label(&options),
                    options,
                }
            },
        )
        .collect();
    let exact = SearchOptions {
        exact: true,
        ..SearchOptions::default()
    };
    settings.push(SweepSetting {
        label: setting_label(&exact),
        options: exact,
    });
    if quick {
        let last = settings.len() - 1;
        settings = vec![settings[0].clone(), settings[last].clone()];
    }
    settings
}

/// Returns the short label of `options` used in points and tables.
pub fn setting_label(options: &SearchOptions) -> String {
    if options.exact {
        return "exact".to_string();
    }
    let mut parts = Vec::new();
    if let Some(factor) = options.centroid_factor {
        parts.push(format!("cf={factor}"));
    }
    if let Some(rows) = options.probe_rows {
        parts.push(format!("rows={rows}"));
    }
    if let Some(partitions) = options.min_partitions {
        parts.push(format!("minp={partitions}"));
    }
    if let Some(partitions) = options.max_partitions {
        parts.push(format!("maxp={partitions}"));
    }
    if let Some(factor) = options.rerank_factor {
        parts.push(format!("rerank={factor}"));
    }
    if let Some(keep) = options.hamming_keep {
        parts.push(format!("keep={keep}"));
    }
    if parts.is_empty() {
        "default".to_string()
    } else {
        parts.join(" ")
    }
}

/// Returns the distinct values of `key` over `points`, in order of first appearance.
fn distinct<'a>(
    points: impl IntoIterator<Item = &'a BenchPoint>,
    key: impl Fn(&'a BenchPoint) -> &'a str,
) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    points
        .into_iter()
        .map(key)
        .filter(|value| seen.insert(*value))
        .collect()
}

/// Returns the engines of `points`: squash first, the others in order of first appearance.
pub fn engines(points: &[BenchPoint]) -> Vec<&str> {
    let mut names = distinct(points, |point| point.engine.as_str());
    names.sort_by_key(|name| *name != SQUASH_ENGINE);
    names
}

/// Returns the (data set, workload) pairs of `points`, in order of first appearance.
pub fn dataset_workloads(points: &[BenchPoint]) -> Vec<(&str, &str)> {
    let mut seen = HashSet::new();
    points
        .iter()
        .map(|point| (point.dataset.as_str(), point.workload.as_str()))
        .filter(|pair| seen.insert(*pair))
        .collect()
}

/// Returns one series per engine for a plot of `dataset`/`workload`: (recall@10, QPS) pairs in
/// ascending recall, engines ordered as in [`engines`].
pub fn workload_series(points: &[BenchPoint], dataset: &str, workload: &str) -> Vec<plot::Series> {
    let selected: Vec<BenchPoint> = points
        .iter()
        .filter(|point| point.dataset == dataset && point.workload == workload)
        .cloned()
        .collect();
    engines(&selected)
        .into_iter()
        .map(|engine| {
            let mut xy: Vec<(f64, f64)> = selected
                .iter()
                .filter(|point| point.engine == engine)
                .map(|point| (point.recall_at_10, point.qps))
                .collect();
            xy.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            plot::Series {
                name: engine.to_string(),
                points: xy,
            }
        })
        .collect()
}

/// Renders the Markdown report of `file`: one recall/QPS table per data set (a row per
/// workload, a column per engine), then build time and index size per engine and data set.
/// `notes` are extra lines for the header (e.g. where the peers' points come from).
pub fn render_tables(file: &PointsFile, notes: &[String]) -> String {
    let points = &file.points;
    let engine_names = engines(points);
    let mut out = String::new();
    let _ = writeln!(out, "# squash bench: recall@10 and queries per second\n");
    let _ = writeln!(out, "Machine: {}. Date: {}.", file.machine, file.date);
    let threads: Vec<String> = engine_names
        .iter()
        .map(|engine| {
            let mut counts: Vec<u32> = points
                .iter()
                .filter(|point| point.engine == *engine)
                .map(|point| point.threads)
                .collect();
            counts.sort_unstable();
            counts.dedup();
            let counts: Vec<String> = counts.iter().map(u32::to_string).collect();
            format!("{engine} {}", counts.join("/"))
        })
        .collect();
    let _ = writeln!(
        out,
        "Search threads per engine: {} (QPS is measured at that thread count).",
        threads.join(", ")
    );
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "\nA cell is the highest QPS among an engine's settings with recall@10 >= {RECALL_TARGET}, \
         with that recall and setting; when no setting reaches {RECALL_TARGET}, it is the best \
         recall and its QPS. The fastest engine at the target is in bold; `matching-rows`, when \
         present, is a reference and never bold: numpy computing the distances of only the rows \
         that pass the filter, gathered contiguously beforehand and with the filter not timed, \
         the least work an exact answer needs. squash's settings: `cf` centroid factor, `minp` \
         minimum partitions, `rerank` re-rank factor, `keep` share kept by the sign-code filter; \
         `exact` is the exact mode."
    );
    for dataset in distinct(points, |point| point.dataset.as_str()) {
        let in_dataset: Vec<&BenchPoint> = points.iter().filter(|p| p.dataset == dataset).collect();
        let columns: Vec<&str> = engine_names
            .iter()
            .copied()
            .filter(|engine| in_dataset.iter().any(|p| p.engine == *engine))
            .collect();
        let _ = writeln!(out, "\n## {dataset}\n");
        let _ = writeln!(out, "| workload | {} |", columns.join(" | "));
        let _ = writeln!(out, "| --- |{}", " ---: |".repeat(columns.len()));
        for workload in distinct(in_dataset.iter().copied(), |point| point.workload.as_str()) {
            let cells: Vec<Option<CellChoice>> = columns
                .iter()
                .map(|engine| {
                    choose_cell(
                        in_dataset
                            .iter()
                            .copied()
                            .filter(|p| p.workload == workload && p.engine == *engine),
                        RECALL_TARGET,
                    )
                })
                .collect();
            let fastest_opt = cells
                .iter()
                .filter_map(|cell| match cell {
                    Some(CellChoice::AtTarget(point))
                        if !REFERENCE_ENGINES.contains(&point.engine.as_str()) =>
                    {
                        Some(point.qps)
                    }
                    _ => None,
                })
                .max_by(f64::total_cmp);
            let texts: Vec<String> = cells
                .iter()
                .map(|cell| match cell {
                    None => "-".to_string(),
                    Some(CellChoice::AtTarget(point)) => {
                        let qps = format!("{} QPS", format_qps(point.qps));
                        let qps = if Some(point.qps) == fastest_opt {
                            format!("**{qps}**")
                        } else {
                            qps
                        };
                        format!(
                            "{qps} at {:.3} ({})",
                            point.recall_at_10,
                            escape_cell(&point.setting)
                        )
                    }
                    Some(CellChoice::BestRecall(point)) => format!(
                        "best recall {:.3} at {} QPS ({})",
                        point.recall_at_10,
                        format_qps(point.qps),
                        escape_cell(&point.setting)
                    ),
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", escape_cell(workload), texts.join(" | "));
        }
    }
    let datasets = distinct(points, |point| point.dataset.as_str());
    let _ = writeln!(out, "\n## Build time and index size\n");
    let _ = writeln!(out, "| engine | {} |", datasets.join(" | "));
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(datasets.len()));
    for engine in &engine_names {
        let cells: Vec<String> = datasets
            .iter()
            .map(|dataset| {
                let of_engine = || {
                    points
                        .iter()
                        .filter(|p| p.engine == *engine && p.dataset == *dataset)
                };
                let seconds = of_engine().find_map(|p| p.build_seconds);
                let bytes = of_engine().find_map(|p| p.index_bytes);
                match (seconds, bytes) {
                    (None, None) => "-".to_string(),
                    (seconds, bytes) => format!(
                        "{}, {}",
                        seconds.map_or("-".to_string(), |s| format!("{s:.1} s")),
                        bytes.map_or("-".to_string(), format_bytes)
                    ),
                }
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", escape_cell(engine), cells.join(" | "));
    }
    out
}

/// Formats a QPS figure: whole numbers with thousands separators from 100 up, one decimal below.
pub fn format_qps(qps: f64) -> String {
    if qps < 100.0 {
        return format!("{qps:.1}");
    }
    let digits = format!("{qps:.0}");
    let mut grouped = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Formats a byte count in MiB.
pub fn format_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Returns `unix_seconds` as an ISO 8601 UTC time, e.g. `2026-11-29T09:41:07Z`.
pub fn format_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let seconds_of_day = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// Returns a file name for the plot of `dataset`/`workload`: `<dataset>__<workload>.png`, with
/// anything but letters, digits, `.`, `-` and `_` replaced by `_`.
pub fn plot_file_name(dataset: &str, workload: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}__{}.png", clean(dataset), clean(workload))
}

/// Returns `engine`'s table cell per workload of `dataset` as text lines for a summary:
/// `workload: 1,234 QPS at recall 0.981 (setting)` or `workload: best recall 0.912 at 330 QPS
/// (setting)`.
pub fn summary_lines(results: &PointsFile, engine: &str, dataset: &str) -> Vec<String> {
    let ours: Vec<&BenchPoint> = results
        .points
        .iter()
        .filter(|point| point.engine == engine && point.dataset == dataset)
        .collect();
    let mut workloads: Vec<&str> = Vec::new();
    for point in &ours {
        if !workloads.contains(&point.workload.as_str()) {
            workloads.push(&point.workload);
        }
    }
    workloads
        .into_iter()
        .filter_map(|workload| {
            let cell = choose_cell(
                ours.iter().copied().filter(|p| p.workload == workload),
                RECALL_TARGET,
            )?;
            Some(match cell {
                CellChoice::AtTarget(point) => format!(
                    "{workload}: {} QPS at recall {:.3} ({})",
                    format_qps(point.qps),
                    point.recall_at_10,
                    point.setting
                ),
                CellChoice::BestRecall(point) => format!(
                    "{workload}: best recall {:.3} at {} QPS ({})",
                    point.recall_at_10,
                    format_qps(point.qps),
                    point.setting
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::protocol::SearchKnobs;

    fn point(engine: &str, workload: &str, setting: &str, recall: f64, qps: f64) -> BenchPoint {
        BenchPoint {
            engine: engine.to_string(),
            dataset: "glove".to_string(),
            workload: workload.to_string(),
            setting: setting.to_string(),
            recall_at_10: recall,
            qps,
            threads: 1,
            num_queries: 100,
            build_seconds: Some(2.5),
            index_bytes: Some(3 << 20),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn the_cell_is_the_fastest_setting_at_the_target_recall() {
        let points = [
            point("squash", "w", "a", 0.90, 5000.0),
            point("squash", "w", "b", 0.95, 2000.0),
            point("squash", "w", "c", 0.99, 800.0),
            point("squash", "w", "d", 1.00, 100.0),
        ];
        let cell = choose_cell(&points, RECALL_TARGET).expect("points");
        assert_eq!(cell, CellChoice::AtTarget(&points[1]));
        // Equal QPS at the target: the better recall wins.
        let tied = [
            point("squash", "w", "a", 0.96, 900.0),
            point("squash", "w", "b", 0.98, 900.0),
        ];
        assert_eq!(
            choose_cell(&tied, RECALL_TARGET),
            Some(CellChoice::AtTarget(&tied[1]))
        );
    }

    #[test]
    fn below_the_target_the_cell_is_the_best_recall() {
        let points = [
            point("hnsw", "w", "ef=16", 0.70, 9000.0),
            point("hnsw", "w", "ef=64", 0.91, 3000.0),
            point("hnsw", "w", "ef=32", 0.91, 4000.0),
            point("hnsw", "w", "ef=8", 0.50, 12000.0),
        ];
        let cell = choose_cell(&points, RECALL_TARGET).expect("points");
        assert_eq!(cell, CellChoice::BestRecall(&points[2]));
        assert_eq!(cell.point().setting, "ef=32");
        assert_eq!(choose_cell(std::iter::empty(), RECALL_TARGET), None);
    }

    #[test]
    fn merging_keeps_ours_first_and_drops_repeated_measurements() {
        let ours = vec![point("squash", "w", "exact", 1.0, 10.0)];
        let others = vec![
            point("faiss-hnsw", "w", "efSearch=64", 0.98, 900.0),
            point("squash", "w", "exact", 0.5, 1.0),
            point("faiss-hnsw", "w", "efSearch=64", 0.10, 1.0),
            point("faiss-hnsw", "w", "efSearch=128", 0.99, 500.0),
        ];
        let merged = merge_points(ours.clone(), others.clone());
        assert_eq!(
            merged,
            vec![ours[0].clone(), others[0].clone(), others[3].clone()]
        );
    }

    #[test]
    fn results_round_trip_through_json_with_unknown_fields_kept() {
        let mut with_extra = point("lancedb-ivf-pq", "freq_1", "nprobes=20", 0.93, 410.0);
        with_extra.build_seconds = None;
        with_extra.index_bytes = None;
        with_extra
            .extra
            .insert("refine_factor".to_string(), serde_json::json!(4));
        let file = PointsFile::new(
            "2026-11-29T10:00:00Z".to_string(),
            "test machine".to_string(),
            vec![
                point("squash", "unfiltered", "exact", 1.0, 33.4),
                with_extra,
            ],
        );
        let text = file.to_json().expect("encode");
        let parsed = parse_points_file("results.json", text.as_bytes()).expect("parse");
        assert_eq!(parsed, file);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["schema"], POINTS_SCHEMA);
        assert_eq!(value["points"][1]["refine_factor"], 4);
        assert!(value["points"][1]["build_seconds"].is_null());
    }

    fn parse_error(text: &str) -> String {
        parse_points_file("out/peers.json", text.as_bytes())
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn bad_peers_files_are_refused_naming_the_file_and_the_reason() {
        let message = parse_error("{\"schema\": ");
        assert!(
            message.starts_with("out/peers.json: not valid JSON"),
            "{message}"
        );
        let message = parse_error(r#"{"points": []}"#);
        assert!(message.contains("out/peers.json: no schema"), "{message}");
        let message = parse_error(r#"{"schema": "squash-bench-points/2", "points": []}"#);
        assert!(
            message.contains("out/peers.json: unknown schema 'squash-bench-points/2'"),
            "{message}"
        );
        let good = serde_json::to_value(point("faiss-ivf-flat", "w", "nprobe=8", 0.9, 50.0))
            .expect("point");
        let mut missing_qps = good.clone();
        missing_qps.as_object_mut().expect("object").remove("qps");
        let text =
            serde_json::json!({"schema": POINTS_SCHEMA, "points": [good.clone(), missing_qps]});
        let message = parse_error(&text.to_string());
        assert!(
            message.starts_with("out/peers.json: points[1]"),
            "{message}"
        );
        assert!(message.contains("qps"), "{message}");
        let mut bad_recall = good.clone();
        bad_recall["recall_at_10"] = serde_json::json!(1.5);
        let text = serde_json::json!({"schema": POINTS_SCHEMA, "points": [bad_recall]});
        assert_eq!(
            parse_error(&text.to_string()),
            "out/peers.json: points[0].recall_at_10: must be within 0..=1"
        );
        let mut bad_qps = good;
        bad_qps["qps"] = serde_json::json!(-3.0);
        let text = serde_json::json!({"schema": POINTS_SCHEMA, "points": [bad_qps]});
        assert_eq!(
            parse_error(&text.to_string()),
            "out/peers.json: points[0].qps: must be a finite number >= 0"
        );
    }

    #[test]
    fn tables_have_a_row_per_workload_and_a_column_per_engine() {
        let mut points = vec![
            point("squash", "unfiltered", "fast", 0.90, 400.0),
            point("squash", "unfiltered", "exact", 1.00, 30.0),
            point("squash", "freq_1", "exact", 1.00, 700.0),
            point("faiss-hnsw", "unfiltered", "efSearch=64", 0.97, 1520.3),
            point("faiss-hnsw", "freq_1", "efSearch=64", 0.40, 2000.0),
        ];
        let mut other_dataset = point("squash", "label_in_3", "exact", 1.0, 64.5);
        other_dataset.dataset = "fashion".to_string();
        points.push(other_dataset);
        let file = PointsFile::new("today".into(), "box".into(), points);
        let text = render_tables(&file, &["Peers: elsewhere.".to_string()]);
        assert!(text.contains("Machine: box. Date: today."), "{text}");
        assert!(text.contains("Peers: elsewhere."), "{text}");
        assert!(
            text.contains("Search threads per engine: squash 1, faiss-hnsw 1"),
            "{text}"
        );
        assert!(text.contains("## glove\n"), "{text}");
        assert!(text.contains("## fashion\n"), "{text}");
        assert!(
            text.contains("| workload | squash | faiss-hnsw |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| unfiltered | 30.0 QPS at 1.000 (exact) | **1,520 QPS** at 0.970 (efSearch=64) |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| freq_1 | **700 QPS** at 1.000 (exact) | best recall 0.400 at 2,000 QPS (efSearch=64) |"
            ),
            "{text}"
        );
        // The fashion table has no faiss column, and the build table a "-" for it.
        assert!(text.contains("| workload | squash |\n"), "{text}");
        assert!(text.contains("| engine | glove | fashion |"), "{text}");
        assert!(
            text.contains("| squash | 2.5 s, 3.0 MiB | 2.5 s, 3.0 MiB |"),
            "{text}"
        );
        assert!(
            text.contains("| faiss-hnsw | 2.5 s, 3.0 MiB | - |"),
            "{text}"
        );
    }

    #[test]
    fn the_sweep_goes_from_fast_to_exact_with_valid_knobs() {
        let full = sweep_settings(false);
        assert_eq!(full.len(), 5);
        assert_eq!(full[2].label, "cf=1.3 minp=1 rerank=10 keep=0.3");
        // The third setting is the service's default.
        assert_eq!(
            SearchKnobs::resolve(&full[2].options).unwrap(),
            SearchKnobs::resolve(&SearchOptions::default()).unwrap()
        );
        assert_eq!(full[4].label, "exact");
        let labels: HashSet<&str> = full.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels.len(), full.len());
        for setting in &full {
            SearchKnobs::resolve(&setting.options).expect("valid knobs");
        }
        let quick = sweep_settings(true);
        assert_eq!(quick, vec![full[0].clone(), full[4].clone()]);
    }

    #[test]
    fn numbers_dates_and_file_names_are_formatted_for_people() {
        assert_eq!(format_qps(1520.3), "1,520");
        assert_eq!(format_qps(1_234_567.0), "1,234,567");
        assert_eq!(format_qps(100.0), "100");
        assert_eq!(format_qps(99.94), "99.9");
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_764_409_267), "2025-11-29T09:41:07Z");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            plot_file_name("glove-6b-50-angular", "freq 1/x"),
            "glove-6b-50-angular__freq_1_x.png"
        );
    }

    #[test]
    fn series_are_per_engine_in_ascending_recall() {
        let points = vec![
            point("hnswlib", "w", "ef=64", 0.99, 500.0),
            point("squash", "w", "exact", 1.0, 30.0),
            point("hnswlib", "w", "ef=16", 0.90, 2000.0),
            point("squash", "other", "exact", 1.0, 99.0),
        ];
        let series = workload_series(&points, "glove", "w");
        assert_eq!(
            series,
            vec![
                plot::Series {
                    name: "squash".into(),
                    points: vec![(1.0, 30.0)]
                },
                plot::Series {
                    name: "hnswlib".into(),
                    points: vec![(0.90, 2000.0), (0.99, 500.0)]
                },
            ]
        );
        let file = PointsFile::new(String::new(), String::new(), points);
        assert_eq!(
            summary_lines(&file, "hnswlib", "glove"),
            vec!["w: 500 QPS at recall 0.990 (ef=64)".to_string()]
        );
    }
}
