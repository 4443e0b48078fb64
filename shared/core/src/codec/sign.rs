//! Sign codes: one bit per rotated dimension, for the Hamming pre-filter (SQUASH §1.6).
//!
//! Bit `d` of a vector is set when its rotated, centered coordinate `d` is positive. The query
//! uses the same rule on the same kind of coordinates (see `search::scan`), so matching
//! coordinates give matching bits: the reference code used `>= 0` for queries and `> 0` for
//! data, which this avoids. Only dimensions with non-zero variance take bits, leading ones
//! first, since a constant dimension carries no information.

/// Returns the number of 64-bit words of a code of `num_bits` bits.
pub fn words_for_bits(num_bits: usize) -> usize {
    num_bits.div_ceil(64)
}

/// Returns how many leading rotated dimensions get a sign bit: enough to hold `variance_share`
/// of the total variance, rounded up to whole 64-bit words (extra bits in a word cost nothing
/// to compare), never a dimension with zero variance.
pub fn num_sign_bits(variances: &[f32], variance_share: f64) -> usize {
    let total: f64 = variances.iter().map(|&v| f64::from(v.max(0.0))).sum();
    let num_informative = variances.iter().take_while(|&&v| v > 0.0).count();
    if total <= 0.0 {
        return 0;
    }
    let mut covered = 0.0;
    let mut needed = 0usize;
    for &variance in variances {
        if covered >= variance_share * total {
            break;
        }
        covered += f64::from(variance.max(0.0));
        needed += 1;
    }
    (needed.div_ceil(64) * 64).min(num_informative)
}

/// Writes the sign code of one rotated vector into `out` (`words_for_bits(num_bits)` words).
pub fn encode_sign(rotated: &[f32], num_bits: usize, out: &mut [u64]) {
    debug_assert_eq!(out.len(), words_for_bits(num_bits));
    out.fill(0);
    for (d, &value) in rotated.iter().take(num_bits).enumerate() {
        if value > 0.0 {
            out[d / 64] |= 1u64 << (d % 64);
        }
    }
}

/// Returns the sign codes of row-major rotated vectors (`n x dim`), row-major `n x words`.
pub fn encode_signs(rotated: &[f32], dim: usize, num_bits: usize) -> Vec<u64> {
    let words = words_for_bits(num_bits);
    let num_vectors = rotated.len() / dim;
    let mut codes = vec![0u64; num_vectors * words];
    if words == 0 {
        return codes;
    }
    for (row, code) in rotated.chunks_exact(dim).zip(codes.chunks_exact_mut(words)) {
        encode_sign(row, num_bits, code);
    }
    codes
}

/// Returns, per row of `rotated` (`n x dim`), `[‖z_s‖, ‖z_r‖²]`: the norm of the first
/// `num_bits` coordinates (the sign subspace) and the squared norm of the rest.
pub fn subspace_norms(rotated: &[f32], dim: usize, num_bits: usize) -> Vec<f32> {
    let mut norms = Vec::with_capacity(2 * rotated.len() / dim.max(1));
    for row in rotated.chunks_exact(dim) {
        let (inside, outside) = row.split_at(num_bits.min(dim));
        norms.push(inside.iter().map(|v| v * v).sum::<f32>().sqrt());
        norms.push(outside.iter().map(|v| v * v).sum::<f32>());
    }
    norms
}

/// Returns `cos(π·h / num_bits)` for every Hamming distance `h` in `0..=num_bits`: the angle
/// estimate between two vectors from the share of sign bits on which they differ.
pub fn angle_cosines(num_bits: usize) -> Vec<f32> {
    (0..=num_bits)
        .map(|h| (std::f64::consts::PI * h as f64 / num_bits.max(1) as f64).cos() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_bits_follow_positive_coordinates() {
        let rotated = [1.0, -1.0, 0.0, 2.0, /* row 2 */ -3.0, 4.0, 5.0, 0.5];
        let codes = encode_signs(&rotated, 4, 3);
        assert_eq!(codes, vec![0b001, 0b110]);
        assert_eq!(num_sign_bits(&[3.0, 1.0, 0.0, 0.0], 0.9), 2);
        let decaying: Vec<f32> = (0..300).map(|d| 0.9f32.powi(d)).collect();
        assert_eq!(num_sign_bits(&decaying, 0.9), 64);
        assert_eq!(num_sign_bits(&decaying, 0.9999), 128);
        assert_eq!(words_for_bits(65), 2);
        assert_eq!(subspace_norms(&[3.0, 4.0, 1.0, 2.0], 4, 2), vec![5.0, 5.0]);
        let cosines = angle_cosines(4);
        assert_eq!(cosines.len(), 5);
        assert!(
            (cosines[0] - 1.0).abs() < 1e-6
                && (cosines[2]).abs() < 1e-6
                && (cosines[4] + 1.0).abs() < 1e-6
        );
    }
}
