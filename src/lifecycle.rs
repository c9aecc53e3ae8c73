//! Lifecycle: the stop signal with its drain deadline ([`Shutdown`]) and readiness ([`Health`]), shared by
//! the sources, the pipelines, the HTTP server and the watchers. A leaf: it imports no other module of
//! the crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Retrying stopped: the drain deadline passed during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped retrying: the shutdown drain deadline passed")]
pub struct Stopped;

/// The stop signal, and the drain deadline that starts with it.
///
/// Sources stop reading when it is triggered; pipelines go on finishing what they hold, and give up
/// retrying (leaving those records unacknowledged, to be read again) only once the drain deadline passes.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
    deadline: Arc<parking_lot::Mutex<Option<Instant>>>,
    drain: Duration,
}

impl Shutdown {
    /// A signal whose drain lasts `drain`.
    pub fn new(drain: Duration) -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
            rx,
            deadline: Default::default(),
            drain,
        }
    }

    /// Starts the shutdown (idempotent).
    pub fn trigger(&self) {
        let mut deadline = self.deadline.lock();
        if deadline.is_none() {
            *deadline = Some(Instant::now() + self.drain);
        }
        self.flag.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }

    /// The flag, for source threads.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Whether the drain deadline has passed.
    pub fn drain_expired(&self) -> bool {
        self.deadline.lock().is_some_and(|d| Instant::now() >= d)
    }

    /// The drain budget.
    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// When the drain ends, once shutdown has started.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock()
    }

    /// Sleeps `d`, but never past the drain deadline, one that starts during the sleep included.
    /// `Err(Stopped)` when the deadline has passed: give up, leave the records to be read again.
    pub async fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        let end = Instant::now() + d;
        if self.deadline().is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => {}
                _ = self.wait() => {}
            }
        }
        if let Some(deadline) = self.deadline() {
            tokio::time::sleep_until(end.min(deadline)).await;
        }
        match self.drain_expired() {
            true => Err(Stopped),
            false => Ok(()),
        }
    }

    /// Resolves once shutdown has started.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Readiness: every Kafka source has had its first assignment.
#[derive(Debug, Default)]
pub struct Health {
    flags: parking_lot::Mutex<Vec<Arc<AtomicBool>>>,
}

impl Health {
    /// A new readiness condition, false until set.
    pub fn condition(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.flags.lock().push(flag.clone());
        flag
    }

    /// Whether every condition holds.
    pub fn is_ready(&self) -> bool {
        self.flags.lock().iter().all(|f| f.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_the_drain_deadline_even_one_that_starts_during_it() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let started = Instant::now();
        assert_eq!(shutdown.sleep(Duration::from_secs(2)).await, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(2));

        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trigger.trigger();
        });
        let started = Instant::now();
        // An hour asked, cut to the trigger (1 s) plus the drain (5 s).
        assert_eq!(
            shutdown.sleep(Duration::from_secs(3600)).await,
            Err(Stopped)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(6));
        assert_eq!(shutdown.sleep(Duration::from_secs(1)).await, Err(Stopped));
    }
}
