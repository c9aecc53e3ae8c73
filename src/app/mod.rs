//! App: wiring the stages into the running daemon, and the other subcommands.
//!
//! Start-up order (anything that can fail does so before a record is read): configuration (by the
//! caller), then [`Inputs`] (rules, credentials, redaction, organizations, sink secrets and TLS, every
//! fault at once), the dead-letter destination, the sinks, the HTTP listeners (a busy port fails here),
//! the pipelines, and last the sources. Shutdown runs the other way: sources stop reading, pipelines
//! finish what they hold (within `shutdown.drain_timeout_secs`), Kafka sources store and commit, and
//! only then does the HTTP server stop, so `/metrics` and the probes answer through the drain.

pub mod doctor;
pub mod generate;
pub mod healthcheck;
pub mod inputs;
pub mod replay;

pub use inputs::Inputs;

use crate::config::{Config, DeadLetterKind, Issue, SourceKind};
use crate::deadletter::{DeadLetterError, Destination};
use crate::derive::changelog::Changelog;
use crate::derive::join::IntakeJoin;
use crate::derive::{Plan, Store};
use crate::forward::{build_sink, Enricher, HostInfo, LiveOrganizations, OrganizationTable};
use crate::http::{HttpError, HttpState, LiveSecurity, DEMO_PASSWORD};
use crate::lifecycle::{Health, Shutdown};
use crate::pipeline::deliver::Worker;
use crate::pipeline::forward::{ForwardPipeline, Prepare};
use crate::pipeline::metrics::{DeadLetters, JoinState, MetricsPipeline};
use crate::pipeline::Progress;
use crate::source::file::FileSource;
use crate::source::generator::{GeneratorSettings, GeneratorSource};
use crate::source::kafka::{KafkaSource, KafkaSourceSettings};
use crate::source::{FanOut, Outputs, SourceError, SourceMessage, SourceSummary};
use crate::telemetry::SelfMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why the daemon (or a subcommand) failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    /// The configuration is invalid or unreadable.
    Config(#[from] crate::config::ConfigError),
    #[error("invalid configuration (what it names):\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    /// What the configuration names (files, secrets, rules) is invalid or unreadable.
    Inputs(Vec<Issue>),
    #[error("dead-letter destination: {0}")]
    /// The dead-letter destination could not be opened.
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    /// A sink could not be built.
    Sink(#[from] crate::forward::sink::SinkBuildError),
    #[error("source: {0}")]
    /// A source failed.
    Source(#[from] SourceError),
    #[error(transparent)]
    /// A listener could not be bound.
    Http(#[from] HttpError),
    #[error(transparent)]
    /// Logging could not start.
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("{context}: {source}")]
    /// An operating-system call failed.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    #[error("kafka: {0}")]
    /// The Kafka client failed.
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("intake changelog: {0}")]
    /// The intake changelog could not be opened.
    Changelog(#[from] crate::derive::changelog::ChangelogError),
    #[error("{0}")]
    /// A command-line argument is wrong.
    Usage(String),
    #[error("healthcheck: {0}")]
    /// `healthcheck` found the daemon unhealthy.
    Healthcheck(#[from] healthcheck::HealthcheckError),
    #[error("doctor: {0} check(s) failed")]
    /// `doctor` found something broken (the report says what).
    DoctorFailed(usize),
}

impl AppError {
    /// The process exit code: 64 (EX_USAGE) for configuration and usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Inputs(_) | AppError::Usage(_) => 64,
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

/// Starts a source on its own thread, a vital task: an error or a panic fails `/livez`.
fn spawn_source<F>(health: &Health, name: &str, body: F) -> Result<SourceThread, AppError>
where
    F: FnOnce() -> Result<SourceSummary, SourceError> + Send + 'static,
{
    let task = format!("source-{name}");
    let vital = health.vital(task.clone());
    std::thread::Builder::new()
        .name(task)
        .spawn(move || {
            let result = body();
            if result.is_ok() {
                vital.finished();
            }
            result
        })
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
    let inputs = Inputs::read(&config, options.http)?;
    let mut core = Core::new(&config, inputs.plan)?;
    let workers = build_workers(&config, inputs.sinks, &core)?;
    let servers = Servers::bind(&config, options.http).await?;
    let progress = (
        config.pipelines.metrics.enabled.then_some(metrics_progress),
        config.pipelines.forward.enabled.then_some(forward_progress),
    );
    let organizations = watch_organizations(&config, inputs.organizations, &core);
    let redactor = inputs.redactor;
    let senders = start_pipelines(
        &config,
        &mut core,
        workers,
        organizations,
        redactor,
        &progress,
    )
    .await?;
    let sources = start_sources(&config, &core, senders)?;
    let security: LiveSecurity = Arc::new(parking_lot::RwLock::new(Arc::new(inputs.security)));
    let served = servers.serve(&config, &core, security.clone());
    if options.banner {
        print_banner(
            &config,
            &security.read(),
            &inputs.demo_users,
            &core.dead_letter,
        );
    }
    tracing::info!(
        source = ?config.source.kind,
        metrics_pipeline = config.pipelines.metrics.enabled,
        forward_pipeline = config.pipelines.forward.enabled,
        dead_letters = %core.dead_letter.describe(),
        "started"
    );
    let sources = core.wait(sources, options).await;
    let source_records = stop(sources, &mut core, served).await?;
    Ok(RunReport {
        source_records,
        metrics: progress.0,
        forward: progress.1,
        store: core.store,
        self_metrics: core.self_metrics,
    })
}

/// Sinks' failure classes that mean "refused for good", pre-registered per sink.
const REFUSAL_CLASSES: [&str; 9] = [
    "http_400",
    "http_401",
    "http_403",
    "http_404",
    "http_413",
    "http_422",
    "http_4xx",
    "bulk_item",
    "kafka_record",
];

/// Registers at 0 the self-metric series whose label values are known at start-up (pipelines, invalid
/// reasons, sinks, rules, reload results), so that the first dead letter, rejection, overflow or failed
/// reload is an increase Prometheus sees (`increase()` over a series that appears at 1 is nothing).
fn zero_known_series(config: &Config, plan: &Plan, m: &SelfMetrics) {
    let pipelines = [
        (
            crate::pipeline::metrics::NAME,
            config.pipelines.metrics.enabled,
        ),
        (
            crate::pipeline::forward::NAME,
            config.pipelines.forward.enabled,
        ),
    ];
    // Invalid records are dead-lettered by the metrics pipeline, or by the forward pipeline alone.
    let owner = pipelines
        .iter()
        .find(|(_, enabled)| *enabled)
        .map(|(p, _)| *p);
    let kafka = config.source.kind == SourceKind::Kafka;
    for (pipeline, _) in pipelines.iter().filter(|(_, enabled)| *enabled) {
        for reason in crate::decode::InvalidReason::ALL.map(|r| r.as_str()) {
            m.events_invalid.with_label_values(&[pipeline, reason]);
            if owner == Some(*pipeline) {
                m.dead_letters.with_label_values(&[pipeline, reason]);
            }
        }
        m.dead_letter_errors.with_label_values(&[pipeline]);
        if kafka {
            m.kafka_errors.with_label_values(&[pipeline]);
            m.records_reread.with_label_values(&[pipeline]);
            // At 0 from the start: Prometheus sees the first increase, and `increase()` over a run
            // that starts at 0 needs no extrapolation.
            for topic in &config.kafka.topics {
                m.events_received
                    .with_label_values(&[*pipeline, topic.as_str()]);
            }
        }
        // A Kafka consumer is ready at its first assignment; the other sources at once.
        let ready = m.pipeline_ready.with_label_values(&[pipeline]);
        ready.set(i64::from(!kafka));
    }
    if config.pipelines.forward.enabled {
        let forward = crate::pipeline::forward::NAME;
        for reason in ["redaction_failed", "sink_rejected"] {
            m.dead_letters.with_label_values(&[forward, reason]);
        }
        for sink in config.forward.sinks.keys() {
            m.sink_records.with_label_values(&[sink]);
            for class in REFUSAL_CLASSES {
                m.sink_rejected.with_label_values(&[sink, class]);
            }
        }
    }
    for metric in plan.metric_names() {
        m.series_overflow.with_label_values(&[metric]);
    }
    for reason in ["ttl", "capacity"] {
        m.intake_evicted.with_label_values(&[reason]);
    }
    for encoding in ["identity", "gzip"] {
        m.http_response_bytes.with_label_values(&[encoding]);
    }
    for result in ["success", "failure"] {
        m.web_config_reloads.with_label_values(&[result]);
        m.enrichment_reloads.with_label_values(&[result]);
    }
}

/// What every phase shares.
struct Core {
    self_metrics: Arc<SelfMetrics>,
    plan: Arc<Plan>,
    store: Arc<parking_lot::Mutex<Store>>,
    dead_letter: Arc<Destination>,
    /// Stops the sources and drains the pipelines.
    shutdown: Shutdown,
    /// Stops the HTTP servers and watchers, after the pipelines have drained.
    serving: Shutdown,
    health: Arc<Health>,
    host: HostInfo,
    /// The pipelines' and background tasks' handles.
    tasks: Vec<JoinHandle<()>>,
}

impl Core {
    fn new(config: &Config, plan: Plan) -> Result<Core, AppError> {
        let dead_letter = match config.dead_letter.kind {
            DeadLetterKind::Kafka => Destination::kafka(
                &config.kafka.producer_properties(),
                &config.dead_letter.topic,
            )?,
            DeadLetterKind::File => Destination::file(&config.dead_letter.path)?,
        };
        let store = Arc::new(parking_lot::Mutex::new(plan.new_store()));
        let self_metrics = SelfMetrics::new();
        zero_known_series(config, &plan, &self_metrics);
        Ok(Core {
            self_metrics: Arc::new(self_metrics),
            plan: Arc::new(plan),
            store,
            dead_letter: Arc::new(dead_letter),
            shutdown: Shutdown::new(config.shutdown.drain_timeout),
            serving: Shutdown::new(config.shutdown.drain_timeout),
            health: Arc::new(Health::default()),
            host: HostInfo::from_env(),
            tasks: Vec::new(),
        })
    }

    /// Spawns a task the daemon cannot do without: a panic in it fails `/livez`.
    fn spawn_vital(
        &mut self,
        name: &str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let vital = self.health.vital(name);
        self.tasks.push(tokio::spawn(async move {
            task.await;
            vital.finished();
        }));
    }

    /// The dead letters of `pipeline`.
    fn dead_letters(&self, pipeline: &'static str, progress: &Arc<Progress>) -> DeadLetters {
        DeadLetters::new(
            self.dead_letter.clone(),
            pipeline,
            self.self_metrics.clone(),
            progress.clone(),
            self.shutdown.clone(),
        )
    }

    /// Waits for a signal, or (`exit_when_sources_end`) for the sources to end; then stops the sources
    /// and joins them. What they read, or the first source's failure.
    async fn wait(
        &self,
        mut sources: Vec<SourceThread>,
        options: RunOptions,
    ) -> Result<u64, AppError> {
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
            signal = wait_for_signal() => tracing::info!(signal, "stopping"),
            results = &mut sources_done => joined = Some(results),
        }
        if joined.is_some() && !options.exit_when_sources_end {
            tracing::info!("every source has ended; serving until stopped");
            let signal = wait_for_signal().await;
            tracing::info!(signal, "stopping");
        }
        self.shutdown.trigger();
        let results = match joined {
            Some(results) => results,
            None => sources_done.await,
        };
        let mut records = 0;
        let mut first_error = None;
        for result in results.unwrap_or_default() {
            match result {
                Ok(Ok(summary)) => records += summary.records,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "source failed");
                    first_error.get_or_insert(AppError::Source(e));
                }
                Err(_) => tracing::error!("a source thread panicked"),
            }
        }
        first_error.map_or(Ok(records), Err)
    }
}

/// Shutdown, after the sources have stopped: the pipelines drain, dead letters are flushed, and only
/// then do the HTTP servers and watchers stop.
async fn stop(
    sources: Result<u64, AppError>,
    core: &mut Core,
    served: Vec<JoinHandle<()>>,
) -> Result<u64, AppError> {
    for task in std::mem::take(&mut core.tasks) {
        let _ = task.await;
    }
    core.dead_letter.flush(Duration::from_secs(5));
    core.serving.trigger();
    for server in served {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http server task failed");
        }
    }
    if let Ok(records) = &sources {
        tracing::info!(records, "stopped");
    }
    sources
}

/// One delivery worker per configured sink, built from what [`Inputs`] read.
fn build_workers(
    config: &Config,
    inputs: Vec<crate::forward::sink::SinkInputs>,
    core: &Core,
) -> Result<Vec<Worker>, AppError> {
    if !config.pipelines.forward.enabled {
        return Ok(Vec::new());
    }
    let sinks = config.forward.sinks.iter().zip(inputs).enumerate();
    let mut workers = Vec::new();
    for (index, ((name, sink), inputs)) in sinks {
        if let Some(expiry) = inputs.certificate_expiry {
            let gauge = &core.self_metrics.tls_certificate_expiry;
            gauge.with_label_values(&["", name]).set(expiry as f64);
        }
        let (batch, retry) = sink.delivery();
        workers.push(Worker {
            sink: build_sink(name, sink, inputs, &config.kafka, &core.host)?,
            index,
            batch: batch.clone(),
            retry: retry.clone(),
            metrics: core.self_metrics.clone(),
            shutdown: core.shutdown.clone(),
        });
    }
    Ok(workers)
}

/// The organization table in force, re-read by a watcher when its file changes.
fn watch_organizations(
    config: &Config,
    loaded: Option<(LiveOrganizations, crate::forward::organizations::Stamp)>,
    core: &Core,
) -> LiveOrganizations {
    let (Some(path), Some((live, seen))) = (&config.forward.organizations_file, loaded) else {
        return Arc::new(parking_lot::RwLock::new(Arc::new(
            OrganizationTable::default(),
        )));
    };
    tokio::spawn(crate::forward::organizations::watch(
        path.clone(),
        live.clone(),
        seen,
        Duration::from_secs(2),
        core.self_metrics.clone(),
        core.serving.clone(),
    ));
    live
}

/// A pipeline's input: its name (a label), its consumer group, its channel.
type Sender = (&'static str, String, mpsc::Sender<SourceMessage>);

/// Starts the enabled pipelines; their senders, for the sources.
async fn start_pipelines(
    config: &Config,
    core: &mut Core,
    workers: Vec<Worker>,
    organizations: LiveOrganizations,
    redactor: crate::forward::Redactor,
    (metrics, forward): &(Option<Arc<Progress>>, Option<Arc<Progress>>),
) -> Result<Vec<Sender>, AppError> {
    let queue = config.source.queue_batches.max(1);
    let pipes = &config.pipelines;
    let mut senders = Vec::new();
    if let Some(progress) = metrics.clone() {
        let (tx, rx) = mpsc::channel(queue);
        let pipeline = MetricsPipeline {
            plan: core.plan.clone(),
            store: core.store.clone(),
            dead_letters: core.dead_letters(crate::pipeline::metrics::NAME, &progress),
            join: open_join(config).await?,
            metrics: core.self_metrics.clone(),
            progress,
            shutdown: core.shutdown.clone(),
        };
        core.spawn_vital("pipeline-metrics", pipeline.run(rx));
        let group = pipes.metrics.group_id.clone();
        senders.push((crate::pipeline::metrics::NAME, group, tx));
    }
    if let Some(progress) = forward.clone() {
        let (tx, rx) = mpsc::channel(queue);
        let f = &config.forward;
        let prepare = Prepare {
            enricher: Enricher::new(
                core.host.clone(),
                &f.service_name,
                &f.environment,
                &f.trace_url_template,
            ),
            redactor,
            organizations,
            forward_invalid: f.forward_invalid,
            dead_letters: core.dead_letters(crate::pipeline::forward::NAME, &progress),
            owns_invalid: !pipes.metrics.enabled,
            metrics: core.self_metrics.clone(),
            progress,
        };
        let pipeline = ForwardPipeline { prepare, workers };
        core.spawn_vital("pipeline-forward", pipeline.run(rx));
        let group = pipes.forward.group_id.clone();
        senders.push((crate::pipeline::forward::NAME, group, tx));
    }
    let sweep = sweep_expired(
        core.store.clone(),
        core.self_metrics.clone(),
        core.shutdown.clone(),
    );
    core.spawn_vital("expiry", sweep);
    Ok(senders)
}

/// Starts the sources, last: one Kafka consumer per pipeline, or one reader feeding every pipeline.
fn start_sources(
    config: &Config,
    core: &Core,
    senders: Vec<Sender>,
) -> Result<Vec<SourceThread>, AppError> {
    let batch_max = config.source.batch_max_records;
    let stop = core.shutdown.flag();
    if config.source.kind != SourceKind::Kafka {
        let outputs = Outputs::new(senders.into_iter().map(|(_, _, tx)| tx).collect());
        let batch_max_records = batch_max.max(1);
        let (name, source): (&str, Box<dyn FanOut>) = match config.source.kind {
            SourceKind::File => {
                let path = config.source.file.path.clone();
                (
                    "file",
                    Box::new(FileSource {
                        path,
                        batch_max_records,
                    }),
                )
            }
            _ => {
                let settings = generator_settings(config);
                (
                    "generator",
                    Box::new(GeneratorSource {
                        settings,
                        batch_max_records,
                    }),
                )
            }
        };
        let run = move || source.run(outputs, stop);
        return Ok(vec![spawn_source(&core.health, name, run)?]);
    }
    let mut sources = Vec::new();
    for (pipeline, group_id, tx) in senders {
        let settings = KafkaSourceSettings {
            pipeline,
            properties: config.kafka.consumer_properties(&group_id),
            topics: config.kafka.topics.clone(),
            batch_max_records: batch_max,
            batch_max_wait: config.source.batch_max_wait,
            revoke_drain: config.shutdown.revoke_drain,
            shutdown_drain: core.shutdown.drain(),
        };
        let ready = core.health.condition();
        let source = KafkaSource::new(settings, core.self_metrics.clone(), ready, tx)?;
        let stop = stop.clone();
        sources.push(spawn_source(&core.health, pipeline, move || {
            source.run(stop)
        })?);
    }
    Ok(sources)
}

/// The HTTP listeners, bound before anything is consumed.
struct Servers {
    main: Option<tokio::net::TcpListener>,
    health: Option<tokio::net::TcpListener>,
}

impl Servers {
    async fn bind(config: &Config, http: bool) -> Result<Servers, AppError> {
        if !http {
            return Ok(Servers {
                main: None,
                health: None,
            });
        }
        let main = Some(crate::http::bind(config.http.listen).await?);
        let health = match config.http.health_listen {
            Some(addr) => Some(crate::http::bind(addr).await?),
            None => None,
        };
        Ok(Servers { main, health })
    }

    /// Serves until [`Core::serving`] stops, with the web-configuration watcher.
    fn serve(self, config: &Config, core: &Core, security: LiveSecurity) -> Vec<JoinHandle<()>> {
        let state = HttpState::new(
            core.store.clone(),
            core.self_metrics.clone(),
            core.health.clone(),
            security.clone(),
        );
        let stop = &core.serving;
        let mut served = Vec::new();
        crate::http::record_certificate(&security.read(), &core.self_metrics);
        if let Some(listener) = self.main {
            let server = crate::http::serve(listener, state.clone(), stop.clone());
            served.push(tokio::spawn(server));
            if let Some(path) = &config.http.web_config_file {
                let exposure = (config.http.listen, config.http.must_protect());
                let watcher = crate::http::watch_security(
                    path.clone(),
                    security,
                    core.self_metrics.clone(),
                    exposure,
                    stop.clone(),
                );
                served.push(tokio::spawn(watcher));
            }
        }
        if let Some(listener) = self.health {
            let server = crate::http::serve_health(listener, state, stop.clone());
            served.push(tokio::spawn(server));
        }
        served
    }
}

/// The intake join of the metrics pipeline, with its changelog for a Kafka source.
async fn open_join(config: &Config) -> Result<Option<JoinState>, AppError> {
    let settings = &config.metrics.intake_join;
    if !settings.enabled {
        return Ok(None);
    }
    let join = IntakeJoin::new(settings.max_entries, settings.ttl);
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

/// A progress bar on stderr counting to `len` (hidden unless `show`), `unit` after the counts.
fn progress_bar(show: bool, len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = match show {
        true => indicatif::ProgressBar::new(len),
        false => indicatif::ProgressBar::hidden(),
    };
    let template = format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).expect("a valid template"));
    bar
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

fn print_banner(
    config: &Config,
    security: &crate::http::Security,
    demo_users: &[String],
    dead_letter: &Destination,
) {
    let auth = security.auth.requires_credentials();
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
