//! `replay FILE`: a JSONL file through the same pipelines, then a summary of what was derived.

use super::{run_observed, AppError, RunOptions, RunReport};
use crate::config::{Config, SourceKind};
use crate::decode::{EventType, InvalidReason};
use crate::pipeline::Progress;
use std::fmt::Write as _;
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Runs `path` through the configured pipelines (without the HTTP listener) and returns the summary text;
/// with `print_metrics`, the full `/metrics` exposition follows it.
pub async fn replay(
    mut config: Config,
    path: &str,
    progress: bool,
    print_metrics: bool,
) -> Result<String, AppError> {
    // The bar's total costs a pass over the file: only when there is a bar.
    let lines = if progress { count_lines(path)? } else { 0 };
    config.source.kind = SourceKind::File;
    config.source.file.path = path.to_owned();
    let bar = super::progress_bar(progress, lines, "lines ({per_sec})");
    let options = RunOptions {
        exit_when_sources_end: true,
        http: false,
        banner: false,
    };
    let watched: [Arc<Progress>; 2] = Default::default();
    let enabled = [
        config.pipelines.metrics.enabled,
        config.pipelines.forward.enabled,
    ];
    let mut runner = tokio::spawn(run_observed(
        config,
        options,
        watched[0].clone(),
        watched[1].clone(),
    ));
    // The bar moves every 100 ms, but the run's end is taken the moment it comes (waiting for the next
    // tick would add up to 100 ms to every replay).
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let report = loop {
        tokio::select! {
            finished = &mut runner => break finished,
            _ = tick.tick() => {
                // The slower pipeline's position.
                let done = watched
                    .iter()
                    .zip(enabled)
                    .filter(|(_, on)| *on)
                    .map(|(p, _)| p.records.load(Ordering::Relaxed))
                    .min();
                bar.set_position(done.unwrap_or(0));
            }
        }
    };
    let report = report.map_err(|e| AppError::Usage(format!("replay task failed: {e}")))??;
    bar.set_position(lines);
    bar.finish_and_clear();
    Ok(summary(&report, print_metrics))
}

fn count_lines(path: &str) -> Result<u64, AppError> {
    if path == "-" {
        return Ok(0);
    }
    let file = std::fs::File::open(path).map_err(|source| AppError::Io {
        context: format!("cannot open {path}"),
        source,
    })?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut n = 0u64;
    loop {
        let buf = reader.fill_buf().map_err(|source| AppError::Io {
            context: format!("cannot read {path}"),
            source,
        })?;
        if buf.is_empty() {
            break;
        }
        n += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
    Ok(n)
}

/// The human summary of a finished run.
pub fn summary(report: &RunReport, print_metrics: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "records read        {}", report.source_records);
    if let Some(p) = report.metrics.as_ref().or(report.forward.as_ref()) {
        for (i, t) in EventType::KNOWN
            .iter()
            .chain([EventType::Unknown].iter())
            .enumerate()
        {
            let _ = writeln!(
                out,
                "  {:<18}{}",
                t.as_str(),
                p.by_type[i].load(Ordering::Relaxed)
            );
        }
        for reason in InvalidReason::ALL {
            let n = p.invalid[reason as usize].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "  invalid/{:<10}{n}", reason.as_str());
            }
        }
    }
    let dead: u64 = [&report.metrics, &report.forward]
        .iter()
        .filter_map(|p| p.as_ref())
        .map(|p| p.dead_letters.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(out, "dead letters        {dead}");
    if let Some(p) = &report.forward {
        let _ = writeln!(
            out,
            "forwarded           {}",
            p.forwarded.load(Ordering::Relaxed)
        );
    }
    if report.metrics.is_some() {
        let _ = writeln!(out, "derived series");
        let store = report.store.lock();
        for (name, count) in store.series_counts() {
            let _ = writeln!(out, "  {name:<40}{count} series");
        }
    }
    if print_metrics {
        out.push('\n');
        out.push_str(&crate::http::render(
            &report.store,
            &report.self_metrics,
            crate::derive::Format::Text,
            None,
        ));
    }
    out
}
