//! Parsing of attribute CSV files and of schema declarations.
//!
//! Owns the CSV conventions: a header row, one data row per vector in vector order, an optional
//! `id` column holding external ids, and kind detection for the other columns. It must not
//! touch the file system: every function here takes the text and a display name used in
//! error messages; `super::read_attributes` does the reading.
//!
//! Data rows are numbered from 1 (the first row after the header is data row 1); errors also
//! give the file line, which differs when quoted fields span lines or blank lines are skipped.

use crate::attributes::{
    AttributeColumn, AttributeKind, AttributeSchema, AttributeTable, MAX_INTEGER_MAGNITUDE,
};
use crate::error::{Error, Result};

/// The header name of the column that holds external vector ids.
pub const ID_COLUMN: &str = "id";

/// The parsed attribute file: external ids, schema and values.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeInput {
    /// External id of each row (vector), from the `id` column or the row number (from 0).
    pub ids: Vec<u64>,
    /// The attribute columns, in header order, without the `id` column.
    pub schema: AttributeSchema,
    /// The values, one column per schema column.
    pub table: AttributeTable,
}

/// Returns the ids `0..num_rows`, used when a file has no `id` column.
pub fn row_number_ids(num_rows: usize) -> Vec<u64> {
    (0..num_rows as u64).collect()
}

/// Parses a schema declaration such as `"label:int,price:float,genre:string"`.
///
/// Kinds: `int`/`integer`, `float`, `string`/`str`/`categorical` (any case). An empty or
/// all-blank spec declares nothing.
pub fn parse_schema_spec(spec: &str) -> Result<Vec<(String, AttributeKind)>> {
    let mut declared: Vec<(String, AttributeKind)> = Vec::new();
    if spec.trim().is_empty() {
        return Ok(declared);
    }
    for (entry_index, entry) in spec.split(',').enumerate() {
        let field = || {
            format!(
                "attribute schema entry {} ('{}')",
                entry_index + 1,
                entry.trim()
            )
        };
        let Some((name, kind_text)) = entry.split_once(':') else {
            return Err(Error::invalid(
                field(),
                "expected name:kind (kinds: int, float, string)",
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::invalid(field(), "the attribute name is empty"));
        }
        let kind = match kind_text.trim().to_ascii_lowercase().as_str() {
            "int" | "integer" => AttributeKind::Integer,
            "float" => AttributeKind::Float,
            "string" | "str" | "categorical" => AttributeKind::Categorical,
            other => {
                return Err(Error::invalid(
                    field(),
                    format!(
                        "unknown kind '{other}' (expected int, integer, float, string, str or \
                         categorical)"
                    ),
                ));
            }
        };
        if declared.iter().any(|(existing, _)| existing == name) {
            return Err(Error::invalid(
                field(),
                format!("attribute '{name}' is declared twice"),
            ));
        }
        declared.push((name.to_string(), kind));
    }
    Ok(declared)
}

/// Parses an attribute CSV; `name` (usually the path) prefixes every error field.
///
/// `declared` fixes the kind of the named columns (others are detected from their values);
/// `expected_rows` is the number of vectors, which must equal the number of data rows.
pub fn parse_attributes(
    name: &str,
    text: &[u8],
    declared: &[(String, AttributeKind)],
    expected_rows: usize,
) -> Result<AttributeInput> {
    // Fields are trimmed here rather than with `csv::Trim`, which rebuilds every record
    // (twice for a `StringRecord`) and so allocates per row.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Ragged rows are reported below with our own row numbering.
        .flexible(true)
        .from_reader(text);
    let header: Vec<String> = reader
        .headers()
        .map_err(|error| csv_error(name, &error))?
        .iter()
        .map(|column_name| column_name.trim().to_string())
        .collect();
    if header.is_empty() {
        return Err(Error::invalid(name, "missing header row"));
    }
    let id_position_opt = check_header(name, &header, declared)?;
    let attribute_positions: Vec<usize> = (0..header.len())
        .filter(|&position| Some(position) != id_position_opt)
        .collect();

    // Every data row takes at least two bytes, so a wrong `expected_rows` cannot force a huge
    // allocation.
    let capacity_rows = expected_rows.min(text.len() / 2 + 1);
    let mut id_texts = TextColumn::with_capacity(capacity_rows);
    let mut texts: Vec<TextColumn> = attribute_positions
        .iter()
        .map(|_| TextColumn::with_capacity(capacity_rows))
        .collect();
    // File line of each data row, for error messages after the read.
    let mut lines: Vec<u64> = Vec::with_capacity(capacity_rows);
    let mut record = csv::StringRecord::new();
    loop {
        let has_record = reader
            .read_record(&mut record)
            .map_err(|error| csv_error(name, &error))?;
        if !has_record {
            break;
        }
        let row_number = lines.len() + 1;
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != header.len() {
            return Err(Error::invalid(
                row_field(name, row_number, line),
                format!(
                    "ragged row: {} fields, but the header has {}",
                    record.len(),
                    header.len()
                ),
            ));
        }
        for (position, value) in record.iter().enumerate() {
            if value.trim().is_empty() {
                return Err(Error::invalid(
                    cell_field(name, row_number, line, &header[position]),
                    "empty cell",
                ));
            }
        }
        lines.push(line);
        if let Some(id_position) = id_position_opt {
            id_texts.push(record[id_position].trim());
        }
        for (column_texts, &position) in texts.iter_mut().zip(&attribute_positions) {
            column_texts.push(record[position].trim());
        }
    }

    let num_rows = lines.len();
    if num_rows != expected_rows {
        return Err(Error::invalid(
            name,
            format!("expected {expected_rows} data rows (one per vector), found {num_rows}"),
        ));
    }

    let ids = match id_position_opt {
        Some(_) => parse_ids(name, &id_texts, &lines)?,
        None => row_number_ids(num_rows),
    };

    let mut schema = AttributeSchema::default();
    let mut table = AttributeTable {
        num_rows,
        columns: Vec::with_capacity(texts.len()),
    };
    for (column_texts, &position) in texts.iter().zip(&attribute_positions) {
        let column_name = &header[position];
        let declared_kind_opt = declared
            .iter()
            .find(|(declared_name, _)| declared_name == column_name)
            .map(|(_, kind)| *kind);
        let context = ColumnContext {
            file_name: name,
            column_name,
            lines: &lines,
        };
        let (kind, values, dictionary) = parse_column(&context, column_texts, declared_kind_opt)?;
        schema.columns.push(AttributeColumn {
            name: column_name.clone(),
            kind,
            dictionary,
        });
        table.columns.push(values);
    }
    Ok(AttributeInput { ids, schema, table })
}

/// Checks header names and declarations; returns the position of the `id` column, if any.
fn check_header(
    name: &str,
    header: &[String],
    declared: &[(String, AttributeKind)],
) -> Result<Option<usize>> {
    for (position, column_name) in header.iter().enumerate() {
        let field = || format!("{name}: header column {}", position + 1);
        if column_name.is_empty() {
            return Err(Error::invalid(field(), "empty column name"));
        }
        if header[..position].contains(column_name) {
            return Err(Error::invalid(
                field(),
                format!("duplicate column name '{column_name}'"),
            ));
        }
    }
    for (declared_name, _) in declared {
        if declared_name == ID_COLUMN {
            return Err(Error::invalid(
                format!("{name}: column '{ID_COLUMN}'"),
                "the id column holds external vector ids and cannot be declared as an attribute",
            ));
        }
        if !header.contains(declared_name) {
            return Err(Error::invalid(
                format!("{name}: header"),
                format!(
                    "declared attribute '{declared_name}' is not a column (columns: {})",
                    header.join(", ")
                ),
            ));
        }
    }
    Ok(header
        .iter()
        .position(|column_name| column_name == ID_COLUMN))
}

/// The cells of one column, stored back to back so that reading does not allocate per value.
struct TextColumn {
    text: String,
    ends: Vec<usize>,
}

impl TextColumn {
    fn with_capacity(num_rows: usize) -> Self {
        TextColumn {
            text: String::new(),
            ends: Vec::with_capacity(num_rows),
        }
    }

    fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.text[start..end])
    }
}

/// What error messages about one column need.
struct ColumnContext<'a> {
    file_name: &'a str,
    column_name: &'a str,
    /// File line of each data row.
    lines: &'a [u64],
}

impl ColumnContext<'_> {
    /// Returns the error field for the cell at 0-based `row_index`.
    fn cell_field(&self, row_index: usize) -> String {
        cell_field(
            self.file_name,
            row_index + 1,
            self.lines[row_index],
            self.column_name,
        )
    }
}

fn row_field(name: &str, row_number: usize, line: u64) -> String {
    format!("{name}: data row {row_number} (1-based, line {line})")
}

fn cell_field(name: &str, row_number: usize, line: u64, column_name: &str) -> String {
    format!(
        "{}, column '{column_name}'",
        row_field(name, row_number, line)
    )
}

fn csv_error(name: &str, error: &csv::Error) -> Error {
    let field = match error.position() {
        Some(position) => format!("{name}: line {}", position.line()),
        None => name.to_string(),
    };
    Error::invalid(field, format!("bad csv: {error}"))
}

fn parse_ids(name: &str, id_texts: &TextColumn, lines: &[u64]) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = Vec::with_capacity(lines.len());
    for (row_index, text) in id_texts.iter().enumerate() {
        let Ok(id) = text.parse::<u64>() else {
            return Err(Error::invalid(
                cell_field(name, row_index + 1, lines[row_index], ID_COLUMN),
                format!("'{text}' is not a non-negative integer id"),
            ));
        };
        ids.push(id);
    }
    // Ids usually equal the row numbers, so the sort below is skipped in the common case.
    if ids.windows(2).all(|pair| pair[0] < pair[1]) {
        return Ok(ids);
    }
    let mut by_id: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(row_index, &id)| (id, row_index))
        .collect();
    by_id.sort_unstable();
    // Report the duplicate whose second occurrence comes first in the file.
    let first_duplicate_opt = by_id
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .min_by_key(|pair| pair[1].1);
    if let Some(pair) = first_duplicate_opt {
        let (id, first_row) = pair[0];
        let second_row = pair[1].1;
        return Err(Error::invalid(
            format!("{name}: column '{ID_COLUMN}'"),
            format!(
                "duplicate id {id} in data rows {} (line {}) and {} (line {}) (rows are 1-based)",
                first_row + 1,
                lines[first_row],
                second_row + 1,
                lines[second_row]
            ),
        ));
    }
    Ok(ids)
}

/// Parses one column as its declared kind, or else as the first kind that fits every value:
/// Integer (every value parses as i64), Float (every value parses as f64), Categorical.
///
/// Returns the kind, the values and (for categorical columns) the dictionary. Numbers are
/// parsed once: the integer attempt stops at the first value that is not an integer.
fn parse_column(
    context: &ColumnContext<'_>,
    texts: &TextColumn,
    declared_kind_opt: Option<AttributeKind>,
) -> Result<(AttributeKind, Vec<f64>, Vec<String>)> {
    let mut values: Vec<f64> = Vec::with_capacity(context.lines.len());
    if matches!(declared_kind_opt, None | Some(AttributeKind::Integer)) {
        match parse_integers(context, texts, &mut values)? {
            None => return Ok((AttributeKind::Integer, values, Vec::new())),
            Some(failure) if declared_kind_opt.is_some() => return Err(failure),
            Some(_) => values.clear(),
        }
    }
    if matches!(declared_kind_opt, None | Some(AttributeKind::Float)) {
        match parse_floats(context, texts, &mut values)? {
            None => return Ok((AttributeKind::Float, values, Vec::new())),
            Some(failure) if declared_kind_opt.is_some() => return Err(failure),
            Some(_) => {}
        }
    }
    let (codes, dictionary) = encode_categorical_column(texts);
    Ok((AttributeKind::Categorical, codes, dictionary))
}

/// Appends every value as an integer. Returns `Ok(Some(error))` naming the first cell that is
/// not an integer (the column may still be Float or Categorical), and `Err` for an integer
/// beyond ±(2^53 − 1) once every cell is known to be an integer.
fn parse_integers(
    context: &ColumnContext<'_>,
    texts: &TextColumn,
    values: &mut Vec<f64>,
) -> Result<Option<Error>> {
    let mut first_inexact_opt: Option<(usize, i64)> = None;
    for (row_index, text) in texts.iter().enumerate() {
        let Ok(value) = text.parse::<i64>() else {
            return Ok(Some(Error::invalid(
                context.cell_field(row_index),
                format!("'{text}' is not an integer"),
            )));
        };
        if first_inexact_opt.is_none()
            && !(-MAX_INTEGER_MAGNITUDE..=MAX_INTEGER_MAGNITUDE).contains(&value)
        {
            first_inexact_opt = Some((row_index, value));
        }
        values.push(value as f64);
    }
    if let Some((row_index, value)) = first_inexact_opt {
        return Err(Error::invalid(
            context.cell_field(row_index),
            format!("integer {value} is beyond ±(2^53 − 1) = ±{MAX_INTEGER_MAGNITUDE}, the range integer columns hold exactly; store it as a categorical (string) column"),
        ));
    }
    Ok(None)
}

/// Appends every value as a float. Returns `Ok(Some(error))` naming the first cell that is not
/// a number (the column may still be Categorical), and `Err` for NaN or infinity once every
/// cell is known to be a number.
fn parse_floats(
    context: &ColumnContext<'_>,
    texts: &TextColumn,
    values: &mut Vec<f64>,
) -> Result<Option<Error>> {
    let mut first_non_finite_opt: Option<usize> = None;
    for (row_index, text) in texts.iter().enumerate() {
        let Ok(value) = text.parse::<f64>() else {
            return Ok(Some(Error::invalid(
                context.cell_field(row_index),
                format!("'{text}' is not a number"),
            )));
        };
        if first_non_finite_opt.is_none() && !value.is_finite() {
            first_non_finite_opt = Some(row_index);
        }
        values.push(value);
    }
    if let Some(row_index) = first_non_finite_opt {
        let text = texts.iter().nth(row_index).unwrap_or_default();
        return Err(Error::invalid(
            context.cell_field(row_index),
            format!("'{text}' is not a finite number"),
        ));
    }
    Ok(None)
}

/// Returns the dictionary codes (as f64) and the sorted dictionary.
fn encode_categorical_column(texts: &TextColumn) -> (Vec<f64>, Vec<String>) {
    let mut distinct: Vec<&str> = texts.iter().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let codes = texts
        .iter()
        .map(|text| {
            let code = distinct
                .binary_search(&text)
                .expect("every value is in the dictionary built from the same values");
            code as f64
        })
        .collect();
    let dictionary = distinct.into_iter().map(str::to_string).collect();
    (codes, dictionary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, expected_rows: usize) -> Result<AttributeInput> {
        parse_attributes("attrs.csv", text.as_bytes(), &[], expected_rows)
    }

    fn reason_of(error: Error) -> (String, String) {
        match error {
            Error::InvalidInput { field, reason } => (field, reason),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn declared(spec: &str) -> Vec<(String, AttributeKind)> {
        parse_schema_spec(spec).unwrap()
    }

    #[test]
    fn detects_kinds_and_builds_dictionaries() {
        let text = "id,label,price,genre\n\
                    10, 3, 1.5, rock\n\
                    11,-2,2,jazz\n\
                    12,7,1e3,rock\n";
        let input = parse(text, 3).unwrap();
        assert_eq!(input.ids, vec![10, 11, 12]);
        let kinds: Vec<(&str, AttributeKind)> = input
            .schema
            .columns
            .iter()
            .map(|column| (column.name.as_str(), column.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("label", AttributeKind::Integer),
                ("price", AttributeKind::Float),
                ("genre", AttributeKind::Categorical),
            ]
        );
        assert_eq!(input.schema.columns[2].dictionary, vec!["jazz", "rock"]);
        assert_eq!(input.table.num_rows, 3);
        assert_eq!(input.table.columns[0], vec![3.0, -2.0, 7.0]);
        assert_eq!(input.table.columns[1], vec![1.5, 2.0, 1000.0]);
        assert_eq!(input.table.columns[2], vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn ids_default_to_row_numbers() {
        let input = parse("label\n5\n6\n", 2).unwrap();
        assert_eq!(input.ids, vec![0, 1]);
        assert_eq!(input.schema.num_columns(), 1);
        assert_eq!(row_number_ids(3), vec![0, 1, 2]);
    }

    #[test]
    fn ids_may_be_in_any_order() {
        let input = parse("id,x\n5,1\n2,1\n9,1\n", 3).unwrap();
        assert_eq!(input.ids, vec![5, 2, 9]);
    }

    #[test]
    fn duplicate_ids_name_both_rows() {
        let (field, reason) = reason_of(parse("id,x\n4,1\n7,1\n9,1\n7,1\n4,1\n", 5).unwrap_err());
        assert_eq!(field, "attrs.csv: column 'id'");
        assert!(
            reason.contains("duplicate id 7") && reason.contains("rows 2 (line 3) and 4 (line 5)"),
            "{reason}"
        );
    }

    #[test]
    fn bad_ids_are_rejected() {
        for bad in ["-1", "1.5", "abc"] {
            let text = format!("id,x\n0,1\n{bad},1\n");
            let (field, reason) = reason_of(parse(&text, 2).unwrap_err());
            assert_eq!(
                field,
                "attrs.csv: data row 2 (1-based, line 3), column 'id'"
            );
            assert!(reason.contains(bad), "{reason}");
        }
    }

    #[test]
    fn declared_kinds_override_detection() {
        let text = "code,score\n1,2\n10,3\n9,4\n";
        let input = parse_attributes(
            "attrs.csv",
            text.as_bytes(),
            &declared("code:string, score:FLOAT"),
            3,
        )
        .unwrap();
        assert_eq!(input.schema.columns[0].kind, AttributeKind::Categorical);
        // Sorted as strings, not numbers.
        assert_eq!(input.schema.columns[0].dictionary, vec!["1", "10", "9"]);
        assert_eq!(input.table.columns[0], vec![0.0, 1.0, 2.0]);
        assert_eq!(input.schema.columns[1].kind, AttributeKind::Float);
        assert_eq!(input.table.columns[1], vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn declared_numeric_column_with_bad_cell() {
        let text = "x,y\n1,a\n2.5,b\n";
        let error =
            parse_attributes("attrs.csv", text.as_bytes(), &declared("x:int"), 2).unwrap_err();
        let (field, reason) = reason_of(error);
        assert_eq!(field, "attrs.csv: data row 2 (1-based, line 3), column 'x'");
        assert!(
            reason.contains("'2.5'") && reason.contains("not an integer"),
            "{reason}"
        );

        let error =
            parse_attributes("attrs.csv", text.as_bytes(), &declared("y:float"), 2).unwrap_err();
        let (field, reason) = reason_of(error);
        assert_eq!(field, "attrs.csv: data row 1 (1-based, line 2), column 'y'");
        assert!(reason.contains("'a'"), "{reason}");
    }

    #[test]
    fn declared_names_must_exist() {
        let error = parse_attributes("attrs.csv", b"x\n1\n", &declared("y:int"), 1).unwrap_err();
        let (_, reason) = reason_of(error);
        assert!(reason.contains("'y'"), "{reason}");
        let error = parse_attributes("attrs.csv", b"id,x\n1,1\n", &declared("id:int"), 1);
        assert!(error.is_err());
    }

    #[test]
    fn empty_cell_names_row_and_column() {
        let (field, reason) = reason_of(parse("a,b\n1,2\n3,  \n", 2).unwrap_err());
        assert_eq!(field, "attrs.csv: data row 2 (1-based, line 3), column 'b'");
        assert_eq!(reason, "empty cell");
    }

    #[test]
    fn row_count_must_match() {
        let (_, reason) = reason_of(parse("a\n1\n2\n", 3).unwrap_err());
        assert!(
            reason.contains("expected 3") && reason.contains("found 2"),
            "{reason}"
        );
    }

    #[test]
    fn ragged_row_is_rejected() {
        let (field, reason) = reason_of(parse("a,b\n1,2\n3\n", 2).unwrap_err());
        assert_eq!(field, "attrs.csv: data row 2 (1-based, line 3)");
        assert!(
            reason.contains("1 fields") && reason.contains("header has 2"),
            "{reason}"
        );
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        let (field, reason) = reason_of(parse("a\n1.5\nNaN\n", 2).unwrap_err());
        assert_eq!(field, "attrs.csv: data row 2 (1-based, line 3), column 'a'");
        assert!(reason.contains("finite"), "{reason}");
        let error = parse_attributes("attrs.csv", b"a\n1\ninf\n", &declared("a:float"), 2);
        assert!(reason_of(error.unwrap_err()).1.contains("'inf'"));
        // A column with non-numeric words is categorical even if one word is "nan".
        let input = parse("w\nnan\nbread\n", 2).unwrap();
        assert_eq!(input.schema.columns[0].kind, AttributeKind::Categorical);
    }

    #[test]
    fn huge_integers_are_rejected() {
        let limit = (1i64 << 53) - 1;
        let input = parse(&format!("a\n{limit}\n-{limit}\n"), 2).unwrap();
        assert_eq!(input.table.columns[0], vec![limit as f64, -(limit as f64)]);
        // 2^53 itself is refused: 2^53 + 1 in a filter rounds to it.
        for too_big in [limit + 1, -(limit + 1), i64::MAX] {
            let (field, reason) = reason_of(parse(&format!("a\n1\n{too_big}\n"), 2).unwrap_err());
            assert_eq!(field, "attrs.csv: data row 2 (1-based, line 3), column 'a'");
            assert!(reason.contains("2^53 − 1"), "{reason}");
        }
    }

    #[test]
    fn header_problems() {
        let (_, reason) = reason_of(parse("", 0).unwrap_err());
        assert!(reason.contains("header"), "{reason}");
        let (field, reason) = reason_of(parse("a,a\n1,2\n", 1).unwrap_err());
        assert_eq!(field, "attrs.csv: header column 2");
        assert!(reason.contains("duplicate"), "{reason}");
    }

    #[test]
    fn quoting_bom_and_header_only() {
        let input = parse("\u{feff}id,name\n0,\"Smith, J\"\n1, plain \n", 2).unwrap();
        assert_eq!(input.ids, vec![0, 1]);
        assert_eq!(
            input.schema.columns[0].dictionary,
            vec!["Smith, J", "plain"]
        );
        let input = parse("id,a\n", 0).unwrap();
        assert_eq!(input.table.num_rows, 0);
        assert_eq!(input.table.columns, vec![Vec::<f64>::new()]);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let error = parse_attributes("attrs.csv", b"a\n\xff\xfe\n", &[], 1).unwrap_err();
        let (field, _) = reason_of(error);
        assert!(field.starts_with("attrs.csv: line"), "{field}");
    }

    #[test]
    fn schema_spec() {
        assert_eq!(
            declared("label:int, price:float ,genre:string,a:integer,b:str,c:Categorical"),
            vec![
                ("label".to_string(), AttributeKind::Integer),
                ("price".to_string(), AttributeKind::Float),
                ("genre".to_string(), AttributeKind::Categorical),
                ("a".to_string(), AttributeKind::Integer),
                ("b".to_string(), AttributeKind::Categorical),
                ("c".to_string(), AttributeKind::Categorical),
            ]
        );
        assert!(declared("  ").is_empty());
        for (bad, expected) in [
            ("label", "name:kind"),
            ("label:bool", "unknown kind 'bool'"),
            (":int", "empty"),
            ("a:int,a:float", "twice"),
            ("a:int,", "name:kind"),
        ] {
            let (_, reason) = reason_of(parse_schema_spec(bad).unwrap_err());
            assert!(reason.contains(expected), "{bad}: {reason}");
        }
    }
}
