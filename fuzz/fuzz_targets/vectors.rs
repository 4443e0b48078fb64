//! The vector file parsers (`.fvecs`, `.bvecs`, `.npy`) on any bytes. Byte 0 picks the format
//! (0 fvecs, 1 bvecs, anything else npy); the rest is the file.
//!
//! Contract: a refused file is `InvalidInput` whose field starts with the file name; an accepted
//! one holds `num_vectors x dim` finite values, and written back as `.fvecs` parses to the same
//! values (for an `.fvecs` input, to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_core::input::vectors::{parse_vectors, write_fvecs, VectorFormat};
use squash_fuzz::assert_invalid_input_under;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let (name, format) = match selector {
        0 => ("base.fvecs", VectorFormat::Fvecs),
        1 => ("base.bvecs", VectorFormat::Bvecs),
        _ => ("base.npy", VectorFormat::Npy),
    };
    let vectors = match parse_vectors(name, format, file) {
        Ok(vectors) => vectors,
        Err(error) => return assert_invalid_input_under(name, &error),
    };
    assert!(vectors.num_vectors > 0 && vectors.dim > 0);
    assert_eq!(vectors.data.len(), vectors.num_vectors * vectors.dim);
    assert!(vectors.data.iter().all(|v| v.is_finite()));
    let fvecs = write_fvecs(&vectors);
    if format == VectorFormat::Fvecs {
        assert_eq!(fvecs, file);
    }
    let again = parse_vectors("again.fvecs", VectorFormat::Fvecs, &fvecs).expect("written fvecs");
    assert_eq!(
        (again.num_vectors, again.dim),
        (vectors.num_vectors, vectors.dim)
    );
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again.data), bits(&vectors.data));
});
