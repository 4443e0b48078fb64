//! Fault injection for local tests of the deployed path: when `SQUASH_FAULT_FILE` names a
//! file, each worker invocation reads it and misbehaves as its lines say. Unset (as in any
//! real deployment), it does nothing and costs one environment lookup.
//!
//! Each line is `<function> <action> [argument]`:
//! - `crash`: the process aborts mid-request (the container dies);
//! - `fail`: the invocation returns a function error;
//! - `sleep <ms>`: the invocation stalls that long before working;
//! - `fail-once <marker file>`: fail unless the marker exists, creating it first, so the
//!   retry succeeds.
//!
//! (`cargo lambda watch` does not restart a function process that died, so under the
//! emulator a crashed slot stays down until the emulator restarts; on AWS the next invocation
//! gets a new container.)

use std::time::Duration;

/// What a fault line asks of this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Abort the process.
    Crash,
    /// Return a function error.
    Fail,
    /// Stall before working.
    Sleep(Duration),
}

/// Returns the fault the file at `SQUASH_FAULT_FILE` sets for `function`, if any.
pub fn fault_for(function: &str) -> Option<Fault> {
    let path = std::env::var("SQUASH_FAULT_FILE").ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    parse_fault(&text, function)
}

/// Returns the fault `text` sets for `function` (the first matching line wins).
pub fn parse_fault(text: &str, function: &str) -> Option<Fault> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(function) {
            continue;
        }
        return match (words.next(), words.next()) {
            (Some("crash"), _) => Some(Fault::Crash),
            (Some("fail"), _) => Some(Fault::Fail),
            (Some("sleep"), Some(ms)) => ms
                .parse()
                .ok()
                .map(|ms| Fault::Sleep(Duration::from_millis(ms))),
            (Some("fail-once"), Some(marker)) => {
                if std::path::Path::new(marker).exists() {
                    None
                } else {
                    std::fs::write(marker, b"failed once").ok()?;
                    Some(Fault::Fail)
                }
            }
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_select_faults_per_function() {
        let text = "worker-2 sleep 1500\nworker-3 crash\nworker fail\n";
        assert_eq!(
            parse_fault(text, "worker-2"),
            Some(Fault::Sleep(Duration::from_millis(1500)))
        );
        assert_eq!(parse_fault(text, "worker-3"), Some(Fault::Crash));
        assert_eq!(parse_fault(text, "worker"), Some(Fault::Fail));
        assert_eq!(parse_fault(text, "worker-1"), None);
        let marker = std::env::temp_dir().join(format!("squash-fault-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let once = format!("w fail-once {}", marker.display());
        assert_eq!(parse_fault(&once, "w"), Some(Fault::Fail));
        assert_eq!(parse_fault(&once, "w"), None);
        let _ = std::fs::remove_file(&marker);
    }
}
