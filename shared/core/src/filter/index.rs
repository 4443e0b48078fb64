//! Indexes that let a selective filter visit only the rows it may match instead of every row.
//!
//! - [`CodePostings`]: the rows of one quantized attribute column grouped by code (a counting
//!   sort), for the coordinator. When one column of a filter admits few codes (a leaf, or a
//!   conjunct of the root AND), only those codes' rows are visited.
//! - [`SortedColumn`]: the rows of one raw attribute column in value order, for a worker. An
//!   equality, range or `$in` leaf maps to runs of that order found by binary search.
//!
//! Both only narrow the rows visited: every row they yield is still judged by the whole filter
//! (unless the runs of one column answer all of it), so the answers equal those of the full
//! scans (the property tests in `mod.rs` hold the two paths to each other). Both are built on first use, per column, and kept with the decoded
//! object they index.

use std::ops::Range;
use std::sync::OnceLock;

use super::Predicate;

/// Rows visited through an index cost about this many rows of a sequential scan (a gather, a
/// row-at-a-time verdict with its unpredictable branches and a place among the groups or ranges,
/// against a branch-free pass over a column): an index path is taken when it visits fewer than
/// `1 / INDEX_ROW_COST` of the rows a scan would. Measured on GloVe with `squash eval`: at 8,
/// the coordinator's index path made `freq_10` (10 % of the rows admitted) 1.3-1.6x slower.
pub(super) const INDEX_ROW_COST: usize = 32;

/// The same for a worker's sorted columns when their runs answer the whole filter: a row they
/// yield costs one bit test in a bitmap of the probed ranges (no group to place it in, no
/// verdict), so the index pays from 1 row in 8 of those scanned. Measured on GloVe `freq_1`
/// (one row in 100 matches) with `squash eval`: 6 % faster than at [`INDEX_ROW_COST`]. Rows
/// that must still be judged by the rest of the filter cost [`INDEX_ROW_COST`].
pub(super) const EXACT_RUN_ROW_COST: usize = 8;

/// The rows of one `u8` code column, grouped by code, ascending within each code.
#[derive(Debug, Clone)]
pub struct CodePostings {
    /// `offsets[c]..offsets[c + 1]` are the positions in `rows` of code `c`.
    offsets: Vec<u32>,
    rows: Vec<u32>,
    /// The rows of each code counted per group of consecutive rows (the coordinator's fine
    /// clusters), built on first use for the groups it was asked about.
    group_counts: OnceLock<CodeGroupCounts>,
}

/// How many rows of each code each group of consecutive rows holds: per code, the groups that
/// hold any, ascending, with their counts. Counting a one-column filter per group then reads a
/// short list per admitted code instead of placing every row among the groups (a branchy walk
/// that cost a sixth of a selective query).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeGroupCounts {
    /// The group boundaries (`offsets[g]..offsets[g + 1]` are the rows of group `g`) these
    /// counts are for.
    group_offsets: Vec<u64>,
    /// `entries[c]..entries[c + 1]` are the positions in `groups` and `counts` of code `c`.
    entries: Vec<u32>,
    groups: Vec<u32>,
    counts: Vec<u32>,
}

impl CodeGroupCounts {
    /// Counts the rows of each code of `postings` per group of `group_offsets`.
    fn build(postings: &CodePostings, group_offsets: &[u64]) -> CodeGroupCounts {
        let mut entries = Vec::with_capacity(257);
        let mut groups = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        entries.push(0u32);
        for code in 0..256 {
            let mut last_group = usize::MAX;
            for (_, group) in rows_with_groups(postings.rows(code), group_offsets) {
                if group == last_group {
                    *counts.last_mut().expect("a group was pushed") += 1;
                } else {
                    groups.push(group as u32);
                    counts.push(1);
                    last_group = group;
                }
            }
            entries.push(groups.len() as u32);
        }
        CodeGroupCounts {
            group_offsets: group_offsets.to_vec(),
            entries,
            groups,
            counts,
        }
    }

    /// Returns the groups holding rows of `code`, ascending, and how many each holds.
    pub fn of_code(&self, code: usize) -> (&[u32], &[u32]) {
        let range = self.entries[code] as usize..self.entries[code + 1] as usize;
        (&self.groups[range.clone()], &self.counts[range])
    }
}

/// Pairs each of `rows` (ascending) with its group among `group_offsets` (ascending row
/// boundaries): as the rows ascend, the group only moves forward, so the groups are walked once.
pub(super) fn rows_with_groups<'a>(
    rows: &'a [u32],
    group_offsets: &'a [u64],
) -> impl Iterator<Item = (u32, usize)> + 'a {
    let num_groups = group_offsets.len().saturating_sub(1);
    let mut group = 0usize;
    rows.iter().map(move |&row| {
        while group + 1 < num_groups && group_offsets[group + 1] <= u64::from(row) {
            group += 1;
        }
        (row, group)
    })
}

impl CodePostings {
    /// Groups the rows of `codes` by code.
    pub fn build(codes: &[u8]) -> CodePostings {
        let mut offsets = vec![0u32; 257];
        for &code in codes {
            offsets[usize::from(code) + 1] += 1;
        }
        for code in 0..256 {
            offsets[code + 1] += offsets[code];
        }
        let mut next = offsets.clone();
        let mut rows = vec![0u32; codes.len()];
        for (row, &code) in codes.iter().enumerate() {
            let slot = &mut next[usize::from(code)];
            rows[*slot as usize] = row as u32;
            *slot += 1;
        }
        CodePostings {
            offsets,
            rows,
            group_counts: OnceLock::new(),
        }
    }

    /// Returns the rows holding `code`, ascending.
    pub fn rows(&self, code: usize) -> &[u32] {
        &self.rows[self.offsets[code] as usize..self.offsets[code + 1] as usize]
    }

    /// Returns the rows of each code counted per group of `group_offsets` (ascending row
    /// boundaries, the first 0 and the last the number of rows). Kept after the first call;
    /// groups other than the kept ones are counted afresh.
    pub fn group_counts(&self, group_offsets: &[u64]) -> std::borrow::Cow<'_, CodeGroupCounts> {
        let kept = self
            .group_counts
            .get_or_init(|| CodeGroupCounts::build(self, group_offsets));
        if kept.group_offsets == group_offsets {
            std::borrow::Cow::Borrowed(kept)
        } else {
            std::borrow::Cow::Owned(CodeGroupCounts::build(self, group_offsets))
        }
    }
}

/// One index per column of a table, each built on first use and kept.
#[derive(Debug, Clone, Default)]
pub struct LazyColumns<T> {
    columns: Vec<OnceLock<T>>,
}

impl<T> LazyColumns<T> {
    /// Returns no indexes yet for `num_columns` columns.
    pub fn new(num_columns: usize) -> LazyColumns<T> {
        LazyColumns {
            columns: (0..num_columns).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Returns the index of `column`, built by `build` the first time.
    ///
    /// Panics if `column` is out of range.
    fn get_or_build(&self, column: usize, build: impl FnOnce() -> T) -> &T {
        self.columns[column].get_or_init(build)
    }
}

/// The [`CodePostings`] of every column of a quantized table.
pub type ColumnPostings = LazyColumns<CodePostings>;

impl ColumnPostings {
    /// Returns the postings of `column`, building them from `codes` the first time.
    ///
    /// Panics if `column` is out of range.
    pub fn column(&self, column: usize, codes: &[u8]) -> &CodePostings {
        self.get_or_build(column, || CodePostings::build(codes))
    }
}

/// The non-NaN rows of one raw attribute column in ascending value order (NaN matches no
/// predicate a sorted column answers).
#[derive(Debug, Clone, PartialEq)]
pub struct SortedColumn {
    values: Vec<f64>,
    rows: Vec<u32>,
    /// Every [`SAMPLE_STRIDE`]-th value: a binary search runs over these (a few kilobytes,
    /// in cache) and then within one stride of `values`, instead of over all of `values`,
    /// whose every level would miss the cache.
    samples: Vec<f64>,
}

/// Values per sample of a [`SortedColumn`].
const SAMPLE_STRIDE: usize = 64;

impl SortedColumn {
    /// Sorts the rows of `values` by value, leaving out NaN.
    pub fn build(values: &[f64]) -> SortedColumn {
        let mut pairs: Vec<(f64, u32)> = values
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.is_nan())
            .map(|(row, &value)| (value, row as u32))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let values: Vec<f64> = pairs.iter().map(|pair| pair.0).collect();
        SortedColumn {
            samples: values.iter().step_by(SAMPLE_STRIDE).copied().collect(),
            rows: pairs.iter().map(|pair| pair.1).collect(),
            values,
        }
    }

    /// Returns the number of leading values for which `holds` is true, for a `holds` that is
    /// true and then false along the order (as `slice::partition_point`).
    fn partition_point(&self, holds: impl Fn(f64) -> bool) -> usize {
        // `holds` is true for samples[..block], so the point lies after the sample before
        // `block` and at or before sample `block`.
        let block = self.samples.partition_point(|&value| holds(value));
        let start = block.saturating_sub(1) * SAMPLE_STRIDE;
        let end = (block * SAMPLE_STRIDE).min(self.values.len());
        start + self.values[start..end].partition_point(|&value| holds(value))
    }

    /// Returns the runs of positions whose values satisfy `predicate`, or `None` for a
    /// predicate a sorted column cannot answer by ranges (`$ne`, `$nin`: they match NaN too).
    ///
    /// Along the order (`total_cmp` without NaN) IEEE `<` and `<=` against a constant go from
    /// true to false once, so each comparison is one binary search; `-0.0` and `0.0` compare
    /// equal and sit next to each other.
    pub(super) fn runs(&self, predicate: &Predicate) -> Option<Vec<Range<usize>>> {
        let below = |x: f64| self.partition_point(|value| value < x);
        let at_most = |x: f64| self.partition_point(|value| value <= x);
        let all = self.values.len();
        let run = match predicate {
            Predicate::Eq(x) => below(*x)..at_most(*x),
            Predicate::Gt(x) => at_most(*x)..all,
            Predicate::Gte(x) => below(*x)..all,
            Predicate::Lt(x) => 0..below(*x),
            Predicate::Lte(x) => 0..at_most(*x),
            Predicate::In(set) => {
                let runs = set.iter().map(|&x| below(x)..at_most(x));
                return Some(runs.filter(|run| !run.is_empty()).collect());
            }
            Predicate::Ne(_) | Predicate::Nin(_) => return None,
        };
        Some(std::iter::once(run).filter(|run| !run.is_empty()).collect())
    }

    /// Returns the rows at the positions of `run`.
    pub fn rows(&self, run: Range<usize>) -> &[u32] {
        &self.rows[run]
    }
}

/// Returns the positions in both `a` and `b`, two lists of ascending, disjoint runs.
pub(super) fn intersect_runs(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let (mut i, mut j) = (0, 0);
    let mut both = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            both.push(start..end);
        }
        if a[i].end <= b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    both
}

/// The [`SortedColumn`] of every column of a raw attribute table.
pub type SortedColumns = LazyColumns<SortedColumn>;

impl SortedColumns {
    /// Returns the sorted form of `column`, building it from `values` the first time.
    ///
    /// Panics if `column` is out of range.
    pub fn column(&self, column: usize, values: &[f64]) -> &SortedColumn {
        self.get_or_build(column, || SortedColumn::build(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_intersections_keep_the_common_positions() {
        let one = |run: Range<usize>| -> Vec<Range<usize>> { std::iter::once(run).collect() };
        assert_eq!(intersect_runs(&one(0..10), &one(4..20)), one(4..10));
        assert_eq!(
            intersect_runs(&[0..3, 5..9, 12..15], &[2..6, 8..13]),
            vec![2..3, 5..6, 8..9, 12..13]
        );
        assert!(intersect_runs(&one(0..3), &one(3..5)).is_empty());
        assert!(intersect_runs(&[], &one(0..5)).is_empty());
    }

    #[test]
    fn postings_group_rows_by_code_in_row_order() {
        let codes = [3u8, 0, 3, 255, 0, 3];
        let postings = CodePostings::build(&codes);
        assert_eq!(postings.rows(3), &[0, 2, 5]);
        assert_eq!(postings.rows(0), &[1, 4]);
        assert_eq!(postings.rows(255), &[3]);
        assert!(postings.rows(7).is_empty());
    }

    #[test]
    fn group_counts_count_each_codes_rows_per_group() {
        // Groups: rows 0..2, 2..3 (code 255 only), 3..6.
        let codes = [3u8, 0, 255, 3, 0, 3];
        let postings = CodePostings::build(&codes);
        let offsets = [0u64, 2, 3, 6];
        let counts = postings.group_counts(&offsets);
        assert_eq!(counts.of_code(3), (&[0u32, 2][..], &[1u32, 2][..]));
        assert_eq!(counts.of_code(0), (&[0u32, 2][..], &[1u32, 1][..]));
        assert_eq!(counts.of_code(255), (&[1u32][..], &[1u32][..]));
        assert_eq!(counts.of_code(9), (&[][..], &[][..]));
        // Other groups than the kept ones are counted for what they are.
        let one_group = postings.group_counts(&[0, 6]);
        assert_eq!(one_group.of_code(3), (&[0u32][..], &[3u32][..]));
        assert_eq!(postings.group_counts(&offsets).of_code(3).1, &[1, 2]);
    }

    #[test]
    fn sorted_runs_hold_exactly_the_matching_rows() {
        let values = [5.0, f64::NAN, -0.0, 2.0, 0.0, 5.0, -3.0, 9.0];
        let sorted = SortedColumn::build(&values);
        let predicates = [
            Predicate::Eq(5.0),
            Predicate::Eq(0.0),
            Predicate::Eq(-0.0),
            Predicate::Gt(2.0),
            Predicate::Gte(2.0),
            Predicate::Lt(0.0),
            Predicate::Lte(0.0),
            Predicate::In(vec![-3.0, 0.0, 9.0, 11.0]),
        ];
        for predicate in predicates {
            let runs = sorted.runs(&predicate).expect("answerable");
            let mut found: Vec<u32> = runs
                .into_iter()
                .flat_map(|run| sorted.rows(run).to_vec())
                .collect();
            found.sort_unstable();
            let expected: Vec<u32> = (0..values.len() as u32)
                .filter(|&row| predicate.matches(values[row as usize]))
                .collect();
            assert_eq!(found, expected, "{predicate:?}");
        }
        assert!(sorted.runs(&Predicate::Ne(5.0)).is_none());
    }

    /// The search through the samples finds the point a search over every value finds, for
    /// columns of a few strides with long runs of equal values, at every threshold.
    #[test]
    fn sampled_search_finds_the_full_searchs_point() {
        for len in [1usize, 63, 64, 65, 200, 1_000] {
            let values: Vec<f64> = (0..len).map(|i| ((i * 37) % 101 / 7) as f64).collect();
            let sorted = SortedColumn::build(&values);
            for tenth in -10..=160 {
                let x = f64::from(tenth) / 10.0;
                for holds in [
                    &(|value: f64| value < x) as &dyn Fn(f64) -> bool,
                    &|value: f64| value <= x,
                ] {
                    assert_eq!(
                        sorted.partition_point(holds),
                        sorted.values.partition_point(|&value| holds(value)),
                        "len {len}, x {x}"
                    );
                }
            }
        }
    }
}
