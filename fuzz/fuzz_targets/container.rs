//! The container format on any bytes, through both readers: the whole-object [`Container`] and
//! the ranged path a worker uses (`parse_trailer`, `parse_toc`, `decode_block`).
//!
//! Contract: every failure is `Corrupt`/`UnsupportedVersion` naming the object; the two readers
//! accept and reject the same objects and return the same blocks; an accepted object's blocks,
//! written again with `ContainerWriter`, read back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_core::format::{
    decode_block, parse_toc, parse_trailer, Container, ContainerWriter, ObjectKind, TRAILER_LEN,
};
use squash_fuzz::{assert_stored_error, check_as_given_and_resealed};

const OBJECT: &str = "films/v1/partition-00003.sqsh";

fuzz_target!(|data: &[u8]| check_as_given_and_resealed(data, check));

fn check(data: &[u8]) {
    let trailer_result = parse_trailer(OBJECT, data);
    let kind = match &trailer_result {
        Ok(trailer) => trailer.kind,
        Err(error) => {
            assert_stored_error(OBJECT, error);
            ObjectKind::Segment
        }
    };
    let container = match Container::open(OBJECT, data.to_vec(), kind) {
        Ok(container) => container,
        Err(error) => {
            assert_stored_error(OBJECT, &error);
            assert_ranged_reader_fails(data);
            return;
        }
    };
    let trailer = trailer_result.expect("Container::open accepted the trailer");
    assert_eq!(trailer.object_len(), data.len() as u64);
    let toc_range = trailer.toc_range();
    let toc_bytes = &data[toc_range.start as usize..toc_range.end as usize];
    let toc = parse_toc(OBJECT, &trailer, toc_bytes).expect("Container::open accepted the toc");
    assert_eq!(&toc, container.toc());
    if let Some(tail_toc) = trailer.toc_from_tail(data) {
        assert_eq!(tail_toc, toc_bytes);
    }
    let tail = &data[data.len().saturating_sub(TRAILER_LEN + 4096)..];
    if let Some(tail_toc) = trailer.toc_from_tail(tail) {
        assert_eq!(tail_toc, toc_bytes);
    }

    let mut rewritten = ContainerWriter::new(kind);
    let mut blocks = Vec::new();
    for entry in &toc.entries {
        let stored = &data[entry.range().start as usize..entry.range().end as usize];
        let ranged = decode_block(OBJECT, entry, stored);
        let whole = container.block(&entry.name);
        match (ranged, whole) {
            (Ok(ranged), Ok(whole)) => {
                assert_eq!(ranged, whole, "block {}", entry.name);
                assert_eq!(whole.len() as u64, entry.raw_len);
                rewritten
                    .add_block(&entry.name, &whole)
                    .expect("names of a valid toc are valid block names");
                blocks.push((entry.name.clone(), whole));
            }
            (Err(ranged), Err(whole)) => {
                assert_stored_error(OBJECT, &ranged);
                assert_stored_error(OBJECT, &whole);
            }
            (ranged, whole) => panic!(
                "readers disagree on block {}: ranged {:?}, whole {:?}",
                entry.name,
                ranged.map(|b| b.len()),
                whole.map(|b| b.len())
            ),
        }
    }
    for base in ["vectors", "codes"] {
        if let Err(error) = container.rows(base) {
            assert_stored_error(OBJECT, &error);
        }
    }

    let bytes = rewritten.finish().expect("a small toc");
    let reopened = Container::open("rewritten", bytes, kind).expect("a freshly written object");
    for (name, raw) in blocks {
        assert_eq!(reopened.block(&name).expect("written just now"), raw);
    }
}

/// The ranged reader must refuse what `Container::open` refused: the trailer, the object
/// length, or the toc.
fn assert_ranged_reader_fails(data: &[u8]) {
    let Ok(trailer) = parse_trailer(OBJECT, data) else {
        return;
    };
    if trailer.object_len() != data.len() as u64 {
        return;
    }
    let toc_range = trailer.toc_range();
    let (start, end) = (toc_range.start as usize, toc_range.end as usize);
    if let Err(error) = parse_toc(OBJECT, &trailer, &data[start..end]) {
        assert_stored_error(OBJECT, &error);
    } else {
        panic!("the ranged reader accepted an object Container::open refused");
    }
}
