//! What the fuzz targets share: the contract a decoder error must meet, checksum repair so
//! mutated objects reach the decoders behind the checksums, a structure-aware mutator, the
//! fixtures (an attribute schema and table, the golden index) and the seed writer.
//!
//! Why checksum repair: almost every mutation of a stored object breaks a crc32, so a target
//! that only decoded its input would explore the checksum checks and little else. Each object
//! target therefore decodes its input twice, as given and after [`reseal`] recomputed every
//! checksum it can locate; the second pass reaches the block decoders (JSON metadata, array
//! lengths, the OSQ layout) with arbitrary contents. [`mutate`] goes further and changes the
//! decoded blocks themselves.

pub mod mutate;

use std::ops::Range;

use squash_core::attributes::{AttributeColumn, AttributeKind, AttributeSchema, AttributeTable};
use squash_core::format::{parse_trailer, Container, TRAILER_LEN};
use squash_core::Error;

/// Panics unless `error` is what a decoder may report for untrustworthy stored bytes:
/// `Corrupt` or `UnsupportedVersion`, naming `object`.
pub fn assert_stored_error(object: &str, error: &Error) {
    match error {
        Error::Corrupt { object: named, .. } | Error::UnsupportedVersion { object: named, .. } => {
            assert_eq!(named, object, "the error names another object: {error}");
        }
        other => panic!("decoding {object} failed with a non-corruption error: {other:?}"),
    }
}

/// Panics unless `error` is `InvalidInput` whose field is `root` or a path below it
/// (`root.x`, `root[3]`, `root: row 4`).
pub fn assert_invalid_input_under(root: &str, error: &Error) {
    match error {
        Error::InvalidInput { field, .. } => {
            let below = field
                .strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[', ':', ' ']));
            assert!(
                below,
                "error field '{field}' is not under '{root}': {error}"
            );
        }
        other => panic!("expected an InvalidInput error under '{root}', got {other:?}"),
    }
}

/// Runs `check` on `data` as given and, when resealing changes it, on the resealed bytes too:
/// without the second pass nearly every mutation would stop at a checksum.
pub fn check_as_given_and_resealed(data: &[u8], check: impl Fn(&[u8])) {
    check(data);
    let resealed = reseal(data);
    if resealed != data {
        check(&resealed);
    }
}

/// Returns `bytes` with every checksum recomputed that its layout lets us find: each block's
/// crc32 in the toc (for blocks inside the object), the toc's crc32 and the trailer's. Fields
/// that do not parse are left alone, so everything but the checksums stays as given.
pub fn reseal(bytes: &[u8]) -> Vec<u8> {
    let mut sealed = bytes.to_vec();
    let Some(trailer_start) = sealed.len().checked_sub(TRAILER_LEN) else {
        return sealed;
    };
    let mut pos = trailer_start;
    let toc_offset = read_u64(&sealed, &mut pos, trailer_start + 8);
    let toc_len = read_u32(&sealed, &mut pos, trailer_start + 12);
    let toc_range = toc_offset
        .zip(toc_len)
        .and_then(|(offset, len)| {
            let start = usize::try_from(offset).ok()?;
            Some(start..start.checked_add(len as usize)?)
        })
        .filter(|range| range.end <= trailer_start);
    if let Some(toc_range) = toc_range {
        reseal_blocks(&mut sealed, toc_range.clone());
        let toc_crc32 = crc32fast::hash(&sealed[toc_range]);
        sealed[trailer_start + 12..trailer_start + 16].copy_from_slice(&toc_crc32.to_le_bytes());
    }
    let trailer_crc32 = crc32fast::hash(&sealed[trailer_start..trailer_start + 20]);
    sealed[trailer_start + 20..trailer_start + 24].copy_from_slice(&trailer_crc32.to_le_bytes());
    sealed
}

/// Rewrites the crc32 of every toc entry in `toc` whose block lies inside `sealed`, stopping
/// at the first entry that does not parse.
fn reseal_blocks(sealed: &mut [u8], toc: Range<usize>) {
    let mut pos = toc.start;
    let Some(num_entries) = read_u32(sealed, &mut pos, toc.end) else {
        return;
    };
    for _ in 0..num_entries {
        let Some(name_len) = read_u16(sealed, &mut pos, toc.end) else {
            return;
        };
        pos += usize::from(name_len);
        let offset = read_u64(sealed, &mut pos, toc.end);
        let stored_len = read_u64(sealed, &mut pos, toc.end);
        let raw_len = read_u64(sealed, &mut pos, toc.end);
        let crc_position = pos;
        let (Some(offset), Some(stored_len), Some(_), Some(_)) = (
            offset,
            stored_len,
            raw_len,
            read_u32(sealed, &mut pos, toc.end),
        ) else {
            return;
        };
        pos += 1; // codec
        let block = usize::try_from(offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(stored_len).ok()?)?;
            (end <= sealed.len()).then_some(start..end)
        });
        if let Some(block) = block {
            let crc32 = crc32fast::hash(&sealed[block]);
            sealed[crc_position..crc_position + 4].copy_from_slice(&crc32.to_le_bytes());
        }
    }
}

fn read_array<const N: usize>(bytes: &[u8], pos: &mut usize, end: usize) -> Option<[u8; N]> {
    let field_end = pos.checked_add(N).filter(|&field_end| field_end <= end)?;
    let array = bytes.get(*pos..field_end)?.try_into().ok()?;
    *pos = field_end;
    Some(array)
}

fn read_u16(bytes: &[u8], pos: &mut usize, end: usize) -> Option<u16> {
    read_array(bytes, pos, end).map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], pos: &mut usize, end: usize) -> Option<u32> {
    read_array(bytes, pos, end).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], pos: &mut usize, end: usize) -> Option<u64> {
    read_array(bytes, pos, end).map(u64::from_le_bytes)
}

/// Returns the valid object `bytes` rewritten with every block stored raw (same names, order
/// and kind), so that mutations of a seed land in JSON and arrays instead of zstd frames.
pub fn with_raw_blocks(object: &str, bytes: &[u8]) -> squash_core::Result<Vec<u8>> {
    let trailer = parse_trailer(object, bytes)?;
    let container = Container::open(object, bytes.to_vec(), trailer.kind)?;
    let entries = &container.toc().entries;
    let mut body = Vec::new();
    let mut toc = (entries.len() as u32).to_le_bytes().to_vec();
    for entry in entries {
        let raw = container.block(&entry.name)?;
        toc.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        toc.extend_from_slice(entry.name.as_bytes());
        toc.extend_from_slice(&(body.len() as u64).to_le_bytes());
        toc.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        toc.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        toc.extend_from_slice(&[0; 4]); // crc32, filled by reseal
        toc.push(squash_core::format::CODEC_RAW);
        body.extend_from_slice(&raw);
    }
    let mut object_bytes = body;
    let toc_offset = object_bytes.len() as u64;
    object_bytes.extend_from_slice(&toc);
    let mut trailer_bytes = bytes[bytes.len() - TRAILER_LEN..].to_vec();
    trailer_bytes[0..8].copy_from_slice(&toc_offset.to_le_bytes());
    trailer_bytes[8..12].copy_from_slice(&(toc.len() as u32).to_le_bytes());
    object_bytes.extend_from_slice(&trailer_bytes);
    Ok(reseal(&object_bytes))
}

/// The schema the filter target parses against: one column of each kind.
pub fn filter_schema() -> AttributeSchema {
    AttributeSchema {
        columns: vec![
            AttributeColumn {
                name: "year".into(),
                kind: AttributeKind::Integer,
                dictionary: vec![],
            },
            AttributeColumn {
                name: "price".into(),
                kind: AttributeKind::Float,
                dictionary: vec![],
            },
            AttributeColumn {
                name: "color".into(),
                kind: AttributeKind::Categorical,
                dictionary: ["blue", "green", "red", "violet", "yellow"]
                    .iter()
                    .map(|color| color.to_string())
                    .collect(),
            },
        ],
    }
}

/// A table for [`filter_schema`] with edge values: NaN (missing) cells, negative zero,
/// repeated values, extremes of `f64`, and a categorical code outside the dictionary.
pub fn filter_table() -> AttributeTable {
    const NUM_ROWS: usize = 96;
    let mut table = AttributeTable::with_columns(3, NUM_ROWS);
    for row in 0..NUM_ROWS {
        let year = match row % 17 {
            0 => f64::NAN,
            1 => -0.0,
            2 => 9_007_199_254_740_992.0,
            3 => -9_007_199_254_740_992.0,
            _ => (1990 + row % 40) as f64,
        };
        let price = match row % 13 {
            0 => f64::NAN,
            1 => f64::MAX,
            2 => f64::MIN_POSITIVE,
            3 => -1e300,
            _ => (row as f64 * 7.3) % 250.0,
        };
        let color = match row % 11 {
            0 => f64::NAN,
            10 => 7.0,
            _ => (row % 5) as f64,
        };
        table.columns[0].push(year);
        table.columns[1].push(price);
        table.columns[2].push(color);
    }
    table.num_rows = NUM_ROWS;
    table
}

/// The golden index committed with the integration tests (format version 1, 64 vectors of
/// dimension 6, two partitions, columns `year` and `shape`), as (key, bytes) under `index/`.
pub fn golden_index_objects(index: &str) -> Vec<(String, Vec<u8>)> {
    const GOLDEN: [(&str, &[u8]); 4] = [
        (
            "manifest.sqsh",
            include_bytes!("../../shared/core/tests/data/golden/index-v1/manifest.sqsh"),
        ),
        (
            "vgolden1/coordinator.sqsh",
            include_bytes!("../../shared/core/tests/data/golden/index-v1/vgolden1/coordinator.sqsh"),
        ),
        (
            "vgolden1/partition-00000.sqsh",
            include_bytes!("../../shared/core/tests/data/golden/index-v1/vgolden1/partition-00000.sqsh"),
        ),
        (
            "vgolden1/partition-00001.sqsh",
            include_bytes!("../../shared/core/tests/data/golden/index-v1/vgolden1/partition-00001.sqsh"),
        ),
    ];
    GOLDEN
        .iter()
        .map(|(key, bytes)| (format!("{index}/{key}"), bytes.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use squash_core::format::{ContainerWriter, ObjectKind};
    use squash_core::index::{CoordinatorData, Manifest, PartitionData};

    use super::*;

    fn sample_object() -> Vec<u8> {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer.add_block("meta", br#"{"a": 1}"#).unwrap();
        writer.add_block("zeros", &[0u8; 4000]).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn reseal_repairs_every_checksum_after_a_mutation() {
        let bytes = sample_object();
        assert_eq!(reseal(&bytes), bytes, "a valid object is left unchanged");
        let mut mutated = bytes.clone();
        mutated[2] = b'b'; // inside the raw "meta" block
        assert!(Container::open("o", mutated.clone(), ObjectKind::Segment)
            .unwrap()
            .block("meta")
            .is_err());
        let container = Container::open("o", reseal(&mutated), ObjectKind::Segment).unwrap();
        assert_eq!(container.block("meta").unwrap(), br#"{"b": 1}"#);
        assert_eq!(container.block("zeros").unwrap(), vec![0u8; 4000]);
        // Inputs without a locatable toc come back with only the trailer checksum changed.
        assert_eq!(reseal(&[1, 2, 3]), vec![1, 2, 3]);
        assert_eq!(reseal(&[0; 32]).len(), 32);
    }

    #[test]
    fn raw_variants_hold_the_same_blocks() {
        let bytes = sample_object();
        let raw = with_raw_blocks("o", &bytes).unwrap();
        assert!(
            raw.len() > bytes.len(),
            "the zeros block is stored uncompressed"
        );
        let original = Container::open("o", bytes, ObjectKind::Segment).unwrap();
        let rewritten = Container::open("o", raw, ObjectKind::Segment).unwrap();
        for entry in &original.toc().entries {
            assert_eq!(
                original.block(&entry.name).unwrap(),
                rewritten.block(&entry.name).unwrap()
            );
        }
        assert!(rewritten.toc().entries.iter().all(|entry| entry.codec == 0));
    }

    #[test]
    fn golden_objects_decode() {
        let objects = golden_index_objects("golden");
        let manifest = Manifest::decode(&objects[0].0, objects[0].1.clone()).unwrap();
        let coordinator = CoordinatorData::decode(&objects[1].0, objects[1].1.clone()).unwrap();
        coordinator.check_matches(&manifest, &objects[1].0).unwrap();
        for (key, bytes) in &objects[2..] {
            PartitionData::decode(key, bytes.clone()).unwrap();
        }
    }

    /// Writes the seed corpus into `fuzz/corpus/<target>/seed-*` from the golden index, the
    /// index in `$SQUASH_FUZZ_SEED_INDEX` (a folder written by `squash build`) and hand-written
    /// filters, requests and vector files. See fuzz/README.md.
    #[test]
    #[ignore = "writes files; run by hand to regenerate the seeds"]
    fn write_seed_corpus() {
        use std::path::{Path, PathBuf};

        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let write = |target: &str, name: &str, bytes: &[u8]| {
            let folder = corpus.join(target);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("seed-{name}")), bytes).unwrap();
        };
        let write_object = |target: &str, name: &str, bytes: &[u8]| {
            write(target, name, bytes);
            write(
                target,
                &format!("{name}-raw"),
                &with_raw_blocks(name, bytes).unwrap(),
            );
        };

        let golden = golden_index_objects("golden");
        write_object("manifest", "golden-manifest", &golden[0].1);
        write_object("coordinator", "golden-coordinator", &golden[1].1);
        write_object("segment", "golden-partition-0", &golden[2].1);
        write_object("segment", "golden-partition-1", &golden[3].1);
        write("container", "golden-manifest", &golden[0].1);
        write("container", "golden-coordinator", &golden[1].1);
        write("container", "golden-partition-0", &golden[2].1);
        write(
            "container",
            "golden-container",
            include_bytes!("../../shared/core/tests/data/golden/container-v1.bin"),
        );

        let index = PathBuf::from(
            std::env::var("SQUASH_FUZZ_SEED_INDEX").expect("SQUASH_FUZZ_SEED_INDEX is set"),
        );
        let read = |path: &Path| std::fs::read(path).unwrap();
        let manifest_bytes = read(&index.join("manifest.sqsh"));
        let manifest = Manifest::decode("manifest", manifest_bytes.clone()).unwrap();
        write_object("manifest", "sample-manifest", &manifest_bytes);
        write_object(
            "coordinator",
            "sample-coordinator",
            &read(&index.join(&manifest.coordinator_key)),
        );
        // The two smallest partitions keep the corpus small.
        let mut partitions = manifest.partitions.clone();
        partitions.sort_by_key(|partition| partition.size_bytes);
        for partition in &partitions[..2] {
            let name = format!("sample-partition-{}", partition.id);
            write_object("segment", &name, &read(&index.join(&partition.key)));
        }
        write("container", "sample-manifest", &manifest_bytes);

        for (name, filter) in [
            ("null", "null"),
            ("empty", "{}"),
            ("eq", r#"{"year": 2001}"#),
            (
                "range",
                r#"{"year": {"$gte": 1995, "$lt": 2010}, "price": {"$lte": 99.5}}"#,
            ),
            ("in", r#"{"color": {"$in": ["red", "blue", "purple"]}}"#),
            ("nin", r#"{"color": {"$nin": []}, "year": {"$ne": -0.0}}"#),
            (
                "strings",
                r#"{"color": {"$gt": "green", "$lte": "violet"}}"#,
            ),
            (
                "nested",
                r#"{"$or": [{"year": {"$in": [1990, 2000]}}, {"$and": [{"price": {"$gt": 5}}, {"$not": {"color": "red"}}]}]}"#,
            ),
            ("unknown", r#"{"$xor": [{"year": 1}], "colour": "red"}"#),
            (
                "wrong-types",
                r#"{"year": "1990", "price": [1], "color": {"$in": [1, null]}}"#,
            ),
        ] {
            write("filter", name, filter.as_bytes());
        }

        let vector = "[0.5, -1.25, 2.0, 0.0, 3.5, -0.75]";
        for (name, selector, path, body) in [
            ("health", 0u8, "/health", String::new()),
            ("list", 0, "/v1/indexes", String::new()),
            ("describe", 0, "/v1/indexes/golden", String::new()),
            (
                "query",
                1,
                "/v1/indexes/golden/query",
                format!(r#"{{"vector": {vector}, "k": 5, "include_attributes": true}}"#),
            ),
            (
                "query-filtered",
                1,
                "/v1/indexes/golden/query",
                format!(
                    r#"{{"vector": {vector}, "k": 3, "filter": {{"$or": [{{"year": {{"$gte": 2005}}}}, {{"shape": "circle"}}]}}, "options": {{"exact": true}}}}"#
                ),
            ),
            (
                "batch",
                1,
                "/v1/indexes/golden/query-batch",
                format!(
                    r#"{{"queries": [{{"vector": {vector}, "k": 2}}, {{"vector": {vector}, "k": 4, "filter": {{"shape": {{"$nin": ["square"]}}}}, "options": {{"min_partitions": 1, "rerank_factor": 2, "hamming_keep": 0.5}}}}], "require_complete": true}}"#
                ),
            ),
            ("unknown-index", 0, "/v1/indexes/nope/query", String::new()),
        ] {
            let mut input = vec![selector];
            input.extend_from_slice(path.as_bytes());
            input.push(b'\n');
            input.extend_from_slice(body.as_bytes());
            write("http", name, &input);
        }
        let mut direct = vec![7u8];
        direct.extend_from_slice(
            format!(r#"{{"index": "golden", "vector": {vector}, "k": 4}}"#).as_bytes(),
        );
        write("http", "direct", &direct);

        let base = read(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/glove-20k/base.fvecs"
        )));
        let record_len = 4 + 50 * 4;
        let mut fvecs = vec![0u8];
        fvecs.extend_from_slice(&base[..3 * record_len]);
        write("vectors", "fvecs", &fvecs);
        let mut bvecs = vec![1u8];
        for row in 0..3u8 {
            bvecs.extend_from_slice(&8i32.to_le_bytes());
            bvecs.extend((0..8u8).map(|i| i * 31 + row));
        }
        write("vectors", "bvecs", &bvecs);
        for (dtype, width) in [("<f4", 4usize), ("<f8", 8), ("|u1", 1)] {
            let header =
                format!("{{'descr': '{dtype}', 'fortran_order': False, 'shape': (2, 3), }}");
            let mut npy = vec![2u8];
            npy.extend_from_slice(b"\x93NUMPY\x01\x00");
            let padded_len = (10 + header.len() + 1).div_ceil(64) * 64 - 10;
            npy.extend_from_slice(&(padded_len as u16).to_le_bytes());
            npy.extend_from_slice(header.as_bytes());
            npy.extend(std::iter::repeat_n(b' ', padded_len - header.len() - 1));
            npy.push(b'\n');
            for value in 0..6u8 {
                match width {
                    4 => npy.extend_from_slice(&(f32::from(value) * 0.5).to_le_bytes()),
                    8 => npy.extend_from_slice(&(f64::from(value) * 0.25).to_le_bytes()),
                    _ => npy.push(value * 40),
                }
            }
            let name = format!("npy-{}", &dtype[1..]);
            write("vectors", &name, &npy);
        }
    }

    #[test]
    fn error_contracts() {
        assert_stored_error("o", &Error::corrupt("o", 3, "bad"));
        assert_invalid_input_under("filter", &Error::invalid("filter.$or[1]", "bad"));
        assert_invalid_input_under("filter", &Error::invalid("filter", "bad"));
        let other_object = std::panic::catch_unwind(|| {
            assert_stored_error("o", &Error::corrupt("p", 3, "bad"));
        });
        assert!(other_object.is_err());
        let other_field = std::panic::catch_unwind(|| {
            assert_invalid_input_under("filter", &Error::invalid("filters", "bad"));
        });
        assert!(other_field.is_err());
    }
}
