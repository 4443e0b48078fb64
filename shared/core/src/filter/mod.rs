//! Attribute filters: parsing, exact evaluation, attribute quantization and the conservative
//! evaluation on quantized attributes.
//!
//! Owns the filter language (Mongo-style JSON, as S3 Vectors and Pinecone write it), its
//! compiled form [`Filter`], and two evaluators that turn a filter into a selection bitmap:
//! - exact ([`Filter::evaluate`], [`Filter::matches_row`]) over the raw [`AttributeTable`], run by
//!   workers over one partition at a time;
//! - conservative ([`Filter::evaluate_quantized`]) over a few bits per attribute
//!   ([`AttributeQuantizer`], [`QuantizedAttributes`]), run by the coordinator over all vectors.
//!   It returns a superset of the exact matches and never misses one.
//!
//! Pure module: no I/O, no async. It must not know where tables and codes are stored.
//!
//! Value semantics: every comparison is the IEEE comparison of the `f64` cell value with the
//! filter value, so a NaN cell (a missing value) fails `$eq`, `$gt`, `$gte`, `$lt`, `$lte` and
//! `$in`, and passes `$ne` and `$nin` (which are exactly the negations of `$eq` and `$in`).
//! Categorical columns compare strings: `$eq`, `$ne`, `$in`, `$nin` by equality, and `$gt`,
//! `$gte`, `$lt`, `$lte` lexicographically (byte order, so ISO dates order by time).

mod exact;
pub mod index;
mod parse;
mod quantized;

pub use index::{ColumnPostings, SortedColumns};
pub use quantized::{AttributeQuantizer, ColumnQuantizer, QuantizedAttributes};

use crate::attributes::{AttributeKind, AttributeSchema, AttributeTable, Bitmap};
use crate::error::{Error, Result};

/// A filter compiled against an [`AttributeSchema`]: column names are resolved to column
/// indices and strings to dictionary codes, and predicates that can never (or always) match are
/// folded into constants.
///
/// A filter must only be evaluated on tables and codes with the columns of the schema it was
/// parsed against.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

/// The deepest nesting of objects and arrays a filter may have. Workers receive the filter
/// inside a request three containers deep (request, `queries`, query), and serde_json refuses
/// documents nested deeper than 127; parsing also recurses once per level, so the bound keeps
/// the stack small for filters built in code.
pub const MAX_FILTER_NESTING: usize = 124;

/// Returns the nesting depth of objects and arrays in `json` (0 for a scalar), without
/// recursion.
fn nesting_depth(json: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(json, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(entries) => Box::new(entries.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

impl Filter {
    /// Compiles a filter written as JSON against `schema`.
    ///
    /// `null` and `{}` match everything. Errors are `Error::InvalidInput` whose field is the JSON
    /// path of the offending part, rooted at `filter` (e.g. `filter.$or[1].nnz.$gte`). A string
    /// that is not in a categorical column's dictionary is not an error: it matches no row.
    pub fn parse(json: &serde_json::Value, schema: &AttributeSchema) -> Result<Filter> {
        let depth = nesting_depth(json);
        if depth > MAX_FILTER_NESTING {
            return Err(Error::invalid(
                "filter",
                format!(
                    "nests {depth} levels of objects and arrays; at most {MAX_FILTER_NESTING} are allowed"
                ),
            ));
        }
        Ok(Filter {
            expr: parse::parse_root(json, schema)?,
        })
    }

    /// Returns the filter that matches every row.
    pub fn match_all() -> Filter {
        Filter {
            expr: Expr::Const(true),
        }
    }

    /// Returns true when the filter matches every row whatever the table holds
    /// (e.g. `null`, `{}`, `{"$nin": []}`), so callers can skip evaluating it.
    pub fn is_match_all(&self) -> bool {
        self.expr == Expr::Const(true)
    }

    /// Returns true when the filter matches no row whatever the table holds
    /// (e.g. `{"$in": []}`, or `$eq` with a string absent from the dictionary).
    pub fn is_match_none(&self) -> bool {
        self.expr == Expr::Const(false)
    }

    /// Returns whether `row` of `table` matches, exactly.
    ///
    /// Panics if `row` is out of range or the table lacks a column the filter uses.
    pub fn matches_row(&self, table: &AttributeTable, row: usize) -> bool {
        exact::matches_row(&self.expr, table, row)
    }

    /// Returns the exact set of matching rows of `table`, evaluated one column at a time.
    ///
    /// Panics if the table lacks a column the filter uses or a column is shorter than
    /// `table.num_rows`.
    pub fn evaluate(&self, table: &AttributeTable) -> Bitmap {
        exact::evaluate_rows(&self.expr, table, 0..table.num_rows)
    }

    /// Returns which rows of the range `rows` of `table` match, exactly: bit `i` is row
    /// `rows.start + i`. A scan that probes a few fine clusters evaluates only their rows.
    ///
    /// Panics if the range is outside the table or the table lacks a column the filter uses.
    pub fn evaluate_rows(&self, table: &AttributeTable, rows: std::ops::Range<usize>) -> Bitmap {
        exact::evaluate_rows(&self.expr, table, rows)
    }

    /// Returns a superset of the matching rows, computed from quantized attributes only.
    ///
    /// No matching row is ever missing (see the soundness argument in `quantized.rs`). When
    /// every column used has at most `2^max_bits` distinct values (one less if it holds NaN),
    /// the result is exact. Codes must come from `quantizer.encode` on the table `quantizer`
    /// was trained on; a code beyond the column's cells is treated as "maybe".
    ///
    /// Panics if `quantizer` or `codes` lack a column the filter uses or a code column is
    /// shorter than `codes.num_rows`.
    pub fn evaluate_quantized(
        &self,
        quantizer: &AttributeQuantizer,
        codes: &QuantizedAttributes,
    ) -> Bitmap {
        quantized::evaluate(&self.expr, quantizer, codes)
    }

    /// Returns `(possible, certain)`: the superset of [`Filter::evaluate_quantized`] and the
    /// subset of rows whose cells prove they match. The coordinator counts certain matches so
    /// that the partitions it picks surely hold `k` of them.
    pub fn evaluate_quantized_bounds(
        &self,
        quantizer: &AttributeQuantizer,
        codes: &QuantizedAttributes,
    ) -> (Bitmap, Bitmap) {
        quantized::evaluate_bounds(&self.expr, quantizer, codes)
    }

    /// Returns, per group of rows (group `g` is rows `group_offsets[g]..group_offsets[g + 1]`
    /// of `codes`), the number of rows that may match and that surely match: the counts of
    /// [`Filter::evaluate_quantized_bounds`]. When one column of the filter (the filter itself,
    /// or a conjunct of its root AND) admits few rows, only those rows are visited, through
    /// `postings`; otherwise every row is scanned.
    ///
    /// Panics if `group_offsets` is not ascending from 0 to `codes.num_rows`, or as
    /// [`Filter::evaluate_quantized`].
    pub fn count_quantized_bounds(
        &self,
        quantizer: &AttributeQuantizer,
        codes: &QuantizedAttributes,
        postings: &ColumnPostings,
        group_offsets: &[u64],
    ) -> (Vec<u64>, Vec<u64>) {
        quantized::count_bounds(&self.expr, quantizer, codes, postings, group_offsets)
    }

    /// Returns the rows inside `ranges` (ascending, disjoint row ranges of `table`) that match.
    /// When a leaf of the filter (the filter itself, or a conjunct of its root AND) matches few
    /// rows by its sorted column in `sorted`, only those rows are visited, in that column's
    /// value order; otherwise the ranges are scanned column by column and the rows ascend.
    ///
    /// Panics if a range is outside the table or the table lacks a column the filter uses.
    pub fn matching_rows(
        &self,
        table: &AttributeTable,
        sorted: &SortedColumns,
        ranges: &[std::ops::Range<usize>],
    ) -> MatchingRows {
        let scanned: usize = ranges.iter().map(|range| range.len()).sum();
        if self.is_match_all() {
            let mut rows = Vec::with_capacity(scanned);
            for range in ranges {
                rows.extend(range.start as u32..range.end as u32);
            }
            return MatchingRows::ascending(rows);
        }
        if let Some(rows) = self.matching_rows_by_index(table, sorted, ranges, scanned) {
            return MatchingRows {
                rows,
                ascending: false,
            };
        }
        let mut rows = Vec::new();
        for range in ranges {
            let matches = self.evaluate_rows(table, range.clone());
            push_set_rows(&matches, range.start, &mut rows);
        }
        MatchingRows::ascending(rows)
    }

    /// The index path of [`Filter::matching_rows`], or `None` when no leaf is selective enough.
    fn matching_rows_by_index(
        &self,
        table: &AttributeTable,
        sorted: &SortedColumns,
        ranges: &[std::ops::Range<usize>],
        scanned: usize,
    ) -> Option<Vec<u32>> {
        // The parts the filter requires all of: the conjuncts of a root AND, or the filter.
        let parts: &[Expr] = match &self.expr {
            Expr::And(children) => children,
            other => std::slice::from_ref(other),
        };
        // Leaves of one column narrow each other (`$gte` and `$lte` of a window): their runs
        // are intersected before the columns compete.
        let mut per_column: Vec<(usize, &index::SortedColumn, Vec<std::ops::Range<usize>>)> =
            Vec::new();
        let mut answered_parts = 0;
        for part in parts {
            let Expr::Leaf(leaf) = part else {
                continue;
            };
            let column = sorted.column(leaf.column, &table.columns[leaf.column][..table.num_rows]);
            let Some(runs) = column.runs(&leaf.predicate) else {
                continue;
            };
            answered_parts += 1;
            match per_column.iter_mut().find(|(c, _, _)| *c == leaf.column) {
                Some((_, _, existing)) => *existing = index::intersect_runs(existing, &runs),
                None => per_column.push((leaf.column, column, runs)),
            }
        }
        // When every part is a leaf answered by runs of one column, the runs hold exactly the
        // matches and rows need no second check.
        let runs_are_exact = answered_parts == parts.len() && per_column.len() == 1;
        let best_opt = per_column
            .into_iter()
            .map(|(_, column, runs)| {
                (
                    runs.iter().map(|run| run.len()).sum::<usize>(),
                    runs,
                    column,
                )
            })
            .min_by_key(|(count, _, _)| *count);
        let (count, runs, column) = best_opt?;
        let row_cost = if runs_are_exact {
            index::EXACT_RUN_ROW_COST
        } else {
            index::INDEX_ROW_COST
        };
        if count.saturating_mul(row_cost) >= scanned {
            return None;
        }
        // The rows of the runs come in value order: each is looked up in a bitmap of the
        // ranges' rows (one bit per row of the table, filled a word at a time), which costs
        // less than putting them in row order to walk the ranges (a sort measured 15 % of a
        // selective query). A range that covers the table (exact mode, no probe radius) needs
        // no lookup.
        let in_ranges_opt = (ranges.len() != 1 || ranges[0] != (0..table.num_rows)).then(|| {
            let mut bits = vec![0u64; table.num_rows.div_ceil(64)];
            for range in ranges {
                mark_range(&mut bits, range.clone());
            }
            bits
        });
        let mut rows = Vec::with_capacity(count);
        for run in runs {
            for &row in column.rows(run) {
                let position = row as usize;
                let in_ranges = in_ranges_opt
                    .as_ref()
                    .is_none_or(|bits| bits[position / 64] & (1u64 << (position % 64)) != 0);
                if in_ranges && (runs_are_exact || self.matches_row(table, position)) {
                    rows.push(row);
                }
            }
        }
        Some(rows)
    }

    /// Returns a short human-readable form for logs, e.g.
    /// `label = 3 AND (genre IN ("drama", "war") OR NOT (nnz > 300))`.
    pub fn describe(&self, schema: &AttributeSchema) -> String {
        let mut text = String::new();
        write_expr(&self.expr, schema, &mut text);
        text
    }
}

impl Default for Filter {
    /// Returns the filter that matches every row.
    fn default() -> Self {
        Filter::match_all()
    }
}

/// The rows a filter matches inside some row ranges ([`Filter::matching_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchingRows {
    /// The rows.
    pub rows: Vec<u32>,
    /// Whether `rows` ascend (a scan); else they come in a sorted column's value order.
    pub ascending: bool,
}

impl MatchingRows {
    fn ascending(rows: Vec<u32>) -> MatchingRows {
        MatchingRows {
            rows,
            ascending: true,
        }
    }
}

/// Sets the bits of `rows` in `bits` (one bit per row), a word at a time inside the range.
fn mark_range(bits: &mut [u64], rows: std::ops::Range<usize>) {
    if rows.is_empty() {
        return;
    }
    let (first, last) = (rows.start / 64, (rows.end - 1) / 64);
    let low_mask = u64::MAX << (rows.start % 64);
    let high_mask = u64::MAX >> (63 - (rows.end - 1) % 64);
    if first == last {
        bits[first] |= low_mask & high_mask;
        return;
    }
    bits[first] |= low_mask;
    bits[first + 1..last].fill(u64::MAX);
    bits[last] |= high_mask;
}

/// The compiled filter tree.
///
/// Invariants kept by the constructors [`Expr::and`], [`Expr::or`], [`Expr::not`]: `Const`
/// appears only at the root, `And`/`Or` have at least two children and no child of their own
/// kind, and `Not` never wraps a constant or another `Not`.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(bool),
    Leaf(Leaf),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

/// One predicate on one column.
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    column: usize,
    predicate: Predicate,
}

/// Appends `first_row + i` for every set bit `i` of `bitmap`, in order: a word at a time with
/// `trailing_zeros`, several times faster than `BitSlice::iter_ones` on the scan path (where
/// `perf` showed it at a tenth of a filtered query).
fn push_set_rows(bitmap: &crate::attributes::Bitmap, first_row: usize, rows: &mut Vec<u32>) {
    if bitmap.as_bitptr().bit().into_inner() != 0 {
        // Not aligned to its first word (never built so here): the general walk.
        rows.extend(bitmap.iter_ones().map(|row| (first_row + row) as u32));
        return;
    }
    let num_bits = bitmap.len();
    for (word_index, &word) in bitmap.as_raw_slice().iter().enumerate() {
        let base = word_index * 64;
        // Bits past the end of the bitmap in its last word are not rows.
        let valid = num_bits.saturating_sub(base).min(64);
        let mut bits = if valid == 64 {
            word
        } else {
            word & ((1u64 << valid) - 1)
        };
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            rows.push((first_row + base + bit) as u32);
            bits &= bits - 1;
        }
    }
}

/// A comparison of a cell value with constants. Sets are sorted ascending, deduplicated and
/// non-empty (an empty `$in`/`$nin` folds into a constant).
#[derive(Debug, Clone, PartialEq)]
enum Predicate {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<f64>),
    Nin(Vec<f64>),
}

impl Predicate {
    /// Returns whether a cell holding `value` satisfies the predicate.
    #[inline]
    fn matches(&self, value: f64) -> bool {
        match self {
            Predicate::Eq(x) => value == *x,
            Predicate::Ne(x) => value != *x,
            Predicate::Gt(x) => value > *x,
            Predicate::Gte(x) => value >= *x,
            Predicate::Lt(x) => value < *x,
            Predicate::Lte(x) => value <= *x,
            Predicate::In(set) => set_contains(set, value),
            Predicate::Nin(set) => !set_contains(set, value),
        }
    }
}

/// Returns whether the sorted `set` holds a value equal (IEEE `==`) to `value`.
#[inline]
fn set_contains(set: &[f64], value: f64) -> bool {
    // A linear scan beats binary search on the short lists filters usually carry.
    if set.len() <= 8 {
        return set.contains(&value);
    }
    let position = set.partition_point(|&member| member < value);
    position < set.len() && set[position] == value
}

impl Expr {
    /// Returns the conjunction of `children`, folding constants and nested conjunctions.
    fn and(children: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Expr::Const(true) => {}
                Expr::Const(false) => return Expr::Const(false),
                Expr::And(grandchildren) => flat.extend(grandchildren),
                other => flat.push(other),
            }
        }
        if flat.len() <= 1 {
            return flat.pop().unwrap_or(Expr::Const(true));
        }
        Expr::And(flat)
    }

    /// Returns the disjunction of `children`, folding constants and nested disjunctions.
    fn or(children: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Expr::Const(false) => {}
                Expr::Const(true) => return Expr::Const(true),
                Expr::Or(grandchildren) => flat.extend(grandchildren),
                other => flat.push(other),
            }
        }
        if flat.len() <= 1 {
            return flat.pop().unwrap_or(Expr::Const(false));
        }
        Expr::Or(flat)
    }

    /// Returns the negation of `child`. `$eq`/`$ne` and `$in`/`$nin` swap because they are exact
    /// negations of each other even on NaN; the order comparisons are not (NaN fails both
    /// `$gt` and `$lte`), so they stay under a `Not`.
    fn not(child: Expr) -> Expr {
        match child {
            Expr::Const(value) => Expr::Const(!value),
            Expr::Not(inner) => *inner,
            Expr::Leaf(Leaf { column, predicate }) => {
                let negated = match predicate {
                    Predicate::Eq(x) => Predicate::Ne(x),
                    Predicate::Ne(x) => Predicate::Eq(x),
                    Predicate::In(set) => Predicate::Nin(set),
                    Predicate::Nin(set) => Predicate::In(set),
                    order => {
                        return Expr::Not(Box::new(Expr::Leaf(Leaf {
                            column,
                            predicate: order,
                        })))
                    }
                };
                Expr::Leaf(Leaf {
                    column,
                    predicate: negated,
                })
            }
            other => Expr::Not(Box::new(other)),
        }
    }
}

/// Returns `words` (bit `i % 64` of word `i / 64` = row `i`) as a bitmap of `num_rows` bits,
/// clearing the unused bits of the last word so the raw words stay clean.
fn words_to_bitmap(mut words: Vec<u64>, num_rows: usize) -> Bitmap {
    debug_assert_eq!(words.len(), num_rows.div_ceil(64));
    let num_tail_bits = num_rows % 64;
    if num_tail_bits != 0 {
        if let Some(last) = words.last_mut() {
            *last &= (1u64 << num_tail_bits) - 1;
        }
    }
    let mut bitmap = Bitmap::from_vec(words);
    bitmap.truncate(num_rows);
    bitmap
}

/// Returns one bit per value, `predicate(values[i])` at bit `i % 64` of word `i / 64`.
///
/// Each block of 64 rows is first evaluated into one flag byte per row (a loop the compiler
/// vectorizes), then packed into a word eight flags at a time.
#[inline]
fn bits_from_values<T: Copy>(values: &[T], predicate: impl Fn(T) -> bool) -> Vec<u64> {
    let mut words = Vec::with_capacity(values.len().div_ceil(64));
    let mut flags = [0u8; 64];
    let mut chunks = values.chunks_exact(64);
    for chunk in &mut chunks {
        for (flag, &value) in flags.iter_mut().zip(chunk) {
            *flag = u8::from(predicate(value));
        }
        words.push(pack_flags(&flags));
    }
    let remainder = chunks.remainder();
    if !remainder.is_empty() {
        flags = [0u8; 64];
        for (flag, &value) in flags.iter_mut().zip(remainder) {
            *flag = u8::from(predicate(value));
        }
        words.push(pack_flags(&flags));
    }
    words
}

/// Returns the 64 flags (each 0 or 1) as a word, flag `i` at bit `i`.
#[inline]
fn pack_flags(flags: &[u8; 64]) -> u64 {
    // Multiplying eight 0/1 bytes by this constant gathers byte k into bit 56 + k: the partial
    // products land on distinct bits, so no carries disturb the top byte.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let mut word = 0u64;
    for (group, eight_flags) in flags.chunks_exact(8).enumerate() {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(eight_flags);
        let gathered = u64::from_le_bytes(lanes).wrapping_mul(GATHER) >> 56;
        word |= gathered << (8 * group);
    }
    word
}

fn write_expr(expr: &Expr, schema: &AttributeSchema, text: &mut String) {
    match expr {
        Expr::Const(true) => text.push_str("TRUE"),
        Expr::Const(false) => text.push_str("FALSE"),
        Expr::Leaf(leaf) => write_leaf(leaf, schema, text),
        Expr::And(children) | Expr::Or(children) => {
            let separator = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            for (position, child) in children.iter().enumerate() {
                if position > 0 {
                    text.push_str(separator);
                }
                write_operand(child, schema, text);
            }
        }
        Expr::Not(child) => {
            text.push_str("NOT ");
            match child.as_ref() {
                Expr::Leaf(_) => {
                    text.push('(');
                    write_expr(child, schema, text);
                    text.push(')');
                }
                _ => write_operand(child, schema, text),
            }
        }
    }
}

/// Writes `expr` as an operand of AND/OR/NOT: parenthesised when it is itself a conjunction or
/// disjunction.
fn write_operand(expr: &Expr, schema: &AttributeSchema, text: &mut String) {
    if matches!(expr, Expr::And(_) | Expr::Or(_)) {
        text.push('(');
        write_expr(expr, schema, text);
        text.push(')');
    } else {
        write_expr(expr, schema, text);
    }
}

fn write_leaf(leaf: &Leaf, schema: &AttributeSchema, text: &mut String) {
    let column_opt = schema.columns.get(leaf.column);
    let format_value = |value: f64| -> String {
        match column_opt {
            Some(column) if column.kind == AttributeKind::Categorical => column
                .dictionary
                .get(value as usize)
                .map(|entry| format!("{entry:?}"))
                .unwrap_or_else(|| format!("#{value}")),
            _ => format!("{value}"),
        }
    };
    let name = column_opt
        .map(|column| column.name.clone())
        .unwrap_or_else(|| format!("#{}", leaf.column));
    let (operator, operand) = match &leaf.predicate {
        Predicate::Eq(x) => ("=", format_value(*x)),
        Predicate::Ne(x) => ("!=", format_value(*x)),
        Predicate::Gt(x) => (">", format_value(*x)),
        Predicate::Gte(x) => (">=", format_value(*x)),
        Predicate::Lt(x) => ("<", format_value(*x)),
        Predicate::Lte(x) => ("<=", format_value(*x)),
        Predicate::In(set) | Predicate::Nin(set) => {
            let members: Vec<String> = set.iter().map(|&x| format_value(x)).collect();
            let operator = if matches!(leaf.predicate, Predicate::In(_)) {
                "IN"
            } else {
                "NOT IN"
            };
            (operator, format!("({})", members.join(", ")))
        }
    };
    text.push_str(&name);
    text.push(' ');
    text.push_str(operator);
    text.push(' ');
    text.push_str(&operand);
}

#[cfg(test)]
mod set_rows_tests {
    use super::*;

    #[test]
    fn set_rows_match_iter_ones_at_every_length_and_offset() {
        for len in [0usize, 1, 63, 64, 65, 130, 200] {
            let mut bitmap = crate::attributes::Bitmap::repeat(false, len);
            for row in (0..len).filter(|row| row % 3 == 0 || row % 7 == 1 || *row == len - 1) {
                bitmap.set(row, true);
            }
            // Garbage past the end of the last word must not become rows.
            if len % 64 != 0 {
                if let Some(last) = bitmap.as_raw_mut_slice().last_mut() {
                    *last |= !0u64 << (len % 64);
                }
            }
            let mut rows = vec![7];
            push_set_rows(&bitmap, 1000, &mut rows);
            let expected: Vec<u32> = std::iter::once(7)
                .chain(bitmap.iter_ones().map(|row| (1000 + row) as u32))
                .collect();
            assert_eq!(rows, expected, "len {len}");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;

    #[test]
    fn filters_nested_too_deep_are_refused_without_recursing() {
        let schema = AttributeSchema::default();
        let mut filter = serde_json::json!({});
        for _ in 0..MAX_FILTER_NESTING - 1 {
            filter = serde_json::json!({ "$not": filter });
        }
        assert_eq!(nesting_depth(&filter), MAX_FILTER_NESTING);
        assert!(Filter::parse(&filter, &schema).is_ok());
        // Far deeper than a debug thread's stack would survive if parsing recursed first.
        let mut deep = filter;
        for _ in 0..20_000 {
            // Built by hand: `json!` would copy the value through a recursive serializer.
            let mut wrapper = serde_json::Map::new();
            wrapper.insert("$not".to_string(), deep);
            deep = serde_json::Value::Object(wrapper);
        }
        let error = Filter::parse(&deep, &schema).expect_err("too deep");
        assert!(matches!(error, Error::InvalidInput { ref field, .. } if field == "filter"));
        // Values this deep drop recursively; leak it so the test thread's stack survives.
        std::mem::forget(deep);
    }
    use crate::attributes::AttributeColumn;

    const GENRES: [&str; 3] = ["action", "comedy", "drama"];

    fn test_schema() -> AttributeSchema {
        AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "rank".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "score".into(),
                    kind: AttributeKind::Float,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "genre".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: GENRES.iter().map(|genre| genre.to_string()).collect(),
                },
            ],
        }
    }

    // ---- the naive reference: row at a time, straight from the JSON ----

    fn reference_matches(
        filter: &Value,
        schema: &AttributeSchema,
        table: &AttributeTable,
        row: usize,
    ) -> bool {
        let object = match filter {
            Value::Null => return true,
            Value::Object(object) => object,
            other => panic!("reference: not a filter {other}"),
        };
        object.iter().all(|(key, value)| match key.as_str() {
            "$and" => value
                .as_array()
                .unwrap()
                .iter()
                .all(|child| reference_matches(child, schema, table, row)),
            "$or" => value
                .as_array()
                .unwrap()
                .iter()
                .any(|child| reference_matches(child, schema, table, row)),
            "$not" => !reference_matches(value, schema, table, row),
            name => {
                let column_index = schema.column_index(name).unwrap();
                let column = &schema.columns[column_index];
                let cell = table.columns[column_index][row];
                match value {
                    Value::Object(operators) => operators.iter().all(|(operator, operand)| {
                        reference_operator(column, cell, operator, operand)
                    }),
                    scalar => reference_operator(column, cell, "$eq", scalar),
                }
            }
        })
    }

    fn reference_equal(column: &AttributeColumn, cell: f64, operand: &Value) -> bool {
        if column.kind == AttributeKind::Categorical {
            let cell_text = column.dictionary.get(cell as usize).map(String::as_str);
            cell_text.is_some() && cell_text == operand.as_str()
        } else {
            cell == operand.as_f64().unwrap()
        }
    }

    fn reference_operator(
        column: &AttributeColumn,
        cell: f64,
        operator: &str,
        operand: &Value,
    ) -> bool {
        let number = || operand.as_f64().unwrap();
        let any_equal = || {
            operand
                .as_array()
                .unwrap()
                .iter()
                .any(|member| reference_equal(column, cell, member))
        };
        match operator {
            "$eq" => reference_equal(column, cell, operand),
            "$ne" => !reference_equal(column, cell, operand),
            "$gt" | "$gte" | "$lt" | "$lte" if column.kind == AttributeKind::Categorical => {
                let Some(text) = column.dictionary.get(cell as usize) else {
                    return false;
                };
                let operand = operand.as_str().unwrap();
                match operator {
                    "$gt" => text.as_str() > operand,
                    "$gte" => text.as_str() >= operand,
                    "$lt" => text.as_str() < operand,
                    _ => text.as_str() <= operand,
                }
            }
            "$gt" => cell > number(),
            "$gte" => cell >= number(),
            "$lt" => cell < number(),
            "$lte" => cell <= number(),
            "$in" => any_equal(),
            "$nin" => !any_equal(),
            other => panic!("reference: unknown operator {other}"),
        }
    }

    // ---- strategies: small tables with many ties, random filter trees ----

    fn table_strategy() -> impl Strategy<Value = AttributeTable> {
        let rank = prop_oneof![(0i32..6).prop_map(f64::from)];
        let score = prop_oneof![
            4 => prop::sample::select(vec![-2.5, -1.0, 0.0, 0.5, 1.0, 3.25]),
            1 => Just(f64::NAN),
        ];
        let genre = (0u32..3).prop_map(f64::from);
        prop::collection::vec((rank, score, genre), 0..40).prop_map(|rows| AttributeTable {
            num_rows: rows.len(),
            columns: vec![
                rows.iter().map(|row| row.0).collect(),
                rows.iter().map(|row| row.1).collect(),
                rows.iter().map(|row| row.2).collect(),
            ],
        })
    }

    fn number_strategy() -> impl Strategy<Value = Value> {
        // Mostly values the tables hold, so comparisons often land on cell edges.
        let present = prop::sample::select(vec![
            json!(-2.5),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(1),
            json!(2),
            json!(3),
            json!(3.25),
            json!(4),
            json!(5),
        ]);
        let absent = prop::sample::select(vec![json!(-3), json!(1.5), json!(7), json!(1e300)]);
        prop_oneof![6 => present, 1 => absent]
    }

    fn genre_strategy() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            json!("action"),
            json!("comedy"),
            json!("drama"),
            json!("horror"),
            json!(""),
            json!("crime"),
            json!("zzz"),
        ])
    }

    /// One condition on one column: a shorthand value or an object of one or two operators.
    fn condition_strategy(categorical: bool) -> BoxedStrategy<Value> {
        let scalar = if categorical {
            genre_strategy().boxed()
        } else {
            number_strategy().boxed()
        };
        let operators: Vec<&'static str> =
            vec!["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"];
        let operand = {
            let scalar = scalar.clone();
            (
                prop::sample::select(operators),
                prop::collection::vec(scalar.clone(), 0..4),
                scalar,
            )
                .prop_map(|(operator, members, single)| {
                    let operand = if operator == "$in" || operator == "$nin" {
                        Value::Array(members)
                    } else {
                        single
                    };
                    (operator.to_string(), operand)
                })
        };
        prop_oneof![
            1 => scalar,
            3 => prop::collection::vec(operand, 1..=2)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
        .boxed()
    }

    fn leaf_filter_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => condition_strategy(false).prop_map(|condition| json!({ "rank": condition })),
            3 => condition_strategy(false).prop_map(|condition| json!({ "score": condition })),
            3 => condition_strategy(true).prop_map(|condition| json!({ "genre": condition })),
            1 => Just(json!({})),
        ]
    }

    fn filter_strategy() -> impl Strategy<Value = Value> {
        leaf_filter_strategy().prop_recursive(3, 24, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..=3)
                    .prop_map(|children| json!({ "$and": children })),
                prop::collection::vec(inner.clone(), 1..=3)
                    .prop_map(|children| json!({ "$or": children })),
                inner.clone().prop_map(|child| json!({ "$not": child })),
                (inner.clone(), inner).prop_map(|(left, right)| {
                    // Several keys in one object mean AND; fall back to $and on a key clash.
                    let (Value::Object(mut left_map), Value::Object(right_map)) =
                        (left.clone(), right.clone())
                    else {
                        unreachable!()
                    };
                    if right_map.keys().any(|key| left_map.contains_key(key)) {
                        return json!({ "$and": [left, right] });
                    }
                    left_map.extend(right_map);
                    Value::Object(left_map)
                }),
            ]
        })
    }

    fn reference_bitmap(
        filter: &Value,
        schema: &AttributeSchema,
        table: &AttributeTable,
    ) -> Bitmap {
        (0..table.num_rows)
            .map(|row| reference_matches(filter, schema, table, row))
            .collect()
    }

    #[test]
    fn marked_ranges_set_exactly_their_bits() {
        for (start, end) in [
            (0, 0),
            (0, 1),
            (3, 64),
            (63, 65),
            (0, 128),
            (5, 200),
            (64, 130),
        ] {
            let mut bits = vec![0u64; 4];
            mark_range(&mut bits, start..end);
            for row in 0..256 {
                let set = bits[row / 64] & (1u64 << (row % 64)) != 0;
                assert_eq!(
                    set,
                    (start..end).contains(&row),
                    "{start}..{end}, row {row}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn evaluators_agree_with_reference(
            table in table_strategy(),
            filter_json in filter_strategy(),
            max_bits in 1u32..=3,
        ) {
            let schema = test_schema();
            let filter = Filter::parse(&filter_json, &schema).unwrap();
            let expected = reference_bitmap(&filter_json, &schema, &table);

            prop_assert_eq!(&filter.evaluate(&table), &expected, "filter {}", filter_json);
            // Row ranges (the fine clusters a scan probes) agree with the whole table's bits.
            let third = table.num_rows / 3;
            for rows in [0..third, third..table.num_rows, third..third] {
                prop_assert_eq!(
                    &filter.evaluate_rows(&table, rows.clone()),
                    &expected[rows.clone()],
                    "filter {} rows {:?}", filter_json, rows
                );
            }
            for row in 0..table.num_rows {
                prop_assert_eq!(filter.matches_row(&table, row), expected[row], "row {}", row);
            }
            // The index path (forced) and the scan path of matching_rows agree with the reference
            // inside disjoint row ranges.
            let ranges = [0..third / 2, third..table.num_rows];
            let expected_rows: Vec<u32> = ranges
                .iter()
                .flat_map(|range| range.clone().filter(|&row| expected[row]).map(|row| row as u32))
                .collect();
            let sorted = SortedColumns::new(table.columns.len());
            // The index path gives the rows in a column's value order: compared as sets.
            let in_row_order = |mut rows: Vec<u32>| {
                rows.sort_unstable();
                rows
            };
            let matching = filter.matching_rows(&table, &sorted, &ranges);
            if matching.ascending {
                prop_assert!(matching.rows.is_sorted());
            }
            prop_assert_eq!(&in_row_order(matching.rows), &expected_rows);
            if let Some(rows) = filter.matching_rows_by_index(&table, &sorted, &ranges, usize::MAX) {
                prop_assert_eq!(&in_row_order(rows), &expected_rows, "index path, filter {}", filter_json);
            }

            let quantizer = AttributeQuantizer::train(&table, max_bits);
            let codes = quantizer.encode(&table);
            let candidates = filter.evaluate_quantized(&quantizer, &codes);
            prop_assert_eq!(candidates.len(), table.num_rows);
            for row in expected.iter_ones() {
                prop_assert!(candidates[row], "quantized missed row {} for {}", row, filter_json);
            }
            let (possible, certain) = filter.evaluate_quantized_bounds(&quantizer, &codes);
            prop_assert_eq!(&possible, &candidates);
            // Per-group counts, by the scan and through the postings (forced), equal the
            // bitmaps' counts.
            let groups = [0u64, (third / 2) as u64, third as u64, table.num_rows as u64];
            let count = |bitmap: &Bitmap| -> Vec<u64> {
                groups
                    .windows(2)
                    .map(|range| bitmap[range[0] as usize..range[1] as usize].count_ones() as u64)
                    .collect()
            };
            let postings = ColumnPostings::new(table.columns.len());
            let counted = (count(&possible), count(&certain));
            prop_assert_eq!(
                &filter.count_quantized_bounds(&quantizer, &codes, &postings, &groups),
                &counted
            );
            prop_assert_eq!(
                &quantized::count_bounds_within(
                    &filter.expr, &quantizer, &codes, &postings, &groups, usize::MAX
                ),
                &counted,
                "postings path, filter {}", filter_json
            );
            prop_assert_eq!(
                &quantized::count_bounds_within(
                    &filter.expr, &quantizer, &codes, &postings, &groups, 0
                ),
                &counted,
                "scan path, filter {}", filter_json
            );
            for row in certain.iter_ones() {
                prop_assert!(expected[row], "row {} is certain but does not match {}", row, filter_json);
            }

            // Cells trained on the first half, widened to cover the second (as a compaction of
            // some partitions does for written rows), stay sound on the whole table.
            let half: Vec<u32> = (0..table.num_rows as u32 / 2).collect();
            let trained = AttributeQuantizer::train(&table.select_rows(&half), max_bits);
            if let Ok((widened, code_maps)) = trained.widened_to_cover(&table, max_bits) {
                let codes = widened.encode(&table);
                // The training half's old codes, mapped, are its new codes.
                let old_codes = trained.encode(&table);
                for (column, map) in code_maps.iter().enumerate() {
                    for row in 0..half.len() {
                        prop_assert_eq!(
                            map[old_codes.columns[column][row] as usize],
                            codes.columns[column][row]
                        );
                    }
                }
                let (possible, certain) = filter.evaluate_quantized_bounds(&widened, &codes);
                for row in expected.iter_ones() {
                    prop_assert!(possible[row], "widened cells missed row {} for {}", row, filter_json);
                }
                for row in certain.iter_ones() {
                    prop_assert!(expected[row], "widened cells: row {} certain, not matching {}", row, filter_json);
                }
            }

            // Every column has at most 7 distinct values (NaN included), so 8 bits is exact.
            let fine_quantizer = AttributeQuantizer::train(&table, 8);
            let fine_codes = fine_quantizer.encode(&table);
            prop_assert_eq!(filter.evaluate_quantized(&fine_quantizer, &fine_codes), expected);
        }
    }

    #[test]
    fn match_all_and_match_none_are_detected() {
        let schema = test_schema();
        assert!(Filter::match_all().is_match_all());
        assert!(Filter::default().is_match_all());
        assert!(Filter::parse(&Value::Null, &schema).unwrap().is_match_all());
        assert!(Filter::parse(&json!({}), &schema).unwrap().is_match_all());
        assert!(Filter::parse(&json!({"genre": {"$nin": []}}), &schema)
            .unwrap()
            .is_match_all());
        assert!(Filter::parse(&json!({"genre": {"$ne": "horror"}}), &schema)
            .unwrap()
            .is_match_all());
        assert!(Filter::parse(&json!({"rank": {"$in": []}}), &schema)
            .unwrap()
            .is_match_none());
        assert!(Filter::parse(&json!({"genre": "horror"}), &schema)
            .unwrap()
            .is_match_none());
        let ordinary = Filter::parse(&json!({"rank": 3}), &schema).unwrap();
        assert!(!ordinary.is_match_all() && !ordinary.is_match_none());
    }

    #[test]
    fn constant_filters_evaluate_to_uniform_bitmaps() {
        let schema = test_schema();
        let table = AttributeTable {
            num_rows: 70,
            columns: vec![vec![1.0; 70], vec![0.5; 70], vec![0.0; 70]],
        };
        let quantizer = AttributeQuantizer::train(&table, 4);
        let codes = quantizer.encode(&table);
        let all = Filter::match_all();
        assert_eq!(all.evaluate(&table).count_ones(), 70);
        assert_eq!(all.evaluate_quantized(&quantizer, &codes).count_ones(), 70);
        let none = Filter::parse(&json!({"genre": "horror"}), &schema).unwrap();
        assert_eq!(none.evaluate(&table).count_ones(), 0);
        assert_eq!(none.evaluate(&table).len(), 70);
        assert_eq!(none.evaluate_quantized(&quantizer, &codes).count_ones(), 0);
    }

    #[test]
    fn integers_beyond_the_stored_range_compare_exactly() {
        // Cells at the edges of what an integer column may hold, and filter values just past
        // them, where an f64 comparison of the rounded value would go wrong were 2^53 storable.
        let max = crate::attributes::MAX_INTEGER_MAGNITUDE;
        let cells: Vec<i64> = vec![max, max - 1, -max, 0, 1];
        let table = AttributeTable {
            num_rows: cells.len(),
            columns: vec![
                cells.iter().map(|&cell| cell as f64).collect(),
                vec![0.0; cells.len()],
                vec![0.0; cells.len()],
            ],
        };
        let schema = test_schema();
        let quantizer = AttributeQuantizer::train(&table, 4);
        let codes = quantizer.encode(&table);
        let operands: Vec<i128> = vec![
            i128::from(max) + 2,
            i128::from(max) + 1,
            i128::from(max),
            -i128::from(max) - 1,
            -i128::from(max) - 2,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(u64::MAX),
        ];
        type Holds = fn(i128, i128) -> bool;
        let operators: [(&str, Holds); 6] = [
            ("$eq", |cell, value| cell == value),
            ("$ne", |cell, value| cell != value),
            ("$gt", |cell, value| cell > value),
            ("$gte", |cell, value| cell >= value),
            ("$lt", |cell, value| cell < value),
            ("$lte", |cell, value| cell <= value),
        ];
        for &operand in &operands {
            // serde_json keeps integers as i64 / u64, as a request body parses them.
            let value: Value = serde_json::from_str(&operand.to_string()).unwrap();
            for (operator, holds) in operators {
                let filter =
                    Filter::parse(&json!({"rank": {operator: value.clone()}}), &schema).unwrap();
                let exact = filter.evaluate(&table);
                let quantized = filter.evaluate_quantized(&quantizer, &codes);
                for (row, &cell) in cells.iter().enumerate() {
                    let expected = holds(i128::from(cell), operand);
                    assert_eq!(exact[row], expected, "{cell} {operator} {operand}");
                    // The quantized pass may keep a row the exact one drops, never the reverse.
                    assert!(quantized[row] || !expected, "{cell} {operator} {operand}");
                }
            }
        }
        // A fractional value on an integer column compares exactly too.
        let filter = Filter::parse(&json!({"rank": {"$gt": 0.5}}), &schema).unwrap();
        let passed: Vec<usize> = filter.evaluate(&table).iter_ones().collect();
        assert_eq!(passed, vec![0, 1, 4]);
    }

    #[test]
    fn describe_is_readable() {
        let schema = test_schema();
        let filter = Filter::parse(
            &json!({
                "rank": 3,
                "$or": [
                    {"genre": {"$in": ["drama", "action", "horror"]}},
                    {"$not": {"score": {"$gt": 0.5}}},
                    {"score": {"$gte": 1, "$lt": 2}}
                ]
            }),
            &schema,
        )
        .unwrap();
        assert_eq!(
            filter.describe(&schema),
            "(genre IN (\"action\", \"drama\") OR NOT (score > 0.5) OR (score >= 1 AND score < 2)) AND rank = 3"
        );
        assert_eq!(Filter::match_all().describe(&schema), "TRUE");
        let negated =
            Filter::parse(&json!({"$not": {"genre": {"$nin": ["comedy"]}}}), &schema).unwrap();
        assert_eq!(negated.describe(&schema), "genre IN (\"comedy\")");
    }

    #[test]
    fn not_folds_only_exact_negations() {
        let leaf = |predicate| {
            Expr::Leaf(Leaf {
                column: 0,
                predicate,
            })
        };
        assert_eq!(
            Expr::not(leaf(Predicate::Eq(1.0))),
            leaf(Predicate::Ne(1.0))
        );
        assert_eq!(
            Expr::not(leaf(Predicate::In(vec![1.0]))),
            leaf(Predicate::Nin(vec![1.0]))
        );
        assert_eq!(
            Expr::not(leaf(Predicate::Gt(1.0))),
            Expr::Not(Box::new(leaf(Predicate::Gt(1.0))))
        );
        assert_eq!(
            Expr::not(Expr::not(leaf(Predicate::Gt(1.0)))),
            leaf(Predicate::Gt(1.0))
        );
    }

    #[test]
    fn set_contains_handles_long_sets_and_signed_zero() {
        let long_set: Vec<f64> = (0..20).map(|value| f64::from(value) * 2.0).collect();
        assert!(set_contains(&long_set, 0.0));
        assert!(set_contains(&long_set, -0.0));
        assert!(set_contains(&long_set, 38.0));
        assert!(!set_contains(&long_set, 37.0));
        assert!(!set_contains(&long_set, 40.0));
        assert!(!set_contains(&long_set, f64::NAN));
        assert!(set_contains(&[-0.0], 0.0));
    }

    #[test]
    fn pack_flags_puts_flag_i_at_bit_i() {
        for position in 0..64 {
            let mut flags = [0u8; 64];
            flags[position] = 1;
            assert_eq!(pack_flags(&flags), 1u64 << position);
        }
        assert_eq!(pack_flags(&[1u8; 64]), u64::MAX);
        let values: Vec<u32> = (0..150).collect();
        let words = bits_from_values(&values, |value| value % 3 == 0);
        assert_eq!(words.len(), 3);
        for value in 0..150usize {
            assert_eq!((words[value / 64] >> (value % 64)) & 1 == 1, value % 3 == 0);
        }
    }

    #[test]
    fn words_to_bitmap_clears_tail_bits() {
        let bitmap = words_to_bitmap(vec![u64::MAX, u64::MAX], 70);
        assert_eq!(bitmap.len(), 70);
        assert_eq!(bitmap.count_ones(), 70);
        assert_eq!(bitmap.as_raw_slice()[1], (1 << 6) - 1);
    }
}
