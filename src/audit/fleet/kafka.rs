//! Reading a Kafka topic for `fleet verify --kafka`: every partition from its first kept offset
//! to the end it had when the check began (its high watermark then), without a consumer group's
//! committed offsets (nothing is committed).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{FleetCheck, FleetReport};
use crate::transport::kafka::{apply, KafkaSecurity, LogContext, SaslMechanism};

/// How to reach the topic.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    /// Bootstrap brokers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// SASL mechanism, user and password.
    pub sasl: Option<(SaslMechanism, String, String)>,
    /// CA of the brokers' certificates (TLS when set).
    pub ca_file: Option<std::path::PathBuf>,
}

/// How long to wait for the brokers: metadata, watermarks, and the next message while some
/// partition has not reached its end.
const WAIT: Duration = Duration::from_secs(15);

/// Reads every message of the topic into `check` and returns the verdict.
pub fn verify(target: &KafkaTarget, mut check: FleetCheck) -> Result<FleetReport, String> {
    let topic = &target.topic;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &target.brokers)
        // Required by librdkafka for a consumer; with assign() and no commits it joins no group.
        .set("group.id", "shopfloor-agent-fleet-verify")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false");
    apply(
        &mut c,
        KafkaSecurity {
            tls: target.ca_file.as_deref().map(|ca| (ca, None)),
            sasl: target
                .sasl
                .as_ref()
                .map(|(m, u, p)| (*m, u.as_str(), p.as_str())),
        },
    );
    let consumer: BaseConsumer<LogContext> = c
        .create_with_context(LogContext {
            name: "fleet verify".into(),
            last_error: None,
        })
        .map_err(|e| format!("cannot make a Kafka consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), WAIT)
        .map_err(|e| format!("cannot reach the brokers {}: {e}", target.brokers))?;
    let partitions: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => {
            return Err(format!(
                "topic {topic} does not exist on {}",
                target.brokers
            ))
        }
    };
    let name = format!("{} topic {topic}", target.brokers);
    // The end of each partition now: what arrives later is for the next check.
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, WAIT)
            .map_err(|e| format!("cannot read the offsets of {topic} partition {p}: {e}"))?;
        if high > low {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| format!("cannot read {topic} partition {p}: {e}"))?;
            ends.insert(p, high);
        }
    }
    if ends.is_empty() {
        return Ok(check.finish(name));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read {topic}: {e}"))?;
    let mut last_message = Instant::now();
    while !ends.is_empty() {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            if last_message.elapsed() > WAIT {
                let mut left: Vec<_> = ends.iter().collect();
                left.sort();
                return Err(format!(
                    "no message from {topic} for {} s while partitions {left:?} (partition, end) were not read to their end",
                    WAIT.as_secs()
                ));
            }
            continue;
        };
        let m = m.map_err(|e| format!("reading {topic}: {e}"))?;
        last_message = Instant::now();
        let (partition, offset) = (m.partition(), m.offset());
        let headers = m
            .headers()
            .into_iter()
            .flat_map(|h| h.iter())
            .filter_map(|h| {
                let value = std::str::from_utf8(h.value?).ok()?;
                Some((h.key, value))
            });
        check.add_message(
            format_args!("partition {partition} offset {offset}"),
            headers,
            m.payload().unwrap_or_default(),
        );
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
        }
    }
    Ok(check.finish(name))
}
