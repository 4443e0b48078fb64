//! Fine clusters inside a partition: the unit a query probes.
//!
//! A build cuts every partition into clusters of about [`DEFAULT_CLUSTER_ROWS`] rows (k-means on
//! the partition's leading principal components) and stores each cluster's rows contiguously,
//! so a cluster is a row range of the segment. The coordinator ranks every cluster of the index
//! by centroid distance, takes the nearest until the plan's targets are met and sends each
//! query with a probe radius: a worker scans exactly its clusters whose centroids lie within
//! that radius of the query. Because the coordinator and the worker rank the same centroids with
//! the same arithmetic, the worker's clusters are a superset of what the coordinator counted
//! (the radius carries a relative slack for a worker on another CPU), which keeps the one-pass
//! guarantee of at least `k` hits.
//!
//! Segments and coordinator objects written before fine clusters existed hold one cluster per
//! partition and no centroids: such a partition is scanned whole.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::linalg::{balanced_kmeans, BalancedKMeansParams, Pca};
use squash_kernels as kernels;

/// Rows per fine cluster a build aims at. Smaller clusters let a query scan fewer rows for the
/// same recall (GloVe unfiltered at recall@10 0.95: about 94k rows probed with 1,000-row
/// clusters, 61k with 500, 37k with 250) but give the coordinator more centroids to rank per
/// query (at 10M vectors, 39,000 centroids: about 5 M multiply-adds per 128-d query).
pub const DEFAULT_CLUSTER_ROWS: usize = 256;

/// Clustering runs on at most this many leading principal components of the partition.
const CLUSTERING_COMPONENTS: usize = 64;

/// Clusters may be this far from the target size (±50 %): loose enough for the clusters to
/// follow the data, tight enough to bound the work of probing one cluster.
const BALANCE_TOLERANCE: f64 = 0.5;

/// Lloyd iterations of the fine clustering; its training sample is a few hundred rows per
/// cluster, where k-means converges in about ten.
const MAX_ITERATIONS: usize = 12;

/// Training rows per fine cluster.
const TRAINING_ROWS_PER_CLUSTER: usize = 256;

/// Relative slack on the probe radius a worker applies: the coordinator and a worker on another
/// CPU (AVX2 against NEON) may round a centroid distance differently in the last bits.
pub const PROBE_RADIUS_SLACK: f32 = 1e-4;

/// The fine clusters of one partition: row ranges and centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct FineClusters {
    /// Rows per cluster; clusters are stored one after another in this order.
    pub sizes: Vec<u64>,
    /// `sizes.len() x dim` centroids, row-major, in the (normalised, for cosine) vector space;
    /// empty for a partition written without fine clusters (scanned whole).
    pub centroids: Vec<f32>,
}

impl FineClusters {
    /// Returns one cluster spanning `num_rows` rows, without a centroid (scanned whole).
    pub fn whole(num_rows: usize) -> FineClusters {
        FineClusters {
            sizes: vec![num_rows as u64],
            centroids: Vec::new(),
        }
    }

    /// Returns the number of clusters.
    pub fn num_clusters(&self) -> usize {
        self.sizes.len()
    }

    /// Returns whether clusters have centroids to probe by.
    pub fn has_centroids(&self) -> bool {
        !self.centroids.is_empty()
    }

    /// Returns the row range of every cluster, in order.
    pub fn row_ranges(&self) -> Vec<Range<usize>> {
        let mut start = 0usize;
        self.sizes
            .iter()
            .map(|&size| {
                let range = start..start + size as usize;
                start = range.end;
                range
            })
            .collect()
    }

    /// Checks the clusters against a partition of `num_rows` rows of dimension `dim`, naming
    /// `object` in the error.
    pub fn check(&self, object: &str, num_rows: usize, dim: usize) -> Result<()> {
        let total = self
            .sizes
            .iter()
            .try_fold(0u64, |sum, &size| sum.checked_add(size));
        if total != Some(num_rows as u64) {
            return Err(Error::corrupt(
                object,
                0,
                format!("fine cluster sizes do not add up to the {num_rows} rows"),
            ));
        }
        if self.has_centroids() && Some(self.centroids.len()) != self.sizes.len().checked_mul(dim) {
            return Err(Error::corrupt(
                object,
                0,
                format!(
                    "{} fine cluster centroid values for {} clusters of dimension {dim}",
                    self.centroids.len(),
                    self.sizes.len()
                ),
            ));
        }
        Ok(())
    }

    /// Returns the row ranges a query must scan for `probe_radius_opt`: every cluster whose
    /// centroid is within the radius (with [`PROBE_RADIUS_SLACK`]), or every row when there is
    /// no radius or no centroids. `query` is normalised as the index's vectors are.
    pub fn rows_to_probe(&self, query: &[f32], probe_radius_opt: Option<f32>) -> Vec<Range<usize>> {
        let (Some(radius), true) = (probe_radius_opt, self.has_centroids()) else {
            let total = self.sizes.iter().sum::<u64>() as usize;
            return std::iter::once(0..total).collect();
        };
        let limit = radius * (1.0 + PROBE_RADIUS_SLACK) + f32::EPSILON;
        let limit_squared = limit * limit;
        let mut distances = vec![0f32; self.sizes.len()];
        kernels::l2_squared_rows(query, &self.centroids, &mut distances);
        let mut probed: Vec<Range<usize>> = Vec::new();
        let mut start = 0usize;
        for (&size, &distance) in self.sizes.iter().zip(&distances) {
            let range = start..start + size as usize;
            start = range.end;
            if range.is_empty() || distance > limit_squared {
                continue;
            }
            // Adjacent clusters merge into one range, so the scan walks fewer, longer runs.
            match probed.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => probed.push(range),
            }
        }
        probed
    }
}

/// Returns the number of fine clusters for a partition of `num_rows` rows.
pub fn num_fine_clusters(num_rows: usize, cluster_rows: usize) -> usize {
    num_rows
        .div_ceil(cluster_rows.max(1))
        .clamp(1, num_rows.max(1))
}

/// Cuts a partition's vectors (`n x dim`, row-major, normalised for cosine) into fine clusters.
///
/// Returns the new row order (positions into `vectors`, cluster after cluster) and the
/// clusters, whose centroids are the means of their rows in the original space. `pca` is the
/// partition's own PCA: clustering runs on its leading components.
pub fn cluster_partition(
    vectors: &[f32],
    dim: usize,
    pca: &Pca,
    cluster_rows: usize,
    seed: u64,
) -> Result<(Vec<u32>, FineClusters)> {
    let num_rows = vectors.len() / dim;
    let num_clusters = num_fine_clusters(num_rows, cluster_rows);
    let assignments = if num_clusters == 1 {
        vec![0u32; num_rows]
    } else {
        let components = dim.min(CLUSTERING_COMPONENTS);
        let projected = pca.project_all(vectors, components);
        let params = BalancedKMeansParams {
            num_clusters,
            max_iterations: MAX_ITERATIONS,
            balance_tolerance: BALANCE_TOLERANCE,
            seed,
            max_training_rows: num_clusters.saturating_mul(TRAINING_ROWS_PER_CLUSTER),
        };
        balanced_kmeans(&projected, components, &params, &|_, _| {})?.assignments
    };
    let mut sizes = vec![0u64; num_clusters];
    for &cluster in &assignments {
        sizes[cluster as usize] += 1;
    }
    let mut order: Vec<u32> = (0..num_rows as u32).collect();
    // Stable: rows of one cluster keep their partition order.
    order.sort_by_key(|&row| assignments[row as usize]);
    let mut sums = vec![0f64; num_clusters * dim];
    for (row, &cluster) in assignments.iter().enumerate() {
        let sum = &mut sums[cluster as usize * dim..][..dim];
        for (total, &value) in sum.iter_mut().zip(&vectors[row * dim..][..dim]) {
            *total += f64::from(value);
        }
    }
    let mut centroids = Vec::with_capacity(num_clusters * dim);
    for (cluster, &size) in sizes.iter().enumerate() {
        let count = size.max(1) as f64;
        centroids.extend(
            sums[cluster * dim..][..dim]
                .iter()
                .map(|&sum| (sum / count) as f32),
        );
    }
    Ok((order, FineClusters { sizes, centroids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_blobs() -> (Vec<f32>, usize) {
        // 40 rows near (0, 0) and 40 near (10, 10), interleaved.
        let mut vectors = Vec::new();
        for row in 0..80 {
            let offset = if row % 2 == 0 { 0.0 } else { 10.0 };
            let jitter = (row as f32 * 0.37).sin() * 0.1;
            vectors.extend_from_slice(&[offset + jitter, offset - jitter]);
        }
        (vectors, 2)
    }

    #[test]
    fn clusters_are_contiguous_and_cover_every_row_once() {
        let (vectors, dim) = two_blobs();
        let pca = Pca::fit(&vectors, dim).unwrap();
        let (order, clusters) = cluster_partition(&vectors, dim, &pca, 40, 7).unwrap();
        assert_eq!(clusters.num_clusters(), 2);
        clusters.check("t", 80, dim).unwrap();
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..80).collect::<Vec<u32>>());
        // Each cluster holds one blob: the rows of a range all share their offset.
        for range in clusters.row_ranges() {
            let blob = |position: usize| vectors[order[position] as usize * dim] > 5.0;
            assert!(range
                .clone()
                .all(|position| blob(position) == blob(range.start)));
        }
    }

    #[test]
    fn a_radius_selects_the_clusters_within_it() {
        let clusters = FineClusters {
            sizes: vec![3, 2, 4],
            centroids: vec![0.0, 0.0, 5.0, 0.0, 1.0, 0.0],
        };
        let query = [0.0, 0.0];
        // Clusters 0 (distance 0) and 2 (distance 1) are within 1.0; cluster 1 is not.
        let everything: Vec<Range<usize>> = std::iter::once(0..9).collect();
        assert_eq!(clusters.rows_to_probe(&query, Some(1.0)), vec![0..3, 5..9]);
        assert_eq!(clusters.rows_to_probe(&query, Some(5.0)), everything);
        assert_eq!(clusters.rows_to_probe(&query, None), everything);
        assert_eq!(
            FineClusters::whole(9).rows_to_probe(&query, Some(0.0)),
            everything
        );
    }

    #[test]
    fn inconsistent_clusters_are_corrupt() {
        let clusters = FineClusters {
            sizes: vec![3, 2],
            centroids: vec![0.0; 4],
        };
        assert!(clusters.check("t", 5, 2).is_ok());
        assert!(clusters.check("t", 6, 2).is_err());
        assert!(clusters.check("t", 5, 3).is_err());
        let overflowing = FineClusters {
            sizes: vec![u64::MAX, 2],
            centroids: Vec::new(),
        };
        assert!(overflowing.check("t", 1, 2).is_err());
    }
}
