//! Builds one object: compresses each block as it is added, then appends the toc and trailer.
//!
//! Must not do I/O: `finish` returns the bytes and the caller stores them.

use std::borrow::Cow;
use std::collections::HashSet;

use rayon::prelude::*;

use super::{
    row_chunk_index, ObjectKind, CODEC_RAW, CODEC_ZSTD, FORMAT_VERSION, MAGIC, MIN_COMPRESS_LEN,
    TOC_ENTRY_FIXED_LEN, TRAILER_LEN, ZSTD_LEVEL,
};
use crate::error::{Error, Result};

/// One block already encoded, waiting for the toc.
struct PendingEntry {
    name: String,
    offset: u64,
    stored_len: u64,
    raw_len: u64,
    crc32: u32,
    codec: u8,
}

/// Builds a container object block by block.
///
/// Blocks are compressed when added, so the writer holds only the stored bytes.
pub struct ContainerWriter {
    kind: ObjectKind,
    /// Stored bytes of every block so far, in toc order.
    body: Vec<u8>,
    entries: Vec<PendingEntry>,
    names: HashSet<String>,
    /// Base names given to `add_rows`, so no plain block can pose as one of their chunks.
    row_array_names: HashSet<String>,
}

impl ContainerWriter {
    /// Returns an empty writer for an object of `kind`; blocks are compressed with zstd level 3.
    pub fn new(kind: ObjectKind) -> Self {
        ContainerWriter {
            kind,
            body: Vec::new(),
            entries: Vec::new(),
            names: HashSet::new(),
            row_array_names: HashSet::new(),
        }
    }

    /// Adds the block `name` holding `raw`, stored raw or zstd-compressed, whichever is smaller.
    ///
    /// Fails with `InvalidInput` if the name is empty, longer than 65535 bytes, already used,
    /// or has the form `"{rows}.{index}"` of a row array added with [`Self::add_rows`].
    pub fn add_block(&mut self, name: &str, raw: &[u8]) -> Result<()> {
        self.check_new_name(name)?;
        if let Some((base, _)) = name.rsplit_once('.') {
            let is_chunk_name =
                self.row_array_names.contains(base) && row_chunk_index(name, base).is_some();
            if is_chunk_name {
                return Err(Error::invalid(
                    name,
                    format!("block name is reserved for chunks of row array {base}"),
                ));
            }
        }
        let stored = encode_block(name, raw)?;
        self.append(name.to_owned(), raw.len(), stored);
        Ok(())
    }

    /// Adds the row-major array `raw` (rows of `row_len_bytes`) as blocks `name.0`, `name.1`,
    /// ... each holding whole rows, about `target_chunk_bytes` raw each (at least one row), so
    /// a reader can fetch a subset of rows. Every chunk but the last holds the same number of
    /// rows; an empty array becomes one empty chunk `name.0`. Chunks are compressed in
    /// parallel.
    ///
    /// Fails with `InvalidInput` if `row_len_bytes` or `target_chunk_bytes` is zero, if
    /// `raw` is not a whole number of rows, or if `name` or a chunk name is already used.
    pub fn add_rows(
        &mut self,
        name: &str,
        raw: &[u8],
        row_len_bytes: usize,
        target_chunk_bytes: usize,
    ) -> Result<()> {
        if row_len_bytes == 0 {
            return Err(Error::invalid(name, "row length must be at least 1 byte"));
        }
        if target_chunk_bytes == 0 {
            return Err(Error::invalid(
                name,
                "target chunk size must be at least 1 byte",
            ));
        }
        if !raw.len().is_multiple_of(row_len_bytes) {
            return Err(Error::invalid(
                name,
                format!(
                    "{} bytes is not a whole number of {row_len_bytes}-byte rows",
                    raw.len()
                ),
            ));
        }
        if name.is_empty() {
            return Err(Error::invalid("block name", "must not be empty"));
        }
        if self.row_array_names.contains(name) {
            return Err(Error::invalid(name, "row array name already used"));
        }
        if let Some(taken) = self
            .names
            .iter()
            .find(|existing| row_chunk_index(existing, name).is_some())
        {
            return Err(Error::invalid(
                name,
                format!("block {taken} already uses a chunk name of this row array"),
            ));
        }

        let rows_per_chunk = (target_chunk_bytes / row_len_bytes).max(1);
        let chunk_len_bytes = rows_per_chunk
            .checked_mul(row_len_bytes)
            .expect("rows_per_chunk * row_len_bytes <= max(target_chunk_bytes, row_len_bytes)");
        let raw_chunks: Vec<&[u8]> = if raw.is_empty() {
            vec![raw]
        } else {
            raw.chunks(chunk_len_bytes).collect()
        };
        let chunk_names: Vec<String> = (0..raw_chunks.len())
            .map(|index| format!("{name}.{index}"))
            .collect();
        for chunk_name in &chunk_names {
            self.check_new_name(chunk_name)?;
        }

        let stored_chunks: Vec<Cow<'_, [u8]>> = raw_chunks
            .par_iter()
            .zip(chunk_names.par_iter())
            .map(|(raw_chunk, chunk_name)| encode_block(chunk_name, raw_chunk))
            .collect::<Result<_>>()?;
        for ((chunk_name, raw_chunk), stored) in
            chunk_names.into_iter().zip(&raw_chunks).zip(stored_chunks)
        {
            self.append(chunk_name, raw_chunk.len(), stored);
        }
        self.row_array_names.insert(name.to_owned());
        Ok(())
    }

    /// Adds several row arrays of the same number of rows, interleaved by chunk: chunk 0 of
    /// every array (`a.0`, `b.0`, ...), then chunk 1 of every array, and so on, each chunk
    /// holding `rows_per_chunk` rows (the last ones fewer). Each array reads back as one written
    /// by [`Self::add_rows`]; a reader that wants some rows of every array finds them in one
    /// contiguous range per run of chunks.
    ///
    /// Fails with `InvalidInput` if `rows_per_chunk` or a row length is zero, if an array is
    /// not a whole number of rows, if the arrays differ in rows, or if a name is already used.
    pub fn add_row_groups(
        &mut self,
        arrays: &[(&str, &[u8], usize)],
        rows_per_chunk: usize,
    ) -> Result<()> {
        if rows_per_chunk == 0 {
            return Err(Error::invalid("rows_per_chunk", "must be at least 1"));
        }
        let mut num_rows_opt = None;
        for &(name, raw, row_len_bytes) in arrays {
            if row_len_bytes == 0 || !raw.len().is_multiple_of(row_len_bytes) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "{} bytes is not a whole number of {row_len_bytes}-byte rows",
                        raw.len()
                    ),
                ));
            }
            let num_rows = raw.len() / row_len_bytes;
            if num_rows_opt.is_some_and(|rows| rows != num_rows) {
                return Err(Error::invalid(
                    name,
                    "row arrays of one group must have equal rows",
                ));
            }
            num_rows_opt = Some(num_rows);
            if name.is_empty() || self.row_array_names.contains(name) || self.names.contains(name) {
                return Err(Error::invalid(name, "row array name empty or already used"));
            }
        }
        let num_chunks = num_rows_opt.unwrap_or(0).div_ceil(rows_per_chunk).max(1);
        // (chunk name, raw chunk) in storage order: chunk by chunk, array by array.
        let mut raw_chunks: Vec<(String, &[u8])> = Vec::with_capacity(num_chunks * arrays.len());
        for chunk in 0..num_chunks {
            for &(name, raw, row_len_bytes) in arrays {
                let chunk_len = rows_per_chunk * row_len_bytes;
                let start = (chunk * chunk_len).min(raw.len());
                let end = (start + chunk_len).min(raw.len());
                raw_chunks.push((format!("{name}.{chunk}"), &raw[start..end]));
            }
        }
        for (chunk_name, _) in &raw_chunks {
            self.check_new_name(chunk_name)?;
        }
        let stored_chunks: Vec<Cow<'_, [u8]>> = raw_chunks
            .par_iter()
            .map(|(chunk_name, raw_chunk)| encode_block(chunk_name, raw_chunk))
            .collect::<Result<_>>()?;
        for ((chunk_name, raw_chunk), stored) in raw_chunks.iter().zip(stored_chunks) {
            self.append(chunk_name.clone(), raw_chunk.len(), stored);
        }
        for &(name, _, _) in arrays {
            self.row_array_names.insert(name.to_owned());
        }
        Ok(())
    }

    /// Returns the finished object: the blocks, then the toc, then the trailer.
    ///
    /// Fails with `InvalidInput` only if the toc would exceed 4 GiB (over 10^8 blocks).
    pub fn finish(self) -> Result<Vec<u8>> {
        let toc = encode_toc(&self.entries)?;
        let toc_offset = self.body.len() as u64;
        let toc_len = u32::try_from(toc.len())
            .map_err(|_| Error::invalid("toc", format!("{} bytes exceeds 4 GiB", toc.len())))?;

        let mut object = self.body;
        object.reserve_exact(toc.len() + TRAILER_LEN);
        object.extend_from_slice(&toc);
        object.extend_from_slice(&encode_trailer(
            toc_offset,
            toc_len,
            crc32fast::hash(&toc),
            self.kind,
        ));
        Ok(object)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("block name", "must not be empty"));
        }
        if name.len() > usize::from(u16::MAX) {
            return Err(Error::invalid(
                name.chars().take(64).collect::<String>(),
                format!("block name is {} bytes, at most 65535 allowed", name.len()),
            ));
        }
        if self.names.contains(name) {
            return Err(Error::invalid(name, "duplicate block name"));
        }
        Ok(())
    }

    fn append(&mut self, name: String, raw_len: usize, stored: Cow<'_, [u8]>) {
        let codec = match &stored {
            Cow::Borrowed(_) => CODEC_RAW,
            Cow::Owned(_) => CODEC_ZSTD,
        };
        self.entries.push(PendingEntry {
            name: name.clone(),
            offset: self.body.len() as u64,
            stored_len: stored.len() as u64,
            raw_len: raw_len as u64,
            crc32: crc32fast::hash(&stored),
            codec,
        });
        self.body.extend_from_slice(&stored);
        self.names.insert(name);
    }
}

/// Returns the stored form of `raw`: borrowed means raw (codec 0), owned means one zstd frame.
///
/// Compresses only blocks of at least [`MIN_COMPRESS_LEN`] bytes, and keeps the frame only if
/// it is strictly smaller: fetching from S3 (~100 MB/s per stream) is far slower than zstd
/// decoding (~1 GB/s), so any saved byte is worth its decode time.
fn encode_block<'a>(name: &str, raw: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    if raw.len() < MIN_COMPRESS_LEN {
        return Ok(Cow::Borrowed(raw));
    }
    let compressed = zstd::bulk::compress(raw, ZSTD_LEVEL)
        .map_err(|e| Error::invalid(name, format!("zstd compression failed: {e}")))?;
    if compressed.len() < raw.len() {
        Ok(Cow::Owned(compressed))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

fn encode_toc(entries: &[PendingEntry]) -> Result<Vec<u8>> {
    let num_entries = u32::try_from(entries.len())
        .map_err(|_| Error::invalid("toc", format!("{} blocks exceeds 2^32", entries.len())))?;
    let mut toc = Vec::with_capacity(
        4 + entries
            .iter()
            .map(|e| TOC_ENTRY_FIXED_LEN + e.name.len())
            .sum::<usize>(),
    );
    toc.extend_from_slice(&num_entries.to_le_bytes());
    for entry in entries {
        let name_len =
            u16::try_from(entry.name.len()).expect("check_new_name caps names at u16::MAX bytes");
        toc.extend_from_slice(&name_len.to_le_bytes());
        toc.extend_from_slice(entry.name.as_bytes());
        toc.extend_from_slice(&entry.offset.to_le_bytes());
        toc.extend_from_slice(&entry.stored_len.to_le_bytes());
        toc.extend_from_slice(&entry.raw_len.to_le_bytes());
        toc.extend_from_slice(&entry.crc32.to_le_bytes());
        toc.push(entry.codec);
    }
    Ok(toc)
}

fn encode_trailer(
    toc_offset: u64,
    toc_len: u32,
    toc_crc32: u32,
    kind: ObjectKind,
) -> [u8; TRAILER_LEN] {
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[0..8].copy_from_slice(&toc_offset.to_le_bytes());
    trailer[8..12].copy_from_slice(&toc_len.to_le_bytes());
    trailer[12..16].copy_from_slice(&toc_crc32.to_le_bytes());
    trailer[16..20].copy_from_slice(&kind.code().to_le_bytes());
    let trailer_crc32 = crc32fast::hash(&trailer[0..20]);
    trailer[20..24].copy_from_slice(&trailer_crc32.to_le_bytes());
    trailer[24..28].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    trailer[28..32].copy_from_slice(&MAGIC);
    trailer
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::format::{Container, CODEC_RAW, CODEC_ZSTD};

    fn open(bytes: Vec<u8>) -> Container {
        Container::open("test", bytes, ObjectKind::Segment).unwrap()
    }

    #[test]
    fn duplicate_and_bad_names_are_invalid_input() {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer.add_block("a", b"x").unwrap();
        for result in [
            writer.add_block("a", b"y"),
            writer.add_block("", b"y"),
            writer.add_block(&"n".repeat(65_536), b"y"),
            writer.add_rows("", b"", 1, 1),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidInput { .. })),
                "{result:?}"
            );
        }
        writer.add_block(&"n".repeat(65_535), b"y").unwrap();
    }

    #[test]
    fn row_chunk_names_cannot_collide_with_blocks() {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer.add_block("v.3", b"x").unwrap();
        assert!(matches!(
            writer.add_rows("v", &[0; 8], 4, 4),
            Err(Error::InvalidInput { .. })
        ));
        writer.add_rows("w", &[0; 8], 4, 4).unwrap();
        assert!(matches!(
            writer.add_rows("w", &[0; 8], 4, 4),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            writer.add_block("w.2", b"x"),
            Err(Error::InvalidInput { .. })
        ));
        // Not canonical chunk names, so row_chunks("w") never sees them.
        writer.add_block("w.02", b"x").unwrap();
        writer.add_block("w.meta", b"x").unwrap();
        writer.add_block("w.0.0", b"x").unwrap();
        let container = open(writer.finish().unwrap());
        assert_eq!(container.toc().row_chunks("w").len(), 2);
    }

    #[test]
    fn add_rows_rejects_bad_shapes() {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        for (raw_len, row_len, target) in [(8, 0, 4), (8, 4, 0), (7, 4, 4)] {
            let result = writer.add_rows("r", &vec![0u8; raw_len], row_len, target);
            assert!(
                matches!(result, Err(Error::InvalidInput { .. })),
                "{result:?}"
            );
        }
        // A failed call adds nothing.
        writer.add_rows("r", &[1, 2, 3, 4], 4, 4).unwrap();
    }

    #[test]
    fn codec_is_chosen_per_block() {
        let mut writer = ContainerWriter::new(ObjectKind::Segment);
        writer.add_block("small", &[7; 63]).unwrap();
        writer.add_block("zeros", &[0; 64]).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let noise: Vec<u8> = (0..4096).map(|_| rng.random::<u8>()).collect();
        writer.add_block("noise", &noise).unwrap();
        let container = open(writer.finish().unwrap());
        let toc = container.toc();
        assert_eq!(toc.entry("small").unwrap().codec, CODEC_RAW);
        assert_eq!(toc.entry("zeros").unwrap().codec, CODEC_ZSTD);
        assert!(toc.entry("zeros").unwrap().stored_len < 64);
        assert_eq!(toc.entry("noise").unwrap().codec, CODEC_RAW);
        assert_eq!(container.block("noise").unwrap(), noise);
    }

    #[test]
    fn zstd_frames_declare_their_content_size() {
        // The reader requires the frame header's content size to match raw_len.
        let stored = encode_block("b", &[5; 1000]).unwrap();
        assert!(matches!(stored, Cow::Owned(_)));
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&stored).unwrap(),
            Some(1000)
        );
    }

    #[test]
    fn empty_object_is_toc_and_trailer_only() {
        let bytes = ContainerWriter::new(ObjectKind::Manifest).finish().unwrap();
        assert_eq!(bytes.len(), 4 + TRAILER_LEN);
        assert_eq!(&bytes[bytes.len() - 4..], b"SQSH");
        let container = Container::open("m", bytes, ObjectKind::Manifest).unwrap();
        assert!(container.toc().entries.is_empty());
    }
}
