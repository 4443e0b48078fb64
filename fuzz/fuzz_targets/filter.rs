//! `Filter::parse` on any JSON document, against a schema with one column of each kind, then
//! the three evaluators on a table with edge values.
//!
//! Contract: a refused filter is `InvalidInput` whose field is `filter` or a path below it; an
//! accepted filter evaluates without panicking, `matches_row` agrees with `evaluate`, and the
//! quantized bounds bracket the exact result (certain ⊆ exact ⊆ possible), whatever the
//! quantizer's resolution.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use squash_core::attributes::{AttributeSchema, AttributeTable};
use squash_core::filter::{AttributeQuantizer, Filter, QuantizedAttributes};
use squash_fuzz::{assert_invalid_input_under, filter_schema, filter_table};

struct Fixture {
    schema: AttributeSchema,
    table: AttributeTable,
    /// Quantizers at 1 bit per attribute (coarse: most verdicts are "maybe") and at 8 bits
    /// (exact for the small columns), with the codes of `table`.
    quantized: Vec<(AttributeQuantizer, QuantizedAttributes)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let table = filter_table();
        let quantized = [1, 8]
            .into_iter()
            .map(|bits| {
                let quantizer = AttributeQuantizer::train(&table, bits);
                let codes = quantizer.encode(&table);
                (quantizer, codes)
            })
            .collect();
        Fixture {
            schema: filter_schema(),
            table,
            quantized,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let fx = fixture();
    let filter = match Filter::parse(&json, &fx.schema) {
        Ok(filter) => filter,
        Err(error) => return assert_invalid_input_under("filter", &error),
    };
    let _ = filter.describe(&fx.schema);
    let exact = filter.evaluate(&fx.table);
    assert_eq!(exact.len(), fx.table.num_rows);
    for row in 0..fx.table.num_rows {
        assert_eq!(filter.matches_row(&fx.table, row), exact[row], "row {row}");
    }
    if filter.is_match_all() {
        assert!(exact.all());
    }
    if filter.is_match_none() {
        assert!(exact.not_any());
    }
    for (quantizer, codes) in &fx.quantized {
        let possible_only = filter.evaluate_quantized(quantizer, codes);
        let (possible, certain) = filter.evaluate_quantized_bounds(quantizer, codes);
        assert_eq!(possible_only, possible);
        for row in 0..fx.table.num_rows {
            assert!(
                !exact[row] || possible[row],
                "row {row} matches but was excluded"
            );
            assert!(
                !certain[row] || exact[row],
                "row {row} is certain but fails"
            );
        }
    }
});
