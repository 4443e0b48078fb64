//! Helpers for tests and measurements against the local serverless stack
//! (`scripts/local-stack.sh up`): the stack's addresses from the environment, HTTP calls with
//! `curl` (what a user types), fault files, and the committed GloVe sample's workloads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;
use squash_cli::input_files;
use squash_core::input::VectorSet;
use squash_core::protocol::QueryRequest;

pub mod loopback;
pub mod stack_faults;

/// The local stack, as `scripts/local-stack.sh env` describes it.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Base URL of the coordinator's HTTP API.
    pub api: String,
    /// Where indexes live (`s3://bucket/prefix`).
    pub root: String,
    /// The fault file the workers read.
    pub fault_file: PathBuf,
}

impl Stack {
    /// Returns the stack when `SQUASH_TEST_STACK=1` and its variables are set; otherwise
    /// prints why the calling test is skipped and returns `None`.
    pub fn from_env(test: &str) -> Option<Stack> {
        if std::env::var("SQUASH_TEST_STACK").as_deref() != Ok("1") {
            eprintln!(
                "skipping {test}: set SQUASH_TEST_STACK=1 with the variables of `scripts/local-stack.sh env` (scripts/test.sh does)"
            );
            return None;
        }
        match Stack::from_vars() {
            Ok(stack) => Some(stack),
            Err(message) => panic!("SQUASH_TEST_STACK=1: {message}"),
        }
    }

    /// Returns the stack described by `SQUASH_API`, `SQUASH_ROOT` and `SQUASH_FAULT_FILE`.
    pub fn from_vars() -> Result<Stack, String> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!("{name} is not set; run eval \"$(scripts/local-stack.sh env)\" first")
            })
        };
        Ok(Stack {
            api: var("SQUASH_API")?,
            root: var("SQUASH_ROOT")?,
            fault_file: PathBuf::from(var("SQUASH_FAULT_FILE")?),
        })
    }

    /// Sends a request with `curl` and returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body_opt: Option<&[u8]>) -> (u16, Value) {
        let (status, body, _) = self.call_timed(method, path, body_opt);
        if is_emulator_failure(status, &body) {
            // `cargo lambda watch` now and then fails to relay a function's answer and sends a
            // bare 500 of its own (problem+json, no squash error body) though the function
            // answered (its log shows the answer). Every route is a read, so the call is made
            // once more; a second such failure is returned to the test.
            eprintln!("{method} {path}: the emulator answered a bare 500 ({body}); calling again");
            let (status, body, _) = self.call_timed(method, path, body_opt);
            return (status, body);
        }
        (status, body)
    }

    /// Like [`Stack::call`], also returning the request's wall time in seconds as `curl`
    /// measured it (connection to last byte, without starting `curl` itself).
    pub fn call_timed(
        &self,
        method: &str,
        path: &str,
        body_opt: Option<&[u8]>,
    ) -> (u16, Value, f64) {
        let url = format!("{}{path}", self.api);
        let mut command = Command::new("curl");
        command
            .args(["-s", "-S", "--max-time", "120", "-X", method])
            .args(["-w", "\n%{http_code} %{time_total}"])
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if body_opt.is_some() {
            command
                .args([
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    "@-",
                ])
                .stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("curl runs");
        if let Some(body) = body_opt {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(body).expect("body written");
        }
        let output = child.wait_with_output().expect("curl finishes");
        assert!(
            output.status.success(),
            "curl {method} {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status_line) = text.rsplit_once('\n').expect("status line");
        let (status, seconds) = status_line.trim().split_once(' ').expect("status and time");
        let status: u16 = status.parse().expect("status code");
        let seconds: f64 = seconds.parse().expect("time");
        let json = serde_json::from_str(body).unwrap_or_else(|e| {
            panic!("{method} {path} answered {status} with non-JSON ({e}): {body}")
        });
        (status, json, seconds)
    }

    /// Posts a JSON value.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body.to_string().as_bytes()))
    }

    /// Replaces the workers' fault file (empty text clears every fault).
    pub fn set_faults(&self, text: &str) {
        std::fs::write(&self.fault_file, text).expect("fault file written");
    }
}

/// Returns the path of the `squash` CLI built with the test binaries.
pub fn squash_cli() -> PathBuf {
    // Test binaries live in target/<profile>/deps; the CLI (built by local-stack.sh up) in
    // target/<profile>.
    // A measurement binary (target/<profile>/stack-*) sits beside it.
    let exe = std::env::current_exe().expect("test binary path");
    let folder = exe.parent().expect("binary folder");
    let cli = if folder.join("squash").exists() {
        folder.join("squash")
    } else {
        folder.parent().expect("target dir").join("squash")
    };
    assert!(
        cli.exists(),
        "{} is missing: `scripts/local-stack.sh up` builds it",
        cli.display()
    );
    cli
}

/// The committed sample: `tests/data/glove-20k`.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/glove-20k")
}

/// One workload of a `workloads.json` file.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Rows of the queries file.
    pub query_ids: Vec<usize>,
    /// Per query, its filter.
    pub filters: Vec<Option<Value>>,
    /// Ground-truth distances file, relative to the workloads file.
    pub gt_dist_fvecs: String,
    /// Per query, the vectors matching its filter.
    pub match_counts: Vec<usize>,
}

/// A `workloads.json` file.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkloadsFile {
    /// Ground-truth metric.
    pub metric: String,
    /// Queries file, relative to the workloads file.
    pub queries_file: String,
    /// Workloads.
    pub workloads: Vec<Workload>,
}

/// Returns the sample's workloads and queries.
pub fn sample_workloads() -> (WorkloadsFile, VectorSet) {
    let dir = sample_dir();
    let bytes = std::fs::read(dir.join("workloads.json")).expect("workloads.json");
    let file: WorkloadsFile = serde_json::from_slice(&bytes).expect("workloads parse");
    let queries = input_files::read_vectors(&dir.join(&file.queries_file)).expect("queries");
    (file, queries)
}

/// Returns the requests of `workload` with `k` hits each.
pub fn workload_requests(workload: &Workload, queries: &VectorSet, k: usize) -> Vec<QueryRequest> {
    workload
        .query_ids
        .iter()
        .zip(&workload.filters)
        .map(|(&row, filter)| {
            let mut request =
                QueryRequest::new(queries.data[row * queries.dim..][..queries.dim].to_vec(), k);
            request.filter = filter.clone();
            request
        })
        .collect()
}

/// Returns the value at `quantile` (0..=1) of `values` (sorted here).
pub fn quantile(values: &mut [f64], quantile: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let position = ((values.len() - 1) as f64 * quantile).round() as usize;
    values[position]
}

/// Returns true for the emulator's own 500 (`{"status": 500, "title": ...}`), which squash's
/// error bodies (`{"error": {...}}`) never are.
fn is_emulator_failure(status: u16, body: &Value) -> bool {
    status == 500 && body.get("error").is_none() && body.get("title").is_some()
}
