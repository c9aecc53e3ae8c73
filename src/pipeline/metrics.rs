//! The metrics pipeline: decode -> (intake join) -> derive; invalid records are dead-lettered.

use super::ahead::{decode_ahead, default_workers, DecodedBatch, Prepare, Staged};
pub use super::dead_letters::DeadLetters;
use super::{retry, Decoded, Progress, Shutdown, Stopped};
use crate::config::RetryConfig;
use crate::decode::{Event, EventType};
use crate::derive::changelog::Changelog;
use crate::derive::join::{may_complete, Change, IntakeJoin, Partition};
use crate::derive::{wall_clock, Cursor, Plan, Prepared, Store};
use crate::source::{BatchRef, Origin, SourceMessage};
use crate::telemetry::events::EventsIgnored;
use crate::telemetry::otel::spans;
use crate::telemetry::SelfMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// The pipeline's label value.
pub const NAME: &str = "metrics";

/// The intake join and, for a Kafka source, its changelog.
pub struct JoinState {
    pub join: IntakeJoin,
    pub changelog: Option<Arc<Changelog>>,
}

/// decode -> derive.
pub struct MetricsPipeline {
    pub plan: Arc<Plan>,
    pub store: Arc<parking_lot::Mutex<Store>>,
    /// Where invalid records go (while this pipeline runs, it is the one that dead-letters them).
    pub dead_letters: DeadLetters,
    /// The intake join, when enabled.
    pub join: Option<JoinState>,
    pub metrics: Arc<SelfMetrics>,
    pub progress: Arc<Progress>,
    pub shutdown: Shutdown,
}

impl MetricsPipeline {
    /// Processes messages until the source closes the channel (or the drain deadline stops a retry).
    pub async fn run(mut self, rx: mpsc::Receiver<SourceMessage>) {
        let mut rx = decode_ahead(
            NAME,
            rx,
            self.metrics.clone(),
            self.progress.clone(),
            default_workers(),
            prepare(self.plan.clone(), self.join.is_some()),
        );
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                message = rx.recv() => match message {
                    Some(m) => m,
                    None => return,
                },
                _ = expiry.tick() => {
                    if self.expire_intakes().await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let outcome = match message {
                Staged::Batch(batch, decoded, prepared, span) => {
                    let result = self
                        .process(&batch, &decoded, &prepared)
                        .instrument(span.clone())
                        .await;
                    spans::finished(&span, result.is_ok(), "done");
                    result.map(|()| batch.done())
                }
                Staged::Assigned(partitions) => self.restore(&partitions).await,
                Staged::Revoked(partitions) => {
                    if let Some(state) = &mut self.join {
                        for (topic, partition) in &partitions {
                            state.join.drop_partition(topic, *partition);
                        }
                    }
                    Ok(())
                }
            };
            if outcome.is_err() {
                tracing::warn!(
                    pipeline = NAME,
                    "drain deadline passed: unfinished records will be read again"
                );
                return;
            }
        }
    }

    /// Reads the join state of newly assigned partitions from the changelog, before their records.
    async fn restore(&mut self, partitions: &[(Arc<str>, i32)]) -> Result<(), Stopped> {
        let Some(JoinState {
            join,
            changelog: Some(changelog),
        }) = &mut self.join
        else {
            return Ok(());
        };
        for (topic, partition) in partitions {
            let span = spans::changelog_restore(topic, *partition);
            let started = std::time::Instant::now();
            let changes = retry(
                &self.shutdown,
                &RetryConfig::default(),
                || changelog.read(topic, *partition),
                |error, attempt| {
                    tracing::warn!(%error, attempt, topic = topic.as_ref(), partition, "reading the intake changelog failed; retrying")
                },
            )
            .instrument(span.clone())
            .await?;
            let read = changes.len();
            spans::set(&span, "records", read as i64);
            join.drop_partition(topic, *partition);
            let now = chrono::Utc::now();
            for change in changes {
                join.restore(change, now);
            }
            join.emit_counts(&self.metrics);
            spans::set(&span, "pending", join.len() as i64);
            span.in_scope(|| {
                tracing::info!(
                    topic = topic.as_ref(),
                    partition,
                    records = read,
                    pending = join.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "intake state restored"
                )
            });
        }
        Ok(())
    }

    async fn expire_intakes(&mut self) -> Result<(), Stopped> {
        let Some(state) = &mut self.join else {
            return Ok(());
        };
        let mut changes = Vec::new();
        state.join.expire(chrono::Utc::now(), &mut changes);
        state.join.emit_counts(&self.metrics);
        self.write_changelog(&changes).await
    }

    /// Persists join changes to the changelog (with a Kafka source), retrying until they are safe.
    async fn write_changelog(&self, changes: &[Change]) -> Result<(), Stopped> {
        let Some(JoinState {
            changelog: Some(changelog),
            ..
        }) = &self.join
        else {
            return Ok(());
        };
        if changes.is_empty() {
            return Ok(());
        }
        let policy = RetryConfig::default();
        retry(&self.shutdown, &policy, || changelog.write(changes), |error, attempt| {
            tracing::warn!(%error, attempt, "writing the intake changelog failed; retrying")
        })
        .await
    }

    /// Derives a batch that [`decode_ahead`] decoded and [`prepare`] prepared: the intake join sees
    /// every lifecycle event, in order; the events the join may complete are derived once it has.
    async fn process(
        &mut self,
        batch: &BatchRef,
        decoded: &DecodedBatch,
        prepared: &Prepared,
    ) -> Result<(), Stopped> {
        let records = batch.records();
        let decoded = decoded.get();
        let mut changes: Vec<Change> = Vec::new();
        // The deferred events as the join leaves them (a resolution given its intake time), by position
        // in `decoded.events`, ascending. The decoded batch itself is shared, so the join works on
        // copies (cheap: they borrow the same bytes).
        let mut joined: Vec<(usize, Event<'_>)> = Vec::new();
        if let Some(state) = &mut self.join {
            let now = chrono::Utc::now();
            for (at, (i, ev)) in decoded.events.iter().enumerate() {
                if ev.event_type() == EventType::RequestLifecycle {
                    let partition: Partition = match &records[*i].origin {
                        Origin::Kafka {
                            topic, partition, ..
                        } => Some((topic.clone(), *partition)),
                        _ => None,
                    };
                    let mut ev = ev.clone();
                    state.join.apply(&mut ev, &partition, now, &mut changes);
                    if prepared.is_deferred(at) {
                        joined.push((at, ev));
                    }
                }
            }
            state.join.emit_counts(&self.metrics);
        }
        let unknown = decoded
            .events
            .iter()
            .filter(|(_, ev)| ev.event_type() == EventType::Unknown)
            .count() as u64;
        let counts = {
            let mut joined = joined.iter().peekable();
            let mut store = self.store.lock();
            store.set_now(wall_clock());
            let mut cursor = Cursor::default();
            for (at, (_, ev)) in decoded.events.iter().enumerate() {
                match joined.next_if(|(j, _)| *j == at) {
                    Some((_, completed)) => self.plan.observe(&mut store, completed),
                    None => self.plan.apply(&mut store, at, ev, prepared, &mut cursor),
                }
            }
            store.take_owned_counts()
        };
        counts.emit(&self.metrics);
        if unknown > 0 {
            EventsIgnored {
                pipeline: NAME,
                reason: "unknown_type",
                count: unknown,
            }
            .emit(&self.metrics);
        }
        // Both must be safe before the batch is done; neither waits for the other.
        let (dead_letters, changelog) = tokio::join!(
            self.dead_letters.invalid(records, &decoded.invalid),
            self.write_changelog(&changes)
        );
        dead_letters?;
        changelog?;
        self.progress
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// What the decode workers do for this pipeline: prepare each batch's derive work
/// ([`Plan::prepare`]), except, with the intake join on, for the events the join may complete, which
/// are deferred to the pipeline's task (it derives them after the join, in order).
fn prepare(plan: Arc<Plan>, join: bool) -> Prepare {
    Arc::new(move |decoded: &Decoded<'_>| {
        let mut prepared = Prepared::default();
        for (at, (_, ev)) in decoded.events.iter().enumerate() {
            if join && may_complete(ev) {
                prepared.defer(at);
            } else {
                plan.prepare(at, ev, &mut prepared);
            }
        }
        prepared
    })
}
