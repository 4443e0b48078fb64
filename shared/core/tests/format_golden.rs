//! Golden-file test of container format version 1.
//!
//! `tests/data/golden/container-v1.bin` was written once by the ignored test
//! `regenerate_golden` and must never be rewritten for version 1: it proves that objects
//! written by earlier builds still decode. A format change that breaks it needs a new
//! `FORMAT_VERSION` and a new golden file (`container-v2.bin`), with this one kept.
//!
//! To write a golden file for a new version (after bumping `FORMAT_VERSION` and the file name):
//! `cargo test -p squash-core --test format_golden -- --ignored regenerate_golden`

use std::io::Write;
use std::path::PathBuf;

use squash_core::format::{
    f32s_to_le_bytes, le_bytes_to_f32s, le_bytes_to_u32s, le_bytes_to_u64s, parse_toc,
    parse_trailer, u32s_to_le_bytes, u64s_to_le_bytes, Container, ContainerWriter, ObjectKind,
    CODEC_RAW, CODEC_ZSTD, FORMAT_VERSION, TRAILER_LEN,
};

const GOLDEN_FILE: &str = "container-v1.bin";

const META: &str =
    "{\"name\": \"golden\", \"dim\": 4, \"metric\": \"l2\", \"bits\": [4, 4, 2, 2], \
                    \"note\": \"format version 1 golden object\"}";
const FLOATS: [f32; 5] = [0.5, -1.25, 3.0e10, f32::MIN_POSITIVE, -0.0];
const IDS: [u64; 3] = [0, 1 << 40, u64::MAX];
const NUM_ZEROS: usize = 256;
const CODE_ROW_LEN_BYTES: usize = 4;
const CODES_TARGET_CHUNK_BYTES: usize = 16;

fn codes() -> Vec<u32> {
    (0..10u32).map(|i| i * 0x0101_0101).collect()
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(GOLDEN_FILE)
}

fn build_golden() -> Vec<u8> {
    let mut writer = ContainerWriter::new(ObjectKind::Segment);
    writer.add_block("meta", META.as_bytes()).unwrap();
    writer.add_block("tiny", &[0x2a]).unwrap();
    writer.add_block("empty", &[]).unwrap();
    writer
        .add_block("floats", &f32s_to_le_bytes(&FLOATS))
        .unwrap();
    writer.add_block("ids", &u64s_to_le_bytes(&IDS)).unwrap();
    writer.add_block("zeros", &[0; NUM_ZEROS]).unwrap();
    writer
        .add_rows(
            "codes",
            &u32s_to_le_bytes(&codes()),
            CODE_ROW_LEN_BYTES,
            CODES_TARGET_CHUNK_BYTES,
        )
        .unwrap();
    writer.finish().unwrap()
}

#[test]
#[ignore = "writes the golden file; run once per format version"]
fn regenerate_golden() {
    let path = golden_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // create_new: an existing golden file is a published format and must not be overwritten.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (golden files are never rewritten)", path.display()));
    file.write_all(&build_golden()).unwrap();
}

#[test]
fn golden_v1_decodes() {
    let bytes = std::fs::read(golden_path()).unwrap();
    assert_eq!(FORMAT_VERSION, 1, "add a golden file for the new version");
    // The last 8 bytes never move: version 1 and the magic.
    assert_eq!(&bytes[bytes.len() - 8..], b"\x01\x00\x00\x00SQSH");

    let container = Container::open(GOLDEN_FILE, bytes.clone(), ObjectKind::Segment).unwrap();
    let toc = container.toc();
    assert_eq!(toc.kind, ObjectKind::Segment);
    assert_eq!(toc.format_version, 1);
    let layout: Vec<(&str, u64, u8)> = toc
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.raw_len, e.codec))
        .collect();
    assert_eq!(
        layout,
        [
            ("meta", META.len() as u64, CODEC_ZSTD),
            ("tiny", 1, CODEC_RAW),
            ("empty", 0, CODEC_RAW),
            ("floats", 20, CODEC_RAW),
            ("ids", 24, CODEC_RAW),
            ("zeros", NUM_ZEROS as u64, CODEC_ZSTD),
            ("codes.0", 16, CODEC_RAW),
            ("codes.1", 16, CODEC_RAW),
            ("codes.2", 8, CODEC_RAW),
        ]
    );

    assert_eq!(container.block("meta").unwrap(), META.as_bytes());
    assert_eq!(container.block("tiny").unwrap(), [0x2a]);
    assert_eq!(container.block("empty").unwrap(), b"");
    let floats = le_bytes_to_f32s(GOLDEN_FILE, "floats", &container.block("floats").unwrap());
    let float_bits: Vec<u32> = floats.unwrap().iter().map(|f| f.to_bits()).collect();
    let expected_bits: Vec<u32> = FLOATS.iter().map(|f| f.to_bits()).collect();
    assert_eq!(float_bits, expected_bits);
    let ids = le_bytes_to_u64s(GOLDEN_FILE, "ids", &container.block("ids").unwrap());
    assert_eq!(ids.unwrap(), IDS);
    assert_eq!(container.block("zeros").unwrap(), [0; NUM_ZEROS]);
    let codes_bytes = container.rows("codes").unwrap();
    assert_eq!(
        le_bytes_to_u32s(GOLDEN_FILE, "codes", &codes_bytes).unwrap(),
        codes()
    );

    // The ranged-read path sees the same object.
    let trailer = parse_trailer(GOLDEN_FILE, &bytes[bytes.len() - TRAILER_LEN..]).unwrap();
    assert_eq!(trailer.object_len(), bytes.len() as u64);
    let toc_range = trailer.toc_range();
    let ranged_toc = parse_toc(
        GOLDEN_FILE,
        &trailer,
        &bytes[toc_range.start as usize..toc_range.end as usize],
    )
    .unwrap();
    assert_eq!(&ranged_toc, toc);
}

#[test]
fn current_writer_still_produces_the_golden_contents() {
    // Byte equality is not required (a zstd upgrade may change compressed bytes), but the
    // blocks and their order must match what the golden file holds.
    let golden = std::fs::read(golden_path()).unwrap();
    let golden = Container::open(GOLDEN_FILE, golden, ObjectKind::Segment).unwrap();
    let fresh = Container::open("fresh", build_golden(), ObjectKind::Segment).unwrap();
    let names =
        |c: &Container| -> Vec<String> { c.toc().entries.iter().map(|e| e.name.clone()).collect() };
    assert_eq!(names(&golden), names(&fresh));
    for name in names(&golden) {
        assert_eq!(
            golden.block(&name).unwrap(),
            fresh.block(&name).unwrap(),
            "{name}"
        );
    }
}
