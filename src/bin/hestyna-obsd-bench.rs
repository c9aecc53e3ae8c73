//! `hestyna-obsd-bench`: the baselines and probes of `scripts/bench` (see `hestyna_obsd::bench`).

use clap::{Parser, Subcommand};
use std::time::Duration;

/// jemalloc by default (see `hestyna_obsd::alloc`).
#[global_allocator]
static ALLOCATOR: hestyna_obsd::alloc::Allocator = hestyna_obsd::alloc::ALLOCATOR;

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark tools for hestyna-obsd: a bare consumer, a freshness probe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

#[derive(Subcommand)]
enum Command {
    /// Read COUNT records of a topic with a new consumer group and discard them; print the rate and the
    /// process's CPU seconds.
    Consume {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
        /// The consumer group (default: a new one).
        #[arg(long)]
        group: Option<String>,
        /// librdkafka consumer properties, as the daemon's `kafka.consumer_properties`: they override the
        /// daemon's defaults, which the consumer starts from.
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
        properties: Vec<(String, String)>,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Produce load at RATE events/s plus probe events, and measure each probe's time to /metrics.
    Freshness {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        probes_per_sec: f64,
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        /// `http://127.0.0.1:PORT/metrics`.
        #[arg(long)]
        metrics_url: String,
        /// `USER:PASSWORD` for the scrape.
        #[arg(long)]
        credentials: Option<String>,
        /// Also write every probe's latency (ms), one per line, to this file.
        #[arg(long)]
        histogram: Option<std::path::PathBuf>,
        /// librdkafka producer properties.
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
        properties: Vec<(String, String)>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Consume {
            brokers,
            topic,
            count,
            group,
            properties,
            timeout_secs,
        } => {
            let group = group.unwrap_or_else(|| format!("bare-{}", std::process::id()));
            // The daemon's own librdkafka settings (its defaults, these overrides, its managed keys).
            let kafka = hestyna_obsd::config::KafkaConfig {
                brokers,
                consumer_properties: properties.into_iter().collect(),
                ..Default::default()
            };
            let properties = kafka.consumer_properties(&group);
            let measured = hestyna_obsd::bench::consume::run(
                &properties,
                &group,
                &topic,
                count,
                Duration::from_secs(timeout_secs),
            )?;
            println!("{}", serde_json::to_string(&measured)?);
        }
        Command::Freshness {
            brokers,
            topic,
            rate,
            probes_per_sec,
            duration_secs,
            metrics_url,
            credentials,
            histogram,
            mut properties,
        } => {
            properties.insert(0, ("bootstrap.servers".into(), brokers));
            let settings = hestyna_obsd::bench::freshness::FreshnessSettings {
                producer_properties: properties,
                topic,
                rate,
                probes_per_sec,
                duration: Duration::from_secs(duration_secs),
                metrics_url,
                credentials: credentials
                    .and_then(|c| c.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))),
            };
            let measured = hestyna_obsd::bench::freshness::run(&settings)?;
            if let Some(path) = histogram {
                let lines: Vec<String> = measured.samples_ms.iter().map(u64::to_string).collect();
                std::fs::write(path, lines.join("\n") + "\n")?;
            }
            println!("{}", serde_json::to_string(&measured)?);
        }
    }
    Ok(())
}
