//! Synthetic data sets for scale runs: a clustered Gaussian mixture with attributes (`year`,
//! `price`, `category`), query workloads whose filters aim at chosen selectivities, and their
//! exact ground truth ([`truth`]).
//!
//! Everything is deterministic from the seed, whatever the number of threads: rows are drawn
//! in fixed chunks, each from its own stream seeded by (seed, purpose, chunk). This module and
//! [`truth`] are pure; [`files`] writes a data set folder in the layout of the real data sets
//! (`base.fvecs`, `base_attrs.csv`, `queries.fvecs`, `workloads.json`, `gt/`).
//!
//! The mixture is shaped like real embeddings, not like uniform noise: clusters of skewed sizes
//! and scales, within-cluster variance decaying across dimensions (so PCA has leading
//! components to find), and attributes that depend a little on the cluster (so filters and
//! vector neighbourhoods are not independent, as in real catalogues).

pub mod files;
pub mod truth;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde_json::{json, Value};

use squash_core::error::{Error, Result};
use squash_core::index::BuildProgress;

/// The category names, most frequent first (shares follow a Zipf law of exponent 1).
pub const CATEGORIES: [&str; 20] = [
    "books", "music", "film", "games", "toys", "garden", "kitchen", "sports", "fashion", "beauty",
    "health", "auto", "tools", "office", "pets", "baby", "travel", "art", "food", "software",
];
/// The first year drawn.
pub const YEAR_MIN: i32 = 1990;
/// The last year drawn.
pub const YEAR_MAX: i32 = 2025;
/// The highest price, in cents. Prices are written with two decimals; below 10^5 dollars a
/// half-cent filter bound stays clear of every value even in float32.
pub const PRICE_MAX_CENTS: u32 = 9_999_999;

/// Rows per random stream: the unit of parallel work and of determinism.
const ROWS_PER_STREAM: usize = 4096;
/// Share of rows whose year is drawn near their cluster's era rather than from the global
/// distribution.
const ERA_SHARE: f64 = 0.35;
/// Standard deviation of a year around its cluster's era.
const ERA_SPREAD_YEARS: f64 = 4.0;
/// Share of rows whose category is their cluster's favourite rather than a Zipf draw.
const FAVOURITE_CATEGORY_SHARE: f64 = 0.25;
/// Log-normal price: mean and standard deviation of ln(dollars), before the cluster's shift.
const LOG_PRICE_MEAN: f64 = 3.0;
const LOG_PRICE_SD: f64 = 1.0;
/// Standard deviation of a cluster's shift of ln(price).
const CLUSTER_LOG_PRICE_SD: f64 = 0.3;
/// Standard deviation of cluster centres per dimension. The within-cluster variance summed
/// over dimensions is about 8 ln(1 + D/8) (22 at D = 128); centres at 0.6 put two centres about
/// as far apart as two points of one cluster, so clusters overlap as real ones do.
const CENTRE_SD: f64 = 0.6;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthParams {
    /// Base vectors.
    pub num_vectors: usize,
    /// Dimension.
    pub dim: usize,
    /// Mixture components.
    pub num_clusters: usize,
    /// Query vectors (every workload uses all of them, with its own filters).
    pub num_queries: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl SynthParams {
    /// Checks the parameters, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.num_vectors == 0 || self.num_vectors > i32::MAX as usize {
            return Err(Error::invalid(
                "num_vectors",
                format!("must be between 1 and {}", i32::MAX),
            ));
        }
        if !(1..=4096).contains(&self.dim) {
            return Err(Error::invalid("dim", "must be between 1 and 4096"));
        }
        if self.num_clusters == 0 || self.num_clusters > self.num_vectors {
            return Err(Error::invalid(
                "clusters",
                "must be between 1 and the number of vectors",
            ));
        }
        if !(1..=1_000_000).contains(&self.num_queries) {
            return Err(Error::invalid(
                "num_queries",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }
}

/// The attributes of a set of rows, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthAttributes {
    /// Year, [`YEAR_MIN`]..=[`YEAR_MAX`].
    pub year: Vec<i32>,
    /// Price in cents, 1..=[`PRICE_MAX_CENTS`].
    pub price_cents: Vec<u32>,
    /// Index into [`CATEGORIES`].
    pub category: Vec<u8>,
}

impl SynthAttributes {
    fn zeroed(num_rows: usize) -> Self {
        SynthAttributes {
            year: vec![0; num_rows],
            price_cents: vec![0; num_rows],
            category: vec![0; num_rows],
        }
    }

    /// Returns the number of rows.
    pub fn num_rows(&self) -> usize {
        self.year.len()
    }
}

/// A generated data set: base and query vectors (row-major) and the base attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthDataSet {
    /// Dimension.
    pub dim: usize,
    /// Base vectors, `num_vectors x dim`.
    pub base: Vec<f32>,
    /// Attributes of the base vectors.
    pub base_attributes: SynthAttributes,
    /// Query vectors, `num_queries x dim`, drawn from the same mixture.
    pub queries: Vec<f32>,
}

/// The mixture: per cluster a centre, a scale, an era, a price shift and a favourite category.
struct Mixture {
    dim: usize,
    centres: Vec<f32>,
    cumulative_weights: Vec<f64>,
    scales: Vec<f64>,
    eras: Vec<i32>,
    log_price_shifts: Vec<f64>,
    favourite_categories: Vec<u8>,
    /// Within-cluster standard deviation per dimension, before the cluster's scale.
    noise_sd: Vec<f64>,
    cumulative_year_weights: Vec<f64>,
    cumulative_category_weights: Vec<f64>,
}

/// Purposes of random streams, so that no two purposes share one.
#[derive(Clone, Copy)]
enum Stream {
    Mixture = 1,
    Base = 2,
    Queries = 3,
    Workloads = 4,
}

/// Returns a stream seed from the seed, a purpose and a chunk (SplitMix64 finalizer, so that
/// nearby inputs give unrelated seeds).
fn stream_seed(seed: u64, stream: Stream, chunk: u64) -> u64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ chunk.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, stream: Stream, chunk: u64) -> StdRng {
    StdRng::seed_from_u64(stream_seed(seed, stream, chunk))
}

/// Returns a standard normal draw (Box-Muller; one of the pair is dropped to keep the stream
/// simple).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Returns the index drawn from cumulative weights ending in 1.
fn draw_index(rng: &mut StdRng, cumulative: &[f64]) -> usize {
    let u: f64 = rng.random::<f64>();
    cumulative
        .partition_point(|&c| c <= u)
        .min(cumulative.len() - 1)
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut running = 0.0;
    weights
        .iter()
        .map(|w| {
            running += w / total;
            running
        })
        .collect()
}

impl Mixture {
    fn new(params: &SynthParams) -> Self {
        let mut rng = rng_for(params.seed, Stream::Mixture, 0);
        let (dim, num_clusters) = (params.dim, params.num_clusters);
        let centres = (0..num_clusters * dim)
            .map(|_| (CENTRE_SD * normal(&mut rng)) as f32)
            .collect();
        // Log-normal sizes: the largest clusters are a few times the median, as in real data.
        let weights: Vec<f64> = (0..num_clusters)
            .map(|_| (0.5 * normal(&mut rng)).exp())
            .collect();
        let scales = (0..num_clusters)
            .map(|_| rng.random_range(0.7..1.3))
            .collect();
        let eras = (0..num_clusters)
            .map(|_| rng.random_range(YEAR_MIN..=YEAR_MAX))
            .collect();
        let log_price_shifts = (0..num_clusters)
            .map(|_| CLUSTER_LOG_PRICE_SD * normal(&mut rng))
            .collect();
        let favourite_categories = (0..num_clusters)
            .map(|_| rng.random_range(0..CATEGORIES.len() as u8))
            .collect();
        // Variance decaying like 1 / (1 + d/8): a few leading directions carry most of it.
        let noise_sd = (0..dim)
            .map(|d| (1.0 / (1.0 + d as f64 / 8.0)).sqrt())
            .collect();
        // More recent years are more common (catalogues grow).
        let year_weights: Vec<f64> = (YEAR_MIN..=YEAR_MAX)
            .map(|year| 1.0 + f64::from(year - YEAR_MIN) / 12.0)
            .collect();
        let category_weights: Vec<f64> = (0..CATEGORIES.len())
            .map(|rank| 1.0 / (rank + 1) as f64)
            .collect();
        Mixture {
            dim,
            centres,
            cumulative_weights: cumulative(&weights),
            scales,
            eras,
            log_price_shifts,
            favourite_categories,
            noise_sd,
            cumulative_year_weights: cumulative(&year_weights),
            cumulative_category_weights: cumulative(&category_weights),
        }
    }

    /// Draws one vector into `out` and returns its cluster.
    fn draw_vector(&self, rng: &mut StdRng, out: &mut [f32]) -> usize {
        let cluster = draw_index(rng, &self.cumulative_weights);
        let centre = &self.centres[cluster * self.dim..][..self.dim];
        let scale = self.scales[cluster];
        for ((value, &c), &sd) in out.iter_mut().zip(centre).zip(&self.noise_sd) {
            *value = (f64::from(c) + scale * sd * normal(rng)) as f32;
        }
        cluster
    }

    /// Draws the attributes of a row of `cluster`.
    fn draw_attributes(&self, rng: &mut StdRng, cluster: usize) -> (i32, u32, u8) {
        let year = if rng.random::<f64>() < ERA_SHARE {
            let near = f64::from(self.eras[cluster]) + ERA_SPREAD_YEARS * normal(rng);
            (near.round() as i32).clamp(YEAR_MIN, YEAR_MAX)
        } else {
            YEAR_MIN + draw_index(rng, &self.cumulative_year_weights) as i32
        };
        let log_dollars =
            LOG_PRICE_MEAN + self.log_price_shifts[cluster] + LOG_PRICE_SD * normal(rng);
        let price_cents = (log_dollars.exp() * 100.0)
            .round()
            .clamp(1.0, f64::from(PRICE_MAX_CENTS)) as u32;
        let category = if rng.random::<f64>() < FAVOURITE_CATEGORY_SHARE {
            self.favourite_categories[cluster]
        } else {
            draw_index(rng, &self.cumulative_category_weights) as u8
        };
        (year, price_cents, category)
    }
}

/// Generates the data set of `params`, reporting base rows done to `progress`.
pub fn generate(params: &SynthParams, progress: &dyn BuildProgress) -> Result<SynthDataSet> {
    params.validate()?;
    let mixture = Mixture::new(params);
    let dim = params.dim;
    let mut base = vec![0f32; params.num_vectors * dim];
    let mut attributes = SynthAttributes::zeroed(params.num_vectors);
    progress.start_phase("generating base vectors", params.num_vectors as u64);
    base.par_chunks_mut(ROWS_PER_STREAM * dim)
        .zip(attributes.year.par_chunks_mut(ROWS_PER_STREAM))
        .zip(attributes.price_cents.par_chunks_mut(ROWS_PER_STREAM))
        .zip(attributes.category.par_chunks_mut(ROWS_PER_STREAM))
        .enumerate()
        .for_each(|(chunk, (((vectors, years), prices), categories))| {
            let mut rng = rng_for(params.seed, Stream::Base, chunk as u64);
            for (row, vector) in vectors.chunks_exact_mut(dim).enumerate() {
                let cluster = mixture.draw_vector(&mut rng, vector);
                let (year, price, category) = mixture.draw_attributes(&mut rng, cluster);
                years[row] = year;
                prices[row] = price;
                categories[row] = category;
            }
            progress.advance(years.len() as u64);
        });
    progress.finish_phase();
    let mut queries = vec![0f32; params.num_queries * dim];
    queries
        .par_chunks_mut(ROWS_PER_STREAM * dim)
        .enumerate()
        .for_each(|(chunk, vectors)| {
            let mut rng = rng_for(params.seed, Stream::Queries, chunk as u64);
            for vector in vectors.chunks_exact_mut(dim) {
                mixture.draw_vector(&mut rng, vector);
            }
        });
    Ok(SynthDataSet {
        dim,
        base,
        base_attributes: attributes,
        queries,
    })
}

/// The header of `base_attrs.csv`.
pub const ATTRIBUTES_CSV_HEADER: &str = "id,year,price,category";

/// Appends row `row` of `attributes` to `out` as a CSV line (`id` is the row number; prices
/// always with two decimals, so the column reads as float).
pub fn push_attributes_csv_row(attributes: &SynthAttributes, row: usize, out: &mut String) {
    use std::fmt::Write;
    let cents = attributes.price_cents[row];
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{row},{},{}.{:02},{}",
        attributes.year[row],
        cents / 100,
        cents % 100,
        CATEGORIES[usize::from(attributes.category[row])]
    );
}

/// One clause of a query's filter; a filter is a conjunction of clauses. Bounds are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// `lo <= year <= hi`.
    YearBetween {
        /// Lowest year.
        lo: i32,
        /// Highest year.
        hi: i32,
    },
    /// `category == CATEGORIES[index]`.
    CategoryEq(u8),
    /// `lo <= price <= hi`, in cents.
    PriceBetween {
        /// Lowest price, cents.
        lo_cents: u32,
        /// Highest price, cents.
        hi_cents: u32,
    },
}

impl Clause {
    /// Returns whether row `row` of `attributes` satisfies the clause.
    pub fn matches(&self, attributes: &SynthAttributes, row: usize) -> bool {
        match *self {
            Clause::YearBetween { lo, hi } => (lo..=hi).contains(&attributes.year[row]),
            Clause::CategoryEq(category) => attributes.category[row] == category,
            Clause::PriceBetween { lo_cents, hi_cents } => {
                (lo_cents..=hi_cents).contains(&attributes.price_cents[row])
            }
        }
    }
}

/// Returns a price bound half a cent outside `cents` (below it for a lower bound), in dollars:
/// no written price equals it, so float parsing cannot move a value across it.
fn half_cent_dollars(cents: u32, lower: bool) -> f64 {
    let half_cents = if lower {
        f64::from(cents) - 0.5
    } else {
        f64::from(cents) + 0.5
    };
    half_cents / 100.0
}

/// A query's filter: all clauses must hold (none: unfiltered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// The clauses.
    pub clauses: Vec<Clause>,
}

impl QueryFilter {
    /// Returns whether row `row` of `attributes` passes.
    pub fn matches(&self, attributes: &SynthAttributes, row: usize) -> bool {
        self.clauses
            .iter()
            .all(|clause| clause.matches(attributes, row))
    }

    /// Returns the filter in the query API's syntax (`null` when unfiltered).
    pub fn to_filter_json(&self) -> Value {
        if self.clauses.is_empty() {
            return Value::Null;
        }
        let mut object = serde_json::Map::new();
        for clause in &self.clauses {
            let (key, value) = match *clause {
                Clause::YearBetween { lo, hi } => ("year", json!({"$gte": lo, "$lte": hi})),
                Clause::CategoryEq(category) => (
                    "category",
                    json!({"$eq": CATEGORIES[usize::from(category)]}),
                ),
                Clause::PriceBetween { lo_cents, hi_cents } => (
                    "price",
                    json!({
                        "$gte": half_cent_dollars(lo_cents, true),
                        "$lte": half_cent_dollars(hi_cents, false),
                    }),
                ),
            };
            object.insert(key.to_string(), value);
        }
        Value::Object(object)
    }

    /// Returns the filter as a list of predicates (the data sets' `predicates` format).
    pub fn to_predicates_json(&self) -> Value {
        Value::Array(
            self.clauses
                .iter()
                .map(|clause| match *clause {
                    Clause::YearBetween { lo, hi } => {
                        json!({"attr": "year", "op": "between", "lo": lo, "hi": hi})
                    }
                    Clause::CategoryEq(category) => json!({
                        "attr": "category", "op": "eq", "value": CATEGORIES[usize::from(category)]
                    }),
                    Clause::PriceBetween { lo_cents, hi_cents } => json!({
                        "attr": "price", "op": "between",
                        "lo": half_cent_dollars(lo_cents, true),
                        "hi": half_cent_dollars(hi_cents, false),
                    }),
                })
                .collect(),
        )
    }
}

/// A workload: one filter per query (every workload uses every query, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Name, also the ground-truth file stem.
    pub name: String,
    /// What the filters select.
    pub description: String,
    /// The share of the base the filters aim at (`None`: unfiltered).
    pub target_selectivity: Option<f64>,
    /// Per query, its filter.
    pub filters: Vec<QueryFilter>,
}

/// Target selectivity of the year-range workload.
pub const YEAR_RANGE_TARGET: f64 = 0.10;
/// Target selectivity of the category workload.
pub const CATEGORY_TARGET: f64 = 0.05;
/// Target selectivity of the conjunction (a ~10 % year range and a ~10 % price range).
pub const CONJUNCTION_TARGET: f64 = 0.01;

/// Returns a contiguous year range starting near a random year whose share of `year_counts`
/// is closest to `target` (extended downwards when the last year is reached first).
fn year_range(rng: &mut StdRng, year_counts: &[usize], target: f64) -> (i32, i32) {
    let total: usize = year_counts.iter().sum();
    let wanted = target * total as f64;
    let last = year_counts.len() - 1;
    let (mut lo, mut hi) = {
        let start = rng.random_range(0..=last);
        (start, start)
    };
    let mut mass = year_counts[lo] as f64;
    while mass < wanted && (lo > 0 || hi < last) {
        let grow_up = hi < last;
        let next = if grow_up {
            year_counts[hi + 1]
        } else {
            year_counts[lo - 1]
        } as f64;
        // Stop where the share is closest to the target.
        if (mass + next - wanted).abs() > (mass - wanted).abs() {
            break;
        }
        mass += next;
        if grow_up {
            hi += 1;
        } else {
            lo -= 1;
        }
    }
    (YEAR_MIN + lo as i32, YEAR_MIN + hi as i32)
}

/// Returns the workloads over `attributes` for `num_queries` queries: unfiltered, a year range
/// (~10 %), a category (~5 %), and a year range with a price range (~1 %).
pub fn workloads(attributes: &SynthAttributes, num_queries: usize, seed: u64) -> Vec<WorkloadSpec> {
    let mut rng = rng_for(seed, Stream::Workloads, 0);
    let num_rows = attributes.num_rows().max(1);
    let mut year_counts = vec![0usize; (YEAR_MAX - YEAR_MIN + 1) as usize];
    for &year in &attributes.year {
        year_counts[(year - YEAR_MIN) as usize] += 1;
    }
    let mut category_counts = vec![0usize; CATEGORIES.len()];
    for &category in &attributes.category {
        category_counts[usize::from(category)] += 1;
    }
    let mut sorted_prices = attributes.price_cents.clone();
    sorted_prices.sort_unstable();

    // Categories near the target share; the closest one if none is near.
    let share = |count: usize| count as f64 / num_rows as f64;
    let mut near_target: Vec<u8> = (0..CATEGORIES.len() as u8)
        .filter(|&c| {
            let s = share(category_counts[usize::from(c)]);
            (0.6 * CATEGORY_TARGET..=1.6 * CATEGORY_TARGET).contains(&s)
        })
        .collect();
    if near_target.is_empty() {
        let closest = (0..CATEGORIES.len() as u8)
            .min_by(|&a, &b| {
                let da = (share(category_counts[usize::from(a)]) - CATEGORY_TARGET).abs();
                let db = (share(category_counts[usize::from(b)]) - CATEGORY_TARGET).abs();
                da.total_cmp(&db)
            })
            .expect("there are categories");
        near_target.push(closest);
    }

    let unfiltered = vec![QueryFilter::default(); num_queries];
    let year_filters = (0..num_queries)
        .map(|_| {
            let (lo, hi) = year_range(&mut rng, &year_counts, YEAR_RANGE_TARGET);
            QueryFilter {
                clauses: vec![Clause::YearBetween { lo, hi }],
            }
        })
        .collect();
    let category_filters = (0..num_queries)
        .map(|_| QueryFilter {
            clauses: vec![Clause::CategoryEq(
                near_target[rng.random_range(0..near_target.len())],
            )],
        })
        .collect();
    let conjunction_filters = (0..num_queries)
        .map(|_| {
            let (lo, hi) = year_range(&mut rng, &year_counts, 0.10);
            let n = sorted_prices.len();
            let window = ((n as f64 * 0.10) as usize).max(1);
            let start = rng.random_range(0..=n - window);
            QueryFilter {
                clauses: vec![
                    Clause::YearBetween { lo, hi },
                    Clause::PriceBetween {
                        lo_cents: sorted_prices[start],
                        hi_cents: sorted_prices[start + window - 1],
                    },
                ],
            }
        })
        .collect();
    vec![
        WorkloadSpec {
            name: "unfiltered".to_string(),
            description: "no filter".to_string(),
            target_selectivity: None,
            filters: unfiltered,
        },
        WorkloadSpec {
            name: "year_range_10".to_string(),
            description:
                "year in a contiguous range holding ~10% of the base, starting at a random year"
                    .to_string(),
            target_selectivity: Some(YEAR_RANGE_TARGET),
            filters: year_filters,
        },
        WorkloadSpec {
            name: "category_eq_5".to_string(),
            description:
                "category equal to one drawn per query among those holding 3-8% of the base"
                    .to_string(),
            target_selectivity: Some(CATEGORY_TARGET),
            filters: category_filters,
        },
        WorkloadSpec {
            name: "year_price_conj_1".to_string(),
            description:
                "year range (~10%) AND price in a random 10% quantile window (~1% together)"
                    .to_string(),
            target_selectivity: Some(CONJUNCTION_TARGET),
            filters: conjunction_filters,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::index::build::NoProgress;

    fn params(num_vectors: usize, dim: usize, seed: u64) -> SynthParams {
        SynthParams {
            num_vectors,
            dim,
            num_clusters: 8,
            num_queries: 50,
            seed,
        }
    }

    #[test]
    fn shapes_and_ranges() {
        let data = generate(&params(5000, 12, 1), &NoProgress).expect("generate");
        assert_eq!(data.base.len(), 5000 * 12);
        assert_eq!(data.queries.len(), 50 * 12);
        assert_eq!(data.base_attributes.num_rows(), 5000);
        assert!(data.base.iter().chain(&data.queries).all(|v| v.is_finite()));
        let a = &data.base_attributes;
        assert!(a.year.iter().all(|y| (YEAR_MIN..=YEAR_MAX).contains(y)));
        assert!(a
            .price_cents
            .iter()
            .all(|&p| (1..=PRICE_MAX_CENTS).contains(&p)));
        assert!(a
            .category
            .iter()
            .all(|&c| usize::from(c) < CATEGORIES.len()));
        // Skewed categories: the first is the most common by far.
        let count = |c: u8| a.category.iter().filter(|&&x| x == c).count();
        assert!(count(0) > 3 * count(19), "{} vs {}", count(0), count(19));
        // Variance decays across dimensions.
        let variance = |d: usize| {
            let mean = (0..5000)
                .map(|r| f64::from(data.base[r * 12 + d]))
                .sum::<f64>()
                / 5000.0;
            (0..5000)
                .map(|r| (f64::from(data.base[r * 12 + d]) - mean).powi(2))
                .sum::<f64>()
                / 5000.0
        };
        let leading = variance(0) + variance(1);
        let trailing = variance(10) + variance(11);
        assert!(leading > trailing, "{leading} vs {trailing}");
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let one = generate(&params(9000, 8, 7), &NoProgress).expect("generate");
        let two = generate(&params(9000, 8, 7), &NoProgress).expect("generate");
        let other = generate(&params(9000, 8, 8), &NoProgress).expect("generate");
        assert_eq!(one, two);
        assert_ne!(one.base, other.base);
        let w1 = workloads(&one.base_attributes, 50, 7);
        let w2 = workloads(&two.base_attributes, 50, 7);
        assert_eq!(w1, w2);
        // Determinism does not depend on the thread count.
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| generate(&params(9000, 8, 7), &NoProgress).expect("generate"));
        assert_eq!(single, one);
    }

    #[test]
    fn selectivities_are_near_their_targets() {
        let data = generate(&params(40_000, 4, 3), &NoProgress).expect("generate");
        let a = &data.base_attributes;
        for workload in workloads(a, 200, 3) {
            let shares: Vec<f64> = workload
                .filters
                .iter()
                .map(|f| {
                    (0..a.num_rows()).filter(|&r| f.matches(a, r)).count() as f64
                        / a.num_rows() as f64
                })
                .collect();
            let mean = shares.iter().sum::<f64>() / shares.len() as f64;
            match workload.target_selectivity {
                None => assert_eq!(mean, 1.0),
                Some(target) => assert!(
                    (0.6 * target..=1.5 * target).contains(&mean),
                    "{}: mean {mean}, target {target}",
                    workload.name
                ),
            }
        }
    }

    #[test]
    fn filters_in_api_syntax_bracket_written_prices() {
        let filter = QueryFilter {
            clauses: vec![
                Clause::YearBetween { lo: 2000, hi: 2003 },
                Clause::CategoryEq(2),
                Clause::PriceBetween {
                    lo_cents: 1234,
                    hi_cents: 5000,
                },
            ],
        };
        assert_eq!(
            filter.to_filter_json(),
            json!({
                "year": {"$gte": 2000, "$lte": 2003},
                "category": {"$eq": "film"},
                "price": {"$gte": 12.335, "$lte": 50.005},
            })
        );
        assert_eq!(QueryFilter::default().to_filter_json(), Value::Null);
        assert_eq!(
            filter.to_predicates_json().as_array().map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn the_engine_reads_the_csv_and_selects_what_the_clauses_select() {
        let data = generate(&params(3000, 4, 5), &NoProgress).expect("generate");
        let a = &data.base_attributes;
        let mut csv = String::from(ATTRIBUTES_CSV_HEADER);
        csv.push('\n');
        for row in 0..a.num_rows() {
            push_attributes_csv_row(a, row, &mut csv);
        }
        let parsed = squash_core::input::parse_attributes("attrs.csv", csv.as_bytes(), &[], 3000)
            .expect("parse csv");
        let kinds: Vec<_> = parsed
            .schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        use squash_core::attributes::AttributeKind;
        assert_eq!(
            kinds,
            [
                ("year", AttributeKind::Integer),
                ("price", AttributeKind::Float),
                ("category", AttributeKind::Categorical)
            ]
        );
        for workload in workloads(a, 20, 5) {
            for filter in &workload.filters {
                let engine =
                    squash_core::filter::Filter::parse(&filter.to_filter_json(), &parsed.schema)
                        .expect("filter parses");
                for row in 0..a.num_rows() {
                    assert_eq!(
                        engine.matches_row(&parsed.table, row),
                        filter.matches(a, row),
                        "{} row {row}",
                        workload.name
                    );
                }
            }
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut bad = params(10, 4, 0);
        bad.num_clusters = 11;
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidInput { field, .. }) if field == "clusters"
        ));
        bad = params(0, 4, 0);
        assert!(generate(&bad, &NoProgress).is_err());
    }
}
