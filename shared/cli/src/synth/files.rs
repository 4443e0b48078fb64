//! Writes a synthetic data set folder in the layout of the real data sets (see
//! `../shared/data/README.md`): `base.fvecs`, `base_attrs.csv`, `queries.fvecs`,
//! `workloads.json` and `gt/<workload>.ivecs` / `.dist.fvecs` (exact top-k, squared L2).
//!
//! The I/O edge of [`crate::synth`]: generation and ground truth happen there; this module only
//! orders the steps and streams the results to files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::truth::{ground_truth, GroundTruth};
use super::{
    generate, push_attributes_csv_row, workloads, QueryFilter, SynthParams, WorkloadSpec,
    ATTRIBUTES_CSV_HEADER, CATEGORIES, PRICE_MAX_CENTS, YEAR_MAX, YEAR_MIN,
};
use squash_core::error::{Error, Result};
use squash_core::index::BuildProgress;

/// Neighbours kept per query in the ground truth (as in the real data sets).
pub const GROUND_TRUTH_K: usize = 100;

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// The folder.
    pub folder: PathBuf,
    /// Per workload: name, mean selectivity, smallest match count.
    pub workloads: Vec<(String, f64, usize)>,
    /// Bytes written, all files.
    pub bytes_written: u64,
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    File::create(path)
        .map(|file| BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| Error::io(path, e))
}

/// Streams rows as TEXMEX records (`i32` dimension, then the values), little-endian.
fn write_texmex<T: Copy>(
    path: &Path,
    values: &[T],
    dim: usize,
    to_le: impl Fn(T) -> [u8; 4],
) -> Result<u64> {
    let mut out = create(path)?;
    let dim_header = i32::try_from(dim)
        .map_err(|_| Error::invalid("dim", "does not fit the file format"))?
        .to_le_bytes();
    let io = |e| Error::io(path, e);
    for row in values.chunks_exact(dim) {
        out.write_all(&dim_header).map_err(io)?;
        for &value in row {
            out.write_all(&to_le(value)).map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok((values.len() / dim.max(1) * (4 + 4 * dim)) as u64)
}

fn selectivity_json(match_counts: &[usize], num_base: usize) -> serde_json::Value {
    let mut shares: Vec<f64> = match_counts
        .iter()
        .map(|&count| count as f64 / num_base as f64)
        .collect();
    shares.sort_by(f64::total_cmp);
    let mean = shares.iter().sum::<f64>() / shares.len().max(1) as f64;
    let median = shares.get(shares.len() / 2).copied().unwrap_or(0.0);
    json!({
        "mean": mean,
        "median": median,
        "min": shares.first().copied().unwrap_or(0.0),
        "max": shares.last().copied().unwrap_or(0.0),
    })
}

/// Generates the data set of `params` into `folder` (created if missing; files replaced),
/// reporting progress of the long steps.
pub fn write_synthetic_data_set(
    params: &SynthParams,
    folder: &Path,
    progress: &dyn BuildProgress,
) -> Result<SynthSummary> {
    params.validate()?;
    std::fs::create_dir_all(folder.join("gt")).map_err(|e| Error::io(folder, e))?;
    let data = generate(params, progress)?;
    let dim = params.dim;
    let specs: Vec<WorkloadSpec> =
        workloads(&data.base_attributes, params.num_queries, params.seed);
    let filters: Vec<&[QueryFilter]> = specs.iter().map(|w| w.filters.as_slice()).collect();
    let k = GROUND_TRUTH_K.min(params.num_vectors);
    let truths: Vec<GroundTruth> = ground_truth(
        &data.base,
        &data.base_attributes,
        &data.queries,
        dim,
        &filters,
        k,
        progress,
    );

    progress.start_phase("writing files", 4 + 2 * specs.len() as u64);
    let mut bytes_written = write_texmex(&folder.join("base.fvecs"), &data.base, dim, |v: f32| {
        v.to_le_bytes()
    })?;
    progress.advance(1);
    bytes_written += write_texmex(
        &folder.join("queries.fvecs"),
        &data.queries,
        dim,
        |v: f32| v.to_le_bytes(),
    )?;
    progress.advance(1);

    let csv_path = folder.join("base_attrs.csv");
    let mut csv = create(&csv_path)?;
    let mut line = String::with_capacity(64);
    writeln!(csv, "{ATTRIBUTES_CSV_HEADER}").map_err(|e| Error::io(&csv_path, e))?;
    for row in 0..data.base_attributes.num_rows() {
        line.clear();
        push_attributes_csv_row(&data.base_attributes, row, &mut line);
        csv.write_all(line.as_bytes())
            .map_err(|e| Error::io(&csv_path, e))?;
        bytes_written += line.len() as u64;
    }
    csv.flush().map_err(|e| Error::io(&csv_path, e))?;
    progress.advance(1);

    let mut workload_entries = Vec::new();
    let mut summaries = Vec::new();
    for (spec, truth) in specs.iter().zip(&truths) {
        let gt_ivecs = format!("gt/{}.ivecs", spec.name);
        let gt_dist = format!("gt/{}.dist.fvecs", spec.name);
        bytes_written += write_texmex(&folder.join(&gt_ivecs), &truth.ids, k, |v: i32| {
            v.to_le_bytes()
        })?;
        progress.advance(1);
        bytes_written += write_texmex(&folder.join(&gt_dist), &truth.distances, k, |v: f32| {
            v.to_le_bytes()
        })?;
        progress.advance(1);
        let selectivity = selectivity_json(&truth.match_counts, params.num_vectors);
        let min_matches = truth.match_counts.iter().copied().min().unwrap_or(0);
        summaries.push((
            spec.name.clone(),
            selectivity["mean"].as_f64().unwrap_or(0.0),
            min_matches,
        ));
        workload_entries.push(json!({
            "name": spec.name,
            "description": spec.description,
            "target_selectivity": spec.target_selectivity,
            "query_ids": (0..params.num_queries).collect::<Vec<_>>(),
            "predicates": spec.filters.iter().map(QueryFilter::to_predicates_json).collect::<Vec<_>>(),
            "filters": spec.filters.iter().map(QueryFilter::to_filter_json).collect::<Vec<_>>(),
            "gt_ivecs": gt_ivecs,
            "gt_dist_fvecs": gt_dist,
            "n_queries": params.num_queries,
            "selectivity": selectivity,
            "min_matches": min_matches,
            "match_counts": truth.match_counts,
        }));
    }
    let description = json!({
        "dataset": folder.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        "metric": "l2",
        "k": k,
        "n_base": params.num_vectors,
        "dim": dim,
        "base_file": "base.fvecs",
        "queries_file": "queries.fvecs",
        "attributes": ["id", "year", "price", "category"],
        "predicate_grammar": "list of clauses, all must hold; clause ops: between (lo<=A<=hi), eq",
        "gt_order": "best first; ties by smaller base id; dist = squared L2 accumulated in float64; rows with fewer than k matches padded with id -1 and distance 1e15",
        "filter_syntax": "filters[i] is predicates[i] in the query API's filter syntax: {attr: {$eq|$gte|$lte: v}}, several keys = AND; null = no filter",
        "generator": {
            "command": format!(
                "squash synth --num-vectors {} --dim {} --clusters {} --num-queries {} --seed {}",
                params.num_vectors, dim, params.num_clusters, params.num_queries, params.seed
            ),
            "model": "Gaussian mixture: log-normal cluster sizes, per-cluster scale 0.7-1.3, within-cluster variance 1/(1+d/8) in dimension d, centres N(0, 0.6^2)",
            "year": format!("{YEAR_MIN}..{YEAR_MAX}: 35% near the cluster's era (sd 4 years), else weighted towards recent years"),
            "price": format!("log-normal dollars (ln mean 3 + cluster shift, sd 1), two decimals, at most {}", PRICE_MAX_CENTS / 100),
            "category": format!("{} values, Zipf (exponent 1) in the order {:?}; 25% the cluster's favourite", CATEGORIES.len(), CATEGORIES),
        },
        "workloads": workload_entries,
    });
    let json_path = folder.join("workloads.json");
    let text = serde_json::to_vec_pretty(&description)
        .map_err(|e| Error::invalid("workloads.json", e.to_string()))?;
    std::fs::write(&json_path, &text).map_err(|e| Error::io(&json_path, e))?;
    bytes_written += text.len() as u64;
    progress.advance(1);
    progress.finish_phase();
    Ok(SynthSummary {
        folder: folder.to_path_buf(),
        workloads: summaries,
        bytes_written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input_files::read_vectors;
    use squash_core::index::build::NoProgress;

    #[test]
    fn writes_the_data_set_layout() {
        let folder = tempfile::tempdir().expect("tempdir");
        let params = SynthParams {
            num_vectors: 700,
            dim: 5,
            num_clusters: 4,
            num_queries: 9,
            seed: 2,
        };
        let summary = write_synthetic_data_set(&params, folder.path(), &NoProgress).expect("write");
        assert_eq!(summary.workloads.len(), 4);
        let base = read_vectors(&folder.path().join("base.fvecs")).expect("base");
        assert_eq!((base.num_vectors, base.dim), (700, 5));
        let truth = read_vectors(&folder.path().join("gt/unfiltered.dist.fvecs")).expect("gt");
        assert_eq!((truth.num_vectors, truth.dim), (9, 100));
        let ids = std::fs::read(folder.path().join("gt/unfiltered.ivecs")).expect("ivecs");
        assert_eq!(ids.len(), 9 * (4 + 4 * 100));
        let text = std::fs::read(folder.path().join("workloads.json")).expect("json");
        let value: serde_json::Value = serde_json::from_slice(&text).expect("valid json");
        assert_eq!(value["metric"], "l2");
        assert_eq!(value["workloads"][0]["match_counts"][0], 700);
        assert_eq!(
            value["workloads"][1]["filters"].as_array().map(Vec::len),
            Some(9)
        );
        let csv = std::fs::read_to_string(folder.path().join("base_attrs.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 701);
        assert!(csv.starts_with("id,year,price,category\n0,"));
    }
}
