//! The MQTT sink at run time: publish a batch, wait for every PUBACK.

use std::collections::HashSet;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc;

use super::config::MqttSinkConfig;
use crate::journal::JournalRow;
use crate::sinks::{SendError, SinkContext};

/// What the event loop reports to the sink.
enum Note {
    Sent(u16),
    Acked(u16),
    Lost(String),
}

/// Publishes records to a broker.
pub struct MqttSink {
    client: AsyncClient,
    notes: mpsc::Receiver<Note>,
    cfg: MqttSinkConfig,
    site: String,
    gateway: String,
    target: String,
}

impl MqttSink {
    /// Connects (in the background) and starts the event loop.
    pub fn new(id: &str, cfg: &MqttSinkConfig, ctx: &SinkContext) -> Result<MqttSink, String> {
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        if let Some(u) = &cfg.username {
            opts.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &cfg.tls {
            opts.set_transport(crate::sources::mqtt::source::tls_transport(tls)?);
        }
        let (client, mut events) = AsyncClient::new(opts, 1024);
        let (tx, notes) = mpsc::channel(4096);
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                let note = match events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Note::Sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(a))) => Note::Acked(a.pkid),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.try_send(Note::Lost(e.to_string()));
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
        for row in rows {
            self.client
                .publish(
                    self.topic(row),
                    QoS::AtLeastOnce,
                    self.cfg.retain,
                    row.body.clone().into_bytes(),
                )
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
