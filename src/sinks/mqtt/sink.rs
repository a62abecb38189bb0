//! The MQTT sink at run time: publish a batch, wait for every PUBACK.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::MqttSinkConfig;
use crate::journal::JournalRow;
use crate::sinks::{SendError, SinkContext};
use crate::transport::mqtt::{self as link, Client, LinkEvent, LinkOptions};

/// What the event loop reports to the sink.
enum Note {
    Sent(u16),
    Acked(u16),
    Refused(u16, link::Refusal),
    Lost(String),
}

/// Publishes records to a broker.
pub struct MqttSink {
    client: Client,
    notes: mpsc::Receiver<Note>,
    cfg: MqttSinkConfig,
    site: String,
    gateway: String,
    target: String,
}

impl MqttSink {
    /// Connects (in the background) and starts the event loop.
    pub fn new(
        id: &str,
        cfg: &MqttSinkConfig,
        ctx: &SinkContext,
    ) -> Result<MqttSink, crate::runtime::BuildError> {
        let options = LinkOptions {
            protocol: cfg.protocol,
            client_id: cfg.client_id.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            keep_alive: Duration::from_secs(30),
            persistent: false,
            session_expiry_s: 0,
            manual_acks: false,
            inflight: 100,
            credentials: cfg.username.as_ref().map(|u| {
                let password = cfg.password.as_ref().map(|p| p.expose().to_string());
                (u.clone(), password.unwrap_or_default())
            }),
            tls: cfg.tls.as_ref(),
            max_incoming_bytes: 64 << 10,
            // The record and its topic, with room for the fixed header and properties.
            max_outgoing_bytes: cfg.max_message_bytes.saturating_add(70 << 10),
        };
        let (client, mut events) = link::connect(&options, 1024).map_err(|e| e.0)?;
        let (tx, notes) = mpsc::channel(4096);
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                let note = match events.poll().await {
                    Ok(LinkEvent::Sent(pkid)) => Note::Sent(pkid),
                    Ok(LinkEvent::Acked(pkid, Ok(()))) => Note::Acked(pkid),
                    Ok(LinkEvent::Acked(pkid, Err(why))) => Note::Refused(pkid, why),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.try_send(Note::Lost(e.0));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if tx.send(note).await.is_err() {
                    tracing::debug!("mqtt sink {id}: stopped");
                    return;
                }
            }
        });
        Ok(MqttSink {
            client,
            notes,
            site: ctx.site.clone(),
            gateway: ctx.gateway_id.clone(),
            target: format!(
                "{}://{}:{}",
                if cfg.tls.is_some() { "mqtts" } else { "mqtt" },
                cfg.host,
                cfg.port
            ),
            cfg: cfg.clone(),
        })
    }

    /// The broker.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    fn topic(&self, row: &JournalRow) -> String {
        let station = serde_json::from_str::<serde_json::Value>(&row.body)
            .ok()
            .and_then(|v| v["subject"]["station"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        self.cfg
            .topic
            .replace("{site}", &self.site)
            .replace("{gateway}", &self.gateway)
            .replace("{station}", &station)
            .replace("{kind}", &row.kind)
    }

    /// Publishes `rows` (QoS 1) and returns once every one was acknowledged.
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<(), SendError> {
        let retry = |reason: String| SendError::Retry {
            reason,
            retry_after: None,
        };
        // Forget what an earlier, failed batch left behind.
        while self.notes.try_recv().is_ok() {}
        // A record that cannot be published (its topic, its size) is refused before anything of
        // the batch goes out; the driver then sends the batch one by one and dead-letters it.
        let topics: Vec<String> = rows.iter().map(|r| self.topic(r)).collect();
        for (row, topic) in rows.iter().zip(&topics) {
            if let Err(reason) = publishable(topic, row.body.len(), self.cfg.max_message_bytes) {
                return Err(SendError::Reject { reason });
            }
        }
        for (row, topic) in rows.iter().zip(topics) {
            self.client
                .publish(topic, self.cfg.retain, row.body.clone().into_bytes())
                .await
                .map_err(|e| retry(format!("cannot queue a publish: {e}")))?;
        }
        let mut sent: HashSet<u16> = HashSet::new();
        let mut acked: HashSet<u16> = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.timeout_ms);
        while sent.len() < rows.len() || !sent.is_subset(&acked) {
            match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some(Note::Sent(p))) => {
                    sent.insert(p);
                }
                Ok(Some(Note::Acked(p))) => {
                    acked.insert(p);
                }
                // The broker (MQTT 5) said no: the batch is not delivered; the driver retries it.
                // A refusal of the record itself (MQTT 5: topic or payload invalid) is for good:
                // the driver finds the refused record one by one and dead-letters it.
                Ok(Some(Note::Refused(p, why))) if sent.contains(&p) && why.permanent => {
                    return Err(SendError::Reject { reason: why.reason })
                }
                Ok(Some(Note::Refused(p, why))) if sent.contains(&p) => {
                    return Err(retry(format!(
                        "record refused by the broker: {}",
                        why.reason
                    )))
                }
                Ok(Some(Note::Refused(..))) => {}
                Ok(Some(Note::Lost(e))) => {
                    return Err(retry(format!("connection to the broker lost: {e}")))
                }
                Ok(None) => return Err(retry("the MQTT event loop stopped".into())),
                Err(_) => {
                    return Err(retry(format!(
                        "{} of {} records acknowledged within {} ms",
                        sent.intersection(&acked).count(),
                        rows.len(),
                        self.cfg.timeout_ms
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Whether a record can be published: its topic a valid MQTT topic name (not empty, no `+`, `#` or
/// NUL, at most 65,535 bytes) and its size within `max`.
fn publishable(topic: &str, len: usize, max: usize) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 65_535 || topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "topic {topic:?} is not a valid MQTT topic name (empty, a wildcard + or #, NUL, or over 65,535 bytes): a value the record puts into the topic template makes it so"
        ));
    }
    if len > max {
        return Err(format!(
            "the record is {len} bytes, over max_message_bytes ({max})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::publishable;

    #[test]
    fn wildcards_nul_and_oversize_records_are_not_published() {
        assert!(publishable("plant1/cell4/quality/inspection", 600, 1 << 20).is_ok());
        assert!(publishable("plant1/cell+4/quality/inspection", 600, 1 << 20).is_err());
        assert!(publishable("plant1/#/quality", 600, 1 << 20).is_err());
        assert!(publishable("a\0b", 600, 1 << 20).is_err());
        assert!(publishable("", 600, 1 << 20).is_err());
        assert!(publishable("ok", 2 << 20, 1 << 20).is_err_and(|e| e.contains("max_message_bytes")));
    }
}
