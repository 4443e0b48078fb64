//! Reading only a segment's probed fine clusters, by byte range: what a cold worker reads for
//! a small request instead of the whole object.
//!
//! Each step is pure; the caller does the reads between them:
//! 1. the last [`SEGMENT_TAIL_BYTES`] of the object -> [`toc_from_tail`]: the table of
//!    contents, or the range of a longer one to read next;
//! 2. [`SegmentHead::head_range`] -> [`SegmentHead::decode`]: metadata, fine clusters,
//!    fast-scan cells. Segments write them just before the table of contents, so the tail
//!    usually holds them too ([`SegmentHead::head_from_tail`]); otherwise one more read;
//! 3. [`SegmentHead::probed_rows`] for the request's queries -> [`SegmentHead::row_reads`]: the
//!    byte ranges of the chunks of ids, attributes and vectors holding those rows (segments
//!    interleave the three by chunk, so a run of clusters is one range), coalesced;
//! 4. [`SegmentHead::assemble`]: a [`PartitionData`] of those rows alone. Its fine clusters
//!    are the probed ones, its fast-scan codes are re-derived from its vectors with the stored
//!    cells (the same codes the whole segment holds), and it has no quantized codes.
//!
//! Every block read is checked against its crc32 as in a whole read. A segment written before
//! this layout (no chunked rows or no cluster centroids) has no head range: it is read whole.

use std::ops::Range;

use crate::attributes::AttributeTable;
use crate::codec::FastScanCodes;
use crate::error::{Error, Result};
use crate::filter::SortedColumns;
use crate::format::{self, decode_block, parse_toc, parse_trailer, ObjectKind, Toc, TocEntry};
use crate::index::clusters::FineClusters;
use crate::index::objects::{PartitionData, SegmentMeta};
use crate::metric::Metric;

/// Bytes a reader takes from the end of a segment first: the trailer, the table of contents and
/// the head blocks before it, for partitions of about 50,000 rows up to a few hundred
/// dimensions.
pub const SEGMENT_TAIL_BYTES: u64 = 256 * 1024;

/// Reads within this many bytes of each other are merged into one. On AWS list prices (2026)
/// a GET costs $0.40 per million, and a 2 GB function reading at about 90 MB/s pays about as
/// much for 1 MiB more: reading across a gap of up to 1 MiB is cheaper than a second request.
pub const DEFAULT_COALESCE_GAP_BYTES: u64 = 1 << 20;

/// The blocks a ranged reader needs before it knows which rows to read.
const HEAD_BLOCKS: [&str; 5] = [
    "meta",
    "clusters.sizes",
    "clusters.centroids",
    "fastscan.lows",
    "fastscan.steps",
];

/// Returns the range of the last [`SEGMENT_TAIL_BYTES`] of an object of `object_len` bytes.
pub fn tail_range(object_len: u64) -> Range<u64> {
    object_len.saturating_sub(SEGMENT_TAIL_BYTES)..object_len
}

/// Parses the trailer of a segment of `object_len` bytes from its `tail` and returns its table
/// of contents when the tail holds it, or else the byte range to read it from (then
/// [`toc_from_bytes`]).
pub fn toc_from_tail(
    object: &str,
    object_len: u64,
    tail: &[u8],
) -> Result<std::result::Result<Toc, Range<u64>>> {
    let trailer = parse_trailer(object, tail)?;
    check_trailer(object, object_len, &trailer)?;
    Ok(match trailer.toc_from_tail(tail) {
        Some(toc_bytes) => Ok(parse_toc(object, &trailer, toc_bytes)?),
        None => Err(trailer.toc_range()),
    })
}

/// Parses a segment's table of contents read separately, after [`toc_from_tail`].
pub fn toc_from_bytes(object: &str, object_len: u64, tail: &[u8], toc_bytes: &[u8]) -> Result<Toc> {
    let trailer = parse_trailer(object, tail)?;
    check_trailer(object, object_len, &trailer)?;
    parse_toc(object, &trailer, toc_bytes)
}

fn check_trailer(object: &str, object_len: u64, trailer: &format::Trailer) -> Result<()> {
    if trailer.object_len() != object_len {
        return Err(Error::corrupt(
            object,
            object_len.saturating_sub(format::TRAILER_LEN as u64),
            format!(
                "trailer describes an object of {} bytes, the manifest says {object_len}",
                trailer.object_len()
            ),
        ));
    }
    if trailer.kind != ObjectKind::Segment {
        return Err(Error::corrupt(
            object,
            object_len.saturating_sub(format::TRAILER_LEN as u64),
            format!("expected a segment object, found a {} object", trailer.kind),
        ));
    }
    Ok(())
}

/// A row array of a segment: its chunks and how many rows each holds.
struct RowArray<'a> {
    name: String,
    chunks: Vec<&'a TocEntry>,
    rows_per_chunk: usize,
    row_len_bytes: usize,
}

/// What a ranged reader knows of a segment before reading rows.
#[derive(Debug, Clone)]
pub struct SegmentHead {
    object: String,
    toc: Toc,
    meta: SegmentMeta,
    clusters: FineClusters,
    cells: Option<(Vec<f32>, Vec<f32>)>,
}

impl SegmentHead {
    /// Returns the byte range holding the head blocks, or `None` when the segment cannot be
    /// read by rows (written before its rows were chunked, or without cluster centroids).
    pub fn head_range(toc: &Toc) -> Option<Range<u64>> {
        let chunked = toc.entry("ids.0").is_some() && toc.entry("vectors.0").is_some();
        if !chunked || toc.entry("clusters.centroids").is_none() {
            return None;
        }
        let entries: Vec<&TocEntry> = HEAD_BLOCKS
            .iter()
            .filter_map(|name| toc.entry(name))
            .collect();
        let start = entries.iter().map(|entry| entry.offset).min()?;
        let end = entries.iter().map(|entry| entry.range().end).max()?;
        Some(start..end)
    }

    /// Returns the head bytes from `tail` (the object's last `tail.len()` bytes of
    /// `object_len`) when it holds the whole [`SegmentHead::head_range`].
    pub fn head_from_tail<'t>(toc: &Toc, object_len: u64, tail: &'t [u8]) -> Option<&'t [u8]> {
        let range = SegmentHead::head_range(toc)?;
        let tail_start = object_len.checked_sub(tail.len() as u64)?;
        if range.start < tail_start || range.end > object_len {
            return None;
        }
        tail.get((range.start - tail_start) as usize..(range.end - tail_start) as usize)
    }

    /// Decodes the head from `head_bytes`, the bytes of [`SegmentHead::head_range`].
    pub fn decode(object: &str, toc: Toc, head_bytes: &[u8]) -> Result<SegmentHead> {
        let range = SegmentHead::head_range(&toc)
            .ok_or_else(|| Error::corrupt(object, 0, "segment has no head to read by range"))?;
        let block = |name: &str| -> Result<Option<Vec<u8>>> {
            let Some(entry) = toc.entry(name) else {
                return Ok(None);
            };
            let stored = slice_of(object, &range, head_bytes, entry)?;
            decode_block(object, entry, stored).map(Some)
        };
        let missing = |name: &str| Error::corrupt(object, 0, format!("missing block {name}"));
        let meta_json = block("meta")?.ok_or_else(|| missing("meta"))?;
        let meta: SegmentMeta = serde_json::from_slice(&meta_json)
            .map_err(|e| Error::corrupt(object, 0, format!("segment metadata: {e}")))?;
        let sizes = block("clusters.sizes")?.ok_or_else(|| missing("clusters.sizes"))?;
        let centroids =
            block("clusters.centroids")?.ok_or_else(|| missing("clusters.centroids"))?;
        let clusters = FineClusters {
            sizes: format::le_bytes_to_u64s(object, "clusters.sizes", &sizes)?,
            centroids: format::le_bytes_to_f32s(object, "clusters.centroids", &centroids)?,
        };
        clusters.check(object, meta.num_vectors, meta.dim)?;
        let cells = match (block("fastscan.lows")?, block("fastscan.steps")?) {
            (Some(lows), Some(steps)) => {
                let lows = format::le_bytes_to_f32s(object, "fastscan.lows", &lows)?;
                let steps = format::le_bytes_to_f32s(object, "fastscan.steps", &steps)?;
                FastScanCodes::check_cells(object, &lows, &steps, meta.dim)?;
                Some((lows, steps))
            }
            _ => None,
        };
        Ok(SegmentHead {
            object: object.to_string(),
            toc,
            meta,
            clusters,
            cells,
        })
    }

    /// Returns the partition id the segment holds.
    pub fn partition(&self) -> u32 {
        self.meta.partition
    }

    /// Returns the number of rows of the whole segment.
    pub fn num_rows(&self) -> usize {
        self.meta.num_vectors
    }

    /// Returns the segment's metric (queries are normalised for it before
    /// [`SegmentHead::probed_rows`]).
    pub fn metric(&self) -> Metric {
        self.meta.metric
    }

    /// Returns the row ranges (whole fine clusters, ascending, disjoint) that any of `queries`
    /// probes: each is a vector (normalised as the index's are) and its probe radius.
    pub fn probed_rows<'q>(
        &self,
        queries: impl IntoIterator<Item = (&'q [f32], f32)>,
    ) -> Vec<Range<usize>> {
        let ranges: Vec<Range<usize>> = queries
            .into_iter()
            .flat_map(|(vector, radius)| self.clusters.rows_to_probe(vector, Some(radius)))
            .collect();
        merge_ranges(ranges, |end, start| start <= end)
    }

    fn row_arrays(&self) -> Result<Vec<RowArray<'_>>> {
        let mut names = vec![("ids".to_string(), 8)];
        names.extend((0..self.meta.schema.num_columns()).map(|c| (format!("attributes.{c}"), 8)));
        names.push(("vectors".to_string(), self.meta.dim.max(1) * 4));
        names
            .into_iter()
            .map(|(name, row_len_bytes)| {
                let chunks = self.toc.row_chunks(&name);
                let corrupt = |what: String| Error::corrupt(&self.object, 0, format!("{name}: {what}"));
                for (expected, chunk) in chunks.iter().enumerate() {
                    if chunk.name != format!("{name}.{expected}") {
                        return Err(corrupt(format!("missing chunk {name}.{expected}")));
                    }
                }
                let first = chunks.first().ok_or_else(|| corrupt("no chunks".to_string()))?;
                let rows_per_chunk = usize::try_from(first.raw_len).unwrap_or(0) / row_len_bytes;
                let total: u64 = chunks.iter().map(|chunk| chunk.raw_len).sum();
                let expected_total = (self.meta.num_vectors as u64).saturating_mul(row_len_bytes as u64);
                if rows_per_chunk == 0 && self.meta.num_vectors > 0 || total != expected_total {
                    return Err(corrupt(format!(
                        "chunks hold {total} bytes in chunks of {rows_per_chunk} rows, expected {expected_total}"
                    )));
                }
                Ok(RowArray {
                    name,
                    chunks,
                    rows_per_chunk: rows_per_chunk.max(1),
                    row_len_bytes,
                })
            })
            .collect()
    }

    /// Returns the byte ranges to read for `rows` (from [`SegmentHead::probed_rows`]): every
    /// chunk of ids, attributes and vectors holding one of them, reads at most
    /// `coalesce_gap_bytes` apart merged (see [`DEFAULT_COALESCE_GAP_BYTES`]).
    pub fn row_reads(
        &self,
        rows: &[Range<usize>],
        coalesce_gap_bytes: u64,
    ) -> Result<Vec<Range<u64>>> {
        self.check_rows(rows)?;
        let mut reads: Vec<Range<u64>> = Vec::new();
        for array in self.row_arrays()? {
            for range in rows.iter().filter(|range| !range.is_empty()) {
                let first = range.start / array.rows_per_chunk;
                let last = (range.end - 1) / array.rows_per_chunk;
                reads.extend(array.chunks[first..=last].iter().map(|chunk| chunk.range()));
            }
        }
        Ok(merge_ranges(reads, |end, start| {
            start <= end.saturating_add(coalesce_gap_bytes)
        }))
    }

    fn check_rows(&self, rows: &[Range<usize>]) -> Result<()> {
        let mut previous_end = 0;
        for range in rows {
            if range.start < previous_end
                || range.end > self.meta.num_vectors
                || range.start > range.end
            {
                return Err(Error::invalid(
                    "rows",
                    format!(
                        "range {range:?} is not ascending within the segment's {} rows",
                        self.meta.num_vectors
                    ),
                ));
            }
            previous_end = range.end;
        }
        Ok(())
    }

    /// Builds the partition of `rows` from `reads`, the byte ranges of
    /// [`SegmentHead::row_reads`] with their bytes, in any order (concurrent reads finish in
    /// any order). Its rows are `rows` in order; its fine
    /// clusters are the clusters those ranges cover, which must be whole.
    pub fn assemble(
        &self,
        rows: &[Range<usize>],
        reads: &[(Range<u64>, Vec<u8>)],
    ) -> Result<PartitionData> {
        self.check_rows(rows)?;
        let mut sorted: Vec<(Range<u64>, &[u8])> = reads
            .iter()
            .map(|(range, bytes)| (range.clone(), bytes.as_slice()))
            .collect();
        sorted.sort_by_key(|(range, _)| range.start);
        let reads = sorted.as_slice();
        let object = self.object.as_str();
        let dim = self.meta.dim;
        let num_rows: usize = rows.iter().map(|range| range.len()).sum();
        let mut arrays = self.row_arrays()?.into_iter();
        let mut next_array = || {
            arrays
                .next()
                .ok_or_else(|| Error::internal("row arrays out of step"))
        };
        let ids =
            format::le_bytes_to_u64s(object, "ids", &self.gather(&next_array()?, rows, reads)?)?;
        let mut columns = Vec::with_capacity(self.meta.schema.num_columns());
        for column in 0..self.meta.schema.num_columns() {
            let bits = format::le_bytes_to_u64s(
                object,
                &format!("attributes.{column}"),
                &self.gather(&next_array()?, rows, reads)?,
            )?;
            columns.push(bits.into_iter().map(f64::from_bits).collect());
        }
        let vectors = format::le_bytes_to_f32s(
            object,
            "vectors",
            &self.gather(&next_array()?, rows, reads)?,
        )?;
        if ids.len() != num_rows || vectors.len() != num_rows * dim {
            return Err(Error::corrupt(
                object,
                0,
                "rows read by range do not match their count",
            ));
        }
        // The clusters the ranges cover, whole.
        let mut sizes = Vec::new();
        let mut centroids = Vec::new();
        let mut cluster_start = 0usize;
        let mut covered = 0usize;
        for (cluster, &size) in self.clusters.sizes.iter().enumerate() {
            let cluster_rows = cluster_start..cluster_start + size as usize;
            cluster_start = cluster_rows.end;
            if cluster_rows.is_empty() {
                continue;
            }
            if rows
                .iter()
                .any(|range| range.start <= cluster_rows.start && cluster_rows.end <= range.end)
            {
                sizes.push(size);
                centroids.extend_from_slice(&self.clusters.centroids[cluster * dim..][..dim]);
                covered += cluster_rows.len();
            }
        }
        if covered != num_rows {
            return Err(Error::invalid(
                "rows",
                "ranges read by range must be whole fine clusters",
            ));
        }
        let fastscan = self.cells.as_ref().map(|(lows, steps)| {
            FastScanCodes::encode_with_cells(lows.clone(), steps.clone(), &vectors, dim)
        });
        let num_columns = columns.len();
        Ok(PartitionData {
            partition: self.meta.partition,
            dim,
            metric: self.meta.metric,
            segment_rows: self.meta.num_vectors,
            ids,
            vectors,
            attributes: AttributeTable { num_rows, columns },
            schema: self.meta.schema.clone(),
            quantized: None,
            clusters: FineClusters { sizes, centroids },
            fastscan,
            sorted_attributes: SortedColumns::new(num_columns),
            sq8_rows: std::sync::OnceLock::new(),
        })
    }

    /// Returns the raw bytes of `rows` of `array`, decoding each chunk once.
    fn gather(
        &self,
        array: &RowArray<'_>,
        rows: &[Range<usize>],
        reads: &[(Range<u64>, &[u8])],
    ) -> Result<Vec<u8>> {
        let num_rows: usize = rows.iter().map(|range| range.len()).sum();
        let mut out = Vec::with_capacity(num_rows * array.row_len_bytes);
        // The chunk decoded last: rows ascend, so each chunk is decoded once.
        let mut decoded_index = None;
        let mut decoded = Vec::new();
        for range in rows {
            let mut row = range.start;
            while row < range.end {
                let chunk_index = row / array.rows_per_chunk;
                let entry = array.chunks.get(chunk_index).ok_or_else(|| {
                    Error::corrupt(
                        &self.object,
                        0,
                        format!("{}: no chunk for row {row}", array.name),
                    )
                })?;
                if decoded_index != Some(chunk_index) {
                    let stored = stored_bytes(&self.object, reads, entry)?;
                    decoded = decode_block(&self.object, entry, stored)?;
                    decoded_index = Some(chunk_index);
                }
                let chunk_first_row = chunk_index * array.rows_per_chunk;
                let upto = range.end.min(chunk_first_row + array.rows_per_chunk);
                let bytes = decoded
                    .get(
                        (row - chunk_first_row) * array.row_len_bytes
                            ..(upto - chunk_first_row) * array.row_len_bytes,
                    )
                    .ok_or_else(|| {
                        Error::corrupt(
                            &self.object,
                            entry.offset,
                            format!("{}: short chunk", array.name),
                        )
                    })?;
                out.extend_from_slice(bytes);
                row = upto;
            }
        }
        Ok(out)
    }
}

/// Sorts `ranges` and merges each into the one before when `joins(end of that one, start of
/// this one)`.
fn merge_ranges<T: Copy + Ord>(
    mut ranges: Vec<Range<T>>,
    joins: impl Fn(T, T) -> bool,
) -> Vec<Range<T>> {
    ranges.sort_by_key(|range| range.start);
    let mut merged: Vec<Range<T>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if joins(last.end, range.start) => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// Returns the stored bytes of `entry` from the read that holds them.
fn stored_bytes<'r>(
    object: &str,
    reads: &[(Range<u64>, &'r [u8])],
    entry: &TocEntry,
) -> Result<&'r [u8]> {
    let wanted = entry.range();
    // Reads are disjoint (`row_reads`) and sorted (`assemble`): the one holding the block is
    // the last starting at or before it.
    let holder = reads.partition_point(|(range, _)| range.start <= wanted.start);
    holder
        .checked_sub(1)
        .and_then(|index| reads.get(index))
        .filter(|(range, _)| wanted.end <= range.end)
        .and_then(|(range, bytes)| {
            bytes.get((wanted.start - range.start) as usize..(wanted.end - range.start) as usize)
        })
        .ok_or_else(|| {
            Error::corrupt(
                object,
                entry.offset,
                format!("block {} was not read", entry.name),
            )
        })
}

/// Returns the stored bytes of `entry` inside `bytes`, the bytes of `range`.
fn slice_of<'b>(
    object: &str,
    range: &Range<u64>,
    bytes: &'b [u8],
    entry: &TocEntry,
) -> Result<&'b [u8]> {
    let wanted = entry.range();
    if wanted.start < range.start || wanted.end > range.end {
        return Err(Error::corrupt(
            object,
            entry.offset,
            format!("block {} is outside the head", entry.name),
        ));
    }
    bytes
        .get((wanted.start - range.start) as usize..(wanted.end - range.start) as usize)
        .ok_or_else(|| {
            Error::corrupt(
                object,
                entry.offset,
                format!("head read is short of block {}", entry.name),
            )
        })
}
