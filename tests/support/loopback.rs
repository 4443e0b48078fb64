//! Load on the local stack over loopback: a keep-alive HTTP/1.1 client (one connection per
//! thread, so the measured latency is the server's and not that of starting `curl`), a bounded
//! load run that checks every answer, and the memory of the function processes that
//! `cargo lambda watch` started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use squash_core::protocol::Hit;

use crate::stack_faults::{embedded_answers, index_store};
use crate::{quantile, sample_workloads, workload_requests, Stack};

/// A persistent HTTP/1.1 connection to the coordinator's API.
#[derive(Debug)]
pub struct HttpClient {
    host_port: String,
    path_prefix: String,
    connection_opt: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    /// Returns a client for `api` (`http://host:port/prefix`); connects on first use.
    pub fn new(api: &str) -> Result<HttpClient, String> {
        let rest = api
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{api}' is not an http:// URL"))?;
        let (host_port, path_prefix) = match rest.split_once('/') {
            Some((host_port, path)) => (host_port, format!("/{}", path.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        Ok(HttpClient {
            host_port: host_port.to_string(),
            path_prefix,
            connection_opt: None,
        })
    }

    /// Posts `body` (JSON) to `path` under the API prefix and returns the status and body.
    /// A kept-alive connection the server closed meanwhile is replaced once.
    pub fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let reused = self.connection_opt.is_some();
        match self.post_once(path, body) {
            Err(_) if reused => {
                self.connection_opt = None;
                self.post_once(path, body)
            }
            other => other,
        }
    }

    fn post_once(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        if self.connection_opt.is_none() {
            let stream = TcpStream::connect(&self.host_port)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            self.connection_opt = Some(BufReader::new(stream));
        }
        let result = {
            let connection = self.connection_opt.as_mut().expect("connected just above");
            let head = format!(
                "POST {}{path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                self.path_prefix,
                self.host_port,
                body.len()
            );
            let stream = connection.get_mut();
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            read_response(connection)
        };
        match result {
            Ok((status, response, keep_alive)) => {
                if !keep_alive {
                    self.connection_opt = None;
                }
                Ok((status, response))
            }
            Err(error) => {
                self.connection_opt = None;
                Err(error)
            }
        }
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Reads one response: status, body (content-length or chunked) and whether the connection
/// stays open.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before the response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let (mut length_opt, mut chunked, mut keep_alive) = (None, false, true);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length_opt = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = length_opt {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
        keep_alive = false;
    }
    Ok((status, body, keep_alive))
}

/// One query of a load run and the hits it must get.
#[derive(Debug, Clone)]
pub struct LoadQuery {
    /// The request body (JSON).
    pub body: Vec<u8>,
    /// The hits the embedded path answers for it.
    pub expected_hits: Vec<Hit>,
}

/// Returns every query of the sample's workloads (mixed filters, k = 10) as load queries on
/// index `index` of the stack (a copy of the sample), with the embedded path's answers.
pub fn sample_load_queries(stack: &Stack, index: &str) -> Vec<LoadQuery> {
    let (file, queries) = sample_workloads();
    let requests: Vec<_> = file
        .workloads
        .iter()
        .flat_map(|workload| workload_requests(workload, &queries, 10))
        .collect();
    let answers = embedded_answers(index_store(stack, index), &requests);
    requests
        .iter()
        .zip(answers)
        .map(|(request, answer)| LoadQuery {
            body: serde_json::to_vec(request).expect("a request serializes"),
            expected_hits: answer.hits,
        })
        .collect()
}

/// Returns the memory of the stack's function processes: the children of the `cargo lambda
/// watch` process named in `SQUASH_STACK_WATCH_PID_FILE` running the coordinator, a worker
/// slot of `SQUASH_STACK_WORKERS` or a split function of `SQUASH_STACK_SPLIT_FUNCTIONS`.
pub fn stack_function_memory() -> Result<Vec<ProcessMemory>, String> {
    let pid_file = std::env::var("SQUASH_STACK_WATCH_PID_FILE")
        .map_err(|_| "SQUASH_STACK_WATCH_PID_FILE is not set (scripts/local-stack.sh env)")?;
    let watch_pid: u32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("{pid_file}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("{pid_file} holds no pid"))?;
    let workers = std::env::var("SQUASH_STACK_WORKERS").unwrap_or_else(|_| "worker".into());
    let split = std::env::var("SQUASH_STACK_SPLIT_FUNCTIONS").unwrap_or_default();
    let mut functions = vec!["coordinator"];
    functions.extend(workers.split(',').map(str::trim));
    functions.extend(
        split
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty()),
    );
    Ok(function_memory(watch_pid, &functions))
}

/// Returns the memory of `processes` as JSON, in MiB.
pub fn memory_json(processes: &[ProcessMemory]) -> Value {
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    processes
        .iter()
        .map(|p| {
            json!({
                "function": p.function,
                "pid": p.pid,
                "peak_rss_mib": mib(p.peak_rss_kib),
                "rss_mib": mib(p.rss_kib),
            })
        })
        .collect()
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Queries sent.
    pub num_queries: usize,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Latency per query in seconds, in completion order.
    pub latencies_s: Vec<f64>,
    /// Queries that failed: transport errors or a status other than 200.
    pub num_errors: usize,
    /// Answers marked partial.
    pub num_partial: usize,
    /// Complete answers whose hits differ from the embedded path's.
    pub num_wrong: usize,
    /// The first failures, for the message.
    pub failures: Vec<String>,
    /// Whether the time bound stopped the run before every query was sent.
    pub stopped_by_time: bool,
}

impl LoadReport {
    /// Returns the report as JSON: throughput, p50/p99 latency, errors.
    pub fn to_json(&self) -> Value {
        let mut latencies = self.latencies_s.clone();
        let ms = |q: f64, values: &mut [f64]| (quantile(values, q) * 1e4).round() / 10.0;
        json!({
            "queries": self.num_queries,
            "concurrency": self.concurrency,
            "seconds": (self.seconds * 100.0).round() / 100.0,
            "queries_per_s": (self.num_queries as f64 / self.seconds * 10.0).round() / 10.0,
            "p50_ms": ms(0.5, &mut latencies),
            "p99_ms": ms(0.99, &mut latencies),
            "max_ms": ms(1.0, &mut latencies),
            "errors": self.num_errors,
            "partial": self.num_partial,
            "wrong": self.num_wrong,
            "stopped_by_time": self.stopped_by_time,
            "failures": self.failures,
        })
    }
}

/// Sends `num_queries` queries (cycling through `queries`) to `path` over `concurrency`
/// keep-alive connections, stopping early once `max_duration` has passed, and checks each
/// answer: status 200, not partial, hits equal to the expected ones.
pub fn run_load(
    api: &str,
    path: &str,
    queries: &[LoadQuery],
    num_queries: usize,
    concurrency: usize,
    max_duration: Duration,
) -> Result<LoadReport, String> {
    if queries.is_empty() || concurrency == 0 {
        return Err("a load run needs queries and at least one connection".to_string());
    }
    HttpClient::new(api)?;
    let next = AtomicUsize::new(0);
    let report = Mutex::new(LoadReport {
        num_queries: 0,
        concurrency,
        seconds: 0.0,
        latencies_s: Vec::with_capacity(num_queries),
        num_errors: 0,
        num_partial: 0,
        num_wrong: 0,
        failures: Vec::new(),
        stopped_by_time: false,
    });
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                let mut client = HttpClient::new(api).expect("checked above");
                loop {
                    if started.elapsed() > max_duration {
                        report.lock().expect("report").stopped_by_time = true;
                        return;
                    }
                    let position = next.fetch_add(1, Ordering::Relaxed);
                    if position >= num_queries {
                        return;
                    }
                    let query = &queries[position % queries.len()];
                    let sent = Instant::now();
                    let outcome = client.post(path, &query.body);
                    let latency_s = sent.elapsed().as_secs_f64();
                    let verdict = judge(outcome, &query.expected_hits);
                    let mut report = report.lock().expect("report");
                    report.num_queries += 1;
                    report.latencies_s.push(latency_s);
                    let failure_opt = match verdict {
                        Verdict::Correct => None,
                        Verdict::Error(message) => {
                            report.num_errors += 1;
                            Some(message)
                        }
                        Verdict::Partial(message) => {
                            report.num_partial += 1;
                            Some(message)
                        }
                        Verdict::Wrong(message) => {
                            report.num_wrong += 1;
                            Some(message)
                        }
                    };
                    if let Some(message) = failure_opt {
                        if report.failures.len() < 5 {
                            report.failures.push(format!("query {position}: {message}"));
                        }
                    }
                }
            });
        }
    });
    let mut report = report.into_inner().map_err(|_| "a load thread panicked")?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

enum Verdict {
    Correct,
    Error(String),
    Partial(String),
    Wrong(String),
}

fn judge(outcome: std::io::Result<(u16, Vec<u8>)>, expected: &[Hit]) -> Verdict {
    let (status, body) = match outcome {
        Ok(answer) => answer,
        Err(error) => return Verdict::Error(format!("transport: {error}")),
    };
    let text = String::from_utf8_lossy(&body);
    if status != 200 {
        return Verdict::Error(format!("status {status}: {text}"));
    }
    let answer: Value = match serde_json::from_slice(&body) {
        Ok(answer) => answer,
        Err(error) => return Verdict::Error(format!("not JSON ({error}): {text}")),
    };
    if answer["partial"] != json!(false) {
        return Verdict::Partial(format!("partial: {}", answer["missing_partitions"]));
    }
    match serde_json::from_value::<Vec<Hit>>(answer["hits"].clone()) {
        Ok(hits) if hits == expected => Verdict::Correct,
        Ok(hits) => Verdict::Wrong(format!("hits {hits:?}, expected {expected:?}")),
        Err(error) => Verdict::Error(format!("hits do not parse: {error}")),
    }
}

/// Memory of one function process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessMemory {
    /// The function (binary name).
    pub function: String,
    /// Process id.
    pub pid: u32,
    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
    /// Current resident set size (`VmRSS`), in KiB.
    pub rss_kib: u64,
}

/// Returns the memory of the processes whose parent is `parent_pid` (the `cargo lambda
/// watch` process) and whose binary is one of `functions`, sorted by function.
pub fn function_memory(parent_pid: u32, functions: &[&str]) -> Vec<ProcessMemory> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let ppid_opt = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid_opt != Some(parent_pid) {
            continue;
        }
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        let Some(name) = exe.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !functions.contains(&name) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        found.push(ProcessMemory {
            function: name.to_string(),
            pid,
            peak_rss_kib: kib("VmHWM:"),
            rss_kib: kib("VmRSS:"),
        });
    }
    found.sort_by(|a, b| a.function.cmp(&b.function));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_split_into_address_and_prefix() {
        let client = HttpClient::new("http://127.0.0.1:9000/lambda-url/coordinator/").expect("url");
        assert_eq!(client.host_port, "127.0.0.1:9000");
        assert_eq!(client.path_prefix, "/lambda-url/coordinator");
        let bare = HttpClient::new("http://localhost:80").expect("url");
        assert_eq!(bare.path_prefix, "");
        assert!(HttpClient::new("https://example.com").is_err());
    }

    #[test]
    fn answers_are_judged_by_status_completeness_and_hits() {
        let hit = Hit {
            id: 7,
            distance: 0.5,
            attributes: None,
        };
        let body = |partial: bool, id: u64| {
            serde_json::to_vec(&json!({"hits": [{"id": id, "distance": 0.5}], "partial": partial}))
                .expect("json")
        };
        let expected = std::slice::from_ref(&hit);
        assert!(matches!(
            judge(Ok((200, body(false, 7))), expected),
            Verdict::Correct
        ));
        assert!(matches!(
            judge(Ok((200, body(false, 8))), expected),
            Verdict::Wrong(_)
        ));
        assert!(matches!(
            judge(Ok((200, body(true, 7))), expected),
            Verdict::Partial(_)
        ));
        assert!(matches!(
            judge(Ok((503, b"{}".to_vec())), expected),
            Verdict::Error(_)
        ));
    }
}
