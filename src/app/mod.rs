//! App: wiring the stages into the running daemon, and the other subcommands.
//!
//! Start-up order (anything that can fail does so before a record is read): configuration (by the
//! caller), logging, rules, credentials, dead-letter destination, sinks, HTTP listener, pipelines, and
//! last the sources. Shutdown runs the other way: sources stop reading, pipelines finish what they hold
//! (within `shutdown.drain_timeout_secs`), Kafka sources store and commit, the HTTP server stops.

pub mod generate;
pub mod replay;

use crate::config::{Config, DeadLetterKind, SourceKind};
use crate::deadletter::{DeadLetter, DeadLetterError};
use crate::derive::changelog::Changelog;
use crate::derive::join::IntakeJoin;
use crate::derive::{DeriveError, Plan, Store};
use crate::forward::{build_sink, Enricher, HostInfo, OrganizationTable, Redactor};
use crate::http::{HttpError, HttpState, Security, DEMO_PASSWORD};
use crate::lifecycle::{Health, Shutdown};
use crate::pipeline::forward::{ForwardPipeline, Prepare};
use crate::pipeline::metrics::JoinState;
use crate::pipeline::metrics::MetricsPipeline;
use crate::pipeline::Progress;
use crate::source::file::FileSource;
use crate::source::generator::{GeneratorSettings, GeneratorSource};
use crate::source::kafka::{consumer_properties, KafkaSource, KafkaSourceSettings};
use crate::source::{Outputs, SourceError, SourceSummary};
use crate::telemetry::SelfMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why the daemon (or a subcommand) failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid metric rules:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<DeriveError>),
    #[error("/metrics on the non-loopback address {addr} would be open to anyone: the web configuration file sets no users, tokens, allowed networks or client certificates (or set http.allow_unauthenticated = true)")]
    Unprotected { addr: std::net::SocketAddr },
    #[error("web configuration: {0}")]
    Security(#[from] crate::http::SecurityError),
    #[error("the public demo password is configured for {users:?} while /metrics listens on {addr}, which is not loopback: set real credentials")]
    DemoPasswordExposed {
        users: Vec<String>,
        addr: std::net::SocketAddr,
    },
    #[error("dead-letter destination: {0}")]
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    Sink(#[from] crate::forward::sink::SinkBuildError),
    #[error("redaction: {0}")]
    Redaction(#[from] crate::forward::redact::RedactError),
    #[error("organization table: {0}")]
    Organizations(#[from] crate::forward::organizations::OrganizationTableError),
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("intake changelog: {0}")]
    Changelog(#[from] crate::derive::changelog::ChangelogError),
    #[error("{0}")]
    Usage(String),
}

impl AppError {
    /// The process exit code: 64 (EX_USAGE) for configuration and usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_)
            | AppError::Rules(_)
            | AppError::Usage(_)
            | AppError::DemoPasswordExposed { .. }
            | AppError::Unprotected { .. }
            | AppError::Security(_) => 64,
            _ => 1,
        }
    }
}

/// How `run` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Stop once every source has ended and everything is drained (`replay`), instead of serving until a
    /// signal.
    pub exit_when_sources_end: bool,
    /// Serve HTTP.
    pub http: bool,
    /// Print the start-up banner (where to look, a ready `curl` line).
    pub banner: bool,
}

/// What a finished run leaves.
pub struct RunReport {
    /// Records read by the sources.
    pub source_records: u64,
    /// The metrics pipeline's counters, if it ran.
    pub metrics: Option<Arc<Progress>>,
    /// The forward pipeline's counters, if it ran.
    pub forward: Option<Arc<Progress>>,
    /// The derived series.
    pub store: Arc<parking_lot::Mutex<Store>>,
    /// Self metrics.
    pub self_metrics: Arc<SelfMetrics>,
}

/// Compiles the metric rules.
pub fn compile_rules(config: &Config) -> Result<Plan, AppError> {
    Plan::compile(&config.metrics.all_rules()).map_err(AppError::Rules)
}

fn generator_settings(config: &Config) -> GeneratorSettings {
    let g = &config.source.generator;
    GeneratorSettings {
        seed: g.seed,
        count: (g.count > 0).then_some(g.count),
        rate: g.rate,
        organizations: g.organizations,
        invalid_ratio: g.invalid_ratio,
        unknown_ratio: g.unknown_ratio,
        start: chrono::DateTime::parse_from_rfc3339(&g.start)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now()),
        ..GeneratorSettings::default()
    }
}

type SourceThread = std::thread::JoinHandle<Result<SourceSummary, SourceError>>;

fn spawn_source<F>(name: &str, body: F) -> Result<SourceThread, AppError>
where
    F: FnOnce() -> Result<SourceSummary, SourceError> + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(body)
        .map_err(|source| AppError::Io {
            context: "cannot start a source thread".into(),
            source,
        })
}

/// Runs the daemon until a signal (or, with `exit_when_sources_end`, until the sources end).
pub async fn run(config: Config, options: RunOptions) -> Result<RunReport, AppError> {
    run_observed(config, options, Default::default(), Default::default()).await
}

/// [`run`], with the pipelines' progress counters supplied by the caller (to watch them while it runs).
pub async fn run_observed(
    config: Config,
    options: RunOptions,
    metrics_progress: Arc<Progress>,
    forward_progress: Arc<Progress>,
) -> Result<RunReport, AppError> {
    let self_metrics = Arc::new(SelfMetrics::new());
    let plan = Arc::new(compile_rules(&config)?);
    let store = Arc::new(parking_lot::Mutex::new(plan.new_store()));

    let security = match &config.http.web_config_file {
        Some(path) => Security::load(path)?,
        None => Security::basic(config.http.basic_auth_users.clone()),
    };
    let must_protect = !config.http.listen.ip().is_loopback() && !config.http.allow_unauthenticated;
    if options.http && must_protect && !security.is_protected() {
        return Err(AppError::Unprotected {
            addr: config.http.listen,
        });
    }
    let demo_users: Vec<String> = security
        .auth
        .demo_users()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let auth_required = security.auth.requires_credentials();
    let security: crate::http::LiveSecurity =
        Arc::new(parking_lot::RwLock::new(Arc::new(security)));
    if options.http && !demo_users.is_empty() && !config.http.listen.ip().is_loopback() {
        return Err(AppError::DemoPasswordExposed {
            users: demo_users,
            addr: config.http.listen,
        });
    }

    let dead_letter = Arc::new(match config.dead_letter.kind {
        DeadLetterKind::Kafka => DeadLetter::kafka(
            &config.kafka.producer_properties(),
            &config.dead_letter.topic,
        )?,
        DeadLetterKind::File => DeadLetter::file(&config.dead_letter.path)?,
    });
    let pipes = &config.pipelines;
    let shutdown = Shutdown::new(Duration::from_secs(config.shutdown.drain_timeout_secs));
    let host = HostInfo::from_env();
    let mut workers = Vec::new();
    if pipes.forward.enabled {
        for (index, (name, sink)) in config.forward.sinks.iter().enumerate() {
            let (batch, retry) = sink.delivery();
            workers.push(crate::pipeline::deliver::Worker {
                sink: build_sink(name, sink, &config.kafka, &host)?,
                index,
                batch: batch.clone(),
                retry: retry.clone(),
                metrics: self_metrics.clone(),
                shutdown: shutdown.clone(),
            });
        }
    }
    let redactor = Redactor::new(&config.forward.redaction)?;
    let organizations = match &config.forward.organizations_file {
        Some(path) => {
            let (live, seen) = crate::forward::organizations::load_live(path)?;
            tokio::spawn(crate::forward::organizations::watch(
                path.clone(),
                live.clone(),
                seen,
                Duration::from_secs(2),
                self_metrics.clone(),
                shutdown.clone(),
            ));
            live
        }
        None => Arc::new(parking_lot::RwLock::new(Arc::new(
            OrganizationTable::default(),
        ))),
    };

    let listener = match options.http {
        true => Some(crate::http::bind(config.http.listen).await?),
        false => None,
    };
    let health_listener = match (options.http, config.http.health_listen) {
        (true, Some(addr)) => Some(crate::http::bind(addr).await?),
        _ => None,
    };
    let health = Arc::new(Health::default());

    // Pipelines.
    let queue = config.source.queue_batches.max(1);
    let mut tasks = Vec::new();
    let mut senders = Vec::new();
    let (metrics_progress, forward_progress) = (
        pipes.metrics.enabled.then_some(metrics_progress),
        pipes.forward.enabled.then_some(forward_progress),
    );
    if let Some(progress) = metrics_progress.clone() {
        let (tx, rx) = mpsc::channel(queue);
        let pipeline = MetricsPipeline {
            plan: plan.clone(),
            store: store.clone(),
            dead_letter: Some(dead_letter.clone()),
            join: open_join(&config).await?,
            metrics: self_metrics.clone(),
            progress,
            shutdown: shutdown.clone(),
        };
        tasks.push(tokio::spawn(pipeline.run(rx)));
        senders.push((
            crate::pipeline::metrics::NAME,
            pipes.metrics.group_id.clone(),
            tx,
        ));
    }
    if let Some(progress) = forward_progress.clone() {
        let (tx, rx) = mpsc::channel(queue);
        let pipeline = ForwardPipeline {
            prepare: Prepare {
                enricher: Enricher::new(
                    host.clone(),
                    &config.forward.service_name,
                    &config.forward.environment,
                    &config.forward.trace_url_template,
                ),
                redactor,
                organizations,
                forward_invalid: config.forward.forward_invalid,
                dead_letter: dead_letter.clone(),
                owns_invalid: !pipes.metrics.enabled,
                metrics: self_metrics.clone(),
                progress,
                shutdown: shutdown.clone(),
            },
            workers,
        };
        tasks.push(tokio::spawn(pipeline.run(rx)));
        senders.push((
            crate::pipeline::forward::NAME,
            pipes.forward.group_id.clone(),
            tx,
        ));
    }

    // Sources, last.
    let batch_max = config.source.batch_max_records;
    let mut sources: Vec<SourceThread> = Vec::new();
    match config.source.kind {
        SourceKind::Kafka => {
            for (pipeline, group_id, tx) in senders {
                let settings = KafkaSourceSettings {
                    pipeline,
                    properties: consumer_properties(
                        &config.kafka.brokers,
                        &group_id,
                        &config.kafka.consumer_overrides(),
                    ),
                    topics: config.kafka.topics.clone(),
                    batch_max_records: batch_max,
                    batch_max_wait: Duration::from_millis(config.source.batch_max_wait_ms),
                    revoke_drain: Duration::from_millis(config.shutdown.revoke_drain_ms),
                    shutdown_drain: shutdown.drain(),
                };
                let source =
                    KafkaSource::new(settings, self_metrics.clone(), health.condition(), tx)?;
                let stop = shutdown.flag();
                sources.push(spawn_source(pipeline, move || source.run(stop))?);
            }
        }
        SourceKind::File => {
            let outputs = Outputs::new(senders.into_iter().map(|(_, _, tx)| tx).collect());
            let source = FileSource::new(config.source.file.path.clone(), batch_max);
            let stop = shutdown.flag();
            sources.push(spawn_source("file", move || source.run(outputs, stop))?);
        }
        SourceKind::Generator => {
            let outputs = Outputs::new(senders.into_iter().map(|(_, _, tx)| tx).collect());
            let source = GeneratorSource::new(generator_settings(&config), batch_max);
            let stop = shutdown.flag();
            sources.push(spawn_source("generator", move || {
                source.run(outputs, stop)
            })?);
        }
    }

    let sweeper = tokio::spawn(sweep_expired(
        store.clone(),
        self_metrics.clone(),
        shutdown.clone(),
    ));
    let state = HttpState::new(
        store.clone(),
        self_metrics.clone(),
        health.clone(),
        security.clone(),
    );
    let mut servers = Vec::new();
    if let Some(listener) = listener {
        servers.push(tokio::spawn(crate::http::serve(
            listener,
            state.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(listener) = health_listener {
        servers.push(tokio::spawn(crate::http::serve_health(
            listener,
            state.clone(),
            shutdown.clone(),
        )));
    }
    if let (Some(path), true) = (&config.http.web_config_file, options.http) {
        let watcher = crate::http::watch_security(
            path.clone(),
            security.clone(),
            self_metrics.clone(),
            must_protect,
            shutdown.clone(),
        );
        servers.push(tokio::spawn(watcher));
    }
    if options.banner {
        print_banner(&config, &demo_users, auth_required, &dead_letter);
    }
    tracing::info!(
        source = ?config.source.kind,
        metrics_pipeline = pipes.metrics.enabled,
        forward_pipeline = pipes.forward.enabled,
        dead_letters = %dead_letter.describe(),
        "started"
    );

    // Wait for a signal, or for the sources to end.
    let sources_done = async {
        let handles = std::mem::take(&mut sources);
        tokio::task::spawn_blocking(move || {
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        })
        .await
    };
    tokio::pin!(sources_done);
    let mut joined = None;
    tokio::select! {
        signal = wait_for_signal() => {
            tracing::info!(signal, "stopping");
        }
        results = &mut sources_done => {
            joined = Some(results);
        }
    }
    if joined.is_some() && !options.exit_when_sources_end {
        tracing::info!("every source has ended; serving until stopped");
        let signal = wait_for_signal().await;
        tracing::info!(signal, "stopping");
    }
    shutdown.trigger();
    let results = match joined {
        Some(results) => results,
        None => sources_done.await,
    };
    let mut source_records = 0;
    let mut first_error = None;
    for result in results.unwrap_or_default() {
        match result {
            Ok(Ok(summary)) => source_records += summary.records,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "source failed");
                first_error.get_or_insert(AppError::Source(e));
            }
            Err(_) => tracing::error!("a source thread panicked"),
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let _ = sweeper.await;
    dead_letter.flush(Duration::from_secs(5));
    for server in servers {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http server task failed");
        }
    }
    tracing::info!(records = source_records, "stopped");
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(RunReport {
        source_records,
        metrics: metrics_progress,
        forward: forward_progress,
        store,
        self_metrics,
    })
}

/// The intake join of the metrics pipeline, with its changelog for a Kafka source.
async fn open_join(config: &Config) -> Result<Option<JoinState>, AppError> {
    let settings = &config.metrics.intake_join;
    if !settings.enabled {
        return Ok(None);
    }
    let join = IntakeJoin::new(settings.max_entries, Duration::from_secs(settings.ttl_secs));
    let changelog = match config.source.kind {
        SourceKind::Kafka => {
            let mut consumer = vec![(
                "bootstrap.servers".to_string(),
                config.kafka.brokers.clone(),
            )];
            consumer.extend(config.kafka.consumer_overrides());
            let changelog = Changelog::open(
                &config.kafka.producer_properties(),
                &consumer,
                &settings.changelog_topic,
                &config.kafka.topics,
            )
            .await?;
            Some(Arc::new(changelog))
        }
        _ => None,
    };
    Ok(Some(JoinState { join, changelog }))
}

/// Removes idle series every second (never tied to a scrape or flush interval) and counts them.
async fn sweep_expired(
    store: Arc<parking_lot::Mutex<Store>>,
    metrics: Arc<SelfMetrics>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let counts = {
            let mut store = store.lock();
            if store.sweep(crate::derive::wall_clock()) == 0 {
                continue;
            }
            store.take_owned_counts()
        };
        counts.emit(&metrics);
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

fn print_banner(config: &Config, demo_users: &[String], auth: bool, dead_letter: &DeadLetter) {
    let addr = config.http.listen;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("[{host}]")
    } else {
        host
    };
    let base = format!("http://{host}:{}", addr.port());
    let source = match config.source.kind {
        SourceKind::Kafka => format!(
            "kafka {} on {}",
            config.kafka.topics.join(","),
            config.kafka.brokers
        ),
        SourceKind::File => format!("file {}", config.source.file.path),
        SourceKind::Generator => format!(
            "generator ({} events/s, seed {})",
            config.source.generator.rate, config.source.generator.seed
        ),
    };
    let credentials = match (demo_users.first(), auth) {
        (Some(user), _) => format!("-u {user}:{DEMO_PASSWORD} "),
        (None, true) => "-u USER:PASSWORD ".to_string(),
        (None, false) => String::new(),
    };
    let mut lines = vec![
        format!("hestyna-obsd {} is running", env!("CARGO_PKG_VERSION")),
        format!("  source        {source}"),
        format!("  /metrics      {base}/metrics"),
        format!(
            "  try           curl -s {credentials}{base}/metrics | grep '^hestyna_llm_runs_total'"
        ),
        format!("  health        {base}/livez  {base}/readyz"),
    ];
    if let Some(user) = demo_users.first() {
        lines.push(format!("  credentials   {user} / {DEMO_PASSWORD} (the public demo password: accepted on loopback only)"));
    }
    if config.pipelines.forward.enabled {
        for (name, sink) in &config.forward.sinks {
            lines.push(format!(
                "  {:<14}{}",
                format!("SIEM {name}"),
                sink.describe()
            ));
        }
    }
    lines.push(format!("  dead letters  {}", dead_letter.describe()));
    lines.push("  stop          Ctrl-C (drains, then exits)".into());
    eprintln!("{}", lines.join("\n"));
}
