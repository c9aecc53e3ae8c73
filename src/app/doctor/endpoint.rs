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
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            listen.ip().to_string()
        };
        format!("http://{host}:{}/metrics", listen.port())
    });
    let client = match client(options) {
        Ok(c) => c,
        Err(e) => return vec![Check::fail("metrics.endpoint", e, "check --ca-file")],
    };
    let mut out = Vec::new();
    let anonymous = client.get(&url).send().await;
    let open = match anonymous {
        Err(e) => {
            let message = format!("{url}: {}", e.without_url());
            let hint = "is the daemon running and listening there? (--url, http.listen)";
            return vec![Check::fail("metrics.endpoint", message, hint)];
        }
        Ok(r) if r.status() == 401 || r.status() == 403 => {
            let message = format!("{url} answers {} without credentials", r.status().as_u16());
            out.push(Check::ok("metrics.unauthenticated", message));
            false
        }
        Ok(r) if r.status().is_success() && config.http.allow_unauthenticated => {
            let message = format!("{url} serves without credentials (http.allow_unauthenticated)");
            out.push(Check::warn(
                "metrics.unauthenticated",
                message,
                "protect it: basic auth or an allowed_networks list",
            ));
            true
        }
        Ok(r) => {
            let message = format!("{url} answers {} without credentials", r.status().as_u16());
            out.push(Check::fail(
                "metrics.unauthenticated",
                message,
                "anyone can read the metrics: set basic_auth_users",
            ));
            r.status().is_success()
        }
    };
    let credentials = options.user.as_deref().zip(options.password.as_deref());
    if !open && credentials.is_none() {
        let hint = "pass --user and --password-env (or --password-file) to check the scrape itself";
        out.push(Check::warn(
            "metrics.scrape",
            "no credentials given: not scraped",
            hint,
        ));
        return out;
    }
    let scrape = || {
        let mut request = client
            .get(&url)
            .header("Accept", "text/plain; version=0.0.4");
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    let first = match read(scrape().await, credentials.map(|c| c.0)).await {
        Ok(body) => body,
        Err(check) => {
            out.push(check);
            return out;
        }
    };
    out.push(Check::ok(
        "metrics.scrape",
        format!(
            "200 with the credentials of {:?}",
            credentials.map_or("(none)", |c| c.0)
        ),
    ));
    if let Some(plan) = plan {
        out.push(families_check(&first, plan));
    }
    tokio::time::sleep(options.interval).await;
    let second = match read(scrape().await, credentials.map(|c| c.0)).await {
        Ok(body) => body,
        Err(check) => {
            out.push(check);
            return out;
        }
    };
    let (a, b) = (records_read(&first), records_read(&second));
    let secs = options.interval.as_secs_f64();
    out.push(if b > a {
        Check::ok(
            "metrics.moving",
            format!("{} records read in {secs:.0} s", b - a),
        )
    } else {
        Check::fail(
            "metrics.moving",
            format!("no record read in {secs:.0} s ({a} in all)"),
            MOVING_HINT,
        )
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
