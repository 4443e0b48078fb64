//! Linear algebra for the index build: the global and per-partition KLT (PCA) and the balanced
//! k-means that cuts the data set into partitions (SQUASH digest §1.2 and §2.1).
//!
//! This module owns the numerics only: it takes row-major `f32` slices and returns values. It
//! does no I/O, no async and no logging; progress is reported through a caller-supplied callback.
//!
//! Results are deterministic: the same input (and seed) gives bit-identical output whatever the
//! number of rayon threads. Parallel loops therefore work on fixed-size chunks of rows whose
//! partial results are combined in chunk order, and every matrix product runs with
//! `faer::Par::Seq` inside a rayon task (so its summation order never depends on the pool).

mod kmeans;
mod pca;

pub use kmeans::{balanced_cluster_size_bounds, balanced_kmeans, BalancedKMeansParams, Clustering};
pub use pca::Pca;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::metric::MAX_COMPONENT_MAGNITUDE;

/// Rows per partial sum of the mean; partial sums are combined in chunk order.
const MEAN_CHUNK_ROWS: usize = 4096;

/// Checks that `data` is a non-empty row-major matrix of finite values with `dim` columns and
/// returns its number of rows. `field` names the argument in the error.
fn check_matrix(field: &str, data: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 {
        return Err(Error::invalid(field, "dimension must be at least 1"));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(Error::invalid(
            field,
            format!(
                "length {} is not a multiple of the dimension {dim}",
                data.len()
            ),
        ));
    }
    let num_rows = data.len() / dim;
    if num_rows == 0 {
        return Err(Error::invalid(field, "no rows"));
    }
    let first_bad_opt = data.par_chunks(dim).position_first(|row| {
        row.iter()
            .any(|value| value.is_nan() || value.abs() > MAX_COMPONENT_MAGNITUDE)
    });
    if let Some(row_index) = first_bad_opt {
        return Err(Error::invalid(
            format!("{field} row {row_index}"),
            format!(
                "a value is not finite or beyond {MAX_COMPONENT_MAGNITUDE:e} in magnitude, \
                 where distances overflow"
            ),
        ));
    }
    Ok(num_rows)
}

/// Returns the per-column mean of `data` in `f64`.
fn column_means(data: &[f32], dim: usize) -> Vec<f64> {
    let num_rows = data.len() / dim;
    let partial_sums: Vec<Vec<f64>> = data
        .par_chunks(MEAN_CHUNK_ROWS * dim)
        .map(|chunk| {
            let mut sums = vec![0.0f64; dim];
            for row in chunk.chunks_exact(dim) {
                for (sum, value) in sums.iter_mut().zip(row) {
                    *sum += f64::from(*value);
                }
            }
            sums
        })
        .collect();
    let mut means = vec![0.0f64; dim];
    for sums in &partial_sums {
        for (mean, sum) in means.iter_mut().zip(sums) {
            *mean += sum;
        }
    }
    for mean in &mut means {
        *mean /= num_rows as f64;
    }
    means
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_matrix_rejects_bad_shapes_and_values() {
        assert!(check_matrix("data", &[1.0, 2.0], 0).is_err());
        assert!(check_matrix("data", &[1.0, 2.0, 3.0], 2).is_err());
        assert!(check_matrix("data", &[], 2).is_err());
        let error = check_matrix("data", &[1.0, 2.0, f32::NAN, 0.0], 2).unwrap_err();
        assert!(error.to_string().contains("row 1"), "{error}");
        assert_eq!(check_matrix("data", &[1.0, 2.0, 3.0, 4.0], 2).unwrap(), 2);
    }
}
