//! The command line: `run` (default), `check-config`, `generate`, `replay`, `hash-password`,
//! `healthcheck`, `doctor`.

use crate::app::{self, generate::Target, AppError, RunOptions};
use crate::config::{self, Config};
use crate::source::generator::GeneratorSettings;
use crate::telemetry::otel;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// Consumes Hestyna's structured events from Kafka, derives Prometheus metrics per organization, intent
/// and automation, serves them on a secured /metrics, and forwards enriched JSON logs to a SIEM.
#[derive(Debug, Parser)]
#[command(name = "hestyna-obsd", version, about, long_about = None)]
pub struct Cli {
    /// The TOML configuration; without it, the embedded demo configuration (config/demo.toml).
    /// HESTYNA_OBSD__SECTION__KEY variables override any key.
    #[arg(long, global = true, env = "HESTYNA_OBSD_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    /// The command; `run` when absent.
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Write synthetic Hestyna events to a Kafka topic or a JSONL file.
    Generate(GenerateArgs),
    /// Run a JSONL file through the pipelines, then print a summary of what was derived.
    Replay(ReplayArgs),
    /// Read a password on stdin and print its bcrypt hash for http.basic_auth_users.
    HashPassword(HashPasswordArgs),
    /// GET a probe URL of a running daemon; exit 0 on 200 (a container health check without a shell).
    Healthcheck(HealthcheckArgs),
    /// The troubleshooting checklist: configuration, Kafka, a running daemon's /metrics, the sinks.
    Doctor(DoctorArgs),
}

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// /metrics of the running daemon (default: http.listen on loopback).
    #[arg(long)]
    pub url: Option<String>,
    /// Basic-auth user for /metrics.
    #[arg(long)]
    pub user: Option<String>,
    /// The environment variable holding that user's password.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// A file holding that user's password (its first line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A PEM CA to verify an HTTPS /metrics.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds between the two scrapes that must see counts move.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Seconds any one network step may take.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Write a probe record to the dead-letter topic (header hestyna.dlq.reason=doctor_probe).
    #[arg(long)]
    pub write_probe: bool,
    /// A Prometheus rules file to check against the exported families and the annotations.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The plain-HTTP URL to probe: /livez or /readyz of http.listen, or of http.health_listen when
    /// the main listener needs TLS.
    #[arg(long, default_value = "http://127.0.0.1:9464/livez")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many events.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Events per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seed: the same seed and --start give the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many organizations.
    #[arg(long, default_value_t = 8)]
    pub organizations: usize,
    /// Share of invalid records (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_ratio: f64,
    /// Share of events of an unknown type (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub unknown_ratio: f64,
    /// occurred_at of the first event (RFC 3339); default 2026-11-27T08:00:00Z.
    #[arg(long)]
    pub start: Option<String>,
    /// Write to this JSONL file (- for stdout) instead of Kafka.
    #[arg(long, conflicts_with_all = ["topic", "brokers"])]
    pub output: Option<String>,
    /// The Kafka topic (default: the first of kafka.topics).
    #[arg(long)]
    pub topic: Option<String>,
    /// The brokers (default: kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// A librdkafka producer property, KEY=VALUE (repeatable; over kafka.producer_properties).
    #[arg(long = "producer-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub producer_properties: Vec<(String, String)>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The JSONL file (- for stdin).
    pub file: String,
    /// Also print the full /metrics exposition.
    #[arg(long)]
    pub print_metrics: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `hash-password`.
#[derive(Debug, Args)]
pub struct HashPasswordArgs {
    /// bcrypt cost (4-31); each step doubles the work.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
}

/// Runs the command line. Logging is set up from the configuration before anything else happens.
pub fn run(cli: Cli) -> Result<(), AppError> {
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::HashPassword(args) = &command {
        return hash_password(args.cost);
    }
    if let Command::Healthcheck(args) = &command {
        let timeout = std::time::Duration::from_secs(args.timeout_secs);
        return Ok(app::healthcheck::probe(&args.url, timeout)?);
    }
    if let Command::Doctor(args) = &command {
        return doctor(cli.config.as_deref(), args);
    }
    let config = match &command {
        Command::Replay(args) => config::load_with(
            cli.config.as_deref(),
            &[
                ("source.kind", "file"),
                ("source.file.path", args.file.as_str()),
            ],
        )?,
        _ => config::load(cli.config.as_deref())?,
    };
    if let Command::CheckConfig = command {
        // What `run` reads and refuses, read and refused the same way (nothing is started).
        app::Inputs::read(&config, true)?;
        let text = toml::to_string_pretty(&config::masked(&config))
            .map_err(|e| AppError::Usage(e.to_string()))?;
        println!("{text}");
        eprintln!(
            "configuration OK ({})",
            cli.config
                .as_deref()
                .map_or("embedded config/demo.toml".into(), |p| p
                    .display()
                    .to_string())
        );
        return Ok(());
    }
    let tracing = crate::telemetry::init_logging(
        config.telemetry.log_format,
        &config.telemetry.log_level,
        tracing_settings(&config)?.as_ref(),
    )?;
    let result = match command {
        Command::Run => runtime()?.block_on(async {
            app::run(
                config,
                RunOptions {
                    exit_when_sources_end: false,
                    http: true,
                    banner: true,
                },
            )
            .await
            .map(drop)
        }),
        Command::Generate(args) => generate(&config, args),
        Command::Replay(args) => {
            let progress = !args.quiet && std::io::stderr().is_terminal();
            let text = runtime()?.block_on(app::replay::replay(
                config,
                &args.file,
                progress,
                args.print_metrics,
            ))?;
            print!("{text}");
            Ok(())
        }
        Command::CheckConfig
        | Command::HashPassword(_)
        | Command::Healthcheck(_)
        | Command::Doctor(_) => unreachable!("handled above"),
    };
    if let Some(tracing) = tracing {
        tracing.shutdown(std::time::Duration::from_secs(5));
    }
    result
}

/// The span exporter's settings from `[telemetry.tracing]` and the `OTEL_*` variables; `None` when
/// nothing is to be exported. Loading the configuration has checked them already.
fn tracing_settings(config: &Config) -> Result<Option<otel::Settings>, AppError> {
    let env = |name: &str| std::env::var(name).ok();
    let host = crate::shared::HostInfo::from_env();
    otel::resolve(&config.telemetry.tracing, &env, &host).map_err(|faults| {
        let faults: Vec<String> = faults
            .iter()
            .map(|f| format!("{}: {}", f.key, f.message))
            .collect();
        AppError::Usage(faults.join("; "))
    })
}

/// Runs the checks, prints the report (text or JSON), and fails when a check failed.
fn doctor(path: Option<&std::path::Path>, args: &DoctorArgs) -> Result<(), AppError> {
    use app::doctor::{DoctorOptions, Report};
    let password = match (&args.password_env, &args.password_file) {
        (Some(var), _) => Some(
            std::env::var(var)
                .map_err(|_| AppError::Usage(format!("--password-env: {var} is not set")))?,
        ),
        (_, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|source| AppError::Io {
                context: format!("--password-file {}", file.display()),
                source,
            })?;
            Some(text.lines().next().unwrap_or("").to_owned())
        }
        _ => None,
    };
    let options = DoctorOptions {
        url: args.url.clone(),
        user: args.user.clone(),
        password,
        ca_file: args.ca_file.clone(),
        interval: std::time::Duration::from_secs(args.interval),
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        write_probe: args.write_probe,
        rules: args.rules.clone(),
    };
    let report: Report = match config::load(path) {
        Ok(config) => runtime()?.block_on(app::doctor::run(&config, &options)),
        Err(e) => app::doctor::unloadable(&e),
    };
    print!(
        "{}",
        if args.json {
            report.json() + "\n"
        } else {
            report.text()
        }
    );
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == app::doctor::Status::Fail)
        .count();
    match failed {
        0 => Ok(()),
        n => Err(AppError::DoctorFailed(n)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hestyna-obsd")
        .build()
        .map_err(|source| AppError::Io {
            context: "cannot start the async runtime".into(),
            source,
        })
}

fn generate(config: &Config, args: GenerateArgs) -> Result<(), AppError> {
    let start = match &args.start {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| AppError::Usage(format!("--start: {e}")))?
            .with_timezone(&chrono::Utc),
        None => GeneratorSettings::default().start,
    };
    if !(0.0..=1.0).contains(&args.invalid_ratio) || !(0.0..=1.0).contains(&args.unknown_ratio) {
        return Err(AppError::Usage(
            "--invalid-ratio and --unknown-ratio are between 0 and 1".into(),
        ));
    }
    let settings = GeneratorSettings {
        seed: args.seed,
        count: Some(args.count),
        rate: args.rate,
        organizations: args.organizations.max(1),
        invalid_ratio: args.invalid_ratio,
        unknown_ratio: args.unknown_ratio,
        start,
        ..GeneratorSettings::default()
    };
    let target = match args.output {
        Some(path) => Target::File(path),
        None => {
            let mut kafka = config.kafka.clone();
            if let Some(brokers) = args.brokers {
                kafka.brokers = brokers;
            }
            if kafka.brokers.is_empty() {
                return Err(AppError::Usage(
                    "generate needs --brokers (or kafka.brokers), or --output".into(),
                ));
            }
            let topic = args
                .topic
                .or_else(|| kafka.topics.first().cloned())
                .ok_or_else(|| AppError::Usage("no topic".into()))?;
            let mut properties = kafka.producer_properties();
            properties.extend(args.producer_properties);
            Target::Kafka { properties, topic }
        }
    };
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let n = app::generate::generate(settings, target, progress)?;
    eprintln!("generated {n} events");
    Ok(())
}

fn hash_password(cost: u32) -> Result<(), AppError> {
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| AppError::Io {
            context: "cannot read the password".into(),
            source,
        })?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(AppError::Usage("empty password".into()));
    }
    let hash = bcrypt::hash(password, cost).map_err(|e| AppError::Usage(e.to_string()))?;
    println!("{hash}");
    Ok(())
}
