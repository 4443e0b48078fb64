//! Principal component analysis (the KLT of SQUASH digest §1.2): mean, covariance, symmetric
//! eigendecomposition, and the projections that use them.
//!
//! The covariance is accumulated in `f64` with faer matrix products over fixed-size chunks of
//! rows; the eigendecomposition runs in `f64` too. Only the stored model is `f32`.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{check_matrix, column_means};
use crate::error::{Error, Result};
use squash_kernels::dot_f32;

/// Target number of `f64` values in one centered chunk of rows (8 MiB), so the chunk buffer
/// stays cache-friendly for wide data and the matrix product still gets long inner dimensions.
const COVARIANCE_CHUNK_VALUES: usize = 1 << 20;
/// Upper bound on the rows of one covariance chunk: beyond this the product is already efficient.
const COVARIANCE_MAX_CHUNK_ROWS: usize = 8192;
/// Width of the column blocks of the covariance that are computed in parallel. Blocks are fixed
/// so every covariance entry is summed in the same order whatever the thread count.
const COVARIANCE_BLOCK_COLUMNS: usize = 64;
/// Rows per rayon task in [`Pca::project_all`].
const PROJECT_BLOCK_ROWS: usize = 256;

/// A fitted PCA: the data mean and the principal axes, ordered by descending variance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pca {
    /// Dimension of the input vectors.
    pub dim: usize,
    /// Per-dimension mean of the training data (`dim` values).
    pub mean: Vec<f32>,
    /// `dim × dim` row-major; row `j` is the `j`-th principal axis (unit norm). The sign of each
    /// axis is fixed so that its entry of largest magnitude is positive.
    pub components: Vec<f32>,
    /// Variance of the data along each axis (the covariance eigenvalues, population
    /// normalisation, clamped at 0), in descending order.
    pub variances: Vec<f32>,
}

impl Pca {
    /// Fits a PCA to `data`, a row-major `n × dim` matrix with `n ≥ 1` finite rows.
    ///
    /// The covariance is Σ (x − μ)(x − μ)ᵀ / n. With a single row every variance is 0 and the
    /// axes are an orthonormal basis.
    pub fn fit(data: &[f32], dim: usize) -> Result<Pca> {
        let num_rows = check_matrix("data", data, dim)?;
        let mean = column_means(data, dim);
        let chunk_rows = (COVARIANCE_CHUNK_VALUES / dim).clamp(1, COVARIANCE_MAX_CHUNK_ROWS);
        let scatter = scatter_lower(data, dim, &mean, chunk_rows);
        let inverse_num_rows = 1.0 / num_rows as f64;
        // Only the lower triangle of `scatter` is filled; mirror it so the matrix handed to the
        // eigensolver is exactly symmetric.
        let covariance = Mat::<f64>::from_fn(dim, dim, |row, col| {
            let (low, high) = if row >= col { (row, col) } else { (col, row) };
            scatter[high * dim + low] * inverse_num_rows
        });

        // Sequential so the result does not depend on the size of the thread pool; at the
        // dimensions we use (≤ 1000) this takes well under a second.
        let par = Par::Seq;
        let mut eigenvectors = Mat::<f64>::zeros(dim, dim);
        let mut eigenvalues = faer::diag::Diag::<f64>::zeros(dim);
        let mut scratch = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
            dim,
            ComputeEigenvectors::Yes,
            par,
            Default::default(),
        ));
        self_adjoint_evd(
            covariance.as_ref(),
            eigenvalues.as_mut(),
            Some(eigenvectors.as_mut()),
            par,
            MemStack::new(&mut scratch),
            Default::default(),
        )
        .map_err(|_| Error::invalid("data", "covariance eigendecomposition did not converge"))?;

        // faer returns eigenvalues in ascending order; the model wants them descending.
        let eigenvalues = eigenvalues.column_vector();
        let mut components = Vec::with_capacity(dim * dim);
        let mut variances = Vec::with_capacity(dim);
        for rank in 0..dim {
            let source_col = dim - 1 - rank;
            let axis = eigenvectors.col(source_col);
            let mut pivot_value = 0.0f64;
            for value in axis.iter() {
                if value.abs() > pivot_value.abs() {
                    pivot_value = *value;
                }
            }
            let sign = if pivot_value < 0.0 { -1.0 } else { 1.0 };
            components.extend(axis.iter().map(|value| (sign * value) as f32));
            variances.push(eigenvalues[source_col].max(0.0) as f32);
        }

        Ok(Pca {
            dim,
            mean: mean.iter().map(|&value| value as f32).collect(),
            components,
            variances,
        })
    }

    /// Writes the coordinates of `x − mean` on the first `out.len()` axes into `out`.
    ///
    /// # Panics
    /// If `x.len() != dim` or `out.len() > dim`.
    pub fn project(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "Pca::project: input length != dim");
        assert!(
            out.len() <= self.dim,
            "Pca::project: more outputs than axes"
        );
        let centered: Vec<f32> = x
            .iter()
            .zip(&self.mean)
            .map(|(value, mean)| value - mean)
            .collect();
        self.rotate_centered(&centered, out);
    }

    /// Writes the coordinates of `x` itself (no centering) on the first `out.len()` axes into
    /// `out`: the rotation part of [`Pca::project`], for vectors that are differences already.
    ///
    /// # Panics
    /// If `x.len() != dim` or `out.len() > dim`.
    pub fn rotate(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "Pca::rotate: input length != dim");
        assert!(out.len() <= self.dim, "Pca::rotate: more outputs than axes");
        self.rotate_centered(x, out);
    }

    fn rotate_centered(&self, x: &[f32], out: &mut [f32]) {
        for (axis, value) in self.components.chunks_exact(self.dim).zip(out.iter_mut()) {
            *value = dot_f32(axis, x);
        }
    }

    /// Returns the projections of every row of `data` (row-major `n × dim`) on the first
    /// `num_components` axes, row-major `n × num_components`.
    ///
    /// Uses blocked matrix products, so values agree with [`Pca::project`] up to `f32`
    /// rounding, not bit for bit.
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `dim` or `num_components > dim`.
    pub fn project_all(&self, data: &[f32], num_components: usize) -> Vec<f32> {
        let dim = self.dim;
        assert!(
            dim > 0 && data.len().is_multiple_of(dim),
            "Pca::project_all: data length is not a multiple of dim"
        );
        assert!(
            num_components <= dim,
            "Pca::project_all: more outputs than axes"
        );
        let num_rows = data.len() / dim;
        let mut projected = vec![0.0f32; num_rows * num_components];
        if num_components == 0 {
            return projected;
        }
        let axes = MatRef::from_row_major_slice(
            &self.components[..num_components * dim],
            num_components,
            dim,
        )
        .transpose();
        data.par_chunks(PROJECT_BLOCK_ROWS * dim)
            .zip(projected.par_chunks_mut(PROJECT_BLOCK_ROWS * num_components))
            .for_each_init(
                || vec![0.0f32; PROJECT_BLOCK_ROWS * dim],
                |centered, (rows, out)| {
                    let num_block_rows = rows.len() / dim;
                    let centered = &mut centered[..rows.len()];
                    for (centered_row, row) in
                        centered.chunks_exact_mut(dim).zip(rows.chunks_exact(dim))
                    {
                        for ((target, value), mean) in
                            centered_row.iter_mut().zip(row).zip(&self.mean)
                        {
                            *target = value - mean;
                        }
                    }
                    matmul(
                        MatMut::from_row_major_slice_mut(out, num_block_rows, num_components),
                        Accum::Replace,
                        MatRef::from_row_major_slice(centered, num_block_rows, dim),
                        axes,
                        1.0f32,
                        Par::Seq,
                    );
                },
            );
        projected
    }
}

/// Returns the scatter matrix Σ (x − μ)(x − μ)ᵀ, `dim × dim` column-major, with only the lower
/// triangle (and the upper parts of the diagonal blocks) filled.
///
/// Rows are centered into an `f64` buffer `chunk_rows` at a time; for each chunk, column blocks
/// of the lower triangle are updated in parallel, each by one sequential matrix product. Every
/// entry therefore sums the chunks in the same order whatever the thread count.
fn scatter_lower(data: &[f32], dim: usize, mean: &[f64], chunk_rows: usize) -> Vec<f64> {
    let mut scatter = vec![0.0f64; dim * dim];
    let mut centered = vec![0.0f64; chunk_rows.min(data.len() / dim) * dim];
    for row_chunk in data.chunks(chunk_rows * dim) {
        let num_chunk_rows = row_chunk.len() / dim;
        let centered = &mut centered[..row_chunk.len()];
        centered
            .par_chunks_mut(dim)
            .zip(row_chunk.par_chunks(dim))
            .for_each(|(centered_row, row)| {
                for ((target, value), mean) in centered_row.iter_mut().zip(row).zip(mean) {
                    *target = f64::from(*value) - mean;
                }
            });
        let chunk = MatRef::from_row_major_slice(&*centered, num_chunk_rows, dim);
        scatter
            .par_chunks_mut(dim * COVARIANCE_BLOCK_COLUMNS)
            .enumerate()
            .for_each(|(block_index, block)| {
                let first_col = block_index * COVARIANCE_BLOCK_COLUMNS;
                let num_block_cols = block.len() / dim;
                let num_lower_rows = dim - first_col;
                let target = MatMut::from_column_major_slice_mut(block, dim, num_block_cols)
                    .subrows_mut(first_col, num_lower_rows);
                matmul(
                    target,
                    Accum::Add,
                    chunk.transpose().subrows(first_col, num_lower_rows),
                    chunk.subcols(first_col, num_block_cols),
                    1.0f64,
                    Par::Seq,
                );
            });
    }
    scatter
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn gaussian(rng: &mut StdRng) -> f64 {
        // Box–Muller; 1 − u keeps the logarithm finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Returns a random orthonormal `dim × dim` matrix (rows are the basis) by Gram–Schmidt.
    fn random_rotation(dim: usize, rng: &mut StdRng) -> Vec<Vec<f64>> {
        let mut basis: Vec<Vec<f64>> = Vec::new();
        while basis.len() < dim {
            let mut v: Vec<f64> = (0..dim).map(|_| gaussian(rng)).collect();
            for b in &basis {
                let projection: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                for (x, y) in v.iter_mut().zip(b) {
                    *x -= projection * y;
                }
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-6 {
                basis.push(v.iter().map(|x| x / norm).collect());
            }
        }
        basis
    }

    struct Synthetic {
        data: Vec<f32>,
        axes: Vec<Vec<f64>>,
        stddevs: Vec<f64>,
        mean: Vec<f64>,
    }

    /// Gaussian data with standard deviation `stddevs[j]` along the `j`-th axis of a random
    /// rotation, shifted by a non-zero mean.
    fn synthetic(num_rows: usize, stddevs: &[f64], seed: u64) -> Synthetic {
        let dim = stddevs.len();
        let mut rng = StdRng::seed_from_u64(seed);
        let axes = random_rotation(dim, &mut rng);
        let mean: Vec<f64> = (0..dim).map(|i| 3.0 + i as f64).collect();
        let mut data = Vec::with_capacity(num_rows * dim);
        for _ in 0..num_rows {
            let mut row = mean.clone();
            for (axis, stddev) in axes.iter().zip(stddevs) {
                let coefficient = stddev * gaussian(&mut rng);
                for (value, direction) in row.iter_mut().zip(axis) {
                    *value += coefficient * direction;
                }
            }
            data.extend(row.iter().map(|&v| v as f32));
        }
        Synthetic {
            data,
            axes,
            stddevs: stddevs.to_vec(),
            mean,
        }
    }

    #[test]
    fn recovers_known_axes_and_variances() {
        let synthetic = synthetic(20_000, &[5.0, 3.0, 1.5, 0.5, 0.1], 7);
        let dim = synthetic.stddevs.len();
        let pca = Pca::fit(&synthetic.data, dim).unwrap();
        assert_eq!(pca.dim, dim);
        for (j, axis) in synthetic.axes.iter().enumerate() {
            let component = &pca.components[j * dim..(j + 1) * dim];
            let cosine: f64 = component.iter().zip(axis).map(|(c, a)| *c as f64 * a).sum();
            assert!(cosine.abs() > 0.999, "axis {j}: |cos| = {}", cosine.abs());
            let expected = synthetic.stddevs[j] * synthetic.stddevs[j];
            let relative_error = (pca.variances[j] as f64 - expected).abs() / expected;
            assert!(
                relative_error < 0.05,
                "axis {j}: variance {} vs {expected}",
                pca.variances[j]
            );
        }
        for (fitted, expected) in pca.mean.iter().zip(&synthetic.mean) {
            assert!((*fitted as f64 - expected).abs() < 0.1);
        }
        assert!(pca.variances.windows(2).all(|pair| pair[0] >= pair[1]));
    }

    #[test]
    fn components_are_orthonormal_and_sign_fixed() {
        let synthetic = synthetic(3_000, &[4.0, 2.0, 2.0, 1.0, 0.3, 0.3, 0.01], 11);
        let dim = 7;
        let pca = Pca::fit(&synthetic.data, dim).unwrap();
        for i in 0..dim {
            let row_i = &pca.components[i * dim..(i + 1) * dim];
            let pivot = row_i.iter().fold(
                0.0f32,
                |best, &v| if v.abs() > best.abs() { v } else { best },
            );
            assert!(pivot > 0.0);
            for j in 0..dim {
                let row_j = &pca.components[j * dim..(j + 1) * dim];
                let dot: f32 = row_i.iter().zip(row_j).map(|(a, b)| a * b).sum();
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((dot - expected).abs() < 1e-5, "({i}, {j}): {dot}");
            }
        }
    }

    #[test]
    fn projections_center_rotate_and_reconstruct() {
        let synthetic = synthetic(2_000, &[3.0, 2.0, 1.0, 0.5], 3);
        let dim = 4;
        let pca = Pca::fit(&synthetic.data, dim).unwrap();

        let mut projected_mean = vec![0.0f32; dim];
        pca.project(&pca.mean, &mut projected_mean);
        assert!(
            projected_mean.iter().all(|v| v.abs() < 1e-5),
            "{projected_mean:?}"
        );

        let mut rotated_mean = vec![0.0f32; dim];
        pca.rotate(&pca.mean, &mut rotated_mean);
        for row in synthetic.data.chunks_exact(dim).take(50) {
            let mut projected = vec![0.0f32; dim];
            pca.project(row, &mut projected);
            let mut rotated = vec![0.0f32; dim];
            pca.rotate(row, &mut rotated);
            for j in 0..dim {
                assert!((rotated[j] - rotated_mean[j] - projected[j]).abs() < 1e-4);
            }
            // x = μ + Cᵀ·project(x) when every axis is kept.
            for (i, &original) in row.iter().enumerate() {
                let reconstructed: f32 = pca.mean[i]
                    + (0..dim)
                        .map(|j| pca.components[j * dim + i] * projected[j])
                        .sum::<f32>();
                assert!(
                    (reconstructed - original).abs() < 1e-4,
                    "{reconstructed} vs {original}"
                );
            }
            // A prefix of the outputs is the same as the full projection's prefix.
            let mut first_two = [0.0f32; 2];
            pca.project(row, &mut first_two);
            assert_eq!(first_two, [projected[0], projected[1]]);
        }
    }

    #[test]
    fn project_all_matches_project() {
        let synthetic = synthetic(700, &[3.0, 2.0, 1.0, 0.5, 0.2, 0.1], 5);
        let dim = 6;
        let pca = Pca::fit(&synthetic.data, dim).unwrap();
        for num_components in [0, 1, 4, 6] {
            let all = pca.project_all(&synthetic.data, num_components);
            assert_eq!(all.len(), 700 * num_components);
            for (row_index, row) in synthetic.data.chunks_exact(dim).enumerate() {
                let mut single = vec![0.0f32; num_components];
                pca.project(row, &mut single);
                for j in 0..num_components {
                    let batched = all[row_index * num_components + j];
                    assert!(
                        (batched - single[j]).abs() < 1e-4,
                        "{batched} vs {}",
                        single[j]
                    );
                }
            }
        }
    }

    #[test]
    fn single_row_gives_zero_variances_and_a_basis() {
        let row = [1.0f32, -2.0, 0.5];
        let pca = Pca::fit(&row, 3).unwrap();
        assert_eq!(pca.variances, vec![0.0; 3]);
        assert_eq!(pca.mean, row.to_vec());
        for i in 0..3 {
            for j in 0..3 {
                let dot: f32 = (0..3)
                    .map(|t| pca.components[i * 3 + t] * pca.components[j * 3 + t])
                    .sum();
                assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6);
            }
        }
        let mut out = [1.0f32; 3];
        pca.project(&row, &mut out);
        assert_eq!(out, [0.0; 3]);
    }

    #[test]
    fn scatter_matches_naive_sum_across_chunks_and_blocks() {
        // 70 columns span two column blocks; chunks of 7 rows leave a ragged last chunk.
        let dim = 70;
        let num_rows = 45;
        let mut rng = StdRng::seed_from_u64(1);
        let data: Vec<f32> = (0..num_rows * dim)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let mean = column_means(&data, dim);
        let scatter = scatter_lower(&data, dim, &mean, 7);
        for col in 0..dim {
            for row in col..dim {
                let naive: f64 = data
                    .chunks_exact(dim)
                    .map(|x| (x[row] as f64 - mean[row]) * (x[col] as f64 - mean[col]))
                    .sum();
                assert!(
                    (scatter[col * dim + row] - naive).abs() < 1e-9,
                    "({row}, {col})"
                );
            }
        }
    }

    #[test]
    fn fit_is_identical_across_thread_counts() {
        let synthetic = synthetic(9_000, &[3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01], 9);
        let fit_with = |num_threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(num_threads)
                .build()
                .unwrap()
                .install(|| Pca::fit(&synthetic.data, 8).unwrap())
        };
        let single = fit_with(1);
        assert_eq!(single, fit_with(2));
        assert_eq!(single, fit_with(3));
        let projected_single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| single.project_all(&synthetic.data, 5));
        assert_eq!(projected_single, single.project_all(&synthetic.data, 5));
    }

    #[test]
    fn serde_round_trip_keeps_the_model() {
        let synthetic = synthetic(100, &[2.0, 1.0], 2);
        let pca = Pca::fit(&synthetic.data, 2).unwrap();
        let json = serde_json::to_string(&pca).unwrap();
        assert_eq!(serde_json::from_str::<Pca>(&json).unwrap(), pca);
    }

    #[test]
    fn fit_rejects_bad_input() {
        assert!(Pca::fit(&[], 3).is_err());
        assert!(Pca::fit(&[1.0, 2.0], 0).is_err());
        assert!(Pca::fit(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(Pca::fit(&[1.0, f32::INFINITY], 2).is_err());
    }
}
