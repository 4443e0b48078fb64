//! The byte-bounded least-recently-used map behind [`super::PartitionCache`].
//!
//! Bookkeeping only: no I/O, no locking (the caller holds the lock), no async. Recency is a
//! monotonic tick per entry, indexed by a `BTreeMap` from tick to entry, so the least recently
//! used entry is the first one in that map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Bookkeeping bytes charged per entry on top of its payload and key, so that a cache of many
/// tiny ranges stays within its budget too. About 128: the shared payload header (`Arc` counts
/// 16 + `Vec` 24), the recency node (tick 8 + key `String` 24 + slot 24), the slot-map entry
/// (slot 24 + entry 24), rounded up for hash-table and B-tree slack.
pub(super) const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// Which bytes of an object an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The whole object.
    Whole,
}

/// A cached value that knows how many bytes of memory it holds.
pub(crate) trait Weighed: Clone {
    /// Returns the bytes held by the value's payload.
    fn payload_bytes(&self) -> usize;
}

impl Weighed for Arc<Vec<u8>> {
    fn payload_bytes(&self) -> usize {
        self.len()
    }
}

#[derive(Debug)]
struct Entry<V> {
    bytes: V,
    tick: u64,
    charge_bytes: u64,
}

/// A map from (key, slot) to values (bytes by default) that evicts least recently used entries
/// to stay within a byte budget.
#[derive(Debug)]
pub(crate) struct ByteLru<V: Weighed = Arc<Vec<u8>>> {
    entries: HashMap<String, HashMap<Slot, Entry<V>>>,
    recency: BTreeMap<u64, (String, Slot)>,
    next_tick: u64,
    capacity_bytes: u64,
    bytes_cached: u64,
    num_entries: u64,
    num_evictions: u64,
}

/// Returns what an entry for `key` holding `num_bytes` bytes counts against the budget.
pub(super) fn charge_bytes(key: &str, num_bytes: usize) -> u64 {
    // The key is stored twice: in the entry map and in the recency index.
    (num_bytes as u64)
        .saturating_add(2 * key.len() as u64)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

impl<V: Weighed> ByteLru<V> {
    /// Returns an empty map holding at most `capacity_bytes` (as counted by [`charge_bytes`]).
    pub(super) fn new(capacity_bytes: u64) -> Self {
        ByteLru {
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_tick: 0,
            capacity_bytes,
            bytes_cached: 0,
            num_entries: 0,
            num_evictions: 0,
        }
    }

    /// Returns the occupancy and eviction count with the caller's hit and miss counts.
    pub(super) fn stats(&self, num_hits: u64, num_misses: u64) -> super::CacheStats {
        super::CacheStats {
            num_hits,
            num_misses,
            num_evictions: self.num_evictions,
            bytes_cached: self.bytes_cached,
            num_entries: self.num_entries,
        }
    }

    #[cfg(test)]
    pub(super) fn bytes_cached(&self) -> u64 {
        self.bytes_cached
    }

    #[cfg(test)]
    pub(super) fn num_entries(&self) -> u64 {
        self.num_entries
    }

    #[cfg(test)]
    pub(super) fn num_evictions(&self) -> u64 {
        self.num_evictions
    }

    /// Returns the entry's bytes and marks it most recently used.
    pub(super) fn get(&mut self, key: &str, slot: Slot) -> Option<V> {
        let entry = self.entries.get_mut(key)?.get_mut(&slot)?;
        let tick = self.next_tick;
        self.next_tick += 1;
        let old_tick = std::mem::replace(&mut entry.tick, tick);
        let bytes = entry.bytes.clone();
        let id = self
            .recency
            .remove(&old_tick)
            .expect("every entry has its tick in the recency index");
        self.recency.insert(tick, id);
        Some(bytes)
    }

    /// Stores the bytes as the most recently used entry, evicting the least recently used
    /// entries to make room. Returns false, storing nothing, when the entry alone exceeds the
    /// capacity.
    pub(super) fn insert(&mut self, key: &str, slot: Slot, bytes: V) -> bool {
        let charge = charge_bytes(key, bytes.payload_bytes());
        if charge > self.capacity_bytes {
            return false;
        }
        match slot {
            Slot::Whole => self.remove_key(key),
        }
        while self.bytes_cached + charge > self.capacity_bytes {
            let Some((_, (victim_key, victim_slot))) = self.recency.pop_first() else {
                break;
            };
            self.remove_entry(&victim_key, victim_slot);
            self.num_evictions += 1;
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.recency.insert(tick, (key.to_string(), slot));
        self.entries.entry(key.to_string()).or_default().insert(
            slot,
            Entry {
                bytes,
                tick,
                charge_bytes: charge,
            },
        );
        self.bytes_cached += charge;
        self.num_entries += 1;
        true
    }

    /// Removes every entry of `key`.
    pub(super) fn remove_key(&mut self, key: &str) {
        let Some(slots) = self.entries.remove(key) else {
            return;
        };
        for entry in slots.into_values() {
            self.recency.remove(&entry.tick);
            self.bytes_cached -= entry.charge_bytes;
            self.num_entries -= 1;
        }
    }

    /// Removes one entry from the entry map and the totals; the caller has already removed
    /// its tick from the recency index.
    fn remove_entry(&mut self, key: &str, slot: Slot) {
        let Some(slots) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(entry) = slots.remove(&slot) {
            self.bytes_cached -= entry.charge_bytes;
            self.num_entries -= 1;
        }
        if slots.is_empty() {
            self.entries.remove(key);
        }
    }

    /// Panics unless the indexes and totals agree; tests call it after every change.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut num_entries = 0;
        let mut bytes_cached = 0;
        for (key, slots) in &self.entries {
            assert!(!slots.is_empty(), "empty slot map left for '{key}'");
            for (slot, entry) in slots {
                num_entries += 1;
                bytes_cached += entry.charge_bytes;
                assert_eq!(
                    entry.charge_bytes,
                    charge_bytes(key, entry.bytes.payload_bytes())
                );
                assert_eq!(self.recency.get(&entry.tick), Some(&(key.clone(), *slot)));
            }
        }
        assert_eq!(self.recency.len() as u64, num_entries);
        assert_eq!(self.num_entries, num_entries);
        assert_eq!(self.bytes_cached, bytes_cached);
        assert!(self.bytes_cached <= self.capacity_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![0; len])
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let capacity = 3 * charge_bytes("k0", 100);
        let mut lru = ByteLru::new(capacity);
        for key in ["k0", "k1", "k2"] {
            assert!(lru.insert(key, Slot::Whole, payload(100)));
        }
        lru.check_invariants();
        assert!(lru.get("k0", Slot::Whole).is_some());
        assert!(lru.insert("k3", Slot::Whole, payload(100)));
        lru.check_invariants();
        assert!(lru.get("k1", Slot::Whole).is_none(), "k1 was least recent");
        assert!(lru.get("k0", Slot::Whole).is_some());
        assert_eq!(lru.num_evictions(), 1);
        // A larger entry pushes out as many entries as it needs, oldest first.
        assert!(lru.insert("k4", Slot::Whole, payload(250)));
        lru.check_invariants();
        assert!(lru.get("k2", Slot::Whole).is_none());
        assert!(lru.get("k3", Slot::Whole).is_none());
        assert!(lru.get("k0", Slot::Whole).is_some());
        assert_eq!(lru.num_evictions(), 3);
    }

    #[test]
    fn oversize_entry_is_refused_without_evicting() {
        let mut lru = ByteLru::new(charge_bytes("k", 100));
        assert!(lru.insert("k", Slot::Whole, payload(100)));
        assert!(!lru.insert("big", Slot::Whole, payload(101)));
        lru.check_invariants();
        assert_eq!(lru.num_entries(), 1);
        assert_eq!(lru.num_evictions(), 0);
    }

    #[test]
    fn a_new_value_replaces_the_old_one_and_remove_key_clears_it() {
        let mut lru = ByteLru::new(1 << 20);
        lru.insert("k", Slot::Whole, payload(4));
        lru.insert("other", Slot::Whole, payload(4));
        lru.check_invariants();
        assert_eq!(lru.num_entries(), 2);
        lru.insert("k", Slot::Whole, payload(8));
        lru.check_invariants();
        assert_eq!(lru.num_entries(), 2);
        lru.insert("k", Slot::Whole, payload(9));
        lru.check_invariants();
        assert_eq!(lru.num_entries(), 2);
        lru.remove_key("k");
        lru.check_invariants();
        assert_eq!(lru.num_entries(), 1);
        assert_eq!(lru.bytes_cached(), charge_bytes("other", 4));
        assert_eq!(lru.num_evictions(), 0, "replacement is not eviction");
    }
}
