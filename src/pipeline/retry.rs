//! The one retry policy: exponential backoff with jitter, from `initial_backoff` doubling to
//! `max_backoff` (a sink's `[retry]`, or [`RetryConfig::default`] for dead letters and the intake
//! changelog), retrying for as long as it takes and giving up only at the shutdown drain deadline; no
//! wait runs past that deadline.

use crate::config::RetryConfig;
use crate::lifecycle::{Shutdown, Stopped};
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// The waits between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits as `policy` says.
    pub fn new(policy: &RetryConfig) -> Self {
        Backoff {
            initial: policy.initial_backoff,
            max: policy.max_backoff,
            next: policy.initial_backoff,
        }
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The next wait, before jitter.
    #[cfg(test)]
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Waits before the next attempt (between half and all of the current wait), then doubles it up to
    /// the maximum. `Err(Stopped)` once the drain deadline has passed.
    pub async fn wait(&mut self, shutdown: &Shutdown) -> Result<(), Stopped> {
        if shutdown.drain_expired() {
            return Err(Stopped);
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        let wait = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(self.max);
        shutdown.sleep(wait).await
    }
}

/// Runs `attempt` until it succeeds, waiting as `policy` says between attempts. `on_error` sees each
/// failure and its attempt number. Gives up only when the shutdown's drain deadline has passed.
pub async fn retry<T, E, F, Fut>(
    shutdown: &Shutdown,
    policy: &RetryConfig,
    mut attempt: F,
    mut on_error: impl FnMut(&E, u32),
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(policy);
    for n in 1.. {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => on_error(&e, n),
        }
        backoff.wait(shutdown).await?;
    }
    unreachable!("the loop only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_the_maximum_with_jitter_and_reset_after_a_success() {
        let shutdown = Shutdown::new(Duration::from_secs(1));
        let mut b = Backoff::new(&policy(100, 400));
        let mut waits = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            b.wait(&shutdown).await.unwrap();
            waits.push(started.elapsed());
        }
        for (wait, nominal) in waits.iter().zip([100, 200, 400, 400, 400]) {
            let nominal = Duration::from_millis(nominal);
            assert!(*wait >= nominal / 2 && *wait <= nominal, "{waits:?}");
        }
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_at_the_drain_deadline_and_not_later() {
        let shutdown = Shutdown::new(Duration::from_secs(3));
        shutdown.trigger();
        let started = Instant::now();
        let mut attempts = 0;
        let result: Result<(), Stopped> = retry(
            &shutdown,
            &policy(1000, 60_000),
            || {
                attempts += 1;
                async { Err::<(), _>("down") }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(result, Err(Stopped));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "no wait past the deadline"
        );
        assert!(attempts >= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_the_first_success() {
        let shutdown = Shutdown::new(Duration::from_secs(3));
        let mut left = 3;
        let got = retry(
            &shutdown,
            &policy(10, 10),
            || {
                left -= 1;
                let v = left;
                async move {
                    if v == 0 {
                        Ok(7)
                    } else {
                        Err("not yet")
                    }
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(got, Ok(7));
    }
}
