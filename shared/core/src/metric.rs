//! Distance metrics and how each maps onto the two scoring spaces the kernels implement.
//!
//! Every metric is reported as a distance (smaller is closer):
//! - `l2`: squared Euclidean distance;
//! - `ip`: the negated inner product, `-(q·x)`;
//! - `cosine`: `1 - cos(q, x)`; vectors are normalised at build and queries at search time,
//!   after which `1 - q·x` is the inner product space shifted by 1.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use squash_kernels as kernels;

/// The largest magnitude of a vector component, in queries and in builds: beyond it squared
/// distances can overflow `f32` (no embedding comes near it).
pub const MAX_COMPONENT_MAGNITUDE: f32 = 1e15;

/// A distance metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Cosine distance (`1 - cos`).
    Cosine,
    /// Negated inner product.
    Ip,
}

impl Metric {
    /// Returns true when vectors are normalised to unit length before indexing and search.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// Returns true when scoring uses the inner product kernels (ip and cosine).
    pub fn uses_inner_product(self) -> bool {
        self != Metric::L2
    }

    /// Returns the constant added to `-(q·x)` to get this metric's distance.
    pub fn inner_product_offset(self) -> f32 {
        if self == Metric::Cosine {
            1.0
        } else {
            0.0
        }
    }

    /// Returns the distance between two (already normalised, for cosine) vectors.
    pub fn distance(self, query: &[f32], vector: &[f32]) -> f32 {
        if self.uses_inner_product() {
            self.inner_product_offset() - kernels::dot_f32(query, vector)
        } else {
            kernels::l2_squared_f32(query, vector)
        }
    }

    /// Returns the metric's name as written on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;

    fn from_str(text: &str) -> Result<Metric> {
        match text.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "angular" => Ok(Metric::Cosine),
            "ip" | "dot" | "inner_product" => Ok(Metric::Ip),
            other => Err(Error::invalid(
                "metric",
                format!("unknown metric '{other}', expected one of l2, cosine, ip"),
            )),
        }
    }
}

/// Scales `vector` to unit length in place; returns false for a zero vector (left unchanged).
pub fn normalize_in_place(vector: &mut [f32]) -> bool {
    let norm_squared = kernels::dot_f32(vector, vector);
    if norm_squared <= 0.0 || !norm_squared.is_finite() {
        return false;
    }
    let inverse = 1.0 / norm_squared.sqrt();
    vector.iter_mut().for_each(|value| *value *= inverse);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_and_score() {
        assert_eq!("L2".parse::<Metric>().expect("l2"), Metric::L2);
        assert!("hamming".parse::<Metric>().is_err());
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        assert_eq!(Metric::L2.distance(&a, &b), 2.0);
        assert_eq!(Metric::Ip.distance(&a, &b), 0.0);
        assert_eq!(Metric::Cosine.distance(&a, &a), 0.0);
        let mut v = [3.0, 4.0];
        assert!(normalize_in_place(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6);
        assert!(!normalize_in_place(&mut [0.0, 0.0]));
    }
}
