//! The Kafka sink at run time: the idempotent producer, the topic check, a batch produced at once
//! and its acknowledgements awaited in journal order, records still in flight kept across sends.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;

use super::config::{Compression, KafkaSinkConfig, Key, Mode};
use crate::journal::JournalRow;
use crate::sinks::cloudevents::{cloud_event, event_source};
use crate::sinks::{Receipts, SendError, SinkContext};
use crate::transport::kafka::{apply, KafkaSecurity, LogContext};

/// Most records held in flight (produced, not yet acknowledged) before the sink stops producing.
const MAX_IN_FLIGHT: usize = 100_000;

/// One record produced whose batch has not been reported delivered yet.
struct InFlight {
    id: String,
    state: State,
}

enum State {
    /// Waiting for the brokers' acknowledgement.
    Pending(DeliveryFuture),
    /// Acknowledged (`topic/partition@offset`), while a record before it in its batch is not:
    /// when the batch is sent again, this one is not produced again.
    Acked(String),
}

/// Produces records to a Kafka topic.
pub struct KafkaSink {
    id: String,
    cfg: KafkaSinkConfig,
    gateway: String,
    source: String,
    /// Made on the first send; made again after a fatal producer error.
    producer: Option<FutureProducer<LogContext>>,
    /// The topic was found in the cluster's metadata by this producer.
    topic_ready: bool,
    /// Records produced whose batch was not reported delivered, by seq. librdkafka retries them
    /// until the brokers take them: a send that gives up waiting keeps them here (acknowledged or
    /// not), and the next send of the same seqs waits for them instead of producing them twice.
    in_flight: BTreeMap<i64, InFlight>,
    /// The last error librdkafka reported (a broker down, authentication), for the reason of a
    /// wait.
    last_error: Arc<Mutex<Option<String>>>,
}

fn retry(reason: String) -> SendError {
    SendError::Retry {
        reason,
        retry_after: None,
    }
}

impl KafkaSink {
    /// Checks the configuration's files and makes the producer.
    pub fn new(
        id: &str,
        cfg: &KafkaSinkConfig,
        ctx: &SinkContext,
    ) -> Result<KafkaSink, crate::runtime::BuildError> {
        if let Some(t) = &cfg.tls {
            t.readable().map_err(|e| format!("sink {id}: {e}"))?;
        }
        let mut sink = KafkaSink {
            id: id.to_string(),
            cfg: cfg.clone(),
            gateway: ctx.gateway_id.clone(),
            source: event_source(&ctx.gateway_id),
            producer: None,
            topic_ready: false,
            in_flight: BTreeMap::new(),
            last_error: Arc::default(),
        };
        // librdkafka checks its settings and reads the TLS files now: a bad file is a start-up
        // error, not a retry loop. The brokers are connected to in the background.
        let producer = sink.producer().map_err(|e| format!("sink {id}: {e}"))?;
        sink.producer = Some(producer);
        Ok(sink)
    }

    /// The brokers and the topic.
    pub fn target(&self) -> String {
        format!("{} topic {}", self.cfg.brokers.join(","), self.cfg.topic)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// The producer: idempotent, `acks=all`, retrying until the brokers take each record.
    fn producer(&self) -> Result<FutureProducer<LogContext>, SendError> {
        let cfg = &self.cfg;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", cfg.brokers.join(","))
            .set(
                "client.id",
                format!("shopfloor-agent-{}-{}", self.gateway, self.id),
            )
            // Every in-sync replica has the record before it is acknowledged; retries keep order
            // and never write a record twice (producer id and sequence numbers).
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // librdkafka retries a record until the brokers take it (0: no time limit); the sink
            // reports a wait longer than timeout_ms without giving the records up.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            // A request unanswered this long is sent again (the idempotent producer makes the
            // resend of a record the broker did write a duplicate it drops).
            .set("socket.timeout.ms", cfg.timeout_ms.to_string())
            .set("request.timeout.ms", cfg.timeout_ms.to_string())
            // The sink never creates topics, not even on a broker that would.
            .set("allow.auto.create.topics", "false")
            .set(
                "compression.type",
                match cfg.compression {
                    Compression::None => "none",
                    Compression::Lz4 => "lz4",
                    Compression::Snappy => "snappy",
                },
            );
        let tls = cfg.tls.as_ref().map(|t| t.paths());
        let sasl = cfg
            .sasl
            .as_ref()
            .map(|s| (s.mechanism, s.username.as_str(), s.password.expose()));
        apply(&mut c, KafkaSecurity { tls, sasl });
        let context = LogContext {
            name: format!("sink {}", self.id),
            last_error: Some(self.last_error.clone()),
        };
        c.create_with_context(context)
            .map_err(|e| retry(format!("cannot make a Kafka producer: {e}")))
    }

    /// The topic must exist: otherwise librdkafka would hold the records with no word of why.
    async fn check_topic(&self, producer: &FutureProducer<LogContext>) -> Result<(), SendError> {
        let topic = self.cfg.topic.clone();
        let p = producer.clone();
        let wait = self.timeout();
        let metadata =
            tokio::task::spawn_blocking(move || p.client().fetch_metadata(Some(&topic), wait))
                .await
                .map_err(|e| retry(format!("topic lookup did not finish: {e}")))?
                .map_err(|e| {
                    retry(format!(
                        "cannot reach the brokers {} to look up topic {}: {e}{}",
                        self.cfg.brokers.join(","),
                        self.cfg.topic,
                        self.reported()
                    ))
                })?;
        let topic = &self.cfg.topic;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) if t.error() == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
                Err(retry(format!(
                    "topic {topic}: not authorized to write to it (the broker's ACLs)"
                )))
            }
            _ => Err(retry(format!(
                "topic {topic} does not exist: create it (e.g. `kafka-topics.sh --create --topic {topic} --replication-factor 3 --partitions 6`)"
            ))),
        }
    }

    /// What librdkafka last reported, as `: …` (or nothing).
    fn reported(&self) -> String {
        match self.last_error.lock().map(|e| e.clone()) {
            Ok(Some(e)) => format!(" (last error: {e})"),
            _ => String::new(),
        }
    }

    /// Key, headers and payload of one record.
    fn message<'a>(
        &'a self,
        row: &'a JournalRow,
    ) -> Result<(Cow<'a, str>, OwnedHeaders, Vec<u8>), String> {
        let event = cloud_event(row, &self.source, &self.cfg.event_type_prefix)
            .map_err(|e| format!("record seq {} is not JSON: {e}", row.seq))?;
        let key: Cow<'a, str> = match self.cfg.key {
            Key::Id => row.id.as_str().into(),
            Key::GatewayId => self.gateway.as_str().into(),
            // Serial, else lot, else work order (the event's subject), else the record id.
            Key::Serial => match &event.subject {
                Some(s) => s.clone().into(),
                None => row.id.as_str().into(),
            },
        };
        let mut h = OwnedHeaders::new_with_capacity(11);
        match self.cfg.mode {
            Mode::Binary => {
                let mut headers = Vec::with_capacity(11);
                event.binary_headers(|name, value| headers.push((name, value.to_string())));
                for (key, value) in &headers {
                    h = h.insert(Header {
                        key,
                        value: Some(value.as_str()),
                    });
                }
                Ok((key, h, row.body.as_bytes().to_vec()))
            }
            Mode::Structured => {
                h = h.insert(Header {
                    key: "content-type",
                    value: Some("application/cloudevents+json"),
                });
                let payload = serde_json::to_vec(&event)
                    .map_err(|e| format!("record seq {} cannot be encoded: {e}", row.seq))?;
                Ok((key, h, payload))
            }
        }
    }

    /// Produces the records of `rows` not already in flight, then awaits every acknowledgement in
    /// order. Returns each record's `topic/partition@offset`.
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<Receipts, SendError> {
        let producer = match &self.producer {
            Some(p) => p.clone(),
            None => {
                let p = self.producer()?;
                self.producer = Some(p.clone());
                self.topic_ready = false;
                p
            }
        };
        if !self.topic_ready {
            self.check_topic(&producer).await?;
            self.topic_ready = true;
        }
        // What an earlier send left behind that the cursor has passed since (delivered then).
        if let Some(first) = rows.first() {
            self.in_flight = self.in_flight.split_off(&first.seq);
        }
        for row in rows {
            if self.in_flight.get(&row.seq).is_some_and(|f| f.id == row.id) {
                continue;
            }
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                return Err(retry(format!(
                    "{} records wait for the brokers' acknowledgement{}",
                    self.in_flight.len(),
                    self.reported()
                )));
            }
            let (key, headers, payload) = self
                .message(row)
                .map_err(|reason| SendError::Reject { reason })?;
            let record = FutureRecord::to(&self.cfg.topic)
                .key(key.as_ref())
                .payload(&payload)
                .headers(headers);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| self.failed(row.seq, &e))?;
            self.in_flight.insert(
                row.seq,
                InFlight {
                    id: row.id.clone(),
                    state: State::Pending(delivery),
                },
            );
        }
        let deadline = tokio::time::Instant::now() + self.timeout();
        let mut failure = None;
        for row in rows {
            let Some(f) = self.in_flight.get_mut(&row.seq) else {
                continue;
            };
            let State::Pending(delivery) = &mut f.state else {
                continue;
            };
            let Ok(result) = tokio::time::timeout_at(deadline, delivery).await else {
                // Acknowledged records keep their state: the resend does not produce them again.
                return Err(retry(format!(
                    "no acknowledgement from topic {} within {} ms for seq {}; librdkafka keeps retrying{}",
                    self.cfg.topic,
                    self.cfg.timeout_ms,
                    row.seq,
                    self.reported()
                )));
            };
            match result {
                Ok(Ok(d)) => {
                    f.state =
                        State::Acked(format!("{}/{}@{}", self.cfg.topic, d.partition, d.offset))
                }
                Ok(Err((e, _))) => {
                    self.in_flight.remove(&row.seq);
                    failure.get_or_insert_with(|| self.failed(row.seq, &e));
                }
                Err(_canceled) => {
                    self.in_flight.remove(&row.seq);
                    failure.get_or_insert_with(|| retry("the producer was closed".into()));
                }
            }
        }
        if let Some(f) = failure {
            self.after_failure(&producer);
            return Err(f);
        }
        let mut receipts = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(InFlight {
                id,
                state: State::Acked(receipt),
            }) = self.in_flight.remove(&row.seq)
            {
                receipts.push((id, receipt));
            }
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        Ok(receipts)
    }

    /// After a failed record: a producer in a fatal state (its idempotence broken) is closed and
    /// made anew on the next send, with the records it still held.
    fn after_failure(&mut self, producer: &FutureProducer<LogContext>) {
        if let Some((code, why)) = producer.client().fatal_error() {
            tracing::warn!(
                "sink {}: the Kafka producer failed for good ({code}: {why}); making a new one (records it held are sent again)",
                self.id
            );
            self.in_flight.clear();
            self.producer = None;
        }
    }

    /// A record the producer refused or the brokers failed, as a named sink error.
    fn failed(&self, seq: i64, e: &KafkaError) -> SendError {
        let topic = &self.cfg.topic;
        let code = e.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                SendError::Reject {
                    reason: format!(
                        "record seq {seq} is larger than topic {topic} or the producer takes: {e}"
                    ),
                }
            }
            Some(RDKafkaErrorCode::InvalidRecord) => SendError::Reject {
                reason: format!("topic {topic} refuses record seq {seq}: {e}"),
            },
            Some(RDKafkaErrorCode::QueueFull) => retry(format!(
                "the producer's queue is full (the brokers are slow or away){}",
                self.reported()
            )),
            Some(RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition) => {
                retry(format!(
                    "topic {topic} does not exist (any more): create it"
                ))
            }
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                retry(format!("not authorized to write to topic {topic}"))
            }
            _ => retry(format!(
                "topic {topic} did not take record seq {seq}: {e}{}",
                self.reported()
            )),
        }
    }
}
