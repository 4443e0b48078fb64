//! Exact evaluation of a compiled filter on a raw [`AttributeTable`].
//!
//! Owns the row-at-a-time evaluator (`matches_row`, for single checks) and the column-at-a-time
//! one (`evaluate`, for whole partitions): each leaf scans one column into 64-row words, and
//! AND/OR/NOT combine words, so the cost is one branch-free pass per leaf plus a pass per
//! combination over `num_rows / 64` words. Must not change the semantics of
//! `Predicate::matches` (plain IEEE comparisons): the column scans restate them in vectorizable
//! form, and the proptest in `mod.rs` holds both evaluators to a naive reference.

use super::{bits_from_values, pack_flags, set_contains, words_to_bitmap, Expr, Leaf, Predicate};
use std::ops::Range;

use crate::attributes::{AttributeTable, Bitmap};

/// Returns whether `row` of `table` satisfies `expr`.
pub(super) fn matches_row(expr: &Expr, table: &AttributeTable, row: usize) -> bool {
    match expr {
        Expr::Const(value) => *value,
        Expr::Leaf(leaf) => leaf.predicate.matches(table.columns[leaf.column][row]),
        Expr::And(children) => children.iter().all(|child| matches_row(child, table, row)),
        Expr::Or(children) => children.iter().any(|child| matches_row(child, table, row)),
        Expr::Not(child) => !matches_row(child, table, row),
    }
}

/// Returns which of the rows `rows` of `table` satisfy `expr`: bit `i` is row `rows.start + i`.
pub(super) fn evaluate_rows(expr: &Expr, table: &AttributeTable, rows: Range<usize>) -> Bitmap {
    let num_rows = rows.len();
    match evaluate_words(expr, table, &rows) {
        RowBits::Uniform(value) => Bitmap::repeat(value, num_rows),
        RowBits::Words(words) => words_to_bitmap(words, num_rows),
    }
}

/// A per-row outcome, kept symbolic when it is the same for every row so constants cost no pass.
enum RowBits {
    Uniform(bool),
    /// One bit per row; bits past `num_rows` in the last word are unspecified.
    Words(Vec<u64>),
}

fn evaluate_words(expr: &Expr, table: &AttributeTable, rows: &Range<usize>) -> RowBits {
    match expr {
        Expr::Const(value) => RowBits::Uniform(*value),
        Expr::Leaf(leaf) => RowBits::Words(scan_leaf(leaf, table, rows)),
        Expr::And(children) => {
            let mut accumulated_opt: Option<Vec<u64>> = None;
            for child in children {
                match evaluate_words(child, table, rows) {
                    RowBits::Uniform(true) => {}
                    RowBits::Uniform(false) => return RowBits::Uniform(false),
                    RowBits::Words(words) => {
                        let accumulated = match accumulated_opt.as_mut() {
                            None => accumulated_opt.insert(words),
                            Some(accumulated) => {
                                for (target, word) in accumulated.iter_mut().zip(&words) {
                                    *target &= word;
                                }
                                accumulated
                            }
                        };
                        // The remaining children cannot revive a row, so skip their scans.
                        if accumulated.iter().all(|&word| word == 0) {
                            return RowBits::Uniform(false);
                        }
                    }
                }
            }
            accumulated_opt.map_or(RowBits::Uniform(true), RowBits::Words)
        }
        Expr::Or(children) => {
            let mut accumulated_opt: Option<Vec<u64>> = None;
            for child in children {
                match evaluate_words(child, table, rows) {
                    RowBits::Uniform(false) => {}
                    RowBits::Uniform(true) => return RowBits::Uniform(true),
                    RowBits::Words(words) => match accumulated_opt.as_mut() {
                        None => accumulated_opt = Some(words),
                        Some(accumulated) => {
                            for (target, word) in accumulated.iter_mut().zip(&words) {
                                *target |= word;
                            }
                        }
                    },
                }
            }
            accumulated_opt.map_or(RowBits::Uniform(false), RowBits::Words)
        }
        Expr::Not(child) => match evaluate_words(child, table, rows) {
            RowBits::Uniform(value) => RowBits::Uniform(!value),
            RowBits::Words(mut words) => {
                for word in &mut words {
                    *word = !*word;
                }
                RowBits::Words(words)
            }
        },
    }
}

/// Returns one bit per row of the leaf's column. Each predicate gets its own monomorphised loop
/// so the comparison is inlined and the loop stays branch-free.
fn scan_leaf(leaf: &Leaf, table: &AttributeTable, rows: &Range<usize>) -> Vec<u64> {
    let values = &table.columns[leaf.column][rows.clone()];
    match &leaf.predicate {
        Predicate::Eq(x) => {
            let x = *x;
            bits_from_values(values, |value| value == x)
        }
        Predicate::Ne(x) => {
            let x = *x;
            bits_from_values(values, |value| value != x)
        }
        Predicate::Gt(x) => {
            let x = *x;
            bits_from_values(values, |value| value > x)
        }
        Predicate::Gte(x) => {
            let x = *x;
            bits_from_values(values, |value| value >= x)
        }
        Predicate::Lt(x) => {
            let x = *x;
            bits_from_values(values, |value| value < x)
        }
        Predicate::Lte(x) => {
            let x = *x;
            bits_from_values(values, |value| value <= x)
        }
        Predicate::In(set) => scan_set(values, set, false),
        Predicate::Nin(set) => scan_set(values, set, true),
    }
}

/// Sets up to this size are tested by comparing each value with every member: each member
/// costs one vectorized equality pass, about a third of a nanosecond per row.
const MAX_COMPARED_SET_LEN: usize = 16;

/// Larger sets whose members are all integers in `0..=MAX_LOOKUP_MEMBER` (dictionary codes,
/// small labels) are tested with a lookup table, a flat few nanoseconds per row.
const MAX_LOOKUP_MEMBER: i32 = 65_535;

/// Other sets up to this size are still compared member by member; larger ones use binary search.
const MAX_LINEAR_SET_LEN: usize = 32;

/// Returns one bit per row: membership of the value in the sorted `set`, negated if `negate`.
///
/// Every path but the binary search (large sets of non-integers, rare) is branch-free per row:
/// with random data a data-dependent branch mispredicts often, which costs more than the
/// comparisons themselves.
fn scan_set(values: &[f64], set: &[f64], negate: bool) -> Vec<u64> {
    debug_assert!(
        set.windows(2).all(|pair| pair[0] < pair[1]),
        "set must be sorted and deduplicated"
    );
    if set.len() <= MAX_COMPARED_SET_LEN {
        return bits_from_values_any(values, set, negate);
    }
    let is_small_integer = |member: f64| {
        (0.0..=f64::from(MAX_LOOKUP_MEMBER)).contains(&member) && member.fract() == 0.0
    };
    if set.iter().all(|&member| is_small_integer(member)) {
        let largest_member = set.last().copied().unwrap_or(0.0) as i32;
        let mut is_member = vec![false; largest_member as usize + 1];
        for &member in set {
            is_member[member as usize] = true;
        }
        // `as i32` saturates (NaN gives 0) and the clamp keeps the index in the table; the
        // round trip then rejects every value that is not exactly the integer it was mapped to.
        // (A conversion to i32 is one instruction; one to usize is not, on x86-64.)
        return bits_from_values(values, |value| {
            let index = (value as i32).clamp(0, largest_member);
            let hit = is_member[index as usize] & (f64::from(index) == value);
            hit != negate
        });
    }
    if set.len() <= MAX_LINEAR_SET_LEN {
        return bits_from_values_any(values, set, negate);
    }
    bits_from_values(values, |value| set_contains(set, value) != negate)
}

/// Returns one bit per row: whether the value equals any member, negated if `negate`. Loops
/// over members inside each 64-row block, so each pass is a vectorizable equality scan.
fn bits_from_values_any(values: &[f64], members: &[f64], negate: bool) -> Vec<u64> {
    let mut words = Vec::with_capacity(values.len().div_ceil(64));
    let mut chunks = values.chunks_exact(64);
    for chunk in &mut chunks {
        let block: &[f64; 64] = chunk.try_into().expect("chunks_exact(64) yields 64 values");
        words.push(block_any(block, members, negate));
    }
    let remainder = chunks.remainder();
    if !remainder.is_empty() {
        // NaN padding equals no member; the padded bits are past `num_rows` anyway.
        let mut padded = [f64::NAN; 64];
        padded[..remainder.len()].copy_from_slice(remainder);
        words.push(block_any(&padded, members, negate));
    }
    words
}

#[inline]
fn block_any(block: &[f64; 64], members: &[f64], negate: bool) -> u64 {
    // Hits stay 64 bits wide, the width of the vector compare result, until all members are
    // done: narrowing to bytes once per block instead of once per member halves the work.
    let mut hits = [0u64; 64];
    for &member in members {
        for (hit, &value) in hits.iter_mut().zip(block) {
            *hit |= u64::from(value == member);
        }
    }
    let mut flags = [0u8; 64];
    for (flag, &hit) in flags.iter_mut().zip(&hits) {
        *flag = u8::from(hit != 0) ^ u8::from(negate);
    }
    pack_flags(&flags)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::attributes::{AttributeColumn, AttributeKind, AttributeSchema};
    use crate::filter::Filter;

    fn schema() -> AttributeSchema {
        AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "nnz".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "weight".into(),
                    kind: AttributeKind::Float,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "genre".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: vec!["comedy".into(), "drama".into(), "war".into()],
                },
            ],
        }
    }

    /// Six rows; row 5 has a missing (NaN) weight.
    fn table() -> AttributeTable {
        AttributeTable {
            num_rows: 6,
            columns: vec![
                vec![100.0, 200.0, 250.0, 300.0, 300.0, 400.0],
                vec![-1.5, 0.0, 0.5, 2.0, 0.5, f64::NAN],
                vec![0.0, 1.0, 2.0, 1.0, 0.0, 2.0],
            ],
        }
    }

    /// Returns the matching rows by both exact evaluators, checking that they agree.
    fn matching_rows(filter_json: Value) -> Vec<usize> {
        let table = table();
        let filter = Filter::parse(&filter_json, &schema()).unwrap();
        let bitmap = filter.evaluate(&table);
        assert_eq!(bitmap.len(), table.num_rows);
        let rows: Vec<usize> = bitmap.iter_ones().collect();
        let row_by_row: Vec<usize> = (0..table.num_rows)
            .filter(|&row| filter.matches_row(&table, row))
            .collect();
        assert_eq!(rows, row_by_row, "evaluators disagree on {filter_json}");
        rows
    }

    #[test]
    fn comparison_operators() {
        assert_eq!(matching_rows(json!({"nnz": {"$eq": 300}})), vec![3, 4]);
        assert_eq!(matching_rows(json!({"nnz": 300})), vec![3, 4]);
        assert_eq!(
            matching_rows(json!({"nnz": {"$ne": 300}})),
            vec![0, 1, 2, 5]
        );
        assert_eq!(matching_rows(json!({"nnz": {"$gt": 250}})), vec![3, 4, 5]);
        assert_eq!(
            matching_rows(json!({"nnz": {"$gte": 250}})),
            vec![2, 3, 4, 5]
        );
        assert_eq!(matching_rows(json!({"nnz": {"$lt": 250}})), vec![0, 1]);
        assert_eq!(matching_rows(json!({"nnz": {"$lte": 250}})), vec![0, 1, 2]);
        assert_eq!(
            matching_rows(json!({"nnz": {"$gte": 200, "$lte": 300}})),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            matching_rows(json!({"nnz": {"$eq": 250.5}})),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn set_operators() {
        assert_eq!(
            matching_rows(json!({"nnz": {"$in": [100, 400, 7]}})),
            vec![0, 5]
        );
        assert_eq!(
            matching_rows(json!({"nnz": {"$nin": [100, 400]}})),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            matching_rows(json!({"nnz": {"$in": []}})),
            Vec::<usize>::new()
        );
        assert_eq!(
            matching_rows(json!({"nnz": {"$nin": []}})),
            vec![0, 1, 2, 3, 4, 5]
        );
        let many: Vec<i64> = (0..50).map(|step| step * 50).collect();
        assert_eq!(
            matching_rows(json!({"nnz": {"$in": many}})),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn categorical_operators() {
        assert_eq!(matching_rows(json!({"genre": "drama"})), vec![1, 3]);
        assert_eq!(
            matching_rows(json!({"genre": {"$ne": "drama"}})),
            vec![0, 2, 4, 5]
        );
        assert_eq!(
            matching_rows(json!({"genre": {"$in": ["war", "comedy"]}})),
            vec![0, 2, 4, 5]
        );
        assert_eq!(
            matching_rows(json!({"genre": {"$nin": ["war", "horror"]}})),
            vec![0, 1, 3, 4]
        );
        assert_eq!(
            matching_rows(json!({"genre": "horror"})),
            Vec::<usize>::new()
        );
        assert_eq!(
            matching_rows(json!({"genre": {"$nin": ["horror"]}})),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn logical_operators() {
        assert_eq!(
            matching_rows(json!({"nnz": 300, "genre": "drama"})),
            vec![3]
        );
        assert_eq!(
            matching_rows(json!({"$and": [{"nnz": {"$gt": 100}}, {"genre": "war"}]})),
            vec![2, 5]
        );
        assert_eq!(
            matching_rows(json!({"$or": [{"nnz": 100}, {"genre": "war"}]})),
            vec![0, 2, 5]
        );
        assert_eq!(
            matching_rows(json!({"$not": {"genre": "comedy"}})),
            vec![1, 2, 3, 5]
        );
        assert_eq!(
            matching_rows(json!({"$not": {"$or": [{"nnz": 100}, {"weight": {"$gt": 1}}]}})),
            vec![1, 2, 4, 5]
        );
        assert_eq!(matching_rows(json!({})), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(matching_rows(Value::Null), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            matching_rows(json!({"$and": [{"nnz": 1}, {"nnz": 2}]})),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn missing_values_fail_comparisons_and_pass_negations() {
        assert_eq!(
            matching_rows(json!({"weight": {"$gte": -10}})),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            matching_rows(json!({"weight": {"$lt": 10}})),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            matching_rows(json!({"$not": {"weight": {"$lt": 10}}})),
            vec![5]
        );
        assert_eq!(
            matching_rows(json!({"weight": {"$ne": 0.5}})),
            vec![0, 1, 3, 5]
        );
        assert_eq!(
            matching_rows(json!({"weight": {"$nin": [0.5, 2]}})),
            vec![0, 1, 5]
        );
        assert_eq!(matching_rows(json!({"weight": {"$eq": 0}})), vec![1]);
    }

    #[test]
    fn evaluates_across_word_boundaries() {
        let num_rows = 200;
        let table = AttributeTable {
            num_rows,
            columns: vec![
                (0..num_rows).map(|row| row as f64).collect(),
                vec![0.0; num_rows],
                (0..num_rows).map(|row| (row % 3) as f64).collect(),
            ],
        };
        let filter = Filter::parse(
            &json!({"$or": [{"nnz": {"$gte": 63, "$lt": 130}}, {"$not": {"genre": {"$ne": "war"}}}]}),
            &schema(),
        )
        .unwrap();
        let bitmap = filter.evaluate(&table);
        for row in 0..num_rows {
            let expected = (63..130).contains(&row) || row % 3 == 2;
            assert_eq!(bitmap[row], expected, "row {row}");
            assert_eq!(filter.matches_row(&table, row), expected, "row {row}");
        }
    }

    #[test]
    fn set_scans_agree_with_set_contains() {
        let values = [
            0.0,
            -0.0,
            1.0,
            2.0,
            2.5,
            3.0,
            -1.0,
            65_535.0,
            65_536.0,
            1e300,
            f64::NAN,
            f64::INFINITY,
        ];
        let sets: Vec<Vec<f64>> = vec![
            vec![0.0, 2.0, 3.0],
            vec![-1.0, 2.5],
            vec![65_535.0],
            (0..20).map(f64::from).collect(),
            (0..20)
                .rev()
                .map(|step| 65_535.0 - f64::from(step) * 3449.0)
                .collect(),
            (0..20).map(|step| f64::from(step) * 0.5).collect(),
            (0..40).map(|step| f64::from(step) * 0.5).collect(),
            (0..40).map(|step| f64::from(step) - 5.0).collect(),
        ];
        for set in &sets {
            for negate in [false, true] {
                let words = scan_set(&values, set, negate);
                for (row, &value) in values.iter().enumerate() {
                    let bit = (words[0] >> row) & 1 == 1;
                    assert_eq!(
                        bit,
                        set_contains(set, value) != negate,
                        "{value} in {set:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_table_gives_empty_bitmap() {
        let table = AttributeTable {
            num_rows: 0,
            columns: vec![vec![], vec![], vec![]],
        };
        let filter = Filter::parse(&json!({"nnz": {"$gt": 1}}), &schema()).unwrap();
        assert_eq!(filter.evaluate(&table).len(), 0);
        assert_eq!(Filter::match_all().evaluate(&table).len(), 0);
    }
}
