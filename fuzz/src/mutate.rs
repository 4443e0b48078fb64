//! A structure-aware mutator for stored objects: it decodes an object into its blocks, changes
//! one thing a byte-level mutator rarely gets right (a JSON value in the metadata set to an edge
//! number, an array block cut or grown by whole values, a block dropped or renamed) and writes
//! the object back with valid checksums.
//!
//! Why: a length field in the metadata JSON must change consistently with the blocks it
//! describes before a decoder's arithmetic is reached; byte mutations of `"dim":6` mostly give
//! invalid JSON, and a few minutes of them never reached the overflows this mutator finds in
//! seconds. Half of all mutations still go to libFuzzer's own mutator (through `fallback`), so
//! the byte-level layout keeps being explored.

use serde_json::Value;
use squash_core::format::{parse_trailer, Container, CODEC_RAW, TRAILER_LEN};

use crate::reseal;

/// Numbers that sit on a boundary of some type or check: small counts, powers of two around
/// `u8`..`u64`, `f32`/`f64` limits (1e39 overflows `f32`), and fractional and negative values
/// where integers are expected.
const EDGE_NUMBERS: [&str; 26] = [
    "0",
    "1",
    "2",
    "3",
    "8",
    "9",
    "255",
    "256",
    "65536",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "4611686018427387904",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "-1",
    "-9223372036854775808",
    "0.5",
    "-0.0",
    "1e39",
    "-1e39",
    "3.4028235e38",
    "1e308",
    "1.5",
];

/// A small deterministic generator (SplitMix64) seeded by libFuzzer, so runs reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a value in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Mutates the object in `data[..size]` in place, returning its new size (at most `max_size`).
/// Half of the calls, and every call whose input is not a readable object, go to `fallback`
/// (libFuzzer's own mutator, same arguments and result).
pub fn mutate_object(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    fallback: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    let mut rng = Rng(u64::from(seed));
    if rng.below(2) == 0 {
        return fallback(data, size, max_size);
    }
    let mutated = blocks_of(&data[..size]).and_then(|mut object| {
        mutate_blocks(&mut object.blocks, &mut rng)?;
        Some(object.encode())
    });
    match mutated {
        Some(bytes) if bytes.len() <= max_size => {
            data[..bytes.len()].copy_from_slice(&bytes);
            bytes.len()
        }
        _ => fallback(data, size, max_size),
    }
}

/// An object as blocks, with the trailer it came with (kind, version, magic kept).
struct Blocks {
    blocks: Vec<(String, Vec<u8>)>,
    trailer: Vec<u8>,
}

impl Blocks {
    /// Returns the object with every block stored raw and every checksum valid.
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut toc = (self.blocks.len() as u32).to_le_bytes().to_vec();
        for (name, raw) in &self.blocks {
            toc.extend_from_slice(&(name.len() as u16).to_le_bytes());
            toc.extend_from_slice(name.as_bytes());
            toc.extend_from_slice(&(body.len() as u64).to_le_bytes());
            toc.extend_from_slice(&(raw.len() as u64).to_le_bytes());
            toc.extend_from_slice(&(raw.len() as u64).to_le_bytes());
            toc.extend_from_slice(&[0; 4]); // crc32, filled by reseal
            toc.push(CODEC_RAW);
            body.extend_from_slice(raw);
        }
        let toc_offset = body.len() as u64;
        body.extend_from_slice(&toc);
        let mut trailer = self.trailer.clone();
        trailer[0..8].copy_from_slice(&toc_offset.to_le_bytes());
        trailer[8..12].copy_from_slice(&(toc.len() as u32).to_le_bytes());
        body.extend_from_slice(&trailer);
        reseal(&body)
    }
}

/// Returns the blocks of `bytes` read with repaired checksums, or `None` if it is no object.
fn blocks_of(bytes: &[u8]) -> Option<Blocks> {
    let sealed = reseal(bytes);
    let trailer = parse_trailer("mutated", &sealed).ok()?;
    let trailer_bytes = sealed[sealed.len() - TRAILER_LEN..].to_vec();
    let container = Container::open("mutated", sealed, trailer.kind).ok()?;
    let blocks = container
        .toc()
        .entries
        .iter()
        .map(|entry| Some((entry.name.clone(), container.block(&entry.name).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    Some(Blocks {
        blocks,
        trailer: trailer_bytes,
    })
}

/// Applies one structural change to `blocks`; `None` if there was nothing to change.
fn mutate_blocks(blocks: &mut Vec<(String, Vec<u8>)>, rng: &mut Rng) -> Option<()> {
    if blocks.is_empty() {
        return None;
    }
    let json_blocks: Vec<usize> = (0..blocks.len())
        .filter(|&i| serde_json::from_slice::<Value>(&blocks[i].1).is_ok())
        .collect();
    // JSON metadata gets most of the attention: it holds every length and shape.
    if !json_blocks.is_empty() && rng.below(3) != 0 {
        let index = json_blocks[rng.below(json_blocks.len())];
        let mut json: Value = serde_json::from_slice(&blocks[index].1).ok()?;
        mutate_json(&mut json, rng);
        blocks[index].1 = serde_json::to_vec(&json).ok()?;
        return Some(());
    }
    let index = rng.below(blocks.len());
    match rng.below(6) {
        0 => {
            blocks.remove(index);
        }
        1 => blocks[index].0 = next_name(&blocks[index].0),
        2 => {
            let block = &mut blocks[index].1;
            let cut = [1, 4, 8, block.len() / 2, block.len()][rng.below(5)].min(block.len());
            block.truncate(block.len() - cut);
        }
        3 => {
            let block = &mut blocks[index].1;
            let grow = [1, 4, 8, 64][rng.below(4)];
            let fill = [0u8, 0xff][rng.below(2)];
            block.extend(std::iter::repeat_n(fill, grow));
        }
        4 => {
            // An edge value over a whole aligned f32/u32 or f64/u64.
            let block = &mut blocks[index].1;
            let width = [4, 8][rng.below(2)];
            if block.len() < width {
                return None;
            }
            let at = rng.below(block.len() / width) * width;
            let value: [u8; 8] = match rng.below(6) {
                0 => f32::NAN.to_bits().to_le_bytes().repeat(2).try_into().ok()?,
                1 => f32::INFINITY
                    .to_bits()
                    .to_le_bytes()
                    .repeat(2)
                    .try_into()
                    .ok()?,
                2 => f64::NAN.to_bits().to_le_bytes(),
                3 => u64::MAX.to_le_bytes(),
                4 => 0u64.to_le_bytes(),
                _ => f64::MAX.to_bits().to_le_bytes(),
            };
            block[at..at + width].copy_from_slice(&value[..width]);
        }
        _ => {
            let (name, raw) = &blocks[index];
            let copy = (next_name(name), raw.clone());
            blocks.insert(rng.below(blocks.len() + 1), copy);
        }
    }
    Some(())
}

/// Returns the name of the next row chunk (`vectors.1` after `vectors.0`, `attributes.3` after
/// `attributes.2`), or a first chunk name for a plain block (`ids.0`).
fn next_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((base, digits)) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{base}.{}", digits.parse::<u64>().unwrap_or(0) + 1)
        }
        _ => format!("{name}.0"),
    }
}

/// Changes one node of `json`: a number or any node becomes an edge number, an array loses,
/// repeats or clears its elements, an object loses a key, a string empties.
fn mutate_json(json: &mut Value, rng: &mut Rng) {
    let mut pointers = Vec::new();
    collect_pointers(json, String::new(), &mut pointers);
    let pointer = &pointers[rng.below(pointers.len())];
    let Some(node) = json.pointer_mut(pointer) else {
        return;
    };
    let edge = |rng: &mut Rng| -> Value {
        serde_json::from_str(EDGE_NUMBERS[rng.below(EDGE_NUMBERS.len())]).unwrap_or(Value::Null)
    };
    match node {
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let at = rng.below(items.len());
            match rng.below(3) {
                0 => {
                    items.remove(at);
                }
                1 => {
                    let copy = items[at].clone();
                    items.insert(at, copy);
                }
                _ => items.clear(),
            }
        }
        Value::Object(entries) if !entries.is_empty() && rng.below(2) == 0 => {
            let key = entries.keys().nth(rng.below(entries.len())).cloned();
            if let Some(key) = key {
                entries.remove(&key);
            }
        }
        Value::String(text) if rng.below(2) == 0 => text.clear(),
        Value::Bool(flag) => *flag = !*flag,
        other => *other = edge(rng),
    }
}

/// Collects the JSON pointer of every node of `json` (the root is `""`).
fn collect_pointers(json: &Value, pointer: String, pointers: &mut Vec<String>) {
    match json {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_pointers(item, format!("{pointer}/{index}"), pointers);
            }
        }
        Value::Object(entries) => {
            for (key, value) in entries {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_pointers(value, format!("{pointer}/{escaped}"), pointers);
            }
        }
        _ => {}
    }
    pointers.push(pointer);
}

#[cfg(test)]
mod tests {
    use squash_core::format::{ContainerWriter, ObjectKind};

    use super::*;

    fn object() -> Vec<u8> {
        let mut writer = ContainerWriter::new(ObjectKind::Coordinator);
        writer
            .add_block("meta", br#"{"dim": 6, "sizes": [1, 2], "name": "x"}"#)
            .unwrap();
        writer.add_block("centroids", &[7u8; 4096]).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn structural_mutations_keep_a_readable_object_of_the_same_kind() {
        let original = object();
        let mut num_structural = 0;
        for seed in 0..200 {
            let mut data = original.clone();
            // Room for the blocks stored raw: the zstd-compressed centroids grow 4096 bytes.
            data.resize(1 << 16, 0);
            let max_size = data.len();
            let mut fell_back = false;
            let size = mutate_object(&mut data, original.len(), max_size, seed, |_, size, _| {
                fell_back = true;
                size
            });
            if fell_back {
                continue;
            }
            num_structural += 1;
            // A renamed block may now clash with another, which the toc check refuses.
            match Container::open("m", data[..size].to_vec(), ObjectKind::Coordinator) {
                Ok(container) => {
                    for entry in &container.toc().entries {
                        container.block(&entry.name).expect("raw blocks decode");
                    }
                }
                Err(error) => {
                    let message = error.to_string();
                    assert!(message.contains("duplicate block name"), "{message}");
                }
            }
        }
        assert!(num_structural > 50, "{num_structural} structural mutations");
    }

    #[test]
    fn json_mutations_reach_every_node() {
        let json: Value = serde_json::from_str(r#"{"a": [1, {"b/c": 2}], "d": "x"}"#).unwrap();
        let mut pointers = Vec::new();
        collect_pointers(&json, String::new(), &mut pointers);
        pointers.sort();
        assert_eq!(pointers, ["", "/a", "/a/0", "/a/1", "/a/1/b~1c", "/d"]);
        let mut changed = 0;
        for seed in 0..100 {
            let mut mutated = json.clone();
            mutate_json(&mut mutated, &mut Rng(seed));
            changed += usize::from(mutated != json);
        }
        assert!(
            changed > 80,
            "{changed} of 100 mutations changed the document"
        );
    }

    #[test]
    fn non_objects_go_to_the_fallback() {
        let mut data = vec![1u8, 2, 3, 0, 0];
        for seed in 0..20 {
            let size = mutate_object(&mut data, 3, 5, seed, |_, _, _| 4);
            assert_eq!(size, 4);
        }
    }
}
