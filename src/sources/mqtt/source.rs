//! The MQTT source at run time: a persistent session (clean session off) with QoS 1 subscriptions and
//! manual acknowledgements. A message is acknowledged (PUBACK) only after the records it made are
//! committed, or after its payload is quarantined with the reason; killed at any moment, the agent
//! gets every unacknowledged message again from the broker, and dedupe keys keep the journal free of
//! repeats. Reconnects are automatic, with backoff.

use std::time::Duration;

use super::config::MqttSourceConfig;
use super::payload;
use crate::journal::Journal;
use crate::records::observation::{Message, Observation, Origin};
use crate::records::pipeline::Input;
use crate::runtime::logging::human_duration;
use crate::runtime::retry::Backoff;
use crate::sources::SourceRuntime;
use crate::transport::mqtt::{self as link, LinkEvent, LinkOptions};

/// A built MQTT source.
pub struct MqttSource {
    id: String,
    cfg: MqttSourceConfig,
    journal: Journal,
}

impl MqttSource {
    /// Prepares the source; `journal` keeps quarantined payloads.
    pub fn new(
        id: &str,
        cfg: &MqttSourceConfig,
        journal: &Journal,
    ) -> Result<MqttSource, crate::runtime::BuildError> {
        Ok(MqttSource {
            id: id.to_string(),
            cfg: cfg.clone(),
            journal: journal.clone(),
        })
    }

    /// Runs the session until shutdown.
    pub(crate) async fn run(self, rt: SourceRuntime) {
        let SourceRuntime {
            tx, mut shutdown, ..
        } = rt.clone();
        let scheme = if self.cfg.tls.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        let endpoint = format!("{scheme}://{}:{}", self.cfg.host, self.cfg.port);
        let options = LinkOptions {
            protocol: self.cfg.protocol,
            client_id: self.cfg.client_id.clone(),
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            keep_alive: Duration::from_secs(self.cfg.keep_alive_s),
            persistent: true,
            session_expiry_s: self.cfg.session_expiry_s,
            manual_acks: true,
            inflight: self.cfg.inflight,
            credentials: self.cfg.username.as_ref().map(|u| {
                let password = self.cfg.password.as_ref().map(|p| p.expose().to_string());
                (u.clone(), password.unwrap_or_default())
            }),
            tls: self.cfg.tls.as_ref(),
            max_incoming_bytes: self.cfg.max_packet_bytes(),
            max_outgoing_bytes: 64 << 10,
        };
        let (client, mut events) = match link::connect(&options, 64) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    "MQTT source {}: cannot set up the connection ({e}); the source does not start",
                    self.id
                );
                return;
            }
        };
        let mut sup = rt
            .supervisor(
                &self.id,
                format!("MQTT broker {endpoint} (source {})", self.id),
                (Duration::from_millis(500), Duration::from_secs(30)),
            )
            .advice("Messages wait in the broker's session.");
        // QoS 0 messages are not kept by the broker while the connection is down: if any arrived on
        // this session, a lost connection may have lost some, and a gap record says so.
        let mut saw_qos0 = false;
        let mut lost_at: Option<(i64, String)> = None;
        // Down because of a message too large to take (see below); up at the next message.
        let mut stuck = false;
        // Subscriptions of this connection the broker has not answered yet.
        let mut unanswered = 0usize;
        // A message whose records the journal refused stays unacknowledged; brokers send such a
        // message again only on a new connection, so a refusal asks for one (after a pause).
        let (refused_tx, mut refused) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut refusals = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let event = tokio::select! {
                e = events.poll() => e,
                Some(()) = refused.recv() => {
                    while refused.try_recv().is_ok() {}
                    let pause = refusals.next_delay();
                    tracing::warn!(
                        "MQTT source {}: the journal refused a message; reconnecting to {endpoint} in {} so the broker sends the unacknowledged messages again",
                        self.id,
                        human_duration(pause)
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait() => break,
                    }
                    events.drop_connection();
                    continue;
                }
                _ = shutdown.wait() => break,
            };
            match event {
                Ok(LinkEvent::Connected { session_present }) => {
                    let again = lost_at.is_some();
                    sup.connected();
                    if let Some((at_ms, why)) = lost_at.take() {
                        // QoS 1 messages wait in the agent's session on the broker; a broker that
                        // comes back without the session (restarted without persistence) lost
                        // them, as QoS 0 messages are always lost while the agent is away.
                        let lost = match (saw_qos0, session_present) {
                            (_, false) => Some("the broker no longer had the agent's session (restarted without persistence?), so messages queued for the agent in that time are lost"),
                            (true, true) => Some("messages published with QoS 0 in that time are lost"),
                            (false, true) => None,
                        };
                        if let Some(lost) = lost {
                            let why = format!("connection to {endpoint} lost ({why}); {lost}");
                            if sup.gap(at_ms, why).await.is_err() {
                                break;
                            }
                        }
                    }
                    if !again {
                        tracing::info!(
                            "MQTT source {}: connected to {endpoint} (MQTT {}, session present: {session_present})",
                            self.id,
                            match self.cfg.protocol {
                                link::Protocol::V311 => "3.1.1",
                                link::Protocol::V5 => "5",
                            }
                        );
                    }
                    unanswered = 0;
                    for t in &self.cfg.topics {
                        match client.subscribe(t).await {
                            Ok(()) => unanswered += 1,
                            Err(e) => tracing::warn!(
                                "MQTT source {}: cannot subscribe to {t}: {e}",
                                self.id
                            ),
                        }
                    }
                }
                Ok(LinkEvent::Subscribed(answer)) => {
                    if let Err(e) = answer {
                        tracing::warn!(
                            "MQTT source {}: {e} (topics {}); check the broker's ACL for client {}",
                            self.id,
                            self.cfg.topics.join(", "),
                            self.cfg.client_id
                        );
                    }
                    unanswered = unanswered.saturating_sub(1);
                    // Every subscription answered: messages flow from here (`status`: up since).
                    if unanswered == 0 && sup.flowing().await.is_err() {
                        break;
                    }
                }
                Ok(LinkEvent::Message(m)) => {
                    let received_ms = crate::time::now_ms();
                    if std::mem::take(&mut stuck) && sup.flowing().await.is_err() {
                        break;
                    }
                    saw_qos0 |= m.qos0;
                    let decoded = if m.payload.len() > self.cfg.max_message_bytes {
                        Err(payload::PayloadError::TooLarge {
                            len: m.payload.len(),
                            max: self.cfg.max_message_bytes,
                        })
                    } else {
                        payload::decode(self.cfg.payload, &m.payload)
                    };
                    match decoded {
                        Ok(doc) => {
                            let (ack, done) = tokio::sync::oneshot::channel();
                            let input = Input {
                                observation: Observation::Message(Message {
                                    source: self.id.clone(),
                                    origin: Origin {
                                        protocol: "mqtt".into(),
                                        endpoint: Some(endpoint.clone()),
                                        address: None,
                                    },
                                    topic: m.topic.clone(),
                                    doc,
                                    source_ms: None,
                                    received_ms,
                                }),
                                state: Vec::new(),
                                ack: Some(ack),
                            };
                            if tx.send(input).await.is_err() {
                                break;
                            }
                            let (client, id, refused_tx) =
                                (client.clone(), self.id.clone(), refused_tx.clone());
                            tokio::spawn(async move {
                                match done.await {
                                    Ok(Ok(_)) => {
                                        if let Err(e) = client.ack(&m.token).await {
                                            tracing::debug!("MQTT source {id}: PUBACK not sent ({e}); the broker sends the message again");
                                        }
                                    }
                                    // Not committed: no PUBACK; a new connection gets it again.
                                    Ok(Err(e)) => {
                                        tracing::warn!(
                                            "MQTT source {id}: message on {} not journaled ({e}); it stays unacknowledged",
                                            m.topic
                                        );
                                        let _ = refused_tx.send(());
                                    }
                                    Err(_) => {}
                                }
                            });
                        }
                        Err(reason) => {
                            let reason = reason.to_string();
                            tracing::warn!(
                                "MQTT source {}: payload on {} ({} bytes) quarantined: {reason}",
                                self.id,
                                m.topic,
                                m.payload.len()
                            );
                            let (client, journal, id) =
                                (client.clone(), self.journal.clone(), self.id.clone());
                            tokio::spawn(async move {
                                match journal.quarantine(&id, &m.topic, m.payload.to_vec(), &reason).await {
                                    Ok(()) => {
                                        let _ = client.ack(&m.token).await;
                                    }
                                    Err(e) => tracing::error!("MQTT source {id}: cannot quarantine a payload ({e}); it stays unacknowledged"),
                                }
                            });
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if lost_at.is_none() {
                        lost_at = Some((crate::time::now_ms(), e.to_string()));
                    }
                    if link::is_too_large(&e) && !stuck {
                        // The broker sends a message the connection cannot take, again after
                        // every reconnect: the source makes no progress. An outage, said at once
                        // (status, /metrics), with a gap record when messages flow again.
                        stuck = true;
                        let at_ms = lost_at
                            .as_ref()
                            .map_or_else(crate::time::now_ms, |(t, _)| *t);
                        let why = format!(
                            "the broker at {endpoint} sends a message larger than the {} bytes the connection takes ({e}); messages behind it wait. Remove it from the broker or raise max_message_bytes",
                            self.cfg.max_packet_bytes()
                        );
                        if sup.down_since(at_ms, why).await.is_err() {
                            break;
                        }
                    }
                    let delay = sup.failed(&e.0);
                    if sup.wait(delay, &mut shutdown).await.is_err() {
                        break;
                    }
                }
            }
        }
        client.disconnect().await;
    }
}
