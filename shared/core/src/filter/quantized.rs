//! Attribute quantization and the conservative filter evaluation on quantized attributes.
//!
//! Owns [`AttributeQuantizer`] (per column, at most `2^max_bits` cells, each described by the
//! smallest and largest training value in it), [`QuantizedAttributes`] (one `u8` cell id per row
//! and column), and the evaluation of a filter on cell ids, which yields a superset of the exact
//! matches. The coordinator runs it over all vectors, so it must stay a table lookup per row and
//! column. Must not read raw attribute values during evaluation.
//!
//! # Cells
//! If a column has at most `2^max_bits` distinct values (NaN, a missing value, counts as one and
//! gets a cell of its own), each value gets its own cell and evaluation is exact. Otherwise the
//! sorted values are cut into cells of roughly equal row counts, never splitting a run of equal
//! values. A value's cell is found by binary search over the cells' lower edges (their minima):
//! a value below every edge goes to the first cell, a value above every cell to the last finite
//! cell.
//!
//! # Why the evaluation is sound
//! For each cell the evaluator gives each leaf predicate a verdict: `Always` if every value in
//! `[min, max]` satisfies it, `Never` if none does, `Maybe` otherwise. Encoding a training row
//! puts its value `v` in a cell with `min <= v <= max` (the cell's lower edge is its `min`, the
//! next cell starts above its `max`), so the verdict of a row's cell never contradicts the
//! row's exact outcome: `Always` implies true, `Never` implies false. The NaN cell holds only
//! NaN, so its verdict is the exact outcome on NaN. AND/OR are combined in Kleene logic
//! (`Never < Maybe < Always`, AND = min, OR = max) and NOT swaps `Never` and `Always`; each of
//! these maps verdicts consistent with their inputs' exact outcomes to a verdict consistent with
//! the combined exact outcome. So the root verdict of a row is `Never` only when the row does
//! not match, and keeping every row whose verdict is not `Never` misses no match.
//!
//! This holds for rows whose values lie inside their cell's recorded `[min, max]`, which is
//! guaranteed for the table the quantizer was trained on. Encode other tables (with the same
//! columns) only if their values stay within the training cells; a value outside them gets an
//! end cell and may then be wrongly excluded. So train on the table you encode.
//!
//! # Evaluation layout
//! Per filter, every subtree that reads a single column (e.g. `nnz >= 200 AND nnz <= 300`, or a
//! whole `$or` on one column) collapses into one 256-entry verdict table, and sibling
//! conjuncts/disjuncts on the same column merge into one table; evaluating a Kleene formula per
//! cell gives the same result as per row, because a row's verdicts depend only on its cell.
//! Each table is then applied to one `u8` code column, 64 rows per word, into two bitmaps,
//! "possible" (Maybe or Always) and "certain" (Always). AND/OR combine them word by word,
//! NOT maps `(possible, certain)` to `(!certain, !possible)`, and the result is "possible".

use serde::{Deserialize, Serialize};

use super::index::{rows_with_groups, ColumnPostings, INDEX_ROW_COST};
use super::{words_to_bitmap, Expr, Leaf, Predicate};
use crate::attributes::{AttributeTable, Bitmap};

/// The number of distinct `u8` codes, hence the size of every verdict table.
const NUM_CODES: usize = 256;

/// Per-column quantizers of an attribute table, one per column in schema order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeQuantizer {
    /// One quantizer per attribute column, in schema order.
    pub columns: Vec<ColumnQuantizer>,
}

/// The cells of one column: finite cells in ascending order, each with the smallest and largest
/// training value in it, then optionally a cell holding only NaN.
///
/// Deserialization checks these invariants, so a decoded quantizer keeps the soundness of the
/// evaluation. Note that JSON cannot carry infinite values: a column trained with `±inf` values
/// needs a binary format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ColumnQuantizerParts")]
pub struct ColumnQuantizer {
    /// Smallest training value of each finite cell; strictly ascending. Also the lower edges.
    cell_mins: Vec<f64>,
    /// Largest training value of each finite cell; `cell_mins[i] <= cell_maxs[i] < cell_mins[i + 1]`.
    cell_maxs: Vec<f64>,
    /// Whether the training column held NaN; its cell then comes after the finite cells.
    has_nan_cell: bool,
}

/// The serialized fields of a [`ColumnQuantizer`], checked before use.
#[derive(Deserialize)]
struct ColumnQuantizerParts {
    cell_mins: Vec<f64>,
    cell_maxs: Vec<f64>,
    has_nan_cell: bool,
}

impl TryFrom<ColumnQuantizerParts> for ColumnQuantizer {
    type Error = String;

    fn try_from(parts: ColumnQuantizerParts) -> Result<Self, Self::Error> {
        if parts.cell_mins.len() != parts.cell_maxs.len() {
            return Err(format!(
                "column quantizer has {} cell minima but {} cell maxima",
                parts.cell_mins.len(),
                parts.cell_maxs.len()
            ));
        }
        let num_cells = parts.cell_mins.len() + usize::from(parts.has_nan_cell);
        if num_cells > NUM_CODES {
            return Err(format!(
                "column quantizer has {num_cells} cells, at most {NUM_CODES} fit a u8 code"
            ));
        }
        for cell in 0..parts.cell_mins.len() {
            let (min, max) = (parts.cell_mins[cell], parts.cell_maxs[cell]);
            if min.is_nan() || max.is_nan() || min > max {
                return Err(format!(
                    "column quantizer cell {cell} has bounds [{min}, {max}]"
                ));
            }
            if let Some(&next_min) = parts.cell_mins.get(cell + 1) {
                // A NaN `next_min` is rejected when its own cell is checked.
                if max >= next_min {
                    return Err(format!(
                        "column quantizer cell {cell} (max {max}) overlaps cell {} (min {next_min})",
                        cell + 1
                    ));
                }
            }
        }
        Ok(ColumnQuantizer {
            cell_mins: parts.cell_mins,
            cell_maxs: parts.cell_maxs,
            has_nan_cell: parts.has_nan_cell,
        })
    }
}

/// Quantized attributes: one cell id per row and column, column-major (`columns[c][row]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuantizedAttributes {
    /// Number of rows (vectors).
    pub num_rows: usize,
    /// One `Vec` of `num_rows` cell ids per attribute column.
    pub columns: Vec<Vec<u8>>,
}

impl AttributeQuantizer {
    /// Trains one quantizer per column of `table` with at most `2^max_bits` cells each.
    ///
    /// `max_bits` is clamped into `1..=8` (a cell id is a `u8`). Cells describe the values of
    /// `table` only: encode this same table (see the module docs).
    pub fn train(table: &AttributeTable, max_bits: u32) -> AttributeQuantizer {
        let max_cells = 1usize << max_bits.clamp(1, 8);
        AttributeQuantizer {
            columns: table
                .columns
                .iter()
                .map(|values| ColumnQuantizer::train(&values[..table.num_rows], max_cells))
                .collect(),
        }
    }

    /// Returns the cell id of every value of `table`.
    ///
    /// Works for any table with the same columns, but the cells stay a sound description only of
    /// the values the quantizer was trained on. Panics if the column counts differ.
    pub fn encode(&self, table: &AttributeTable) -> QuantizedAttributes {
        assert_eq!(
            self.columns.len(),
            table.columns.len(),
            "attribute quantizer and table have different column counts"
        );
        QuantizedAttributes {
            num_rows: table.num_rows,
            columns: self
                .columns
                .iter()
                .zip(&table.columns)
                .map(|(quantizer, values)| {
                    values[..table.num_rows]
                        .iter()
                        .map(|&value| quantizer.cell_of(value))
                        .collect()
                })
                .collect(),
        }
    }

    /// Returns the number of cells of `column` (at least 1). Panics if `column` is out of range.
    pub fn num_cells(&self, column: usize) -> usize {
        self.columns[column].num_cells()
    }

    /// Returns this quantizer with cells that also describe the values of `table` (same
    /// columns), and per column the new code of each old code. A value outside the `[min, max]`
    /// of the cell it encodes to gets a cell of its own while the column has fewer than
    /// `2^max_bits` cells (so columns of few distinct values stay exact), else stretches that
    /// cell to it. The evaluation stays sound for the training values and for `table`'s. Fails,
    /// naming the column, where a full column would have to blur a cell holding one value, or
    /// `table` holds NaN where training did not; train anew then.
    ///
    /// Panics if the column counts differ.
    pub fn widened_to_cover(
        &self,
        table: &AttributeTable,
        max_bits: u32,
    ) -> std::result::Result<(AttributeQuantizer, Vec<Vec<u8>>), String> {
        assert_eq!(self.columns.len(), table.columns.len());
        let max_cells = 1usize << max_bits.clamp(1, 8);
        let mut widened = self.clone();
        let mut code_maps = Vec::with_capacity(self.columns.len());
        for (column, (quantizer, values)) in
            widened.columns.iter_mut().zip(&table.columns).enumerate()
        {
            let old_num_finite = quantizer.cell_mins.len();
            // Which old finite cell each cell is (inserted cells are none).
            let mut origins: Vec<Option<usize>> = (0..old_num_finite).map(Some).collect();
            for &value in &values[..table.num_rows] {
                quantizer
                    .widen_to(value, max_cells, &mut origins)
                    .map_err(|reason| format!("column {column}: {reason}"))?;
            }
            // One entry per old code: its finite cells, then the NaN cell (or the one cell of
            // unknown contents of a column trained on nothing), which stays last.
            let mut code_map = vec![0u8; self.columns[column].num_cells()];
            for (new_cell, origin) in origins.iter().enumerate() {
                if let Some(old_cell) = origin {
                    code_map[*old_cell] = new_cell as u8;
                }
            }
            if quantizer.has_nan_cell {
                code_map[old_num_finite] = quantizer.cell_mins.len() as u8;
            }
            code_maps.push(code_map);
        }
        Ok((widened, code_maps))
    }
}

/// What the training values in one cell were.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CellContents {
    /// Finite (or infinite) values, all within `[min, max]`.
    Range { min: f64, max: f64 },
    /// Only NaN.
    NaN,
    /// No training value: nothing is known about rows that get this cell.
    Unknown,
}

impl ColumnQuantizer {
    /// Trains the cells of one column from its values, with at most `max_cells` (>= 2) cells.
    fn train(values: &[f64], max_cells: usize) -> ColumnQuantizer {
        debug_assert!((2..=NUM_CODES).contains(&max_cells));
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let has_nan_cell = sorted.len() < values.len();
        sorted.sort_unstable_by(f64::total_cmp);

        // Runs of equal values (IEEE equality, so -0.0 and 0.0, adjacent in total order, share one).
        let mut runs: Vec<ValueRun> = Vec::new();
        for &value in &sorted {
            match runs.last_mut() {
                Some(run) if run.max == value => {
                    run.max = value;
                    run.num_rows += 1;
                }
                _ => runs.push(ValueRun {
                    min: value,
                    max: value,
                    num_rows: 1,
                }),
            }
        }

        let max_finite_cells = max_cells - usize::from(has_nan_cell);
        let cells = group_runs(&runs, sorted.len(), max_finite_cells);
        ColumnQuantizer {
            cell_mins: cells.iter().map(|cell| cell.min).collect(),
            cell_maxs: cells.iter().map(|cell| cell.max).collect(),
            has_nan_cell,
        }
    }

    /// Returns the number of cells (at least 1: an empty training column still has one cell,
    /// of unknown contents).
    pub fn num_cells(&self) -> usize {
        (self.cell_mins.len() + usize::from(self.has_nan_cell)).max(1)
    }

    /// Returns the cell of `value`.
    fn cell_of(&self, value: f64) -> u8 {
        let num_finite_cells = self.cell_mins.len();
        let cell = if value.is_nan() {
            // Without a NaN cell (NaN unseen in training) the last cell is as good as any.
            self.num_cells() - 1
        } else if num_finite_cells == 0 {
            0
        } else {
            self.cell_mins
                .partition_point(|&lower_edge| lower_edge <= value)
                .saturating_sub(1)
        };
        u8::try_from(cell).expect("a quantizer has at most 256 cells, checked at train and decode")
    }

    /// Makes the cells cover `value`, `origins` following the cells; see
    /// [`AttributeQuantizer::widened_to_cover`].
    fn widen_to(
        &mut self,
        value: f64,
        max_cells: usize,
        origins: &mut Vec<Option<usize>>,
    ) -> std::result::Result<(), String> {
        if value.is_nan() {
            return if self.has_nan_cell {
                Ok(())
            } else {
                Err("NaN where the cells hold none".to_string())
            };
        }
        let cell = usize::from(self.cell_of(value));
        let covered = self
            .cell_mins
            .get(cell)
            .is_some_and(|&min| (min..=self.cell_maxs[cell]).contains(&value));
        if covered {
            return Ok(());
        }
        // `cell_of` puts a value below every edge in cell 0 and one past a cell's max (below
        // the next edge) in that cell: a cell of its own goes just before or after that one,
        // and stretching the edge it passed instead keeps the cells ordered too.
        let before = self.cell_mins.first().is_none_or(|&min| value < min);
        let position = if before { 0 } else { cell + 1 };
        if self.num_cells() < max_cells || self.cell_mins.is_empty() {
            self.cell_mins.insert(position, value);
            self.cell_maxs.insert(position, value);
            origins.insert(position, None);
            return Ok(());
        }
        let (min, max) = (self.cell_mins[cell], self.cell_maxs[cell]);
        if min == max {
            return Err(format!(
                "{value} is not the one value {min} of its cell, and all {max_cells} cells are taken"
            ));
        }
        if before {
            self.cell_mins[cell] = value;
        } else {
            self.cell_maxs[cell] = value;
        }
        Ok(())
    }

    /// Returns what the training values in `cell` were.
    fn contents(&self, cell: usize) -> CellContents {
        match (self.cell_mins.get(cell), self.cell_maxs.get(cell)) {
            (Some(&min), Some(&max)) => CellContents::Range { min, max },
            _ if self.has_nan_cell && cell == self.cell_mins.len() => CellContents::NaN,
            _ => CellContents::Unknown,
        }
    }
}

/// A run of equal values in the sorted training column (`min == max` under IEEE equality).
#[derive(Debug, Clone, Copy)]
struct ValueRun {
    min: f64,
    max: f64,
    num_rows: usize,
}

/// Returns at most `max_cells` cells covering `runs` in order, with roughly equal row counts:
/// one run per cell when they fit, else each cell takes runs until it is as close as it can get
/// to an equal share of the rows left.
fn group_runs(runs: &[ValueRun], num_rows: usize, max_cells: usize) -> Vec<ValueRun> {
    let mut cells: Vec<ValueRun> = Vec::with_capacity(max_cells.min(runs.len()));
    let mut next_run = 0;
    let mut num_rows_left = num_rows;
    while next_run < runs.len() {
        let num_cells_left = max_cells - cells.len();
        let num_runs_left = runs.len() - next_run;
        if num_runs_left <= num_cells_left {
            cells.extend_from_slice(&runs[next_run..]);
            break;
        }
        let target_rows = num_rows_left as f64 / num_cells_left as f64;
        let mut cell = runs[next_run];
        next_run += 1;
        // Take more runs while that brings the cell closer to its share, leaving one run per
        // remaining cell at least (the last cell takes everything left).
        while next_run < runs.len() {
            let num_runs_left = runs.len() - next_run;
            let is_last_cell = num_cells_left == 1;
            if !is_last_cell && num_runs_left < num_cells_left {
                break;
            }
            let next = runs[next_run];
            let undershoot = target_rows - cell.num_rows as f64;
            let overshoot = (cell.num_rows + next.num_rows) as f64 - target_rows;
            if !is_last_cell && overshoot > undershoot {
                break;
            }
            cell.max = next.max;
            cell.num_rows += next.num_rows;
            next_run += 1;
        }
        num_rows_left -= cell.num_rows;
        cells.push(cell);
    }
    debug_assert!(cells.len() <= max_cells);
    cells
}

/// A three-valued outcome for a row or a cell, ordered so that AND is `min` and OR is `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Never,
    Maybe,
    Always,
}

impl Verdict {
    fn from_bool(value: bool) -> Verdict {
        if value {
            Verdict::Always
        } else {
            Verdict::Never
        }
    }

    fn negate(self) -> Verdict {
        match self {
            Verdict::Never => Verdict::Always,
            Verdict::Maybe => Verdict::Maybe,
            Verdict::Always => Verdict::Never,
        }
    }
}

/// Returns the verdict of `predicate` on every value a cell may hold.
fn predicate_verdict(predicate: &Predicate, contents: CellContents) -> Verdict {
    let (min, max) = match contents {
        CellContents::Range { min, max } => (min, max),
        CellContents::NaN => return Verdict::from_bool(predicate.matches(f64::NAN)),
        CellContents::Unknown => return Verdict::Maybe,
    };
    // `verdict(all, none)`: Always if every value in [min, max] passes, Never if none does.
    let verdict = |all: bool, none: bool| {
        if all {
            Verdict::Always
        } else if none {
            Verdict::Never
        } else {
            Verdict::Maybe
        }
    };
    let is_single_value = min == max;
    match predicate {
        Predicate::Eq(x) => verdict(is_single_value && min == *x, *x < min || *x > max),
        Predicate::Ne(x) => predicate_verdict(&Predicate::Eq(*x), contents).negate(),
        Predicate::Gt(x) => verdict(min > *x, max <= *x),
        Predicate::Gte(x) => verdict(min >= *x, max < *x),
        Predicate::Lt(x) => verdict(max < *x, min >= *x),
        Predicate::Lte(x) => verdict(max <= *x, min > *x),
        Predicate::In(set) | Predicate::Nin(set) => {
            let first_not_below = set.partition_point(|&member| member < min);
            let any_in_range = first_not_below < set.len() && set[first_not_below] <= max;
            let in_verdict = verdict(is_single_value && any_in_range, !any_in_range);
            if matches!(predicate, Predicate::In(_)) {
                in_verdict
            } else {
                in_verdict.negate()
            }
        }
    }
}

/// Returns the Kleene verdict of `expr` on one cell of its (single) column.
fn cell_verdict(expr: &Expr, contents: CellContents) -> Verdict {
    match expr {
        Expr::Const(value) => Verdict::from_bool(*value),
        Expr::Leaf(leaf) => predicate_verdict(&leaf.predicate, contents),
        Expr::And(children) => children
            .iter()
            .map(|child| cell_verdict(child, contents))
            .min()
            .unwrap_or(Verdict::Always),
        Expr::Or(children) => children
            .iter()
            .map(|child| cell_verdict(child, contents))
            .max()
            .unwrap_or(Verdict::Never),
        Expr::Not(child) => cell_verdict(child, contents).negate(),
    }
}

/// Which columns an expression reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColumnUse {
    None,
    One(usize),
    Many,
}

fn column_use(expr: &Expr) -> ColumnUse {
    match expr {
        Expr::Const(_) => ColumnUse::None,
        Expr::Leaf(Leaf { column, .. }) => ColumnUse::One(*column),
        Expr::Not(child) => column_use(child),
        Expr::And(children) | Expr::Or(children) => {
            let mut combined = ColumnUse::None;
            for child in children {
                combined = match (combined, column_use(child)) {
                    (ColumnUse::None, other) | (other, ColumnUse::None) => other,
                    (ColumnUse::One(a), ColumnUse::One(b)) if a == b => ColumnUse::One(a),
                    _ => return ColumnUse::Many,
                };
            }
            combined
        }
    }
}

/// The evaluation plan of a filter: single-column subtrees replaced by verdict tables.
enum Plan {
    Uniform(Verdict),
    /// The verdict of each code of one column.
    Scan {
        column: usize,
        table: Box<[Verdict; NUM_CODES]>,
    },
    And(Vec<Plan>),
    Or(Vec<Plan>),
    Not(Box<Plan>),
}

/// Returns the verdict table of a single-column expression: codes beyond the column's cells
/// (which `encode` never produces) get `Maybe` to stay conservative.
fn verdict_table(expr: &Expr, quantizer: &ColumnQuantizer) -> Box<[Verdict; NUM_CODES]> {
    let mut table = Box::new([Verdict::Maybe; NUM_CODES]);
    let num_cells = quantizer.num_cells().min(NUM_CODES);
    for (cell, verdict) in table.iter_mut().enumerate().take(num_cells) {
        *verdict = cell_verdict(expr, quantizer.contents(cell));
    }
    table
}

fn plan(expr: &Expr, quantizer: &AttributeQuantizer) -> Plan {
    match column_use(expr) {
        ColumnUse::None => Plan::Uniform(cell_verdict(expr, CellContents::Unknown)),
        ColumnUse::One(column) => Plan::Scan {
            column,
            table: verdict_table(expr, &quantizer.columns[column]),
        },
        ColumnUse::Many => match expr {
            Expr::And(children) => Plan::And(plan_children(children, quantizer, Verdict::min)),
            Expr::Or(children) => Plan::Or(plan_children(children, quantizer, Verdict::max)),
            Expr::Not(child) => Plan::Not(Box::new(plan(child, quantizer))),
            // Constants and leaves read at most one column; "maybe" would be sound anyway.
            Expr::Const(_) | Expr::Leaf(_) => Plan::Uniform(Verdict::Maybe),
        },
    }
}

/// Returns the plans of the children of an AND (`combine` = min) or OR (`combine` = max),
/// merging the single-column children of each column into one table.
fn plan_children(
    children: &[Expr],
    quantizer: &AttributeQuantizer,
    combine: fn(Verdict, Verdict) -> Verdict,
) -> Vec<Plan> {
    let mut tables: Vec<(usize, Box<[Verdict; NUM_CODES]>)> = Vec::new();
    let mut plans = Vec::new();
    for child in children {
        match column_use(child) {
            ColumnUse::One(column) => {
                let child_table = verdict_table(child, &quantizer.columns[column]);
                match tables.iter_mut().find(|(existing, _)| *existing == column) {
                    Some((_, table)) => {
                        for (merged, &verdict) in table.iter_mut().zip(child_table.iter()) {
                            *merged = combine(*merged, verdict);
                        }
                    }
                    None => tables.push((column, child_table)),
                }
            }
            _ => plans.push(plan(child, quantizer)),
        }
    }
    let scans = tables
        .into_iter()
        .map(|(column, table)| Plan::Scan { column, table });
    // Scans first: they are cheap and may empty an AND early.
    scans.chain(plans).collect()
}

/// Per-row Kleene outcomes: uniform, or two bitmaps (Maybe-or-Always, Always).
enum KleeneBits {
    Uniform(Verdict),
    /// Bits past `num_rows` in the last words are unspecified; `certain` implies `possible`
    /// on the rows.
    Words {
        possible: Vec<u64>,
        certain: Vec<u64>,
    },
}

impl KleeneBits {
    fn and(self, other: KleeneBits) -> KleeneBits {
        match (self, other) {
            (KleeneBits::Uniform(a), KleeneBits::Uniform(b)) => KleeneBits::Uniform(a.min(b)),
            (KleeneBits::Uniform(Verdict::Never), _) | (_, KleeneBits::Uniform(Verdict::Never)) => {
                KleeneBits::Uniform(Verdict::Never)
            }
            (KleeneBits::Uniform(Verdict::Always), words)
            | (words, KleeneBits::Uniform(Verdict::Always)) => words,
            (
                KleeneBits::Uniform(Verdict::Maybe),
                KleeneBits::Words {
                    possible,
                    mut certain,
                },
            )
            | (
                KleeneBits::Words {
                    possible,
                    mut certain,
                },
                KleeneBits::Uniform(Verdict::Maybe),
            ) => {
                certain.fill(0);
                KleeneBits::Words { possible, certain }
            }
            (
                KleeneBits::Words {
                    mut possible,
                    mut certain,
                },
                KleeneBits::Words {
                    possible: other_possible,
                    certain: other_certain,
                },
            ) => {
                for (target, word) in possible.iter_mut().zip(&other_possible) {
                    *target &= word;
                }
                for (target, word) in certain.iter_mut().zip(&other_certain) {
                    *target &= word;
                }
                KleeneBits::Words { possible, certain }
            }
        }
    }

    fn not(self) -> KleeneBits {
        match self {
            KleeneBits::Uniform(verdict) => KleeneBits::Uniform(verdict.negate()),
            KleeneBits::Words { possible, certain } => KleeneBits::Words {
                possible: certain.into_iter().map(|word| !word).collect(),
                certain: possible.into_iter().map(|word| !word).collect(),
            },
        }
    }

    /// Returns the disjunction, by De Morgan: `a OR b = NOT (NOT a AND NOT b)` holds in Kleene
    /// logic too.
    fn or(self, other: KleeneBits) -> KleeneBits {
        self.not().and(other.not()).not()
    }

    fn is_never(&self) -> bool {
        match self {
            KleeneBits::Uniform(verdict) => *verdict == Verdict::Never,
            KleeneBits::Words { possible, .. } => possible.iter().all(|&word| word == 0),
        }
    }
}

fn run_plan(plan: &Plan, codes: &QuantizedAttributes) -> KleeneBits {
    match plan {
        Plan::Uniform(verdict) => KleeneBits::Uniform(*verdict),
        Plan::Scan { column, table } => {
            scan_codes(&codes.columns[*column][..codes.num_rows], table)
        }
        Plan::And(children) => {
            let mut accumulated = KleeneBits::Uniform(Verdict::Always);
            for child in children {
                accumulated = accumulated.and(run_plan(child, codes));
                // The remaining children cannot revive a row, so skip their scans.
                if accumulated.is_never() {
                    return KleeneBits::Uniform(Verdict::Never);
                }
            }
            accumulated
        }
        Plan::Or(children) => {
            let mut accumulated = KleeneBits::Uniform(Verdict::Never);
            for child in children {
                accumulated = accumulated.or(run_plan(child, codes));
            }
            accumulated
        }
        Plan::Not(child) => run_plan(child, codes).not(),
    }
}

/// Returns the Kleene outcome of each row from its code, 64 rows per word.
///
/// One table lookup per row gives a byte with bit 0 "possible" and bit 1 "certain"; each block
/// of 64 such bytes is then packed into one word per bit plane.
fn scan_codes(codes: &[u8], table: &[Verdict; NUM_CODES]) -> KleeneBits {
    let mut verdict_bits = [0u8; NUM_CODES];
    for (bits, verdict) in verdict_bits.iter_mut().zip(table.iter()) {
        *bits = match verdict {
            Verdict::Never => 0b00,
            Verdict::Maybe => 0b01,
            Verdict::Always => 0b11,
        };
    }
    let num_words = codes.len().div_ceil(64);
    let mut possible = Vec::with_capacity(num_words);
    let mut certain = Vec::with_capacity(num_words);
    let mut bits_per_row = [0u8; 64];
    for chunk in codes.chunks(64) {
        if chunk.len() < 64 {
            bits_per_row = [0u8; 64];
        }
        for (bits, &code) in bits_per_row.iter_mut().zip(chunk) {
            *bits = verdict_bits[usize::from(code)];
        }
        let (possible_word, certain_word) = pack_two_planes(&bits_per_row);
        possible.push(possible_word);
        certain.push(certain_word);
    }
    KleeneBits::Words { possible, certain }
}

/// Returns bit 0 and bit 1 of the 64 bytes as two words, byte `i` at bit `i`.
#[inline]
fn pack_two_planes(bytes: &[u8; 64]) -> (u64, u64) {
    // See `pack_flags`: the multiply gathers the low bit of eight bytes into the top byte.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    let mut low_plane = 0u64;
    let mut high_plane = 0u64;
    for (group, eight_bytes) in bytes.chunks_exact(8).enumerate() {
        let mut lanes = [0u8; 8];
        lanes.copy_from_slice(eight_bytes);
        let lanes = u64::from_le_bytes(lanes);
        low_plane |= ((lanes & LOW_BITS).wrapping_mul(GATHER) >> 56) << (8 * group);
        high_plane |= (((lanes >> 1) & LOW_BITS).wrapping_mul(GATHER) >> 56) << (8 * group);
    }
    (low_plane, high_plane)
}

/// Returns the rows whose verdict under `expr` is not `Never` (a superset of the matches) and
/// the rows whose verdict is `Always` (a subset of the matches).
pub(super) fn evaluate_bounds(
    expr: &Expr,
    quantizer: &AttributeQuantizer,
    codes: &QuantizedAttributes,
) -> (Bitmap, Bitmap) {
    bounds_of_plan(&plan(expr, quantizer), codes)
}

/// Returns the `(possible, certain)` bitmaps of a planned filter.
fn bounds_of_plan(plan: &Plan, codes: &QuantizedAttributes) -> (Bitmap, Bitmap) {
    match run_plan(plan, codes) {
        KleeneBits::Uniform(verdict) => (
            Bitmap::repeat(verdict != Verdict::Never, codes.num_rows),
            Bitmap::repeat(verdict == Verdict::Always, codes.num_rows),
        ),
        KleeneBits::Words { possible, certain } => (
            words_to_bitmap(possible, codes.num_rows),
            words_to_bitmap(certain, codes.num_rows),
        ),
    }
}

/// Returns the rows whose Kleene verdict under `expr` is not `Never`.
pub(super) fn evaluate(
    expr: &Expr,
    quantizer: &AttributeQuantizer,
    codes: &QuantizedAttributes,
) -> Bitmap {
    let plan = plan(expr, quantizer);
    match run_plan(&plan, codes) {
        KleeneBits::Uniform(verdict) => Bitmap::repeat(verdict != Verdict::Never, codes.num_rows),
        KleeneBits::Words { possible, .. } => words_to_bitmap(possible, codes.num_rows),
    }
}

/// Returns the verdict of `plan` for one row, from its codes.
fn row_verdict(plan: &Plan, codes: &QuantizedAttributes, row: usize) -> Verdict {
    match plan {
        Plan::Uniform(verdict) => *verdict,
        Plan::Scan { column, table } => table[usize::from(codes.columns[*column][row])],
        Plan::And(children) => {
            let mut verdict = Verdict::Always;
            for child in children {
                verdict = verdict.min(row_verdict(child, codes, row));
                if verdict == Verdict::Never {
                    break;
                }
            }
            verdict
        }
        Plan::Or(children) => {
            let mut verdict = Verdict::Never;
            for child in children {
                verdict = verdict.max(row_verdict(child, codes, row));
                if verdict == Verdict::Always {
                    break;
                }
            }
            verdict
        }
        Plan::Not(child) => row_verdict(child, codes, row).negate(),
    }
}

/// Returns per group the rows whose verdict is not `Never` and those whose verdict is
/// `Always`; see `Filter::count_quantized_bounds`.
pub(super) fn count_bounds(
    expr: &Expr,
    quantizer: &AttributeQuantizer,
    codes: &QuantizedAttributes,
    postings: &ColumnPostings,
    group_offsets: &[u64],
) -> (Vec<u64>, Vec<u64>) {
    let max_index_rows = codes.num_rows / INDEX_ROW_COST;
    count_bounds_within(
        expr,
        quantizer,
        codes,
        postings,
        group_offsets,
        max_index_rows,
    )
}

/// [`count_bounds`], visiting rows through the postings when the driving column admits fewer
/// than `max_index_rows` rows.
pub(super) fn count_bounds_within(
    expr: &Expr,
    quantizer: &AttributeQuantizer,
    codes: &QuantizedAttributes,
    postings: &ColumnPostings,
    group_offsets: &[u64],
    max_index_rows: usize,
) -> (Vec<u64>, Vec<u64>) {
    let num_groups = group_offsets.len().saturating_sub(1);
    let plan = plan(expr, quantizer);
    // A column scan at the root or among the root's conjuncts bounds every match: the rows of
    // its admitted codes are all the rows that may match.
    let drivers: Vec<(usize, &[Verdict; NUM_CODES])> = match &plan {
        Plan::Scan { column, table } => vec![(*column, &**table)],
        Plan::And(children) => children
            .iter()
            .filter_map(|child| match child {
                Plan::Scan { column, table } => Some((*column, &**table)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut best_opt: Option<(usize, &[Verdict; NUM_CODES], &super::index::CodePostings)> = None;
    for (column, table) in drivers {
        let column_postings = postings.column(column, &codes.columns[column][..codes.num_rows]);
        let admitted: usize = (0..NUM_CODES)
            .filter(|&code| table[code] != Verdict::Never)
            .map(|code| column_postings.rows(code).len())
            .sum();
        if best_opt.as_ref().is_none_or(|best| admitted < best.0) {
            best_opt = Some((admitted, table, column_postings));
        }
    }
    if let Some((admitted, table, column_postings)) = best_opt {
        if admitted < max_index_rows {
            let mut possible = vec![0u64; num_groups];
            let mut certain = vec![0u64; num_groups];
            // A filter on this one column: a row's verdict is its code's, so each admitted
            // code adds its counts per group.
            if matches!(plan, Plan::Scan { .. }) {
                let group_counts = column_postings.group_counts(group_offsets);
                for code in (0..NUM_CODES).filter(|&code| table[code] != Verdict::Never) {
                    let (groups, counts) = group_counts.of_code(code);
                    for (&group, &count) in groups.iter().zip(counts) {
                        possible[group as usize] += u64::from(count);
                    }
                    if table[code] == Verdict::Always {
                        for (&group, &count) in groups.iter().zip(counts) {
                            certain[group as usize] += u64::from(count);
                        }
                    }
                }
                return (possible, certain);
            }
            for code in (0..NUM_CODES).filter(|&code| table[code] != Verdict::Never) {
                for (row, group) in rows_with_groups(column_postings.rows(code), group_offsets) {
                    let verdict = row_verdict(&plan, codes, row as usize);
                    if verdict == Verdict::Never {
                        continue;
                    }
                    possible[group] += 1;
                    if verdict == Verdict::Always {
                        certain[group] += 1;
                    }
                }
            }
            return (possible, certain);
        }
    }
    // One column, or a conjunction of columns, whose admitted and certain codes each form one
    // run (ranges, equalities): count each group's rows in the runs with byte compares the
    // compiler vectorizes, without building bitmaps. (Under AND, a row may match when every
    // column admits it and must when every column is certain.)
    let leaves: Vec<&Plan> = match &plan {
        Plan::Scan { .. } => vec![&plan],
        Plan::And(children) => children.iter().collect(),
        _ => Vec::new(),
    };
    let runs: Option<Vec<ColumnRuns>> = leaves
        .iter()
        .map(|leaf| match leaf {
            Plan::Scan { column, table } => Some(ColumnRuns {
                column: *column,
                possible: code_run(table, |verdict| verdict != Verdict::Never)?,
                certain: code_run(table, |verdict| verdict == Verdict::Always)?,
            }),
            _ => None,
        })
        .collect();
    if let Some(runs) = runs.filter(|runs| !runs.is_empty()) {
        let count = |certain: bool| -> Vec<u64> {
            let column_runs: Option<Vec<(&[u8], u8, u8)>> = runs
                .iter()
                .map(|runs| {
                    let (first, last) = if certain { runs.certain } else { runs.possible }?;
                    Some((&codes.columns[runs.column][..codes.num_rows], first, last))
                })
                .collect();
            group_offsets
                .windows(2)
                .map(|range| match &column_runs {
                    // A column that admits no code: no row of any group.
                    None => 0,
                    Some(column_runs) => {
                        count_in_runs(column_runs, range[0] as usize..range[1] as usize)
                    }
                })
                .collect()
        };
        return (count(false), count(true));
    }
    let (possible_rows, certain_rows) = bounds_of_plan(&plan, codes);
    let count = |bitmap: &Bitmap| -> Vec<u64> {
        group_offsets
            .windows(2)
            .map(|range| bitmap[range[0] as usize..range[1] as usize].count_ones() as u64)
            .collect()
    };
    (count(&possible_rows), count(&certain_rows))
}

/// Returns the codes `wanted` keeps as one run: `Some(None)` when it keeps none,
/// `Some(Some((first, last)))` when they are `first..=last`, `None` when they are not one run.
#[allow(clippy::option_option)]
fn code_run(
    table: &[Verdict; NUM_CODES],
    wanted: impl Fn(Verdict) -> bool,
) -> Option<Option<(u8, u8)>> {
    let first = match table.iter().position(|&verdict| wanted(verdict)) {
        None => return Some(None),
        Some(first) => first,
    };
    let last = table.iter().rposition(|&verdict| wanted(verdict))?;
    table[first..=last]
        .iter()
        .all(|&verdict| wanted(verdict))
        .then_some(Some((first as u8, last as u8)))
}

/// One column's codes a filter admits and is certain of, each as one run (`None`: no code).
struct ColumnRuns {
    column: usize,
    possible: Option<(u8, u8)>,
    certain: Option<(u8, u8)>,
}

/// Returns how many rows of `rows` have, in every column of `column_runs`, a code inside the
/// column's run `first..=last`.
fn count_in_runs(column_runs: &[(&[u8], u8, u8)], rows: std::ops::Range<usize>) -> u64 {
    // Blocks of 255 rows: each block's count fits a byte, and each pass over a block is a
    // compare (or compare-and) the compiler does 16-32 rows per instruction.
    const BLOCK: usize = 255;
    let mut total = 0u64;
    let mut start = rows.start;
    while start < rows.end {
        let end = (start + BLOCK).min(rows.end);
        let mut inside = [1u8; BLOCK];
        let inside = &mut inside[..end - start];
        for &(codes, first, last) in column_runs {
            let span = last.wrapping_sub(first);
            for (flag, &code) in inside.iter_mut().zip(&codes[start..end]) {
                *flag &= u8::from(code.wrapping_sub(first) <= span);
            }
        }
        total += u64::from(inside.iter().fold(0u8, |sum, &flag| sum.wrapping_add(flag)));
        start = end;
    }
    total
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attributes::{AttributeColumn, AttributeKind, AttributeSchema};
    use crate::filter::Filter;

    #[test]
    fn code_runs_are_found_and_counted_as_one_by_one() {
        let mut table = [Verdict::Never; NUM_CODES];
        assert_eq!(code_run(&table, |v| v != Verdict::Never), Some(None));
        table[3..=9].fill(Verdict::Maybe);
        table[5] = Verdict::Always;
        assert_eq!(
            code_run(&table, |v| v != Verdict::Never),
            Some(Some((3, 9)))
        );
        assert_eq!(
            code_run(&table, |v| v == Verdict::Always),
            Some(Some((5, 5)))
        );
        table[7] = Verdict::Never;
        assert_eq!(code_run(&table, |v| v != Verdict::Never), None);
        let all = [Verdict::Always; NUM_CODES];
        assert_eq!(
            code_run(&all, |v| v == Verdict::Always),
            Some(Some((0, 255)))
        );
        // Past a block of 255 and over the whole byte range.
        let codes: Vec<u8> = (0..2_000u32).map(|i| (i * 37 % 256) as u8).collect();
        let other: Vec<u8> = (0..2_000u32).map(|i| (i * 11 % 7) as u8).collect();
        for (first, last) in [(0u8, 255u8), (3, 9), (200, 255), (0, 0), (17, 17)] {
            for rows in [0..2_000, 0..255, 300..301, 700..1_500, 5..5] {
                let expected = rows
                    .clone()
                    .filter(|&row| (first..=last).contains(&codes[row]))
                    .count();
                let one = count_in_runs(&[(&codes, first, last)], rows.clone());
                assert_eq!(one, expected as u64, "{first}..={last} {rows:?}");
                let both_expected = rows
                    .clone()
                    .filter(|&row| (first..=last).contains(&codes[row]) && other[row] <= 2)
                    .count();
                let both = count_in_runs(&[(&codes, first, last), (&other, 0, 2)], rows.clone());
                assert_eq!(both, both_expected as u64, "{first}..={last} {rows:?} and");
            }
        }
    }

    #[test]
    fn cell_edges_survive_the_json_round_trip_bit_for_bit() {
        // The coordinator object carries the quantizer as JSON: an edge off by one ulp after
        // decoding would make `$eq` on it skip the partitions holding the value.
        let max = crate::attributes::MAX_INTEGER_MAGNITUDE as f64;
        let mut values = vec![max, -max, 0.1, 1e-300, 2.5e300, 123_456.789_012_345_68];
        values.extend((0..500).map(|i| f64::from(i) * 0.013));
        let quantizer = AttributeQuantizer::train(&one_column_table(values), 8);
        let json = serde_json::to_string(&quantizer).unwrap();
        let decoded: AttributeQuantizer = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded, quantizer);
    }

    fn one_column_table(values: Vec<f64>) -> AttributeTable {
        AttributeTable {
            num_rows: values.len(),
            columns: vec![values],
        }
    }

    fn one_column_schema(kind: AttributeKind) -> AttributeSchema {
        AttributeSchema {
            columns: vec![AttributeColumn {
                name: "x".into(),
                kind,
                dictionary: vec![],
            }],
        }
    }

    fn ranges(quantizer: &ColumnQuantizer) -> Vec<(f64, f64)> {
        quantizer
            .cell_mins
            .iter()
            .copied()
            .zip(quantizer.cell_maxs.iter().copied())
            .collect()
    }

    #[test]
    fn few_distinct_values_get_one_cell_each() {
        let table = one_column_table(vec![3.0, 1.0, 3.0, 2.0, 1.0, 3.0]);
        let quantizer = AttributeQuantizer::train(&table, 2);
        assert_eq!(quantizer.num_cells(0), 3);
        assert_eq!(
            ranges(&quantizer.columns[0]),
            vec![(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
        );
        assert_eq!(quantizer.encode(&table).columns[0], vec![2, 0, 2, 1, 0, 2]);
    }

    #[test]
    fn many_values_get_equal_frequency_cells() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let table = one_column_table(values);
        let quantizer = AttributeQuantizer::train(&table, 2);
        assert_eq!(
            ranges(&quantizer.columns[0]),
            vec![(0.0, 249.0), (250.0, 499.0), (500.0, 749.0), (750.0, 999.0)]
        );
        let codes = quantizer.encode(&table);
        for row in 0..1000 {
            assert_eq!(usize::from(codes.columns[0][row]), row / 250);
        }
    }

    #[test]
    fn ties_are_never_split_across_cells() {
        // 60% of the rows hold 5.0; the rest are distinct.
        let mut values = vec![5.0; 60];
        values.extend((0..40).map(|step| f64::from(step) * 0.25));
        let table = one_column_table(values.clone());
        for max_bits in 1..=4 {
            let quantizer = AttributeQuantizer::train(&table, max_bits);
            assert!(quantizer.num_cells(0) <= 1 << max_bits);
            let codes = quantizer.encode(&table);
            let code_of_five = codes.columns[0][0];
            for (row, &value) in values.iter().enumerate() {
                if value == 5.0 {
                    assert_eq!(codes.columns[0][row], code_of_five);
                }
                let (min, max) = ranges(&quantizer.columns[0])[usize::from(codes.columns[0][row])];
                assert!(
                    min <= value && value <= max,
                    "value {value} outside cell [{min}, {max}]"
                );
            }
        }
    }

    #[test]
    fn cell_counts_stay_within_the_bit_budget() {
        let values: Vec<f64> = (0..5000)
            .map(|step| f64::from((step * 7919) % 1013))
            .collect();
        let table = one_column_table(values);
        for max_bits in 0..=10 {
            let quantizer = AttributeQuantizer::train(&table, max_bits);
            let max_cells = 1usize << max_bits.clamp(1, 8);
            assert_eq!(quantizer.num_cells(0), max_cells, "max_bits {max_bits}");
            let codes = quantizer.encode(&table);
            assert!(codes.columns[0]
                .iter()
                .all(|&code| usize::from(code) < max_cells));
        }
    }

    #[test]
    fn nan_gets_its_own_cell() {
        let table = one_column_table(vec![f64::NAN, 1.0, 2.0, f64::NAN, 3.0]);
        let quantizer = AttributeQuantizer::train(&table, 1);
        // One finite cell plus the NaN cell.
        assert_eq!(quantizer.num_cells(0), 2);
        assert_eq!(quantizer.encode(&table).columns[0], vec![1, 0, 0, 1, 0]);
        let exact_quantizer = AttributeQuantizer::train(&table, 2);
        assert_eq!(exact_quantizer.num_cells(0), 4);
        assert_eq!(
            exact_quantizer.encode(&table).columns[0],
            vec![3, 0, 1, 3, 2]
        );
    }

    #[test]
    fn values_outside_the_training_range_go_to_end_cells() {
        let quantizer = AttributeQuantizer::train(&one_column_table(vec![10.0, 20.0, 30.0]), 2);
        let other = one_column_table(vec![
            -1e300,
            5.0,
            15.0,
            25.0,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ]);
        assert_eq!(
            quantizer.encode(&other).columns[0],
            vec![0, 0, 0, 1, 2, 2, 2]
        );
    }

    #[test]
    fn cells_grow_or_widen_to_new_values_but_never_blur_a_one_value_cell() {
        // Two cells of 1 bit's worth each: [0, 3] and [10, 13]; no room for a third.
        let values: Vec<f64> = [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0].to_vec();
        let quantizer = AttributeQuantizer::train(&one_column_table(values), 1);
        assert_eq!(
            ranges(&quantizer.columns[0]),
            vec![(0.0, 3.0), (10.0, 13.0)]
        );
        let (widened, code_maps) = quantizer
            .widened_to_cover(&one_column_table(vec![-5.0, 5.0, 20.0, 12.0]), 1)
            .unwrap();
        assert_eq!(ranges(&widened.columns[0]), vec![(-5.0, 5.0), (10.0, 20.0)]);
        assert_eq!(code_maps, vec![vec![0, 1]]);
        // Codes of old values are unchanged.
        let old = one_column_table(vec![0.0, 3.0, 10.0, 13.0]);
        assert_eq!(widened.encode(&old), quantizer.encode(&old));
        // A column of few values has one cell per value: a new one gets its own cell while
        // there is room (old codes move), and is refused once there is none.
        let exact = AttributeQuantizer::train(&one_column_table(vec![1.0, 2.0, 2.0, f64::NAN]), 2);
        let (grown, code_maps) = exact
            .widened_to_cover(&one_column_table(vec![2.0, 1.5, 1.0]), 2)
            .unwrap();
        assert_eq!(
            ranges(&grown.columns[0]),
            vec![(1.0, 1.0), (1.5, 1.5), (2.0, 2.0)]
        );
        // Old codes 0 (1.0), 1 (2.0) and 2 (NaN) are now 0, 2 and 3.
        assert_eq!(code_maps, vec![vec![0, 2, 3]]);
        let old = one_column_table(vec![1.0, 2.0, f64::NAN]);
        let remapped: Vec<u8> = exact.encode(&old).columns[0]
            .iter()
            .map(|&code| code_maps[0][code as usize])
            .collect();
        assert_eq!(remapped, grown.encode(&old).columns[0]);
        let refused = grown
            .widened_to_cover(&one_column_table(vec![1.7]), 2)
            .unwrap_err();
        assert!(refused.contains("one value"), "{refused}");
        assert!(AttributeQuantizer::train(&one_column_table(vec![1.0]), 8)
            .widened_to_cover(&one_column_table(vec![f64::NAN]), 8)
            .unwrap_err()
            .contains("NaN"));
    }

    #[test]
    fn degenerate_columns_have_one_cell() {
        let empty = AttributeQuantizer::train(&one_column_table(vec![]), 3);
        assert_eq!(empty.num_cells(0), 1);
        assert_eq!(
            empty.encode(&one_column_table(vec![4.0])).columns[0],
            vec![0]
        );
        let constant = AttributeQuantizer::train(&one_column_table(vec![7.0; 10]), 3);
        assert_eq!(constant.num_cells(0), 1);
        let only_nan = AttributeQuantizer::train(&one_column_table(vec![f64::NAN; 3]), 3);
        assert_eq!(only_nan.num_cells(0), 1);
        assert_eq!(
            only_nan.encode(&one_column_table(vec![f64::NAN])).columns[0],
            vec![0]
        );
    }

    #[test]
    fn leaf_verdicts_on_a_range_cell() {
        let range = CellContents::Range { min: 2.0, max: 4.0 };
        let point = CellContents::Range { min: 3.0, max: 3.0 };
        use Verdict::{Always, Maybe, Never};
        let cases: Vec<(Predicate, Verdict, Verdict)> = vec![
            (Predicate::Eq(3.0), Maybe, Always),
            (Predicate::Eq(5.0), Never, Never),
            (Predicate::Ne(3.0), Maybe, Never),
            (Predicate::Ne(1.0), Always, Always),
            (Predicate::Gt(1.0), Always, Always),
            (Predicate::Gt(2.0), Maybe, Always),
            (Predicate::Gt(4.0), Never, Never),
            (Predicate::Gte(4.0), Maybe, Never),
            (Predicate::Gte(2.0), Always, Always),
            (Predicate::Lt(2.0), Never, Never),
            (Predicate::Lt(4.0), Maybe, Always),
            (Predicate::Lt(4.5), Always, Always),
            (Predicate::Lte(2.0), Maybe, Never),
            (Predicate::Lte(1.0), Never, Never),
            (Predicate::In(vec![1.0, 3.0]), Maybe, Always),
            (Predicate::In(vec![1.0, 5.0]), Never, Never),
            (Predicate::Nin(vec![3.0]), Maybe, Never),
            (Predicate::Nin(vec![0.0, 9.0]), Always, Always),
        ];
        for (predicate, on_range, on_point) in cases {
            assert_eq!(
                predicate_verdict(&predicate, range),
                on_range,
                "{predicate:?} on range"
            );
            assert_eq!(
                predicate_verdict(&predicate, point),
                on_point,
                "{predicate:?} on point"
            );
        }
        assert_eq!(
            predicate_verdict(&Predicate::Ne(1.0), CellContents::NaN),
            Always
        );
        assert_eq!(
            predicate_verdict(&Predicate::Gte(1.0), CellContents::NaN),
            Never
        );
        assert_eq!(
            predicate_verdict(&Predicate::Eq(1.0), CellContents::Unknown),
            Maybe
        );
    }

    #[test]
    fn coarse_cells_give_a_superset_and_drop_whole_cells() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let table = one_column_table(values);
        let schema = one_column_schema(AttributeKind::Integer);
        let quantizer = AttributeQuantizer::train(&table, 2);
        let codes = quantizer.encode(&table);
        let filter = Filter::parse(&json!({"x": {"$gte": 30, "$lt": 60}}), &schema).unwrap();
        let candidates = filter.evaluate_quantized(&quantizer, &codes);
        // Cells are [0,24] [25,49] [50,74] [75,99]: the two middle cells may hold matches.
        let expected: Vec<usize> = (25..75).collect();
        assert_eq!(candidates.iter_ones().collect::<Vec<_>>(), expected);
        // NOT keeps the cells that are not certainly matching: all of them here.
        let negated =
            Filter::parse(&json!({"$not": {"x": {"$gte": 30, "$lt": 60}}}), &schema).unwrap();
        assert_eq!(
            negated.evaluate_quantized(&quantizer, &codes).count_ones(),
            100
        );
        let negated_whole_cell =
            Filter::parse(&json!({"$not": {"x": {"$gte": 25, "$lte": 49}}}), &schema).unwrap();
        let kept: Vec<usize> = negated_whole_cell
            .evaluate_quantized(&quantizer, &codes)
            .iter_ones()
            .collect();
        assert_eq!(kept, (0..25).chain(50..100).collect::<Vec<_>>());
    }

    #[test]
    fn few_distinct_values_make_quantized_evaluation_exact() {
        let schema = AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "label".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "genre".into(),
                    kind: AttributeKind::Categorical,
                    dictionary: (0..40).map(|code| format!("g{code:02}")).collect(),
                },
            ],
        };
        let num_rows = 1000;
        let table = AttributeTable {
            num_rows,
            columns: vec![
                (0..num_rows).map(|row| ((row * 37) % 200) as f64).collect(),
                (0..num_rows).map(|row| ((row * 11) % 40) as f64).collect(),
            ],
        };
        let quantizer = AttributeQuantizer::train(&table, 8);
        let codes = quantizer.encode(&table);
        let filters = [
            json!({"label": {"$gte": 50, "$lt": 120}}),
            json!({"label": {"$in": [1, 2, 3, 199]}, "genre": {"$ne": "g07"}}),
            json!({"$or": [{"label": {"$gt": 150}}, {"$not": {"genre": {"$in": ["g01", "g02"]}}}]}),
            json!({"$not": {"$and": [{"label": {"$lte": 100}}, {"genre": {"$nin": ["g03"]}}]}}),
        ];
        for filter_json in filters {
            let filter = Filter::parse(&filter_json, &schema).unwrap();
            assert_eq!(
                filter.evaluate_quantized(&quantizer, &codes),
                filter.evaluate(&table),
                "{filter_json}"
            );
        }
    }

    #[test]
    fn codes_beyond_the_cells_are_kept() {
        let table = one_column_table(vec![1.0, 2.0]);
        let quantizer = AttributeQuantizer::train(&table, 2);
        let codes = QuantizedAttributes {
            num_rows: 3,
            columns: vec![vec![0, 1, 200]],
        };
        let filter =
            Filter::parse(&json!({"x": 1}), &one_column_schema(AttributeKind::Integer)).unwrap();
        let kept: Vec<usize> = filter
            .evaluate_quantized(&quantizer, &codes)
            .iter_ones()
            .collect();
        assert_eq!(kept, vec![0, 2]);
    }

    #[test]
    fn same_column_children_merge_into_one_scan() {
        let schema = AttributeSchema {
            columns: vec![
                AttributeColumn {
                    name: "a".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
                AttributeColumn {
                    name: "b".into(),
                    kind: AttributeKind::Integer,
                    dictionary: vec![],
                },
            ],
        };
        let table = AttributeTable {
            num_rows: 4,
            columns: vec![vec![0.0, 1.0, 2.0, 3.0], vec![0.0, 1.0, 0.0, 1.0]],
        };
        let quantizer = AttributeQuantizer::train(&table, 3);
        let filter = Filter::parse(
            &json!({"$and": [{"a": {"$gte": 1}}, {"b": 1}, {"a": {"$lte": 2}}]}),
            &schema,
        )
        .unwrap();
        let Plan::And(children) = plan(&filter.expr, &quantizer) else {
            panic!("expected an AND plan");
        };
        assert_eq!(children.len(), 2);
        assert!(children
            .iter()
            .all(|child| matches!(child, Plan::Scan { .. })));
        let whole_or_on_one_column = Filter::parse(
            &json!({"$or": [{"a": 0}, {"$not": {"a": {"$gt": 2}}}]}),
            &schema,
        )
        .unwrap();
        assert!(matches!(
            plan(&whole_or_on_one_column.expr, &quantizer),
            Plan::Scan { column: 0, .. }
        ));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let table = AttributeTable {
            num_rows: 5,
            columns: vec![vec![1.0, 2.0, 3.0, f64::NAN, 5.0]],
        };
        let quantizer = AttributeQuantizer::train(&table, 1);
        let text = serde_json::to_string(&quantizer).unwrap();
        let decoded: AttributeQuantizer = serde_json::from_str(&text).unwrap();
        assert_eq!(decoded, quantizer);

        let bad = [
            r#"{"columns":[{"cell_mins":[1.0],"cell_maxs":[],"has_nan_cell":false}]}"#,
            r#"{"columns":[{"cell_mins":[2.0],"cell_maxs":[1.0],"has_nan_cell":false}]}"#,
            r#"{"columns":[{"cell_mins":[1.0,2.0],"cell_maxs":[2.0,3.0],"has_nan_cell":false}]}"#,
        ];
        for text in bad {
            assert!(
                serde_json::from_str::<AttributeQuantizer>(text).is_err(),
                "{text}"
            );
        }
        let too_many = ColumnQuantizerParts {
            cell_mins: (0..256).map(f64::from).collect(),
            cell_maxs: (0..256).map(f64::from).collect(),
            has_nan_cell: true,
        };
        assert!(ColumnQuantizer::try_from(too_many).is_err());
    }
}
