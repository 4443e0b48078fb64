//! `Manifest::decode` on any bytes, as given and with repaired checksums.
//!
//! Contract: a failure is `Corrupt`/`UnsupportedVersion` naming the object; a decoded manifest
//! encodes and decodes back to an equal value.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use squash_core::index::Manifest;
use squash_fuzz::mutate::mutate_object;
use squash_fuzz::{assert_stored_error, check_as_given_and_resealed};

const OBJECT: &str = "films/manifest.sqsh";

fuzz_target!(|data: &[u8]| check_as_given_and_resealed(data, check));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    mutate_object(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});

fn check(data: &[u8]) {
    match Manifest::decode(OBJECT, data.to_vec()) {
        Ok(manifest) => {
            let bytes = manifest.encode().expect("a decoded manifest encodes");
            let again = Manifest::decode(OBJECT, bytes).expect("an encoded manifest decodes");
            assert_eq!(again, manifest);
        }
        Err(error) => assert_stored_error(OBJECT, &error),
    }
}
