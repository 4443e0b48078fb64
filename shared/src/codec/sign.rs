//! Sign codes: one bit per rotated dimension, for the Hamming pre-filter (SQUASH §1.6).
//!
//! Bit `d` of a vector is set when its rotated, centered coordinate `d` is positive. The query
//! uses the same rule on the same kind of coordinates (see `search::worker`), so matching
//! coordinates give matching bits: the reference code used `>= 0` for queries and `> 0` for
//! data, which this avoids. Only dimensions with non-zero variance take bits, leading ones
//! first, since a constant dimension carries no information.

/// Returns the number of 64-bit words of a code of `num_bits` bits.
pub fn words_for_bits(num_bits: usize) -> usize {
    num_bits.div_ceil(64)
}

/// Returns how many leading rotated dimensions get a sign bit: those with non-zero variance.
pub fn num_sign_bits(variances: &[f32]) -> usize {
    variances.iter().take_while(|&&v| v > 0.0).count()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_bits_follow_positive_coordinates() {
        let rotated = [1.0, -1.0, 0.0, 2.0, /* row 2 */ -3.0, 4.0, 5.0, 0.5];
        let codes = encode_signs(&rotated, 4, 3);
        assert_eq!(codes, vec![0b001, 0b110]);
        assert_eq!(num_sign_bits(&[3.0, 1.0, 0.0, 0.0]), 2);
        assert_eq!(words_for_bits(65), 2);
    }
}
