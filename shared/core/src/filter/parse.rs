//! Parsing of Mongo-style filter JSON into the compiled [`Expr`] tree.
//!
//! Owns the syntax, the error messages (each names the JSON path of the offending part, rooted
//! at `filter`), the resolution of attribute names to column indices and of strings to
//! dictionary codes, and the folding of predicates whose outcome is known without data
//! (a string absent from the dictionary, an empty `$in`). Must not evaluate anything on data.

use serde_json::{Map, Value};

use super::{Expr, Leaf, Predicate};
use crate::attributes::{AttributeColumn, AttributeKind, AttributeSchema};
use crate::error::{Error, Result};

/// The JSON path of the whole filter, prefix of every error field.
const ROOT_FIELD: &str = "filter";

/// The operators allowed under an attribute name, for error messages.
const ATTRIBUTE_OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin";

/// Strings longer than this are cut in error messages so a huge bad value cannot flood logs.
const MAX_QUOTED_CHARS: usize = 60;

/// Returns the compiled form of a whole filter: `null` or an object.
pub(super) fn parse_root(json: &Value, schema: &AttributeSchema) -> Result<Expr> {
    match json {
        Value::Null => Ok(Expr::Const(true)),
        Value::Object(object) => parse_object(object, schema, ROOT_FIELD),
        other => Err(Error::invalid(
            ROOT_FIELD,
            format!(
                "expected a filter object (or null), got {}",
                describe_json(other)
            ),
        )),
    }
}

/// Returns the conjunction of the entries of a filter object found at `field`.
fn parse_object(
    object: &Map<String, Value>,
    schema: &AttributeSchema,
    field: &str,
) -> Result<Expr> {
    let mut conjuncts = Vec::with_capacity(object.len());
    for (key, value) in object {
        let key_field = format!("{field}.{key}");
        let conjunct = match key.as_str() {
            "$and" => Expr::and(parse_filter_array(value, schema, &key_field, "$and")?),
            "$or" => Expr::or(parse_filter_array(value, schema, &key_field, "$or")?),
            "$not" => match value {
                Value::Object(inner) => Expr::not(parse_object(inner, schema, &key_field)?),
                other => {
                    return Err(Error::invalid(
                        key_field,
                        format!("$not takes one filter object, got {}", describe_json(other)),
                    ))
                }
            },
            name if schema.column_index(name).is_some() => {
                parse_attribute(name, value, schema, &key_field)?
            }
            operator if is_attribute_operator(operator) => {
                return Err(Error::invalid(
                    key_field,
                    format!(
                        "operator '{operator}' must be applied to an attribute, \
                         e.g. {{\"<attribute>\": {{\"{operator}\": ...}}}}"
                    ),
                ))
            }
            operator if operator.starts_with('$') => {
                return Err(Error::invalid(
                    key_field,
                    format!(
                    "unknown operator '{operator}'; expected $and, $or, $not or an attribute name"
                ),
                ))
            }
            name => return Err(unknown_attribute(name, schema, key_field)),
        };
        conjuncts.push(conjunct);
    }
    Ok(Expr::and(conjuncts))
}

/// Returns the parsed elements of the array operand of `$and`/`$or`.
fn parse_filter_array(
    value: &Value,
    schema: &AttributeSchema,
    field: &str,
    operator: &str,
) -> Result<Vec<Expr>> {
    let elements = match value {
        Value::Array(elements) if !elements.is_empty() => elements,
        other => {
            return Err(Error::invalid(
                field,
                format!(
                    "{operator} takes a non-empty array of filter objects, got {}",
                    describe_json(other)
                ),
            ))
        }
    };
    let mut children = Vec::with_capacity(elements.len());
    for (position, element) in elements.iter().enumerate() {
        let element_field = format!("{field}[{position}]");
        match element {
            Value::Object(object) => children.push(parse_object(object, schema, &element_field)?),
            other => {
                return Err(Error::invalid(
                    element_field,
                    format!(
                        "{operator} takes filter objects, got {}",
                        describe_json(other)
                    ),
                ))
            }
        }
    }
    Ok(children)
}

fn unknown_attribute(name: &str, schema: &AttributeSchema, field: String) -> Error {
    let reason = if schema.columns.is_empty() {
        format!("unknown attribute '{name}'; the index has no attributes")
    } else {
        let known: Vec<&str> = schema
            .columns
            .iter()
            .map(|column| column.name.as_str())
            .collect();
        format!(
            "unknown attribute '{name}'; known attributes: {}",
            known.join(", ")
        )
    };
    Error::invalid(field, reason)
}

/// Returns the condition on attribute `name`: a shorthand value (`$eq`) or an operator object.
fn parse_attribute(
    name: &str,
    condition: &Value,
    schema: &AttributeSchema,
    field: &str,
) -> Result<Expr> {
    let Some(column_index) = schema.column_index(name) else {
        return Err(unknown_attribute(name, schema, field.to_string()));
    };
    let column = &schema.columns[column_index];
    match condition {
        Value::Object(operators) => {
            if operators.is_empty() {
                return Err(Error::invalid(
                    field,
                    format!(
                        "empty condition on attribute '{name}'; expected a value or an operator \
                         object such as {{\"$eq\": ...}}"
                    ),
                ));
            }
            let mut conjuncts = Vec::with_capacity(operators.len());
            for (operator, operand) in operators {
                let operator_field = format!("{field}.{operator}");
                conjuncts.push(parse_operator(
                    column_index,
                    column,
                    operator,
                    operand,
                    &operator_field,
                )?);
            }
            Ok(Expr::and(conjuncts))
        }
        Value::Array(_) => Err(Error::invalid(
            field,
            format!(
                "expected a value or an operator object for attribute '{name}', got an array; \
                 use {{\"$in\": [...]}} to match any of several values"
            ),
        )),
        scalar => parse_operator(column_index, column, "$eq", scalar, field),
    }
}

/// Returns the predicate `operator operand` on one column.
fn parse_operator(
    column_index: usize,
    column: &AttributeColumn,
    operator: &str,
    operand: &Value,
    field: &str,
) -> Result<Expr> {
    let leaf = |predicate| {
        Expr::Leaf(Leaf {
            column: column_index,
            predicate,
        })
    };
    match operator {
        "$eq" => Ok(match parse_scalar(column, operand, field)? {
            Some(value) => leaf(Predicate::Eq(value)),
            None => Expr::Const(false),
        }),
        "$ne" => Ok(match parse_scalar(column, operand, field)? {
            Some(value) => leaf(Predicate::Ne(value)),
            None => Expr::Const(true),
        }),
        "$gt" | "$gte" | "$lt" | "$lte" if column.kind == AttributeKind::Categorical => {
            // Strings compare lexicographically (so ISO dates like "2021-03-04" order by
            // time). The dictionary is sorted, so a string bound is a bound on codes: the
            // first code whose string is >= (or >) the operand.
            let Value::String(text) = operand else {
                return Err(Error::invalid(
                    field,
                    format!(
                        "expected a string for categorical column '{}', got {}",
                        column.name,
                        describe_json(operand)
                    ),
                ));
            };
            let first_not_below = column
                .dictionary
                .partition_point(|entry| entry.as_str() < text.as_str())
                as f64;
            let first_above = column
                .dictionary
                .partition_point(|entry| entry.as_str() <= text.as_str())
                as f64;
            Ok(leaf(match operator {
                "$gt" => Predicate::Gte(first_above),
                "$gte" => Predicate::Gte(first_not_below),
                "$lt" => Predicate::Lt(first_not_below),
                _ => Predicate::Lt(first_above),
            }))
        }
        "$gt" | "$gte" | "$lt" | "$lte" => {
            let value = parse_number(column, operand, field)?;
            Ok(leaf(match operator {
                "$gt" => Predicate::Gt(value),
                "$gte" => Predicate::Gte(value),
                "$lt" => Predicate::Lt(value),
                _ => Predicate::Lte(value),
            }))
        }
        "$in" | "$nin" => {
            let Value::Array(members) = operand else {
                return Err(Error::invalid(
                    field,
                    format!(
                        "expected an array of values for {operator}, got {}",
                        describe_json(operand)
                    ),
                ));
            };
            let mut set = Vec::with_capacity(members.len());
            for (position, member) in members.iter().enumerate() {
                let member_field = format!("{field}[{position}]");
                // A string absent from the dictionary equals no cell, so it adds nothing.
                if let Some(value) = parse_scalar(column, member, &member_field)? {
                    set.push(value);
                }
            }
            set.sort_unstable_by(f64::total_cmp);
            set.dedup_by(|a, b| a == b);
            let is_in = operator == "$in";
            if set.is_empty() {
                return Ok(Expr::Const(!is_in));
            }
            Ok(leaf(if is_in {
                Predicate::In(set)
            } else {
                Predicate::Nin(set)
            }))
        }
        _ => Err(Error::invalid(
            field,
            format!("unknown operator '{operator}'; expected one of {ATTRIBUTE_OPERATORS}"),
        )),
    }
}

/// Returns the cell value a filter value stands for: the number itself, or the dictionary code
/// of a string (`None` when the dictionary lacks it, so no cell can equal it).
fn parse_scalar(column: &AttributeColumn, value: &Value, field: &str) -> Result<Option<f64>> {
    match column.kind {
        AttributeKind::Integer | AttributeKind::Float => {
            parse_number(column, value, field).map(Some)
        }
        AttributeKind::Categorical => match value {
            Value::String(text) => Ok(column.code_of(text).map(f64::from)),
            other => Err(Error::invalid(
                field,
                format!(
                    "expected a string for categorical column '{}', got {}",
                    column.name,
                    describe_json(other)
                ),
            )),
        },
    }
}

fn parse_number(column: &AttributeColumn, value: &Value, field: &str) -> Result<f64> {
    let number_opt = match value {
        Value::Number(number) => number.as_f64(),
        _ => None,
    };
    number_opt.ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "expected a number for {} column '{}', got {}",
                kind_name(column.kind),
                column.name,
                describe_json(value)
            ),
        )
    })
}

fn kind_name(kind: AttributeKind) -> &'static str {
    match kind {
        AttributeKind::Integer => "integer",
        AttributeKind::Float => "float",
        AttributeKind::Categorical => "categorical",
    }
}

fn is_attribute_operator(key: &str) -> bool {
    matches!(
        key,
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$in" | "$nin"
    )
}

/// Returns how a JSON value reads in an error message: scalars as JSON text, containers by kind.
fn describe_json(value: &Value) -> String {
    match value {
        Value::Array(elements) if elements.is_empty() => "an empty array".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
        Value::String(text) if text.chars().count() > MAX_QUOTED_CHARS => {
            let prefix: String = text.chars().take(MAX_QUOTED_CHARS).collect();
            format!(
                "{} ({} characters)",
                Value::String(prefix + "..."),
                text.chars().count()
            )
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> AttributeSchema {
        let column = |name: &str, kind, dictionary: &[&str]| AttributeColumn {
            name: name.to_string(),
            kind,
            dictionary: dictionary.iter().map(|entry| entry.to_string()).collect(),
        };
        AttributeSchema {
            columns: vec![
                column("freq_rank", AttributeKind::Integer, &[]),
                column("score", AttributeKind::Float, &[]),
                column(
                    "genre",
                    AttributeKind::Categorical,
                    &["comedy", "drama", "war"],
                ),
            ],
        }
    }

    fn parse(json: Value) -> Result<Expr> {
        parse_root(&json, &schema())
    }

    fn leaf(column: usize, predicate: Predicate) -> Expr {
        Expr::Leaf(Leaf { column, predicate })
    }

    /// Asserts that `json` is rejected at `expected_field` with a reason containing every one of
    /// `reason_parts`.
    #[track_caller]
    fn assert_rejected(json: Value, expected_field: &str, reason_parts: &[&str]) {
        match parse(json.clone()) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, expected_field, "field for {json} (reason: {reason})");
                for part in reason_parts {
                    assert!(
                        reason.contains(part),
                        "reason {reason:?} lacks {part:?} for {json}"
                    );
                }
                assert!(
                    !reason.ends_with('.'),
                    "reason ends with a period: {reason}"
                );
            }
            other => panic!("expected InvalidInput for {json}, got {other:?}"),
        }
    }

    #[test]
    fn string_ranges_become_code_ranges() {
        // Dictionary: comedy (0), drama (1), war (2).
        assert_eq!(
            parse(json!({"genre": {"$gte": "drama"}})).unwrap(),
            leaf(2, Predicate::Gte(1.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$gt": "drama"}})).unwrap(),
            leaf(2, Predicate::Gte(2.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$lt": "drama"}})).unwrap(),
            leaf(2, Predicate::Lt(1.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$lte": "drama"}})).unwrap(),
            leaf(2, Predicate::Lt(2.0))
        );
        // A bound between dictionary entries.
        assert_eq!(
            parse(json!({"genre": {"$gte": "crime"}})).unwrap(),
            leaf(2, Predicate::Gte(1.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$lt": "a"}})).unwrap(),
            leaf(2, Predicate::Lt(0.0))
        );
    }

    #[test]
    fn parses_every_operator() {
        assert_eq!(
            parse(json!({"freq_rank": {"$eq": 3}})).unwrap(),
            leaf(0, Predicate::Eq(3.0))
        );
        assert_eq!(
            parse(json!({"freq_rank": {"$ne": 3}})).unwrap(),
            leaf(0, Predicate::Ne(3.0))
        );
        assert_eq!(
            parse(json!({"score": {"$gt": 0.5}})).unwrap(),
            leaf(1, Predicate::Gt(0.5))
        );
        assert_eq!(
            parse(json!({"score": {"$gte": -1}})).unwrap(),
            leaf(1, Predicate::Gte(-1.0))
        );
        assert_eq!(
            parse(json!({"score": {"$lt": 2}})).unwrap(),
            leaf(1, Predicate::Lt(2.0))
        );
        assert_eq!(
            parse(json!({"score": {"$lte": 2}})).unwrap(),
            leaf(1, Predicate::Lte(2.0))
        );
        assert_eq!(
            parse(json!({"freq_rank": {"$in": [5, 1, 5, 3]}})).unwrap(),
            leaf(0, Predicate::In(vec![1.0, 3.0, 5.0]))
        );
        assert_eq!(
            parse(json!({"freq_rank": {"$nin": [2]}})).unwrap(),
            leaf(0, Predicate::Nin(vec![2.0]))
        );
        assert_eq!(
            parse(json!({"genre": {"$eq": "war"}})).unwrap(),
            leaf(2, Predicate::Eq(2.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$ne": "comedy"}})).unwrap(),
            leaf(2, Predicate::Ne(0.0))
        );
        assert_eq!(
            parse(json!({"genre": {"$in": ["war", "drama"]}})).unwrap(),
            leaf(2, Predicate::In(vec![1.0, 2.0]))
        );
        assert_eq!(
            parse(json!({"genre": {"$nin": ["drama"]}})).unwrap(),
            leaf(2, Predicate::Nin(vec![1.0]))
        );
    }

    #[test]
    fn shorthand_means_eq() {
        assert_eq!(
            parse(json!({"freq_rank": 3})).unwrap(),
            leaf(0, Predicate::Eq(3.0))
        );
        assert_eq!(
            parse(json!({"genre": "drama"})).unwrap(),
            leaf(2, Predicate::Eq(1.0))
        );
    }

    #[test]
    fn several_operators_and_keys_mean_and() {
        assert_eq!(
            parse(json!({"freq_rank": {"$gte": 200, "$lte": 300}})).unwrap(),
            Expr::And(vec![
                leaf(0, Predicate::Gte(200.0)),
                leaf(0, Predicate::Lte(300.0))
            ])
        );
        assert_eq!(
            parse(json!({"freq_rank": 3, "genre": "war"})).unwrap(),
            Expr::And(vec![
                leaf(0, Predicate::Eq(3.0)),
                leaf(2, Predicate::Eq(2.0))
            ])
        );
    }

    #[test]
    fn logical_operators_nest() {
        assert_eq!(
            parse(json!({"$or": [{"freq_rank": 1}, {"$not": {"score": {"$gt": 1}}}]})).unwrap(),
            Expr::Or(vec![
                leaf(0, Predicate::Eq(1.0)),
                Expr::Not(Box::new(leaf(1, Predicate::Gt(1.0))))
            ])
        );
        assert_eq!(
            parse(json!({"$and": [{"freq_rank": 1}, {"$and": [{"score": 2}, {}]}]})).unwrap(),
            Expr::And(vec![
                leaf(0, Predicate::Eq(1.0)),
                leaf(1, Predicate::Eq(2.0))
            ])
        );
        assert_eq!(
            parse(json!({"$or": [{"freq_rank": 1}]})).unwrap(),
            leaf(0, Predicate::Eq(1.0))
        );
        assert_eq!(parse(json!({"$not": {}})).unwrap(), Expr::Const(false));
    }

    #[test]
    fn null_and_empty_object_match_everything() {
        assert_eq!(parse(Value::Null).unwrap(), Expr::Const(true));
        assert_eq!(parse(json!({})).unwrap(), Expr::Const(true));
    }

    #[test]
    fn strings_absent_from_the_dictionary_fold_to_constants() {
        assert_eq!(
            parse(json!({"genre": "horror"})).unwrap(),
            Expr::Const(false)
        );
        assert_eq!(
            parse(json!({"genre": {"$ne": "horror"}})).unwrap(),
            Expr::Const(true)
        );
        assert_eq!(
            parse(json!({"genre": {"$in": ["horror"]}})).unwrap(),
            Expr::Const(false)
        );
        assert_eq!(
            parse(json!({"genre": {"$nin": ["horror"]}})).unwrap(),
            Expr::Const(true)
        );
        assert_eq!(
            parse(json!({"genre": {"$in": ["horror", "war"]}})).unwrap(),
            leaf(2, Predicate::In(vec![2.0]))
        );
    }

    #[test]
    fn empty_sets_fold_to_constants() {
        assert_eq!(
            parse(json!({"freq_rank": {"$in": []}})).unwrap(),
            Expr::Const(false)
        );
        assert_eq!(
            parse(json!({"freq_rank": {"$nin": []}})).unwrap(),
            Expr::Const(true)
        );
        assert_eq!(
            parse(json!({"$or": [{"freq_rank": {"$in": []}}, {"score": 1}]})).unwrap(),
            leaf(1, Predicate::Eq(1.0))
        );
    }

    #[test]
    fn huge_numbers_are_accepted() {
        assert_eq!(
            parse(json!({"freq_rank": {"$lt": u64::MAX}})).unwrap(),
            leaf(0, Predicate::Lt(u64::MAX as f64))
        );
        assert_eq!(
            parse(json!({"score": {"$gt": -1e308}})).unwrap(),
            leaf(1, Predicate::Gt(-1e308))
        );
        assert_eq!(
            parse(json!({"freq_rank": 2.5})).unwrap(),
            leaf(0, Predicate::Eq(2.5))
        );
    }

    #[test]
    fn rejects_a_top_level_that_is_not_an_object() {
        assert_rejected(json!(3), "filter", &["expected a filter object", "got 3"]);
        assert_rejected(
            json!([{"freq_rank": 3}]),
            "filter",
            &["expected a filter object", "got an array"],
        );
        assert_rejected(json!("freq_rank"), "filter", &["got \"freq_rank\""]);
        assert_rejected(json!(true), "filter", &["got true"]);
    }

    #[test]
    fn rejects_unknown_attributes_listing_the_known_ones() {
        assert_rejected(
            json!({"colour": "red"}),
            "filter.colour",
            &[
                "unknown attribute 'colour'",
                "known attributes: freq_rank, score, genre",
            ],
        );
        assert_rejected(
            json!({"$or": [{"freq_rank": 1}, {"rank": 1}]}),
            "filter.$or[1].rank",
            &["unknown attribute 'rank'"],
        );
        match parse_root(&json!({"x": 1}), &AttributeSchema::default()) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "filter.x");
                assert!(reason.contains("has no attributes"), "{reason}");
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn rejects_unknown_operators() {
        assert_rejected(
            json!({"freq_rank": {"$regex": "x"}}),
            "filter.freq_rank.$regex",
            &[
                "unknown operator '$regex'",
                "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin",
            ],
        );
        assert_rejected(
            json!({"freq_rank": {"min": 1}}),
            "filter.freq_rank.min",
            &["unknown operator 'min'"],
        );
        assert_rejected(
            json!({"$nor": [{"freq_rank": 1}]}),
            "filter.$nor",
            &["unknown operator '$nor'", "$and, $or, $not"],
        );
        assert_rejected(
            json!({"$gte": 3}),
            "filter.$gte",
            &["operator '$gte' must be applied to an attribute"],
        );
        assert_rejected(
            json!({"freq_rank": {"$and": [{"freq_rank": 1}]}}),
            "filter.freq_rank.$and",
            &["unknown operator '$and'"],
        );
    }

    #[test]
    fn rejects_strings_on_numeric_columns() {
        match parse(json!({"freq_rank": {"$gte": "abc"}})) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "filter.freq_rank.$gte");
                assert_eq!(
                    reason,
                    "expected a number for integer column 'freq_rank', got \"abc\""
                );
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        assert_rejected(
            json!({"score": "high"}),
            "filter.score",
            &["expected a number for float column 'score'", "got \"high\""],
        );
        assert_rejected(
            json!({"score": {"$in": [1, "2"]}}),
            "filter.score.$in[1]",
            &["expected a number for float column 'score'", "got \"2\""],
        );
    }

    #[test]
    fn rejects_numbers_on_categorical_columns() {
        assert_rejected(
            json!({"genre": 3}),
            "filter.genre",
            &["expected a string for categorical column 'genre', got 3"],
        );
        assert_rejected(
            json!({"genre": {"$nin": ["war", 1.5]}}),
            "filter.genre.$nin[1]",
            &["expected a string for categorical column 'genre', got 1.5"],
        );
        assert_rejected(
            json!({"genre": {"$gt": 2}}),
            "filter.genre.$gt",
            &["expected a string for categorical column 'genre', got 2"],
        );
    }

    #[test]
    fn rejects_non_arrays_for_set_operators() {
        assert_rejected(
            json!({"freq_rank": {"$in": 3}}),
            "filter.freq_rank.$in",
            &["expected an array of values for $in, got 3"],
        );
        assert_rejected(
            json!({"genre": {"$nin": "war"}}),
            "filter.genre.$nin",
            &["expected an array of values for $nin, got \"war\""],
        );
    }

    #[test]
    fn rejects_bool_null_object_and_array_values() {
        assert_rejected(
            json!({"freq_rank": true}),
            "filter.freq_rank",
            &["expected a number", "got true"],
        );
        assert_rejected(
            json!({"freq_rank": {"$eq": null}}),
            "filter.freq_rank.$eq",
            &["expected a number", "got null"],
        );
        assert_rejected(
            json!({"genre": {"$eq": {"a": 1}}}),
            "filter.genre.$eq",
            &["expected a string", "got an object"],
        );
        assert_rejected(
            json!({"freq_rank": {"$in": [1, null]}}),
            "filter.freq_rank.$in[1]",
            &["got null"],
        );
        assert_rejected(
            json!({"freq_rank": {"$lt": [1]}}),
            "filter.freq_rank.$lt",
            &["expected a number", "got an array"],
        );
        assert_rejected(
            json!({"freq_rank": [1, 2]}),
            "filter.freq_rank",
            &["got an array", "$in"],
        );
        assert_rejected(
            json!({"freq_rank": {}}),
            "filter.freq_rank",
            &["empty condition on attribute 'freq_rank'"],
        );
    }

    #[test]
    fn rejects_bad_and_or_operands() {
        assert_rejected(
            json!({"$and": []}),
            "filter.$and",
            &["$and takes a non-empty array of filter objects, got an empty array"],
        );
        assert_rejected(
            json!({"$or": {"freq_rank": 1}}),
            "filter.$or",
            &["$or takes a non-empty array of filter objects, got an object"],
        );
        assert_rejected(json!({"$or": null}), "filter.$or", &["got null"]);
        assert_rejected(
            json!({"$or": [{"freq_rank": 1}, 3]}),
            "filter.$or[1]",
            &["$or takes filter objects, got 3"],
        );
        assert_rejected(json!({"$and": [null]}), "filter.$and[0]", &["got null"]);
    }

    #[test]
    fn rejects_bad_not_operands() {
        assert_rejected(
            json!({"$not": [{"freq_rank": 1}]}),
            "filter.$not",
            &["$not takes one filter object, got an array"],
        );
        assert_rejected(json!({"$not": "x"}), "filter.$not", &["got \"x\""]);
    }

    #[test]
    fn nested_errors_carry_the_full_path() {
        assert_rejected(
            json!({"$or": [{"freq_rank": 1}, {"$not": {"score": {"$gt": "x"}}}]}),
            "filter.$or[1].$not.score.$gt",
            &["expected a number for float column 'score', got \"x\""],
        );
    }

    #[test]
    fn long_strings_are_cut_in_reasons() {
        let long = "y".repeat(1000);
        match parse(json!({"score": long})) {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.len() < 200, "{reason}");
                assert!(reason.ends_with("...\" (1000 characters)"), "{reason}");
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}
