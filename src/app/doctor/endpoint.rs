//! The `/metrics` checks of a running daemon: refused without credentials, 200 with them, every
//! family of the rule set present, and counts moving across two scrapes.

use super::{Check, DoctorOptions};
use crate::config::Config;
use crate::derive::Plan;

const MOVING_HINT: &str = "counts are stuck: are the producers publishing? Run `celery inspect stats` \
     on the Celery workers, check the gateway and kafka.topics (see HestynaObsdEventTypeStopped in docs/runbook.md)";

pub(super) async fn checks(
    config: &Config,
    plan: Option<&Plan>,
    options: &DoctorOptions,
) -> Vec<Check> {
    let url = options.url.clone().unwrap_or_else(|| {
        let listen = config.http.listen;
        let host = match listen.ip().is_unspecified() {
            true => "127.0.0.1".to_owned(),
            false => listen.ip().to_string(),
        };
        format!("http://{host}:{}/metrics", listen.port())
    });
    let client = match client(options) {
        Ok(c) => c,
        Err(e) => return vec![Check::fail("metrics.endpoint", e, "check --ca-file")],
    };
    let (first, open) = match anonymous(&client, &url, config).await {
        Ok(found) => found,
        Err(check) => return vec![check],
    };
    let mut out = vec![first];
    let credentials = options.user.as_deref().zip(options.password.as_deref());
    if !open && credentials.is_none() {
        let hint = "pass --user and --password-env (or --password-file) to check the scrape itself";
        let message = "no credentials given: not scraped";
        out.push(Check::warn("metrics.scrape", message, hint));
        return out;
    }
    out.extend(scrapes(&client, &url, credentials, plan, options).await);
    out
}

/// `/metrics` without credentials: refused (ok), or served (a warning when the configuration allows
/// it, a failure otherwise); with whether it is open.
async fn anonymous(
    client: &reqwest::Client,
    url: &str,
    config: &Config,
) -> Result<(Check, bool), Check> {
    let name = "metrics.unauthenticated";
    let answer = client.get(url).send().await.map_err(|e| {
        let hint = "is the daemon running and listening there? (--url, http.listen)";
        Check::fail(
            "metrics.endpoint",
            format!("{url}: {}", e.without_url()),
            hint,
        )
    })?;
    let status = answer.status();
    let message = format!("{url} answers {} without credentials", status.as_u16());
    Ok(match status.as_u16() {
        401 | 403 => (Check::ok(name, message), false),
        _ if status.is_success() && config.http.allow_unauthenticated => {
            let hint = "protect it: basic auth or an allowed_networks list";
            (
                Check::warn(name, message + " (http.allow_unauthenticated)", hint),
                true,
            )
        }
        _ if status.is_success() => {
            let hint = "anyone can read the metrics: set basic_auth_users";
            (Check::fail(name, message, hint), true)
        }
        _ => (Check::fail(name, message, "see the daemon's log"), false),
    })
}

/// Two scrapes `options.interval` apart: 200, every family present, counts moving.
async fn scrapes(
    client: &reqwest::Client,
    url: &str,
    credentials: Option<(&str, &str)>,
    plan: Option<&Plan>,
    options: &DoctorOptions,
) -> Vec<Check> {
    let scrape = || {
        let mut request = client
            .get(url)
            .header("Accept", "text/plain; version=0.0.4");
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    let user = credentials.map(|c| c.0);
    let first = match read(scrape().await, user).await {
        Ok(body) => body,
        Err(check) => return vec![check],
    };
    let who = format!("200 with the credentials of {:?}", user.unwrap_or("(none)"));
    let mut out = vec![Check::ok("metrics.scrape", who)];
    if let Some(plan) = plan {
        out.push(families_check(&first, plan));
    }
    tokio::time::sleep(options.interval).await;
    let second = match read(scrape().await, user).await {
        Ok(body) => body,
        Err(check) => {
            out.push(check);
            return out;
        }
    };
    let (a, b) = (records_read(&first), records_read(&second));
    let secs = options.interval.as_secs_f64();
    out.push(match b > a {
        true => Check::ok(
            "metrics.moving",
            format!("{} records read in {secs:.0} s", b - a),
        ),
        false => {
            let message = format!("no record read in {secs:.0} s ({a} in all)");
            Check::fail("metrics.moving", message, MOVING_HINT)
        }
    });
    out
}

fn client(options: &DoctorOptions) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &options.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The body of a 200, else the check that says why there is none.
async fn read(
    answer: reqwest::Result<reqwest::Response>,
    user: Option<&str>,
) -> Result<String, Check> {
    let answer = answer.map_err(|e| {
        Check::fail(
            "metrics.scrape",
            e.without_url().to_string(),
            "is the daemon running?",
        )
    })?;
    let status = answer.status().as_u16();
    match status {
        200 => answer.text().await.map_err(|e| Check::fail("metrics.scrape", e.to_string(), "retry")),
        401 => Err(Check::fail(
            "metrics.scrape",
            format!("401: the password of {:?} was refused", user.unwrap_or("")),
            "check the password against the bcrypt hash in basic_auth_users (hestyna-obsd hash-password)",
        )),
        429 => Err(Check::fail("metrics.scrape", "429: this address is throttled after failed attempts", "wait a minute, then retry with the right password")),
        other => Err(Check::fail("metrics.scrape", format!("{other}"), "see the daemon's log")),
    }
}

/// Every family of the rule set has series (a family appears with its first event).
fn families_check(body: &str, plan: &Plan) -> Check {
    let typed: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<&str> = plan.metric_names().filter(|n| !typed.contains(n)).collect();
    let total = plan.metric_names().count();
    if missing.is_empty() {
        Check::ok(
            "metrics.families",
            format!("all {total} families of the rule set are served"),
        )
    } else {
        let message = format!(
            "{} of {total} families have no series yet: {}",
            missing.len(),
            missing.join(", ")
        );
        Check::warn("metrics.families", message, "a family appears with its first event: has every event type been published since the daemon started?")
    }
}

/// `hestyna_obsd_events_received_total` summed over its series.
fn records_read(body: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("hestyna_obsd_events_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
