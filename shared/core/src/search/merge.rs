//! Merging per-partition top-k lists into one top-k.

use crate::protocol::Hit;

/// Returns the best `k` hits of all `lists`, by distance then id (so ties are deterministic).
pub fn merge_hits(lists: impl IntoIterator<Item = Vec<Hit>>, k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, distance: f32) -> Hit {
        Hit {
            id,
            distance,
            attributes: None,
        }
    }

    #[test]
    fn merge_keeps_the_best_k_with_id_tie_break() {
        let merged = merge_hits(
            vec![
                vec![hit(5, 1.0), hit(1, 3.0)],
                vec![hit(2, 1.0), hit(9, 0.5)],
                vec![],
            ],
            3,
        );
        let ids: Vec<u64> = merged.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![9, 2, 5]);
    }
}
