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

/// Readiness (every Kafka source has had its first assignment and reaches a broker) and liveness (no
/// vital task has died).
#[derive(Debug, Default)]
pub struct Health {
    flags: parking_lot::Mutex<Vec<Arc<AtomicBool>>>,
    dead: Arc<parking_lot::Mutex<Vec<String>>>,
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

    /// A guard for a task the daemon cannot do without (a source, a pipeline): unless the task hands it
    /// back through [`Vital::finished`], its drop (an error return, a panic unwinding) marks the daemon
    /// dead, and `/livez` fails from then on.
    pub fn vital(&self, task: impl Into<String>) -> Vital {
        Vital {
            task: task.into(),
            dead: self.dead.clone(),
            finished: false,
        }
    }

    /// The vital tasks that have died, in the order they died; empty while the daemon is alive.
    pub fn dead(&self) -> Vec<String> {
        self.dead.lock().clone()
    }
}

/// Held by a vital task while it runs; see [`Health::vital`].
#[derive(Debug)]
pub struct Vital {
    task: String,
    dead: Arc<parking_lot::Mutex<Vec<String>>>,
    finished: bool,
}

impl Vital {
    /// The task ended as it should (its input ended, or shutdown): it does not count as dead.
    pub fn finished(mut self) {
        self.finished = true;
    }
}

impl Drop for Vital {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        tracing::error!(
            task = %self.task,
            panicked = std::thread::panicking(),
            "a vital task died; /livez fails from now on"
        );
        self.dead.lock().push(std::mem::take(&mut self.task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vital_task_that_errs_or_panics_marks_the_daemon_dead_and_one_that_finishes_does_not() {
        let health = Health::default();
        health.vital("source-metrics").finished();
        assert!(health.dead().is_empty());
        let erring = health.vital("source-forward");
        drop(erring);
        let panicking = health.vital("pipeline-metrics");
        let joined = std::thread::spawn(move || {
            let _guard = panicking;
            panic!("a bug in a stage");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(health.dead(), ["source-forward", "pipeline-metrics"]);
    }

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
