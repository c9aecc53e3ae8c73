//! The span processor: ended spans go into a bounded queue (dropped and counted when it is full, never
//! waited for) that one thread empties into export requests, each bounded by the export timeout.
//!
//! The SDK's batch processor neither counts its drops where we can read them nor runs gRPC exports
//! without an ambient runtime; this one owns a single-threaded tokio runtime for its exporter, so a
//! slow or absent collector costs the pipelines nothing but the spans themselves.

use super::stats::{Dropped, STATS};
use crate::telemetry::RateLimit;
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// What the exporting thread is asked to do.
enum Message {
    /// Export this span with the next request.
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(mpsc::Sender<()>),
    /// Export what is queued, shut the exporter down, answer and end.
    Shutdown(mpsc::Sender<()>),
}

/// How the queue is sized and emptied.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Spans waiting, at most.
    pub queue_spans: usize,
    /// Spans per export request.
    pub batch_spans: usize,
    /// The longest an ended span waits for a fuller request.
    pub schedule_delay: Duration,
    /// One export's deadline.
    pub timeout: Duration,
}

/// The bounded-queue span processor.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: SyncSender<Message>,
    timeout: Duration,
}

impl QueueProcessor {
    /// Starts the exporting thread. `build` makes the exporter inside the thread's runtime (a gRPC
    /// channel must be made within one); its error is returned here.
    pub fn start<E, B>(limits: QueueLimits, build: B) -> Result<QueueProcessor, String>
    where
        E: SpanExporter + 'static,
        B: FnOnce() -> Result<E, String> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the exporter's runtime: {e}"))?;
        let (tx, rx) = mpsc::sync_channel(limits.queue_spans);
        let (built_tx, built) = mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let exporter = {
                    let _entered = runtime.enter();
                    build()
                };
                let exporter = match exporter {
                    Ok(exporter) => {
                        let _ = built_tx.send(Ok(()));
                        exporter
                    }
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                        return;
                    }
                };
                Exporting {
                    runtime,
                    exporter,
                    limits,
                    batch: Vec::with_capacity(limits.batch_spans),
                    failures: RateLimit::new(Duration::from_secs(60)),
                    failing: false,
                }
                .run(rx)
            })
            .map_err(|e| format!("cannot start the exporting thread: {e}"))?;
        built
            .recv()
            .map_err(|_| "the exporting thread ended at start".to_owned())??;
        Ok(QueueProcessor {
            tx,
            timeout: limits.timeout,
        })
    }

    /// Sends a control message and waits for its answer, at most `wait`.
    fn ask(&self, make: fn(mpsc::Sender<()>) -> Message, wait: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + wait;
        let (answer, answered) = mpsc::channel();
        let mut message = make(answer);
        // The queue may be full: the thread empties it, so retry until the deadline.
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(wait)),
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        answered
            .recv_timeout(left)
            .map_err(|_| OTelSdkError::Timeout(wait))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        match self.tx.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => STATS.dropped(Dropped::QueueFull, 1),
            Err(TrySendError::Disconnected(_)) => STATS.dropped(Dropped::Shutdown, 1),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Message::Flush, self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Message::Shutdown, timeout)
    }
}

/// The exporting thread's state.
struct Exporting<E> {
    runtime: tokio::runtime::Runtime,
    exporter: E,
    limits: QueueLimits,
    batch: Vec<SpanData>,
    failures: RateLimit,
    /// The last export failed: at shutdown, what is queued is dropped (counted) rather than waited for.
    failing: bool,
}

impl<E: SpanExporter> Exporting<E> {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut due: Option<Instant> = None;
        loop {
            let wait = due.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok(Message::Span(span)) => {
                    if self.batch.is_empty() {
                        due = Some(Instant::now() + self.limits.schedule_delay);
                    }
                    self.batch.push(*span);
                    if self.batch.len() >= self.limits.batch_spans {
                        self.export();
                        due = None;
                    }
                }
                Ok(Message::Flush(answer)) => {
                    self.drain(&rx);
                    due = None;
                    let _ = answer.send(());
                }
                Ok(Message::Shutdown(answer)) => {
                    self.drain_for_shutdown(&rx);
                    let _ = self.exporter.shutdown();
                    let _ = answer.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export();
                    due = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export();
                    let _ = self.exporter.shutdown();
                    return;
                }
            }
        }
    }

    /// Exports every span queued now, in requests of at most `batch_spans`.
    fn drain(&mut self, rx: &mpsc::Receiver<Message>) {
        while let Ok(message) = rx.try_recv() {
            match message {
                Message::Span(span) => {
                    self.batch.push(*span);
                    if self.batch.len() >= self.limits.batch_spans {
                        self.export();
                    }
                }
                Message::Flush(answer) | Message::Shutdown(answer) => {
                    let _ = answer.send(());
                }
            }
        }
        self.export();
    }

    /// At shutdown: exports what is queued, unless an export fails (the collector is down or silent),
    /// after which the rest is dropped and counted: shutdown waits for at most one failed request.
    fn drain_for_shutdown(&mut self, rx: &mpsc::Receiver<Message>) {
        if !self.failing {
            self.export();
        }
        while let Ok(message) = rx.try_recv() {
            match message {
                Message::Span(span) if !self.failing => {
                    self.batch.push(*span);
                    if self.batch.len() >= self.limits.batch_spans {
                        self.export();
                    }
                }
                Message::Span(_) => STATS.dropped(Dropped::Shutdown, 1),
                Message::Flush(answer) | Message::Shutdown(answer) => {
                    let _ = answer.send(());
                }
            }
        }
        match self.failing {
            false => self.export(),
            true => {
                STATS.dropped(Dropped::Shutdown, self.batch.len() as u64);
                self.batch.clear();
            }
        }
    }

    /// One export request of the gathered spans, bounded by the timeout; a failure drops them, counted.
    fn export(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limits.batch_spans));
        let count = spans.len() as u64;
        let timeout = self.limits.timeout;
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, self.exporter.export(spans)).await });
        let error = match result {
            Ok(Ok(())) => {
                STATS.exported(count);
                self.failing = false;
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", timeout.as_millis()),
        };
        STATS.export_failed(count);
        self.failing = true;
        if let Some(suppressed) = self.failures.allow() {
            tracing::warn!(
                spans = count,
                error = %error,
                suppressed,
                "exporting spans to the OTLP collector failed; they are dropped"
            );
        }
    }
}
