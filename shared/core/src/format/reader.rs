//! Validating readers: the trailer, the toc and single blocks from byte slices (the ranged-read
//! path), and [`Container`] over a whole object held in memory.
//!
//! Must not trust any stored length before checking it against bytes actually present, and
//! must not panic on any input.

use std::collections::HashSet;
use std::ops::Range;

use super::{
    row_chunk_index, ObjectKind, CODEC_RAW, CODEC_ZSTD, FORMAT_VERSION, MAGIC, MAX_ZSTD_EXPANSION,
    TOC_ENTRY_FIXED_LEN, TRAILER_LEN,
};
use crate::error::{Error, Result};

/// The smallest possible toc entry: names are at least one byte.
const MIN_TOC_ENTRY_LEN: u64 = TOC_ENTRY_FIXED_LEN as u64 + 1;

/// The fixed-size trailer at the end of every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Where the toc starts (and the blocks end).
    pub toc_offset: u64,
    /// Length of the toc in bytes.
    pub toc_len: u32,
    /// crc32 of the toc bytes.
    pub toc_crc32: u32,
    /// What the object is.
    pub kind: ObjectKind,
    /// Format version (always [`FORMAT_VERSION`] once parsed).
    pub format_version: u32,
}

impl Trailer {
    /// Returns the byte range of the toc within the object.
    pub fn toc_range(&self) -> Range<u64> {
        // Saturating only matters for a hand-built trailer; parsed ones are checked not to overflow.
        self.toc_offset..self.toc_offset.saturating_add(u64::from(self.toc_len))
    }

    /// Returns the length of the whole object, which the trailer determines because the toc
    /// ends where the trailer starts. A ranged reader that knows the object's size should check
    /// it against this.
    pub fn object_len(&self) -> u64 {
        self.toc_range().end.saturating_add(TRAILER_LEN as u64)
    }

    /// Returns the toc bytes if `tail` (a suffix of the object ending with the trailer) already
    /// holds them, which saves a round trip to a reader that suffix-read more than the trailer.
    pub fn toc_from_tail<'a>(&self, tail: &'a [u8]) -> Option<&'a [u8]> {
        let toc_and_trailer_len = usize::try_from(self.toc_len)
            .ok()?
            .checked_add(TRAILER_LEN)?;
        let toc_start = tail.len().checked_sub(toc_and_trailer_len)?;
        tail.get(toc_start..tail.len() - TRAILER_LEN)
    }
}

/// One block as described by the toc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    /// Block name, unique within the object.
    pub name: String,
    /// Offset of the stored bytes from the start of the object.
    pub offset: u64,
    /// Length of the stored (possibly compressed) bytes.
    pub stored_len: u64,
    /// Length after decoding.
    pub raw_len: u64,
    /// crc32 of the stored bytes.
    pub crc32: u32,
    /// How the stored bytes encode the raw bytes: [`CODEC_RAW`] or [`CODEC_ZSTD`].
    pub codec: u8,
}

impl TocEntry {
    /// Returns the byte range of the stored block within the object.
    pub fn range(&self) -> Range<u64> {
        // Saturating only matters for a hand-built entry; parsed ones are checked to end
        // before the toc.
        self.offset..self.offset.saturating_add(self.stored_len)
    }
}

/// The table of contents of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toc {
    /// What the object is (from the trailer).
    pub kind: ObjectKind,
    /// Format version (from the trailer).
    pub format_version: u32,
    /// Blocks in storage order.
    pub entries: Vec<TocEntry>,
}

impl Toc {
    /// Returns the entry of block `name`, if present.
    pub fn entry(&self, name: &str) -> Option<&TocEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Returns the chunks `name.0`, `name.1`, ... of the row array `name`, ordered by index.
    ///
    /// Only canonical indices count (`name.01` and `name.meta` are other blocks). Gaps are not
    /// checked here; [`Container::rows`] checks them.
    pub fn row_chunks(&self, name: &str) -> Vec<&TocEntry> {
        let mut indexed: Vec<(usize, &TocEntry)> = self
            .entries
            .iter()
            .filter_map(|entry| Some((row_chunk_index(&entry.name, name)?, entry)))
            .collect();
        indexed.sort_by_key(|(index, _)| *index);
        indexed.into_iter().map(|(_, entry)| entry).collect()
    }

    /// Returns the sum of the stored lengths of all blocks (toc and trailer excluded).
    pub fn total_stored_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.stored_len).sum()
    }
}

/// Parses the trailer from `tail`, the last [`TRAILER_LEN`] bytes of the object `object` (a
/// longer suffix is fine: its last [`TRAILER_LEN`] bytes are used).
///
/// Checks, in order, the magic, the version (an unknown one is
/// [`Error::UnsupportedVersion`]), the trailer checksum and the kind code. The object's length
/// is unknown here, so errors report offsets counted from the start of the trailer; use
/// [`Trailer::object_len`] to check the length of the object.
pub fn parse_trailer(object: &str, tail: &[u8]) -> Result<Trailer> {
    parse_trailer_at(object, tail, None)
}

/// Parses the trailer; `trailer_offset_opt` is its offset in the object when known, so errors
/// can give absolute offsets.
fn parse_trailer_at(object: &str, tail: &[u8], trailer_offset_opt: Option<u64>) -> Result<Trailer> {
    let corrupt_at = |field_offset: usize, what: String| {
        let field_offset = field_offset as u64;
        match trailer_offset_opt {
            Some(trailer_offset) => Error::corrupt(object, trailer_offset + field_offset, what),
            None => Error::corrupt(
                object,
                field_offset,
                format!("{what} (offset counted from the trailer start)"),
            ),
        }
    };
    let Some(trailer_start) = tail.len().checked_sub(TRAILER_LEN) else {
        return Err(Error::corrupt(
            object,
            0,
            format!(
                "{} bytes is too short for the {TRAILER_LEN}-byte trailer",
                tail.len()
            ),
        ));
    };
    let trailer = &tail[trailer_start..];

    let magic = &trailer[28..32];
    if magic != MAGIC {
        return Err(corrupt_at(
            28,
            format!("bad magic {magic:02x?}, expected {MAGIC:02x?} (\"SQSH\")"),
        ));
    }
    let format_version = read_u32_le(&trailer[24..28]);
    if format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            object: object.to_owned(),
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let stored_crc32 = read_u32_le(&trailer[20..24]);
    let actual_crc32 = crc32fast::hash(&trailer[0..20]);
    if stored_crc32 != actual_crc32 {
        return Err(corrupt_at(
            20,
            format!("trailer checksum mismatch: stored {stored_crc32:#010x}, computed {actual_crc32:#010x}"),
        ));
    }
    let kind_code = read_u32_le(&trailer[16..20]);
    let Some(kind) = ObjectKind::from_code(kind_code) else {
        return Err(corrupt_at(
            16,
            format!("unknown object kind code {kind_code}"),
        ));
    };
    let toc_offset = read_u64_le(&trailer[0..8]);
    let toc_len = read_u32_le(&trailer[8..12]);
    if u64::from(toc_len) < 4 {
        return Err(corrupt_at(
            8,
            format!("toc length {toc_len} is shorter than its 4-byte entry count"),
        ));
    }
    let fits_in_u64 = toc_offset
        .checked_add(u64::from(toc_len))
        .and_then(|toc_end| toc_end.checked_add(TRAILER_LEN as u64))
        .is_some();
    if !fits_in_u64 {
        return Err(corrupt_at(
            0,
            format!("toc offset {toc_offset} plus length {toc_len} overflows"),
        ));
    }
    Ok(Trailer {
        toc_offset,
        toc_len,
        toc_crc32: read_u32_le(&trailer[12..16]),
        kind,
        format_version,
    })
}

/// Parses the toc of `object` from `toc_bytes`, the bytes in [`Trailer::toc_range`].
///
/// Checks the length and checksum, then every entry: a valid utf-8 name of at least one byte,
/// no duplicate names, a known codec, lengths consistent with the codec, and blocks that are
/// contiguous from offset 0 and end exactly at the toc.
pub fn parse_toc(object: &str, trailer: &Trailer, toc_bytes: &[u8]) -> Result<Toc> {
    let toc_offset = trailer.toc_offset;
    if toc_bytes.len() as u64 != u64::from(trailer.toc_len) {
        return Err(Error::corrupt(
            object,
            toc_offset,
            format!(
                "toc is {} bytes, trailer says {}",
                toc_bytes.len(),
                trailer.toc_len
            ),
        ));
    }
    let actual_crc32 = crc32fast::hash(toc_bytes);
    if actual_crc32 != trailer.toc_crc32 {
        return Err(Error::corrupt(
            object,
            toc_offset,
            format!(
                "toc checksum mismatch: trailer says {:#010x}, computed {actual_crc32:#010x}",
                trailer.toc_crc32
            ),
        ));
    }

    let mut cursor = Cursor {
        object,
        bytes: toc_bytes,
        base_offset: toc_offset,
        pos: 0,
    };
    let num_entries = cursor.read_u32()?;
    let max_entries = u64::from(trailer.toc_len).saturating_sub(4) / MIN_TOC_ENTRY_LEN;
    if u64::from(num_entries) > max_entries {
        return Err(Error::corrupt(
            object,
            toc_offset,
            format!(
                "toc claims {num_entries} entries, its {} bytes hold at most {max_entries}",
                trailer.toc_len
            ),
        ));
    }

    // Bounded by max_entries, hence by the bytes present.
    let mut entries = Vec::with_capacity(num_entries as usize);
    let mut names: HashSet<String> = HashSet::with_capacity(num_entries as usize);
    let mut next_block_offset = 0u64;
    for entry_index in 0..num_entries {
        let entry_offset = cursor.absolute_pos();
        let corrupt_entry = |what: String| {
            Error::corrupt(
                object,
                entry_offset,
                format!("toc entry {entry_index}: {what}"),
            )
        };
        let name_len = cursor.read_u16()?;
        if name_len == 0 {
            return Err(corrupt_entry("empty block name".to_owned()));
        }
        let name_bytes = cursor.read_bytes(usize::from(name_len))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|e| corrupt_entry(format!("block name is not utf-8: {e}")))?
            .to_owned();
        let entry = TocEntry {
            offset: cursor.read_u64()?,
            stored_len: cursor.read_u64()?,
            raw_len: cursor.read_u64()?,
            crc32: cursor.read_u32()?,
            codec: cursor.read_u8()?,
            name,
        };
        let corrupt_block = |what: String| corrupt_entry(format!("block {}: {what}", entry.name));
        if names.contains(&entry.name) {
            return Err(corrupt_block("duplicate block name".to_owned()));
        }
        if entry.offset != next_block_offset {
            return Err(corrupt_block(format!(
                "starts at {}, expected {next_block_offset} (blocks are contiguous)",
                entry.offset
            )));
        }
        let block_end = entry.offset.checked_add(entry.stored_len);
        let Some(block_end) = block_end.filter(|end| *end <= toc_offset) else {
            return Err(corrupt_block(format!(
                "{} stored bytes at offset {} overlap the toc at {toc_offset}",
                entry.stored_len, entry.offset
            )));
        };
        check_codec_lengths(&entry).map_err(corrupt_block)?;
        next_block_offset = block_end;
        names.insert(entry.name.clone());
        entries.push(entry);
    }
    if next_block_offset != toc_offset {
        return Err(Error::corrupt(
            object,
            next_block_offset,
            format!("blocks end at {next_block_offset} but the toc starts at {toc_offset}"),
        ));
    }
    if cursor.pos != toc_bytes.len() {
        return Err(Error::corrupt(
            object,
            cursor.absolute_pos(),
            format!(
                "{} unexpected bytes after the last toc entry",
                toc_bytes.len() - cursor.pos
            ),
        ));
    }
    Ok(Toc {
        kind: trailer.kind,
        format_version: trailer.format_version,
        entries,
    })
}

/// Returns why the codec and lengths of `entry` are inconsistent, if they are.
fn check_codec_lengths(entry: &TocEntry) -> std::result::Result<(), String> {
    match entry.codec {
        CODEC_RAW if entry.raw_len != entry.stored_len => Err(format!(
            "raw block has stored length {} but raw length {}",
            entry.stored_len, entry.raw_len
        )),
        CODEC_RAW => Ok(()),
        CODEC_ZSTD => {
            let max_raw_len = entry.stored_len.saturating_mul(MAX_ZSTD_EXPANSION);
            if entry.raw_len > max_raw_len {
                Err(format!(
                    "raw length {} is impossible for {} bytes of zstd",
                    entry.raw_len, entry.stored_len
                ))
            } else {
                Ok(())
            }
        }
        unknown => Err(format!("unknown codec {unknown}")),
    }
}

/// Decodes the block described by `entry` from `stored`, its bytes in [`TocEntry::range`].
///
/// Verifies the length and crc32 of the stored bytes, then decodes: a zstd block must be one
/// frame whose header declares `raw_len` bytes, and is decompressed into a buffer of exactly
/// `raw_len` bytes (never more).
pub fn decode_block(object: &str, entry: &TocEntry, stored: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |what: String| {
        Error::corrupt(
            object,
            entry.offset,
            format!("block {}: {what}", entry.name),
        )
    };
    if stored.len() as u64 != entry.stored_len {
        return Err(corrupt(format!(
            "got {} stored bytes, toc says {}",
            stored.len(),
            entry.stored_len
        )));
    }
    let actual_crc32 = crc32fast::hash(stored);
    if actual_crc32 != entry.crc32 {
        return Err(corrupt(format!(
            "checksum mismatch: toc says {:#010x}, computed {actual_crc32:#010x}",
            entry.crc32
        )));
    }
    // Repeated here because a caller may build a TocEntry by hand.
    check_codec_lengths(entry).map_err(corrupt)?;
    if entry.codec == CODEC_RAW {
        return Ok(stored.to_vec());
    }

    let raw_len = usize::try_from(entry.raw_len).map_err(|_| {
        corrupt(format!(
            "raw length {} does not fit in memory",
            entry.raw_len
        ))
    })?;
    match zstd::zstd_safe::find_frame_compressed_size(stored) {
        Ok(frame_len) if frame_len == stored.len() => {}
        Ok(frame_len) => {
            return Err(corrupt(format!(
                "zstd frame is {frame_len} bytes, block is {}",
                stored.len()
            )))
        }
        Err(code) => {
            return Err(corrupt(format!(
                "bad zstd frame: {}",
                zstd::zstd_safe::get_error_name(code)
            )))
        }
    }
    match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(content_len)) if content_len == entry.raw_len => {}
        Ok(Some(content_len)) => {
            return Err(corrupt(format!(
                "zstd frame declares {content_len} bytes, toc says {}",
                entry.raw_len
            )))
        }
        Ok(None) => return Err(corrupt("zstd frame does not declare its size".to_owned())),
        Err(_) => return Err(corrupt("bad zstd frame header".to_owned())),
    }
    let raw = zstd::bulk::decompress(stored, raw_len)
        .map_err(|e| corrupt(format!("zstd decompression failed: {e}")))?;
    if raw.len() != raw_len {
        return Err(corrupt(format!(
            "decompressed to {} bytes, toc says {raw_len}",
            raw.len()
        )));
    }
    Ok(raw)
}

/// A whole object held in memory, with its trailer and toc already validated.
pub struct Container {
    object: String,
    bytes: Vec<u8>,
    trailer: Trailer,
    toc: Toc,
}

impl Container {
    /// Validates the trailer and toc of `bytes`, the whole object named `object`.
    ///
    /// Fails with `Corrupt` if the object is malformed or its kind is not `expected_kind`, and
    /// with `UnsupportedVersion` for an unknown format version. Blocks are checked when read.
    pub fn open(object: &str, bytes: Vec<u8>, expected_kind: ObjectKind) -> Result<Container> {
        let trailer_offset = bytes.len().saturating_sub(TRAILER_LEN) as u64;
        let trailer = parse_trailer_at(object, &bytes, Some(trailer_offset))?;
        if trailer.object_len() != bytes.len() as u64 {
            return Err(Error::corrupt(
                object,
                trailer_offset,
                format!(
                    "trailer describes an object of {} bytes, found {} bytes",
                    trailer.object_len(),
                    bytes.len()
                ),
            ));
        }
        if trailer.kind != expected_kind {
            return Err(Error::corrupt(
                object,
                trailer_offset + 16,
                format!(
                    "expected a {expected_kind} object, found a {} object",
                    trailer.kind
                ),
            ));
        }
        let toc_bytes = slice_range(object, &bytes, trailer.toc_range())?;
        let toc = parse_toc(object, &trailer, toc_bytes)?;
        Ok(Container {
            object: object.to_owned(),
            bytes,
            trailer,
            toc,
        })
    }

    /// Returns the validated table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Returns the decoded bytes of block `name`; a missing block is `Corrupt`, naming it.
    pub fn block(&self, name: &str) -> Result<Vec<u8>> {
        let Some(entry) = self.toc.entry(name) else {
            return Err(self.missing_block(name));
        };
        let stored = slice_range(&self.object, &self.bytes, entry.range())?;
        decode_block(&self.object, entry, stored)
    }

    /// Returns the concatenation of the row chunks `name.0`, `name.1`, ... written by
    /// [`super::ContainerWriter::add_rows`]; a missing or skipped chunk is `Corrupt`.
    pub fn rows(&self, name: &str) -> Result<Vec<u8>> {
        let chunks = self.toc.row_chunks(name);
        if chunks.is_empty() {
            return Err(self.missing_block(&format!("{name}.0")));
        }
        // Not reserved up front from the toc's raw lengths: each chunk's size is vouched for
        // by its zstd frame header only when decode_block checks it.
        let mut rows = Vec::new();
        for (expected_index, chunk) in chunks.into_iter().enumerate() {
            if row_chunk_index(&chunk.name, name) != Some(expected_index) {
                return Err(self.missing_block(&format!("{name}.{expected_index}")));
            }
            let stored = slice_range(&self.object, &self.bytes, chunk.range())?;
            rows.extend_from_slice(&decode_block(&self.object, chunk, stored)?);
        }
        Ok(rows)
    }

    /// Returns the length of the whole object in bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn missing_block(&self, name: &str) -> Error {
        Error::corrupt(
            &self.object,
            self.trailer.toc_offset,
            format!("missing block {name}"),
        )
    }
}

/// Returns `bytes[range]`, or `Corrupt` if the range lies outside the object.
fn slice_range<'a>(object: &str, bytes: &'a [u8], range: Range<u64>) -> Result<&'a [u8]> {
    let start = usize::try_from(range.start).ok();
    let end = usize::try_from(range.end).ok();
    match (start, end) {
        (Some(start), Some(end)) if start <= end => bytes.get(start..end),
        _ => None,
    }
    .ok_or_else(|| {
        Error::corrupt(
            object,
            range.start,
            format!(
                "range {}..{} lies outside the {}-byte object",
                range.start,
                range.end,
                bytes.len()
            ),
        )
    })
}

fn read_u32_le(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(bytes);
    u32::from_le_bytes(array)
}

fn read_u64_le(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

/// Reads little-endian fields from the toc, reporting absolute offsets on truncation.
struct Cursor<'a> {
    object: &'a str,
    bytes: &'a [u8],
    /// Offset of `bytes[0]` in the object.
    base_offset: u64,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn absolute_pos(&self) -> u64 {
        self.base_offset + self.pos as u64
    }

    fn read_bytes(&mut self, len: usize) -> Result<&'a [u8]> {
        let Some(field) = self
            .pos
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.pos..end))
        else {
            return Err(Error::corrupt(
                self.object,
                self.absolute_pos(),
                format!(
                    "toc truncated: need {len} bytes, {} left",
                    self.bytes.len() - self.pos
                ),
            ));
        };
        self.pos += len;
        Ok(field)
    }

    fn read_u8(&mut self) -> Result<u8> {
        Ok(self.read_bytes(1)?[0])
    }

    fn read_u16(&mut self) -> Result<u16> {
        let mut array = [0u8; 2];
        array.copy_from_slice(self.read_bytes(2)?);
        Ok(u16::from_le_bytes(array))
    }

    fn read_u32(&mut self) -> Result<u32> {
        Ok(read_u32_le(self.read_bytes(4)?))
    }

    fn read_u64(&mut self) -> Result<u64> {
        Ok(read_u64_le(self.read_bytes(8)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_trailers_and_entries_do_not_panic() {
        let trailer = Trailer {
            toc_offset: u64::MAX,
            toc_len: 0,
            toc_crc32: 0,
            kind: ObjectKind::Segment,
            format_version: FORMAT_VERSION,
        };
        assert_eq!(trailer.object_len(), u64::MAX);
        assert!(trailer.toc_from_tail(&[0; 40]).is_some());
        assert!(parse_toc("o", &trailer, &[]).is_err());

        let entry = TocEntry {
            name: "b".to_owned(),
            offset: u64::MAX,
            stored_len: 10,
            raw_len: u64::MAX,
            crc32: 0,
            codec: CODEC_ZSTD,
        };
        assert_eq!(entry.range().end, u64::MAX);
        assert!(slice_range("o", &[0; 4], entry.range()).is_err());
        let reversed = Range { start: 3, end: 2 };
        assert!(slice_range("o", &[0; 4], reversed).is_err());
        assert!(decode_block("o", &entry, &[0; 10]).is_err());
    }

    #[test]
    fn toc_from_tail_slices_just_the_toc() {
        let trailer = Trailer {
            toc_offset: 10,
            toc_len: 4,
            toc_crc32: 0,
            kind: ObjectKind::Manifest,
            format_version: FORMAT_VERSION,
        };
        let mut tail = vec![9u8, 1, 2, 3, 4];
        tail.extend_from_slice(&[0; TRAILER_LEN]);
        assert_eq!(trailer.toc_from_tail(&tail), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(trailer.toc_from_tail(&tail[2..]), None);
    }
}
