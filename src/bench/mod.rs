//! Benchmark tools (the `hestyna-obsd-bench` binary): the baselines and probes `scripts/bench` measures
//! the daemon against.
//!
//! - [`consume`]: a bare consumer (same librdkafka, the same properties as the daemon's consumers) that
//!   reads a topic and discards every record: the rate to compare the daemon's end-to-end rate with.
//! - [`freshness`]: produces load at a steady rate plus probe events, scrapes `/metrics` and measures
//!   how long each probe takes from its produce time to its first appearance there.

pub mod consume;
pub mod freshness;

/// Why a bench tool failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka: {0}")]
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http: {0}")]
    /// A scrape failed.
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    /// The measurement could not be made.
    Failed(String),
}

/// What a run measured, printed as one JSON line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    /// Records read.
    pub records: u64,
    /// Seconds it took, from the first record.
    pub seconds: f64,
    /// Records per second.
    pub rate: f64,
    /// CPU seconds (user + system, every thread) the whole process used, start-up and group join
    /// included, as `scripts/bench_e2e.py` counts the daemon's; `None` where `/proc` is not there.
    pub cpu_seconds: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: Linux reports them in `USER_HZ`, which is 100
/// to user space on every architecture it runs on.
const USER_HZ: f64 = 100.0;

/// The CPU seconds (user + system) this process has used so far, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (second field) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_utime_plus_stime_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("4242 (x) S 1"), None);
        assert_eq!(cpu_seconds_of_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
