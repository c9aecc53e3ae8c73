use super::Shutdown;
use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// Retrying stopped: the drain deadline passed during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped retrying: the shutdown drain deadline passed")]
pub struct Stopped;

/// Runs `attempt` until it succeeds, with exponential backoff (100 ms doubling to 10 s, with jitter).
/// `on_error` sees each failure and its attempt number. Gives up only when the shutdown's drain deadline
/// has passed.
pub async fn retry<T, E, F, Fut>(
    shutdown: &Shutdown,
    mut attempt: F,
    mut on_error: impl FnMut(&E, u32),
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    for n in 1.. {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => on_error(&e, n),
        }
        if shutdown.drain_expired() {
            return Err(Stopped);
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        tokio::time::sleep(delay.mul_f64(jitter)).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    unreachable!("the loop only ends by returning")
}
