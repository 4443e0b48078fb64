//! Scoring search results against exact ground truth.
//!
//! Recall is scored by distance, not by id: a hit counts when it is at least as close as the
//! k-th ground-truth neighbour (with a small slack for float32 rounding), so ties at the k-th
//! distance do not punish a correct answer that picked another tied vector.

use crate::metric::Metric;
use crate::protocol::Hit;

/// Relative slack when comparing a hit's distance with the k-th ground-truth distance.
pub const RECALL_RELATIVE_SLACK: f32 = 1e-5;
/// Absolute slack, for distances near zero (inner products around 0).
pub const RECALL_ABSOLUTE_SLACK: f32 = 1e-5;

/// Converts a ground-truth value into this index's distance.
///
/// Ground-truth files hold squared L2 distances (`l2`) or inner products (`ip`); an `ip`
/// ground truth on unit vectors also scores a `cosine` index as `1 - ip`.
pub fn ground_truth_distance(index_metric: Metric, ground_truth_is_ip: bool, value: f32) -> f32 {
    match (ground_truth_is_ip, index_metric) {
        (true, Metric::Cosine) => 1.0 - value,
        (true, _) => -value,
        (false, _) => value,
    }
}

/// Returns recall@k of `hits` given the k-th ground-truth distance (already converted).
///
/// Duplicate ids count once. When fewer than `k` vectors match, `k` is lowered to
/// `num_matches` so a complete answer scores 1.
pub fn recall_at_k(hits: &[Hit], k: usize, kth_distance: f32, num_matches: usize) -> f64 {
    let wanted = k.min(num_matches);
    if wanted == 0 {
        return 1.0;
    }
    let threshold =
        kth_distance + RECALL_RELATIVE_SLACK * kth_distance.abs() + RECALL_ABSOLUTE_SLACK;
    let mut seen = std::collections::HashSet::new();
    let good = hits
        .iter()
        .take(k)
        .filter(|hit| hit.distance <= threshold && seen.insert(hit.id))
        .count();
    good.min(wanted) as f64 / wanted as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(distances: &[f32]) -> Vec<Hit> {
        distances
            .iter()
            .enumerate()
            .map(|(id, &distance)| Hit {
                id: id as u64,
                distance,
                attributes: None,
            })
            .collect()
    }

    #[test]
    fn recall_counts_hits_within_the_kth_distance() {
        assert_eq!(recall_at_k(&hits(&[1.0, 2.0, 3.0]), 3, 3.0, 100), 1.0);
        assert!((recall_at_k(&hits(&[1.0, 2.0, 9.0]), 3, 3.0, 100) - 2.0 / 3.0).abs() < 1e-9);
        assert!((recall_at_k(&hits(&[1.0]), 3, 3.0, 100) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(recall_at_k(&hits(&[1.0]), 3, 3.0, 1), 1.0);
        assert_eq!(ground_truth_distance(Metric::Cosine, true, 0.75), 0.25);
        assert_eq!(ground_truth_distance(Metric::Ip, true, 0.75), -0.75);
    }
}
