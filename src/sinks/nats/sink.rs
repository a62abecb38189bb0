//! The NATS sink at run time: connect, check (or create) the stream, publish a batch pipelined,
//! await every PubAck in journal order.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, ErrorCode};
use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use bytes::Bytes;

use super::config::{Discard, Mode, NatsSinkConfig};
use crate::journal::JournalRow;
use crate::sinks::cloudevents::{cloud_event, event_source};
use crate::sinks::{SendError, SinkContext};
use crate::transport::nats::{with_auth, NatsAuth};

/// Publishes records to a JetStream stream.
pub struct NatsSink {
    id: String,
    cfg: NatsSinkConfig,
    site: String,
    gateway: String,
    source: String,
    servers: Vec<ServerAddr>,
    /// Connected (async-nats reconnects by itself from then on).
    js: Option<jetstream::Context>,
    /// The stream was found (or created) on this connection.
    stream_ready: bool,
}

fn retry(reason: String) -> SendError {
    SendError::Retry {
        reason,
        retry_after: None,
    }
}

impl NatsSink {
    /// Checks the configuration's files and URLs; connects on the first send.
    pub fn new(
        id: &str,
        cfg: &NatsSinkConfig,
        ctx: &SinkContext,
    ) -> Result<NatsSink, crate::runtime::BuildError> {
        let servers = cfg
            .servers
            .iter()
            .map(|s| {
                s.parse::<ServerAddr>().map_err(|e| {
                    format!(
                        "sink {id}: {:?} is not a NATS server address: {e}",
                        crate::config::redact::url_text(s)
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(f) = &cfg.credentials_file {
            std::fs::metadata(f)
                .map_err(|e| format!("sink {id}: cannot read {}: {e}", f.display()))?;
        }
        if let Some(t) = &cfg.tls {
            t.readable().map_err(|e| format!("sink {id}: {e}"))?;
        }
        Ok(NatsSink {
            id: id.to_string(),
            cfg: cfg.clone(),
            site: ctx.site.clone(),
            gateway: ctx.gateway_id.clone(),
            source: event_source(&ctx.gateway_id),
            servers,
            js: None,
            stream_ready: false,
        })
    }

    /// The servers, without user info.
    pub fn target(&self) -> String {
        let servers: Vec<String> = self
            .cfg
            .servers
            .iter()
            .map(|s| crate::config::redact::url_text(s).into_owned())
            .collect();
        format!("{} stream {}", servers.join(","), self.cfg.stream)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// Connects.
    async fn connect(&self) -> Result<jetstream::Context, SendError> {
        let cfg = &self.cfg;
        let id = self.id.clone();
        let opts = ConnectOptions::new()
            .name(format!("shopfloor-agent {} sink {}", self.gateway, self.id))
            .connection_timeout(self.timeout())
            .max_reconnects(None)
            .event_callback(move |event| {
                let id = id.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!("sink {id}: connected"),
                        async_nats::Event::Disconnected => {
                            tracing::warn!("sink {id}: disconnected; reconnecting")
                        }
                        async_nats::Event::Closed => {
                            tracing::debug!("sink {id}: connection closed")
                        }
                        other => tracing::warn!("sink {id}: {other}"),
                    }
                }
            });
        let password = cfg.password.as_ref().map_or("", |p| p.expose());
        let tls = cfg.tls.as_ref().map(|t| t.paths());
        let auth = NatsAuth {
            user: cfg.username.as_deref().map(|u| (u, password)),
            token: cfg.token.as_ref().map(|t| t.expose()),
            nkey_seed: cfg.nkey_seed.as_ref().map(|s| s.expose()),
            credentials_file: cfg.credentials_file.as_deref(),
            tls,
        };
        let opts = with_auth(opts, auth).await.map_err(retry)?;
        let client = opts
            .connect(self.servers.as_slice())
            .await
            .map_err(|e| retry(format!("cannot connect to {}: {e}", self.target())))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(self.timeout())
            // A batch is published before its acks are awaited: room for all of them.
            .max_ack_inflight(cfg.batch_max_records.max(1))
            .backpressure_on_inflight(true)
            // The acks of a batch abandoned after an error hold their places until they come or
            // time out: not longer than the batch's own wait, so the resend is not held up.
            .ack_timeout(self.timeout())
            .build(client);
        Ok(js)
    }

    /// The stream must exist (or be created): otherwise every publish would come back as "no
    /// responders" with no word of why.
    async fn check_stream(&self, js: &jetstream::Context) -> Result<(), SendError> {
        let name = &self.cfg.stream;
        let missing = match js.get_stream(name).await {
            Ok(_) => return Ok(()),
            Err(e) => match e.kind() {
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    format!("stream {name} does not exist")
                }
                _ => {
                    return Err(retry(format!(
                        "cannot look up stream {name} (is JetStream enabled on the server?): {e}"
                    )))
                }
            },
        };
        let Some(c) = &self.cfg.create_stream else {
            return Err(retry(format!(
                "{missing}: create it (e.g. `nats stream add {name} --subjects '{}'`) or set create_stream",
                self.cfg.stream_subjects().join(" ")
            )));
        };
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: self.cfg.stream_subjects(),
            num_replicas: c.replicas,
            max_bytes: if c.max_bytes > 0 { c.max_bytes } else { -1 },
            max_age: Duration::from_secs(c.max_age_days * 86_400),
            duplicate_window: Duration::from_secs(c.duplicate_window_s),
            discard: match c.discard {
                Discard::New => jetstream::stream::DiscardPolicy::New,
                Discard::Old => jetstream::stream::DiscardPolicy::Old,
            },
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| retry(format!("{missing} and cannot be created: {e}")))?;
        tracing::info!(
            "sink {}: created stream {name} ({} replicas, subjects {})",
            self.id,
            c.replicas,
            self.cfg.stream_subjects().join(" ")
        );
        Ok(())
    }

    /// The record's subject from the template.
    fn subject(&self, row: &JournalRow, station: Option<&str>) -> String {
        let station = station.unwrap_or_default();
        self.cfg
            .subject
            .replace("{site}", &token(&self.site))
            .replace("{gateway_id}", &token(&self.gateway))
            .replace("{station}", &token(station))
            .replace("{kind}", &token(&row.kind))
    }

    /// Subject, headers and payload of one record.
    fn message(&self, row: &JournalRow) -> Result<(String, HeaderMap, Bytes), String> {
        let mut h = HeaderMap::new();
        // The server's duplicate window drops a resend of the same record.
        h.insert("Nats-Msg-Id", row.id.as_str());
        // The server refuses the record if its subject belongs to another stream.
        h.insert("Nats-Expected-Stream", self.cfg.stream.as_str());
        let event = cloud_event(row, &self.source, &self.cfg.event_type_prefix)
            .map_err(|e| format!("record seq {} is not JSON: {e}", row.seq))?;
        let subject = self.subject(row, event.station.as_deref());
        match self.cfg.mode {
            Mode::Binary => {
                event.binary_headers(|name, value| h.insert(name, value));
                Ok((subject, h, Bytes::from(row.body.clone())))
            }
            Mode::Structured => {
                h.insert("content-type", "application/cloudevents+json");
                let payload = serde_json::to_vec(&event)
                    .map_err(|e| format!("record seq {} cannot be encoded: {e}", row.seq))?;
                Ok((subject, h, Bytes::from(payload)))
            }
        }
    }

    /// Publishes `rows` pipelined and returns once the stream acknowledged every one, in order.
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<(), SendError> {
        // A record that can never be published is refused before anything of the batch goes out;
        // the driver then sends the batch one by one and dead-letters it.
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let message = self
                .message(row)
                .map_err(|reason| SendError::Reject { reason })?;
            messages.push(message);
        }
        let js = match &self.js {
            Some(js) => js.clone(),
            None => {
                let js = self.connect().await?;
                self.js = Some(js.clone());
                js
            }
        };
        // Checked once per sink; a missing stream is looked up again on the same connection.
        if !self.stream_ready {
            self.check_stream(&js).await?;
            self.stream_ready = true;
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (subject, headers, payload) in messages {
            let publish = jetstream::message::PublishMessage::build()
                .headers(headers)
                .payload(payload);
            let ack = js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| self.failed(&subject, &e))?;
            acks.push((subject, ack));
        }
        let mut duplicates = 0;
        for (subject, ack) in acks {
            let ack = ack.await.map_err(|e| self.failed(&subject, &e))?;
            duplicates += usize::from(ack.duplicate);
        }
        if duplicates > 0 {
            tracing::debug!(
                "sink {}: {duplicates} of {} records were already in stream {} (a resend)",
                self.id,
                rows.len(),
                self.cfg.stream
            );
        }
        Ok(())
    }

    /// A publish that failed, as a named sink error.
    fn failed(&self, subject: &str, e: &jetstream::context::PublishError) -> SendError {
        let stream = &self.cfg.stream;
        let js = std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>());
        match (e.kind(), js.map(|j| j.error_code())) {
            (PublishErrorKind::MaxPayloadExceeded, _) => SendError::Reject {
                reason: format!("the record is larger than the server's max_payload: {e}"),
            },
            (_, Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)) => SendError::Reject {
                reason: format!("stream {stream} refuses the record as too large: {e}"),
            },
            (PublishErrorKind::StreamNotFound, _) => retry(format!(
                "no stream takes subject {subject} (no responders): stream {stream}'s subjects must cover it"
            )),
            (_, Some(ErrorCode::STREAM_STORE_FAILED | ErrorCode::STORAGE_RESOURCES_EXCEEDED | ErrorCode::INSUFFICIENT_RESOURCES | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED)) => retry(format!(
                "stream {stream} is full or out of resources and refuses new records; waiting (nothing is dropped): {e}"
            )),
            (_, Some(_)) => retry(format!("stream {stream} refused the record: {e}")),
            (PublishErrorKind::TimedOut, _) => retry(format!(
                "no PubAck from stream {stream} within {} ms (a leader election, or the server is unreachable)",
                self.cfg.timeout_ms
            )),
            _ => retry(format!("cannot publish to {subject}: {e}")),
        }
    }
}

/// A value for one subject token: `.`, `*`, `>` and white space become `_`; empty becomes
/// `unknown`.
fn token(value: &str) -> String {
    if value.is_empty() {
        return "unknown".into();
    }
    value
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn values_cannot_add_tokens_or_wildcards_to_a_subject() {
        assert_eq!(token("cell4"), "cell4");
        assert_eq!(token("cell.4"), "cell_4");
        assert_eq!(token("a*>b c\n"), "a__b_c_");
        assert_eq!(token(""), "unknown");
    }
}
