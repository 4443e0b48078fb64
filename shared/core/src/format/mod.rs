//! The versioned, checksummed, block-compressed object format used by every index object
//! (the manifest, the coordinator object, and one segment per partition).
//!
//! Owns the byte layout, the writer, and validating readers over byte slices. It must not do
//! I/O (callers fetch bytes through `storage`), must not know what a block means (the `index`
//! module names and interprets blocks), and must never panic or allocate an amount driven by
//! an unchecked stored length: every malformed input becomes an `Err` naming the object and
//! the byte offset.
//!
//! # Layout (format version 1)
//!
//! ```text
//!  offset 0                                             toc_offset       object_len - 32
//!  |                                                    |                |
//!  +-----------+-----------+-----+-------------+--------+----------------+---------------+
//!  | block 0   | block 1   | ... | block n-1   |  toc (toc_len bytes)    | trailer (32)  |
//!  +-----------+-----------+-----+-------------+-------------------------+---------------+
//!   blocks are contiguous, in toc order, with no gaps: block 0 starts at 0 and the last
//!   block ends exactly at toc_offset; the toc ends exactly where the trailer starts.
//!
//!  trailer, 32 bytes, little-endian:
//!  +------------+---------+-----------+--------+---------------+----------------+-------+
//!  | toc_offset | toc_len | toc_crc32 | kind   | trailer_crc32 | format_version | magic |
//!  | u64        | u32     | u32       | u32    | u32           | u32            | SQSH  |
//!  +------------+---------+-----------+--------+---------------+----------------+-------+
//!    0            8         12          16       20              24               28
//!   trailer_crc32 = crc32 of trailer bytes 0..20.
//!
//!  toc, little-endian:
//!  num_entries u32, then per entry:
//!  +----------+------------+--------+------------+---------+-------+-------+
//!  | name_len | name       | offset | stored_len | raw_len | crc32 | codec |
//!  | u16      | utf-8      | u64    | u64        | u64     | u32   | u8    |
//!  +----------+------------+--------+------------+---------+-------+-------+
//!   crc32 is of the stored bytes; codec 0 = raw (raw_len == stored_len), 1 = one zstd frame.
//! ```
//!
//! A reader that only has a byte-range API does one suffix read of [`TRAILER_LEN`] bytes
//! ([`parse_trailer`]), one read of the toc ([`Trailer::toc_range`], [`parse_toc`]), then reads
//! exactly the blocks it needs ([`TocEntry::range`], [`decode_block`]). A reader that suffix-reads
//! a larger tail (say 64 KiB) usually gets the toc in the same request
//! ([`Trailer::toc_from_tail`]). [`Container`] does the same over a whole object in memory.
//!
//! Large row-major arrays are split by [`ContainerWriter::add_rows`] into blocks `name.0`,
//! `name.1`, ... holding whole rows; every chunk except the last holds the same number of rows,
//! so a reader maps row `r` to chunk `r / rows_per_chunk` with
//! `rows_per_chunk = raw_len(name.0) / row_len_bytes`, using the toc alone.
//!
//! # Why these choices
//! - Magic and version are the **last** 8 bytes and stay there in every future version: a
//!   reader identifies any object from one suffix read before it trusts any other field, so
//!   an unknown version is reported as [`crate::Error::UnsupportedVersion`] even if later
//!   versions change the rest of the trailer.
//! - Every byte of the object is covered by exactly one check: a block crc32, the toc crc32,
//!   the trailer crc32 (bytes 0..20), or an exact-value check (version, magic). CRC-32
//!   detects every error burst of up to 32 bits, so any single flipped byte is detected by
//!   the read that touches it. The trailer has its own crc32 so a flipped kind code cannot
//!   pass as another valid kind. Checksums are per block so a ranged reader verifies exactly
//!   what it fetched.
//! - Kind codes start at 1 (manifest 1, coordinator 2, segment 3, log entry 4, row ids 5) so
//!   an all-zero trailer is never valid.
//! - Blocks must be contiguous and in order: the toc then describes the whole object, a
//!   corrupted offset cannot point into the toc or another block unnoticed, and no slack
//!   bytes can hide anything.
//! - Lengths are u64 for blocks (a segment can exceed 4 GiB) and u32 for the toc (a toc of
//!   4 GiB would mean about 10^8 blocks, far beyond any index we build).

mod payload;
mod reader;
mod writer;

use std::fmt;

pub use payload::{
    f32s_to_le_bytes, le_bytes_to_f32s, le_bytes_to_u32s, le_bytes_to_u64s, u32s_to_le_bytes,
    u64s_to_le_bytes,
};
pub use reader::{decode_block, parse_toc, parse_trailer, Container, Toc, TocEntry, Trailer};
pub use writer::ContainerWriter;

/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The size in bytes of the fixed trailer at the end of every object.
///
/// 8 (toc_offset) + 4 (toc_len) + 4 (toc_crc32) + 4 (kind) + 4 (trailer_crc32)
/// + 4 (format_version) + 4 (magic) = 32.
pub const TRAILER_LEN: usize = 32;

/// The codec byte of a block stored as is.
pub const CODEC_RAW: u8 = 0;

/// The codec byte of a block stored as one zstd frame.
pub const CODEC_ZSTD: u8 = 1;

/// Identifies squash objects; four ASCII bytes so a hex dump of any object's tail shows it.
const MAGIC: [u8; 4] = *b"SQSH";

/// zstd level used for every block: level 3 is zstd's own default, compresses at several
/// hundred MB/s per core (index builds stay I/O-bound), and higher levels gain only a few
/// percent on quantized codes and floats.
const ZSTD_LEVEL: i32 = 3;

/// Blocks shorter than this are stored raw: a zstd frame costs about 9 to 20 bytes of header,
/// so below 64 bytes the saving is at most a few tens of bytes and not worth a decode step.
const MIN_COMPRESS_LEN: usize = 64;

/// Bytes of a toc entry besides its name: name_len (2) + offset, stored_len, raw_len (3 x 8)
/// + crc32 (4) + codec (1).
const TOC_ENTRY_FIXED_LEN: usize = 31;

/// The largest raw/stored ratio a single zstd frame can reach: every block of at most
/// 128 KiB of output needs a 3-byte header plus at least 1 byte (an RLE block), so
/// 131072 / 4 = 32768. A toc claiming more is corrupt, which bounds the output buffer
/// allocated before decompression by the size of bytes actually present.
const MAX_ZSTD_EXPANSION: u64 = 32_768;

/// What an object is; stored in the trailer so a reader can refuse the wrong object early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// The index manifest: the entry point listing every other object.
    Manifest,
    /// The coordinator object: what the coordinator reads to plan a query.
    Coordinator,
    /// One partition's segment, read by workers.
    Segment,
    /// One committed write: an entry of an index's write log (`crate::writes`).
    LogEntry,
    /// The ids of an index's rows in the coordinator's row order (`crate::writes::BaseIds`).
    RowIds,
}

impl ObjectKind {
    /// Returns the trailer code of this kind. Codes start at 1 so that an all-zero trailer
    /// never looks like a valid one.
    fn code(self) -> u32 {
        match self {
            ObjectKind::Manifest => 1,
            ObjectKind::Coordinator => 2,
            ObjectKind::Segment => 3,
            ObjectKind::LogEntry => 4,
            ObjectKind::RowIds => 5,
        }
    }

    /// Returns the kind stored under `code`, if any.
    fn from_code(code: u32) -> Option<ObjectKind> {
        match code {
            1 => Some(ObjectKind::Manifest),
            2 => Some(ObjectKind::Coordinator),
            3 => Some(ObjectKind::Segment),
            4 => Some(ObjectKind::LogEntry),
            5 => Some(ObjectKind::RowIds),
            _ => None,
        }
    }

    /// Returns the lowercase name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Manifest => "manifest",
            ObjectKind::Coordinator => "coordinator",
            ObjectKind::Segment => "segment",
            ObjectKind::LogEntry => "log entry",
            ObjectKind::RowIds => "row ids",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns the chunk index if `name` is `"{base}.{index}"` with `index` written canonically
/// (decimal, no sign, no leading zero), which is how [`ContainerWriter::add_rows`] names chunks.
fn row_chunk_index(name: &str, base: &str) -> Option<usize> {
    let suffix = name.strip_prefix(base)?.strip_prefix('.')?;
    let is_canonical = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
        && (suffix == "0" || !suffix.starts_with('0'));
    if !is_canonical {
        return None;
    }
    suffix.parse::<usize>().ok()
}

#[cfg(test)]
mod tests {
    //! Format-level tests: writer and readers together, corruption, and an encoder written
    //! independently from the layout above to craft malformed objects with valid checksums.

    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::error::Error;

    /// Reads every block of `bytes` through the ranged-read API, slicing as a byte-range client
    /// would: a suffix read of the trailer, a read of the toc, then one read per block.
    fn read_ranged(object: &str, bytes: &[u8]) -> crate::Result<Vec<(String, Vec<u8>)>> {
        let suffix_start = bytes.len().saturating_sub(TRAILER_LEN);
        let trailer = parse_trailer(object, &bytes[suffix_start..])?;
        if trailer.object_len() != bytes.len() as u64 {
            return Err(Error::corrupt(object, 0, "length mismatch"));
        }
        let toc_range = trailer.toc_range();
        let toc = parse_toc(
            object,
            &trailer,
            &bytes[toc_range.start as usize..toc_range.end as usize],
        )?;
        let mut blocks = Vec::new();
        for entry in &toc.entries {
            let range = entry.range();
            let stored = &bytes[range.start as usize..range.end as usize];
            blocks.push((entry.name.clone(), decode_block(object, entry, stored)?));
        }
        Ok(blocks)
    }

    /// Opens `bytes` and decodes every block, returning the first error.
    fn read_all(object: &str, bytes: Vec<u8>) -> crate::Result<Vec<(String, Vec<u8>)>> {
        let container = Container::open(object, bytes, ObjectKind::Segment)?;
        let mut blocks = Vec::new();
        for entry in &container.toc().entries {
            blocks.push((entry.name.clone(), container.block(&entry.name)?));
        }
        Ok(blocks)
    }

    /// A small object mixing every case the corruption tests must cover: zstd and raw
    /// blocks, an empty block, and a chunked row array.
    fn sample_object() -> Vec<u8> {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer
            .add_block(
                "meta",
                "{\"dim\": 8, \"metric\": \"l2\"} ".repeat(4).as_bytes(),
            )
            .unwrap();
        writer.add_block("tiny", &[42]).unwrap();
        writer.add_block("empty", &[]).unwrap();
        let rows: Vec<u8> = (0..40u32)
            .flat_map(|i| (i * 7).to_le_bytes().repeat(2))
            .collect();
        writer.add_rows("codes", &rows, 8, 100).unwrap();
        writer.finish().unwrap()
    }

    fn le_entry(toc: &mut Vec<u8>, name: &[u8], fields: (u64, u64, u64, u32, u8)) {
        let (offset, stored_len, raw_len, crc32, codec) = fields;
        toc.extend_from_slice(&(name.len() as u16).to_le_bytes());
        toc.extend_from_slice(name);
        toc.extend_from_slice(&offset.to_le_bytes());
        toc.extend_from_slice(&stored_len.to_le_bytes());
        toc.extend_from_slice(&raw_len.to_le_bytes());
        toc.extend_from_slice(&crc32.to_le_bytes());
        toc.push(codec);
    }

    /// Returns `body ++ toc ++ trailer` with correct toc and trailer checksums.
    fn seal(body: &[u8], toc: &[u8], kind_code: u32, version: u32) -> Vec<u8> {
        let mut trailer = Vec::new();
        trailer.extend_from_slice(&(body.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&(toc.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(toc).to_le_bytes());
        trailer.extend_from_slice(&kind_code.to_le_bytes());
        let trailer_crc32 = crc32fast::hash(&trailer);
        trailer.extend_from_slice(&trailer_crc32.to_le_bytes());
        trailer.extend_from_slice(&version.to_le_bytes());
        trailer.extend_from_slice(b"SQSH");
        [body, toc, &trailer].concat()
    }

    /// Seals a one-entry toc over `body`.
    fn seal_one(body: &[u8], name: &[u8], fields: (u64, u64, u64, u32, u8)) -> Vec<u8> {
        let mut toc = 1u32.to_le_bytes().to_vec();
        le_entry(&mut toc, name, fields);
        seal(body, &toc, 3, FORMAT_VERSION)
    }

    fn assert_corrupt(result: crate::Result<impl std::fmt::Debug>, needle: &str) {
        match result {
            Err(Error::Corrupt { object, what, .. }) => {
                assert_eq!(object, "obj");
                assert!(what.contains(needle), "{what:?} lacks {needle:?}");
            }
            other => panic!("expected Corrupt containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn independent_encoder_matches_writer() {
        let mut writer = ContainerWriter::new(ObjectKind::Coordinator);
        writer.add_block("ab", b"hello").unwrap();
        let mut toc = 1u32.to_le_bytes().to_vec();
        le_entry(&mut toc, b"ab", (0, 5, 5, crc32fast::hash(b"hello"), 0));
        assert_eq!(writer.finish().unwrap(), seal(b"hello", &toc, 2, 1));
    }

    #[test]
    fn round_trip_several_blocks() {
        let mut rng = StdRng::seed_from_u64(7);
        // Four bits of entropy per byte: compressible, and spans many 128 KiB zstd blocks.
        let big: Vec<u8> = (0..5_000_000).map(|_| rng.random_range(0..16u8)).collect();
        let floats: Vec<f32> = (0..1000).map(|i| i as f32 * 0.25).collect();
        let rows: Vec<u8> = (0..1000u32)
            .flat_map(|i| [i.to_le_bytes(), (i * 3).to_le_bytes(), (!i).to_le_bytes()].concat())
            .collect();

        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer.add_block("empty", &[]).unwrap();
        writer.add_block("one", &[0xff]).unwrap();
        writer.add_block("big", &big).unwrap();
        writer
            .add_block("floats", &f32s_to_le_bytes(&floats))
            .unwrap();
        // 12-byte rows, 1000-byte target: 83 rows (996 bytes) per chunk, 4 rows in the last.
        writer.add_rows("rows", &rows, 12, 1000).unwrap();
        // Target an exact multiple: 10 rows per chunk, 100 full chunks.
        writer.add_rows("exact", &rows, 12, 120).unwrap();
        // Rows larger than the target: one row per chunk.
        writer.add_rows("wide", &rows[..120], 12, 5).unwrap();
        writer.add_rows("none", &[], 12, 1000).unwrap();
        let bytes = writer.finish().unwrap();

        let container = Container::open("seg", bytes.clone(), ObjectKind::Segment).unwrap();
        assert_eq!(container.len_bytes(), bytes.len());
        assert!(bytes.len() < 3_000_000, "big block should compress");
        assert_eq!(container.block("empty").unwrap(), b"");
        assert_eq!(container.block("one").unwrap(), [0xff]);
        assert_eq!(container.block("big").unwrap(), big);
        let decoded = le_bytes_to_f32s("seg", "floats", &container.block("floats").unwrap());
        assert_eq!(decoded.unwrap(), floats);

        let toc = container.toc();
        assert_eq!(toc.kind, ObjectKind::Segment);
        assert_eq!(toc.format_version, FORMAT_VERSION);
        let chunk_lens: Vec<u64> = toc.row_chunks("rows").iter().map(|c| c.raw_len).collect();
        assert_eq!(chunk_lens.len(), 13);
        assert!(chunk_lens[..12].iter().all(|len| *len == 996));
        assert_eq!(chunk_lens[12], 48);
        assert_eq!(toc.row_chunks("exact").len(), 100);
        assert!(toc.row_chunks("exact").iter().all(|c| c.raw_len == 120));
        assert_eq!(toc.row_chunks("wide").len(), 10);
        assert_eq!(toc.row_chunks("none").len(), 1);
        assert_eq!(container.rows("rows").unwrap(), rows);
        assert_eq!(container.rows("exact").unwrap(), rows);
        assert_eq!(container.rows("wide").unwrap(), &rows[..120]);
        assert_eq!(container.rows("none").unwrap(), b"");
        // Row chunks are plain blocks too, and chunk 12 holds rows 996..1000.
        assert_eq!(container.block("rows.12").unwrap(), &rows[996 * 12..]);

        let stored_sum: u64 = toc.entries.iter().map(|e| e.stored_len).sum();
        assert_eq!(toc.total_stored_bytes(), stored_sum);
        // Blocks are contiguous, so they fill everything before the toc.
        assert_eq!(
            toc.total_stored_bytes(),
            toc.entries.last().unwrap().range().end
        );

        let ranged = read_ranged("seg", &bytes).unwrap();
        assert_eq!(ranged.len(), toc.entries.len());
        for (name, raw) in ranged {
            assert_eq!(raw, container.block(&name).unwrap(), "block {name}");
        }
    }

    #[test]
    fn ranged_reader_can_take_the_toc_from_a_larger_tail() {
        let bytes = sample_object();
        let tail = &bytes[bytes.len() - 4096.min(bytes.len())..];
        let trailer = parse_trailer("obj", tail).unwrap();
        assert_eq!(trailer.object_len(), bytes.len() as u64);
        let toc_bytes = trailer.toc_from_tail(tail).unwrap();
        let toc = parse_toc("obj", &trailer, toc_bytes).unwrap();
        let container = Container::open("obj", bytes.clone(), ObjectKind::Segment).unwrap();
        assert_eq!(&toc, container.toc());
        // A tail holding only the trailer does not hold the toc.
        let short_tail = &bytes[bytes.len() - TRAILER_LEN..];
        assert!(trailer.toc_from_tail(short_tail).is_none());
    }

    #[test]
    fn row_chunks_are_ordered_numerically() {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        let rows: Vec<u8> = (0..=11u8).collect();
        writer.add_rows("r", &rows, 1, 1).unwrap();
        let container =
            Container::open("o", writer.finish().unwrap(), ObjectKind::Segment).unwrap();
        let names: Vec<&str> = container
            .toc()
            .row_chunks("r")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names[..3], ["r.0", "r.1", "r.2"]);
        assert_eq!(names[11], "r.11");
        assert_eq!(container.rows("r").unwrap(), rows);
    }

    #[test]
    fn wrong_kind_names_the_kind_found() {
        let bytes = ContainerWriter::new(ObjectKind::Manifest).finish().unwrap();
        let error = Container::open("obj", bytes, ObjectKind::Segment)
            .err()
            .unwrap();
        assert_corrupt(
            Err::<(), _>(error),
            "expected a segment object, found a manifest",
        );
    }

    #[test]
    fn missing_blocks_are_named() {
        let container = Container::open("obj", sample_object(), ObjectKind::Segment).unwrap();
        assert_corrupt(container.block("nope"), "missing block nope");
        assert_corrupt(container.rows("nope"), "missing block nope.0");
        assert_eq!(container.rows("codes").unwrap().len(), 320);
    }

    #[test]
    fn rows_with_a_gap_are_corrupt() {
        let mut toc = 2u32.to_le_bytes().to_vec();
        le_entry(&mut toc, b"r.0", (0, 1, 1, crc32fast::hash(b"a"), 0));
        le_entry(&mut toc, b"r.2", (1, 1, 1, crc32fast::hash(b"b"), 0));
        let bytes = seal(b"ab", &toc, 3, FORMAT_VERSION);
        let container = Container::open("obj", bytes, ObjectKind::Segment).unwrap();
        assert_eq!(container.toc().row_chunks("r").len(), 2);
        assert_corrupt(container.rows("r"), "missing block r.1");
    }

    #[test]
    fn trailer_errors() {
        assert_corrupt(parse_trailer("obj", &[0; 31]), "too short");
        assert_corrupt(
            Container::open("obj", vec![], ObjectKind::Segment).map(|_| ()),
            "too short",
        );
        assert_corrupt(parse_trailer("obj", &[0; 32]), "bad magic");

        let good = seal(b"", &0u32.to_le_bytes(), 3, FORMAT_VERSION);
        assert!(parse_trailer("obj", &good).is_ok());
        let v2 = seal(b"", &0u32.to_le_bytes(), 3, 2);
        match Container::open("obj", v2, ObjectKind::Segment) {
            Err(Error::UnsupportedVersion {
                object,
                found: 2,
                supported: 1,
            }) => assert_eq!(object, "obj"),
            other => panic!("expected UnsupportedVersion, got {:?}", other.err()),
        }
        assert_corrupt(
            parse_trailer("obj", &seal(b"", &0u32.to_le_bytes(), 0, 1)),
            "unknown object kind code 0",
        );
        assert_corrupt(
            parse_trailer("obj", &seal(b"", &[0; 3], 3, 1)),
            "shorter than its 4-byte entry count",
        );

        // toc_offset near u64::MAX: the sum must not overflow.
        let mut trailer = Vec::new();
        trailer.extend_from_slice(&(u64::MAX - 8).to_le_bytes());
        trailer.extend_from_slice(&16u32.to_le_bytes());
        trailer.extend_from_slice(&0u32.to_le_bytes());
        trailer.extend_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&trailer);
        trailer.extend_from_slice(&crc.to_le_bytes());
        trailer.extend_from_slice(&1u32.to_le_bytes());
        trailer.extend_from_slice(b"SQSH");
        assert_corrupt(parse_trailer("obj", &trailer), "overflows");

        // Error offsets are absolute when the whole object is known.
        let mut bad_crc = good.clone();
        let trailer_crc_position = bad_crc.len() - 12;
        bad_crc[trailer_crc_position] ^= 1;
        match Container::open("obj", bad_crc.clone(), ObjectKind::Segment) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, 4 + 20),
            other => panic!("{:?}", other.err()),
        }
        assert_corrupt(
            parse_trailer("obj", &bad_crc),
            "counted from the trailer start",
        );

        // A trailer describing a longer or shorter object than the bytes given.
        let mut extended = vec![0u8];
        extended.extend_from_slice(&good);
        assert_corrupt(
            Container::open("obj", extended, ObjectKind::Segment).map(|_| ()),
            "describes an object of 36 bytes, found 37",
        );
    }

    #[test]
    fn malformed_tocs_with_valid_checksums() {
        let crc_a = crc32fast::hash(b"a");
        let open = |bytes: Vec<u8>| Container::open("obj", bytes, ObjectKind::Segment).map(|_| ());

        let mut absurd = u32::MAX.to_le_bytes().to_vec();
        le_entry(&mut absurd, b"a", (0, 1, 1, crc_a, 0));
        assert_corrupt(open(seal(b"a", &absurd, 3, 1)), "claims 4294967295 entries");

        assert_corrupt(
            open(seal_one(b"a", b"a", (0, 2, 2, crc_a, 0))),
            "overlap the toc",
        );
        assert_corrupt(
            open(seal_one(b"a", b"a", (0, u64::MAX, u64::MAX, crc_a, 0))),
            "overlap the toc",
        );
        assert_corrupt(
            open(seal_one(b"a", b"a", (1, 0, 0, crc_a, 0))),
            "expected 0",
        );
        assert_corrupt(
            open(seal_one(b"ab", b"a", (0, 1, 1, crc_a, 0))),
            "blocks end at 1",
        );
        assert_corrupt(
            open(seal_one(b"a", b"\xff", (0, 1, 1, crc_a, 0))),
            "not utf-8",
        );
        // One padding byte so the entry count check lets an entry with an empty name through.
        let mut empty_name = 1u32.to_le_bytes().to_vec();
        le_entry(&mut empty_name, b"", (0, 1, 1, crc_a, 0));
        empty_name.push(0);
        assert_corrupt(open(seal(b"a", &empty_name, 3, 1)), "empty block name");
        assert_corrupt(
            open(seal_one(b"a", b"a", (0, 1, 1, crc_a, 9))),
            "unknown codec 9",
        );
        assert_corrupt(
            open(seal_one(b"a", b"a", (0, 1, 7, crc_a, 0))),
            "raw length 7",
        );
        assert_corrupt(
            open(seal_one(b"a", b"a", (0, 1, u64::MAX, crc_a, 1))),
            "impossible for 1 bytes of zstd",
        );

        let mut duplicate = 2u32.to_le_bytes().to_vec();
        le_entry(&mut duplicate, b"a", (0, 1, 1, crc_a, 0));
        le_entry(&mut duplicate, b"a", (1, 1, 1, crc_a, 0));
        assert_corrupt(open(seal(b"aa", &duplicate, 3, 1)), "duplicate block name");

        let mut trailing = 1u32.to_le_bytes().to_vec();
        le_entry(&mut trailing, b"a", (0, 1, 1, crc_a, 0));
        trailing.push(0);
        assert_corrupt(open(seal(b"a", &trailing, 3, 1)), "unexpected bytes after");

        let mut truncated = 1u32.to_le_bytes().to_vec();
        le_entry(&mut truncated, b"ab", (0, 1, 1, crc_a, 0));
        truncated.pop(); // drops the codec byte; a 2-byte name keeps the count check passing
        assert_corrupt(open(seal(b"a", &truncated, 3, 1)), "toc truncated");
    }

    #[test]
    fn zstd_blocks_must_match_their_frame() {
        let raw = vec![3u8; 1000];
        let frame = zstd::bulk::compress(&raw, 3).unwrap();
        let crc = crc32fast::hash(&frame);
        let len = frame.len() as u64;
        let read = |bytes: Vec<u8>| -> crate::Result<Vec<u8>> {
            Container::open("obj", bytes, ObjectKind::Segment)?.block("z")
        };
        assert_eq!(
            read(seal_one(&frame, b"z", (0, len, 1000, crc, 1))).unwrap(),
            raw
        );
        // A toc raw_len that disagrees with the frame is caught before allocating it.
        assert_corrupt(
            read(seal_one(&frame, b"z", (0, len, 500_000, crc, 1))),
            "declares 1000 bytes",
        );
        // Two frames in one block.
        let doubled = [frame.clone(), frame.clone()].concat();
        let doubled_crc = crc32fast::hash(&doubled);
        assert_corrupt(
            read(seal_one(&doubled, b"z", (0, 2 * len, 2000, doubled_crc, 1))),
            "zstd frame is",
        );
        // Not a zstd frame at all.
        let junk = vec![0u8; 16];
        assert_corrupt(
            read(seal_one(
                &junk,
                b"z",
                (0, 16, 16, crc32fast::hash(&junk), 1),
            )),
            "bad zstd frame",
        );
        // A frame written without its content size.
        let mut compressor = zstd::bulk::Compressor::new(3).unwrap();
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let sizeless = compressor.compress(&raw).unwrap();
        let sizeless_len = sizeless.len() as u64;
        let sizeless_crc = crc32fast::hash(&sizeless);
        assert_corrupt(
            read(seal_one(
                &sizeless,
                b"z",
                (0, sizeless_len, 1000, sizeless_crc, 1),
            )),
            "does not declare its size",
        );
    }

    #[test]
    fn decode_block_checks_what_it_was_given() {
        let entry = TocEntry {
            name: "b".to_owned(),
            offset: 100,
            stored_len: 3,
            raw_len: 3,
            crc32: crc32fast::hash(b"abc"),
            codec: CODEC_RAW,
        };
        assert_eq!(decode_block("obj", &entry, b"abc").unwrap(), b"abc");
        assert_corrupt(decode_block("obj", &entry, b"ab"), "got 2 stored bytes");
        match decode_block("obj", &entry, b"abd") {
            Err(Error::Corrupt {
                offset: 100, what, ..
            }) => {
                assert!(what.contains("block b: checksum mismatch"), "{what}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = sample_object();
        let clean = read_all("obj", bytes.clone()).unwrap();
        assert_eq!(read_ranged("obj", &bytes).unwrap(), clean);
        for position in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[position] ^= mask;
                assert!(
                    read_ranged("obj", &flipped).is_err(),
                    "ranged, byte {position}"
                );
                assert!(
                    read_all("obj", flipped).is_err(),
                    "byte {position} ^ {mask:#x}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample_object();
        for len in 0..bytes.len() {
            let truncated = bytes[..len].to_vec();
            assert!(read_ranged("obj", &truncated).is_err(), "length {len}");
            assert!(
                Container::open("obj", truncated, ObjectKind::Segment).is_err(),
                "length {len}"
            );
        }
    }

    fn block_strategy() -> impl Strategy<Value = Vec<u8>> {
        // Small alphabets make some blocks compressible so both codecs are exercised.
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(0..3u8, 0..300),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_blocks_round_trip(
            blocks in prop::collection::vec(block_strategy(), 0..8),
            row_len in 1..16usize,
            num_rows in 0..50usize,
            target_chunk_bytes in 1..200usize,
        ) {
            let rows: Vec<u8> = (0..row_len * num_rows).map(|i| (i % 7) as u8).collect();
            let mut writer = ContainerWriter::new(ObjectKind::Coordinator);
            for (index, block) in blocks.iter().enumerate() {
                writer.add_block(&format!("b{index}"), block).unwrap();
            }
            writer.add_rows("rows", &rows, row_len, target_chunk_bytes).unwrap();
            let bytes = writer.finish().unwrap();

            let container = Container::open("p", bytes.clone(), ObjectKind::Coordinator).unwrap();
            for (index, block) in blocks.iter().enumerate() {
                prop_assert_eq!(&container.block(&format!("b{index}")).unwrap(), block);
            }
            prop_assert_eq!(&container.rows("rows").unwrap(), &rows);
            let chunks = container.toc().row_chunks("rows");
            let first_len = chunks[0].raw_len;
            for (index, chunk) in chunks.iter().enumerate() {
                prop_assert_eq!(chunk.raw_len % row_len as u64, 0);
                if index + 1 < chunks.len() {
                    prop_assert_eq!(chunk.raw_len, first_len);
                }
            }
            let trailer = parse_trailer("p", &bytes).unwrap();
            let toc_range = trailer.toc_range();
            let toc = parse_toc("p", &trailer, &bytes[toc_range.start as usize..toc_range.end as usize]).unwrap();
            prop_assert_eq!(&toc, container.toc());
        }

        #[test]
        fn random_corruption_never_panics(
            position_fraction in 0.0..1.0f64,
            mask in 1..=255u8,
            truncate_to_opt in prop::option::of(0..2000usize),
        ) {
            let mut bytes = sample_object();
            let position = ((bytes.len() as f64 * position_fraction) as usize).min(bytes.len() - 1);
            bytes[position] ^= mask;
            if let Some(truncate_to) = truncate_to_opt {
                bytes.truncate(truncate_to);
            }
            prop_assert!(read_ranged("obj", &bytes).is_err());
            prop_assert!(read_all("obj", bytes).is_err());
        }
    }
}
