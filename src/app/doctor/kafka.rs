//! The Kafka checks: brokers, topics, the dead-letter topic (and its write probe), each pipeline's
//! consumer group, and the clocks of the recent events. librdkafka's calls block: they run on a
//! blocking thread.

use super::{Check, DoctorOptions};
use crate::config::{Config, DeadLetterKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::Duration;

/// How many of the latest records of each partition the clock check reads.
const RECENT_PER_PARTITION: i64 = 20;
/// A clock within this of another agrees with it.
const CLOCK_SLACK_MS: i64 = 60_000;

pub(super) async fn checks(config: &Config, options: &DoctorOptions) -> Vec<Check> {
    let (config, options) = (config.clone(), options.clone());
    tokio::task::spawn_blocking(move || blocking_checks(&config, &options))
        .await
        .unwrap_or_else(|e| {
            vec![Check::fail(
                "kafka",
                format!("the check panicked: {e}"),
                "report it",
            )]
        })
}

fn client(config: &Config, group: &str) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    let mut c = ClientConfig::new();
    for (k, v) in config.kafka.consumer_properties(group) {
        c.set(k, v);
    }
    // The doctor never subscribes nor commits: it reads offsets and metadata only.
    c.set("enable.auto.commit", "false");
    c.create()
}

fn blocking_checks(config: &Config, options: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    let brokers = &config.kafka.brokers;
    let consumer = match client(config, "hestyna-obsd-doctor") {
        Ok(c) => c,
        Err(e) => {
            let hint = "check kafka.properties (librdkafka refuses them)";
            return vec![Check::fail("kafka.brokers", e.to_string(), hint)];
        }
    };
    let metadata = match consumer.fetch_metadata(None, options.timeout) {
        Ok(m) => m,
        Err(e) => {
            let message = format!("cannot reach {brokers}: {e}");
            let hint = "check kafka.brokers, the network to them, and the SASL/TLS settings of kafka.properties";
            return vec![Check::fail("kafka.brokers", message, hint)];
        }
    };
    out.push(Check::ok(
        "kafka.brokers",
        format!("{} broker(s) answer at {brokers}", metadata.brokers().len()),
    ));
    for topic in &config.kafka.topics {
        out.push(topic_check(&metadata, topic, "kafka.topic"));
    }
    if config.dead_letter.kind == DeadLetterKind::Kafka {
        let dlq = &config.dead_letter.topic;
        let check = topic_check(&metadata, dlq, "kafka.dead_letter_topic");
        let exists = check.status == super::Status::Ok;
        out.push(check);
        if exists && options.write_probe {
            out.push(write_probe(config, dlq, options.timeout));
        }
    }
    let pipelines = [
        (&config.pipelines.metrics, "metrics"),
        (&config.pipelines.forward, "forward"),
    ];
    for (pipeline, name) in pipelines.into_iter().filter(|(p, _)| p.enabled) {
        out.extend(group_checks(
            config,
            &metadata,
            name,
            &pipeline.group_id,
            options.timeout,
        ));
    }
    out.push(clock_check(config, &consumer, &metadata, options.timeout));
    out
}

fn topic_check(metadata: &Metadata, topic: &str, name: &str) -> Check {
    let name = format!("{name}.{topic}");
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Check::ok(name, format!("{} partition(s)", t.partitions().len()))
        }
        _ => Check::fail(
            name,
            format!("topic {topic:?} does not exist"),
            "create it (kafka-topics --create --topic ...), or correct the configuration",
        ),
    }
}

fn write_probe(config: &Config, topic: &str, timeout: Duration) -> Check {
    let name = "kafka.dead_letter_write";
    let mut c = ClientConfig::new();
    for (k, v) in config.kafka.producer_properties() {
        c.set(k, v);
    }
    let producer: BaseProducer = match c.create() {
        Ok(p) => p,
        Err(e) => return Check::fail(name, e.to_string(), "check kafka.producer_properties"),
    };
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "hestyna.dlq.reason",
        value: Some("doctor_probe"),
    });
    let record = BaseRecord::<str, str>::to(topic)
        .payload("{\"doctor_probe\":true}")
        .headers(headers);
    if let Err((e, _)) = producer.send(record) {
        return Check::fail(
            name,
            e.to_string(),
            "may this principal write to the topic? (ACLs)",
        );
    }
    match producer.flush(timeout) {
        Ok(()) => Check::ok(
            name,
            format!("a probe record (hestyna.dlq.reason=doctor_probe) was accepted by {topic:?}"),
        ),
        Err(e) => Check::fail(
            name,
            format!("the probe was not acknowledged: {e}"),
            "may this principal write to the topic? (ACLs)",
        ),
    }
}

/// The group's members, and its lag per partition from committed offsets and high watermarks.
fn group_checks(
    config: &Config,
    metadata: &Metadata,
    pipeline: &str,
    group: &str,
    timeout: Duration,
) -> Vec<Check> {
    let name = format!("kafka.group.{pipeline}");
    let Ok(consumer) = client(config, group) else {
        return Vec::new();
    };
    let members = consumer
        .fetch_group_list(Some(group), timeout)
        .map(|list| list.groups().first().map(|g| g.members().len()));
    let mut out = vec![match members {
        Ok(Some(0)) => Check::warn(
            &name,
            format!("group {group:?} has no member"),
            "no daemon consumes for this pipeline: is hestyna-obsd running with these group ids?",
        ),
        Ok(Some(n)) => Check::ok(&name, format!("group {group:?} has {n} member(s)")),
        Ok(None) => Check::warn(
            &name,
            format!("the broker does not describe group {group:?}"),
            "no member ever joined it (is hestyna-obsd running with these group ids?), or the broker does not answer DescribeGroups",
        ),
        Err(e) => Check::warn(
            &name,
            format!("cannot describe group {group:?}: {e}"),
            "is the principal allowed to describe groups?",
        ),
    }];
    let mut tpl = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| config.kafka.topics.iter().any(|c| c == t.name()))
    {
        for p in topic.partitions() {
            tpl.add_partition(topic.name(), p.id());
        }
    }
    let committed = match consumer.committed_offsets(tpl, timeout) {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::warn(
                format!("{name}.lag"),
                format!("cannot read committed offsets: {e}"),
                "is the principal allowed to read the group's offsets?",
            ));
            return out;
        }
    };
    let mut parts = Vec::new();
    let mut total = 0i64;
    for e in committed.elements() {
        let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout) else {
            continue;
        };
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        let lag = (high - from).max(0);
        total += lag;
        parts.push(format!("{}/{}: {lag}", e.topic(), e.partition()));
    }
    let message = format!("lag {total} ({})", parts.join(", "));
    out.push(if total > 10_000 {
        Check::warn(
            format!("{name}.lag"),
            message,
            "the pipeline is behind: see HestynaObsdConsumerLagHigh in docs/runbook.md",
        )
    } else {
        Check::ok(format!("{name}.lag"), message)
    });
    out
}

/// Reads the latest records of every partition: this machine's clock against the broker's
/// timestamps, and each event's `occurred_at` against its record's timestamp (a whole number of hours
/// off is local time sent as UTC; ahead is a clock in the future).
fn clock_check(
    config: &Config,
    consumer: &BaseConsumer,
    metadata: &Metadata,
    timeout: Duration,
) -> Check {
    let name = "kafka.clocks";
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0;
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| config.kafka.topics.iter().any(|c| c == t.name()))
    {
        for p in topic.partitions() {
            let Ok((low, high)) = consumer.fetch_watermarks(topic.name(), p.id(), timeout) else {
                continue;
            };
            if high > low {
                let from = (high - RECENT_PER_PARTITION).max(low);
                expected += high - from;
                let _ = tpl.add_partition_offset(topic.name(), p.id(), Offset::Offset(from));
            }
        }
    }
    if expected == 0 {
        return Check::warn(
            name,
            "no event to read",
            "nothing was ever published to kafka.topics: are the producers running?",
        );
    }
    if let Err(e) = consumer.assign(&tpl) {
        return Check::warn(
            name,
            format!("cannot read the topics: {e}"),
            "is the principal allowed to read them?",
        );
    }
    let (read, newest, problems) = read_recent(consumer, expected, timeout);
    let now = chrono::Utc::now().timestamp_millis();
    if let Some(first) = problems.first() {
        let message = format!(
            "{} of {read} recent events are mis-stamped; first: {first}",
            problems.len()
        );
        let hint = "producers must send occurred_at in UTC (or with its offset); a whole number of hours off is local time marked as UTC";
        return Check::fail(name, message, hint);
    }
    if newest - now > CLOCK_SLACK_MS {
        let message = format!(
            "the newest record is stamped {} s ahead of this machine",
            (newest - now) / 1000
        );
        return Check::warn(
            name,
            message,
            "this machine's clock (or a producer's, for CreateTime) is off: check NTP",
        );
    }
    Check::ok(
        name,
        format!("{read} recent events: occurred_at agrees with the broker's timestamps"),
    )
}

/// Reads up to `expected` records of the assignment within `timeout`: how many, the newest broker
/// timestamp, and the mis-stamped events (where, and what is wrong).
fn read_recent(
    consumer: &BaseConsumer,
    expected: i64,
    timeout: Duration,
) -> (i64, i64, Vec<String>) {
    let deadline = std::time::Instant::now() + timeout;
    let (mut read, mut newest, mut problems) = (0, i64::MIN, Vec::new());
    while read < expected && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        read += 1;
        let Some(stamp) = m.timestamp().to_millis() else {
            continue;
        };
        newest = newest.max(stamp);
        if let Some(problem) = m.payload().and_then(|p| stamp_problem(p, stamp)) {
            let at = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
            problems.push(format!("{at}: {problem}"));
        }
    }
    (read, newest, problems)
}

/// What is wrong with an event's `occurred_at` against its record's timestamp (ms), if anything.
pub(super) fn stamp_problem(payload: &[u8], stamp_ms: i64) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str()?).ok()?;
    let ahead = at.timestamp_millis() - stamp_ms;
    // Time zones are at most 14 hours from UTC: further off is a backlog, not a zone.
    let hours = (ahead as f64 / 3_600_000.0).round() as i64;
    let off_by_hours =
        (1..=14).contains(&hours.abs()) && (ahead - hours * 3_600_000).abs() <= 120_000;
    if off_by_hours {
        return Some(format!(
            "occurred_at is {hours:+} h from its broker timestamp"
        ));
    }
    (ahead > CLOCK_SLACK_MS).then(|| {
        format!(
            "occurred_at is {} s after its broker timestamp",
            ahead / 1000
        )
    })
}

#[cfg(test)]
mod tests {
    use super::stamp_problem;

    #[test]
    fn whole_hours_and_the_future_are_mis_stamps() {
        let at = |t: &str| format!("{{\"occurred_at\":\"{t}\"}}").into_bytes();
        let stamp = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(stamp_problem(&at("2026-12-01T10:00:01Z"), stamp), None);
        assert_eq!(stamp_problem(&at("2026-12-01T09:59:00Z"), stamp), None);
        assert_eq!(
            stamp_problem(&at("2026-12-01T12:00:03Z"), stamp).unwrap(),
            "occurred_at is +2 h from its broker timestamp"
        );
        assert_eq!(
            stamp_problem(&at("2026-12-01T09:00:00+00:00"), stamp).unwrap(),
            "occurred_at is -1 h from its broker timestamp"
        );
        assert_eq!(
            stamp_problem(&at("2026-12-01T10:05:00Z"), stamp).unwrap(),
            "occurred_at is 300 s after its broker timestamp"
        );
        // Whole hours behind is the same mistake west of Greenwich (local 08:00 sent as 08:00Z at 10:00Z).
        assert_eq!(
            stamp_problem(&at("2026-12-01T10:00:00+02:00"), stamp).unwrap(),
            "occurred_at is -2 h from its broker timestamp"
        );
        assert_eq!(stamp_problem(b"not json", stamp), None);
        // Days late on the hour is a backlog.
        assert_eq!(stamp_problem(&at("2026-11-27T10:00:00Z"), stamp), None);
    }
}
