//! One MQTT connection, version 3.1.1 or 5, behind one interface for the MQTT source and the MQTT
//! sink.
//!
//! rumqttc has a separate client for each protocol version with the same shape but different
//! types. This module hides the difference: the source and the sink are written once.
//!
//! Persistence differs by version: 3.1.1 keeps the broker-side session with `clean session = 0`;
//! 5 uses `clean start = 0` with a session expiry interval (0, the MQTT 5 default, would drop the
//! session at every disconnect and lose what arrives meanwhile).

use bytes::Bytes;
use rumqttc::v5 as r5;
use serde::{Deserialize, Serialize};

/// TLS to the broker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file of the CA(s) that signed the broker's certificate.
    pub ca_file: std::path::PathBuf,
    /// PEM client certificate for mutual TLS; needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<std::path::PathBuf>,
    /// PEM key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<std::path::PathBuf>,
}

/// The TLS transport of `tls` (CA, optional client certificate), shared by the MQTT source and sink.
fn tls_transport(tls: &MqttTls) -> Result<rumqttc::Transport, String> {
    super::install_crypto_provider();
    let client_auth = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(c), Some(k)) => Some((super::read_pem(c)?, super::read_pem(k)?)),
        _ => None,
    };
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca: super::read_pem(&tls.ca_file)?,
            alpn: None,
            client_auth,
        },
    ))
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// How to connect.
pub struct LinkOptions<'a> {
    /// Protocol version.
    pub protocol: Protocol,
    /// Client id.
    pub client_id: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Keep-alive.
    pub keep_alive: std::time::Duration,
    /// Keep the broker-side session (subscriptions and unacknowledged messages) across connections;
    /// for MQTT 5 for `session_expiry_s`.
    pub persistent: bool,
    /// MQTT 5 session expiry.
    pub session_expiry_s: u32,
    /// Acknowledge received messages explicitly.
    pub manual_acks: bool,
    /// Messages in flight.
    pub inflight: u16,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// TLS.
    pub tls: Option<&'a MqttTls>,
    /// Largest packet taken from the broker (with MQTT 5 also announced to it, so it sends none
    /// larger); a larger one ends the connection ([`is_too_large`]).
    pub max_incoming_bytes: usize,
    /// Largest packet sent.
    pub max_outgoing_bytes: usize,
}

/// What went wrong on an MQTT connection: the client library's or the broker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

impl From<String> for LinkError {
    fn from(message: String) -> Self {
        LinkError(message)
    }
}

impl From<&str> for LinkError {
    fn from(message: &str) -> Self {
        LinkError(message.to_string())
    }
}

/// Whether a connection error is a packet over `max_incoming_bytes`: the broker keeps sending it,
/// so the source cannot make progress (an outage, not a passing disconnect).
pub fn is_too_large(error: &LinkError) -> bool {
    let error = &error.0;
    error.contains("PayloadSizeLimitExceeded") || error.contains("payload size limit")
}

/// How a broker refused a publish (MQTT 5 PUBACK reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// In words.
    pub reason: String,
    /// The record itself is refused (its topic or payload): sending it again cannot help.
    pub permanent: bool,
}

/// A received message and what acknowledges it.
pub struct Received {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// Sent with QoS 0 (the broker does not keep it for a disconnected session).
    pub qos0: bool,
    /// For [`Client::ack`].
    pub token: AckToken,
}

/// What acknowledges a received message.
pub enum AckToken {
    /// 3.1.1.
    V4(rumqttc::Publish),
    /// 5.
    V5(r5::mqttbytes::v5::Publish),
}

/// What the connection reports.
pub enum LinkEvent {
    /// Connected (again); whether the broker still had the session.
    Connected {
        /// The broker resumed the session.
        session_present: bool,
    },
    /// A message arrived.
    Message(Box<Received>),
    /// A publish of ours went out with this packet id.
    Sent(u16),
    /// The broker acknowledged a publish of ours; `Err` carries an MQTT 5 reason for refusing it.
    Acked(u16, Result<(), Refusal>),
    /// The broker answered a subscription (SUBACK); `Err` says why it refused a filter.
    Subscribed(Result<(), String>),
    /// Anything else.
    Other,
}

/// The client half (cheap to clone).
#[derive(Clone)]
pub enum Client {
    /// 3.1.1.
    V4(rumqttc::AsyncClient),
    /// 5.
    V5(r5::AsyncClient),
}

/// The event loop half: poll it continuously.
pub enum EventLoop {
    /// 3.1.1.
    V4(Box<rumqttc::EventLoop>),
    /// 5.
    V5(Box<r5::EventLoop>),
}

/// Builds the connection (nothing is sent until the event loop is polled).
pub fn connect(o: &LinkOptions<'_>, capacity: usize) -> Result<(Client, EventLoop), LinkError> {
    let transport = match o.tls {
        Some(tls) => Some(tls_transport(tls)?),
        None => None,
    };
    match o.protocol {
        Protocol::V311 => {
            let mut opts = rumqttc::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            opts.set_keep_alive(o.keep_alive);
            opts.set_clean_session(!o.persistent);
            opts.set_manual_acks(o.manual_acks);
            opts.set_inflight(o.inflight.max(1));
            opts.set_max_packet_size(o.max_incoming_bytes, o.max_outgoing_bytes);
            if let Some((u, p)) = &o.credentials {
                opts.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                opts.set_transport(t);
            }
            let (c, e) = rumqttc::AsyncClient::new(opts, capacity);
            Ok((Client::V4(c), EventLoop::V4(Box::new(e))))
        }
        Protocol::V5 => {
            let mut opts = r5::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
            opts.set_keep_alive(o.keep_alive);
            opts.set_clean_start(!o.persistent);
            if o.persistent {
                opts.set_session_expiry_interval(Some(o.session_expiry_s));
            }
            opts.set_manual_acks(o.manual_acks);
            opts.set_outgoing_inflight_upper_limit(o.inflight.max(1));
            opts.set_max_packet_size(Some(
                u32::try_from(o.max_incoming_bytes).unwrap_or(u32::MAX),
            ));
            if let Some((u, p)) = &o.credentials {
                opts.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                opts.set_transport(t);
            }
            let (c, e) = r5::AsyncClient::new(opts, capacity);
            Ok((Client::V5(c), EventLoop::V5(Box::new(e))))
        }
    }
}

impl Client {
    /// Subscribes with QoS 1.
    pub async fn subscribe(&self, topic: &str) -> Result<(), LinkError> {
        match self {
            Client::V4(c) => c
                .subscribe(topic, rumqttc::QoS::AtLeastOnce)
                .await
                .map_err(|e| LinkError(e.to_string())),
            Client::V5(c) => c
                .subscribe(topic, r5::mqttbytes::QoS::AtLeastOnce)
                .await
                .map_err(|e| LinkError(e.to_string())),
        }
    }

    /// Acknowledges a received message (PUBACK).
    pub async fn ack(&self, token: &AckToken) -> Result<(), LinkError> {
        match (self, token) {
            (Client::V4(c), AckToken::V4(p)) => {
                c.ack(p).await.map_err(|e| LinkError(e.to_string()))
            }
            (Client::V5(c), AckToken::V5(p)) => {
                c.ack(p).await.map_err(|e| LinkError(e.to_string()))
            }
            _ => Err("acknowledgement of another protocol version".into()),
        }
    }

    /// Publishes with QoS 1.
    pub async fn publish(
        &self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), LinkError> {
        match self {
            Client::V4(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| LinkError(e.to_string())),
            Client::V5(c) => c
                .publish(topic, r5::mqttbytes::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| LinkError(e.to_string())),
        }
    }

    /// Sends DISCONNECT.
    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|e| LinkError(e.to_string())),
            Client::V5(c) => c.disconnect().await.map_err(|e| LinkError(e.to_string())),
        };
    }
}

impl EventLoop {
    /// The next event; `Err` is a lost connection (polling again reconnects).
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self {
            EventLoop::V4(e) => {
                use rumqttc::{Event, Outgoing, Packet};
                Ok(
                    match e.poll().await.map_err(|e| LinkError(e.to_string()))? {
                        Event::Incoming(Packet::ConnAck(a)) => LinkEvent::Connected {
                            session_present: a.session_present,
                        },
                        Event::Incoming(Packet::Publish(p)) => {
                            LinkEvent::Message(Box::new(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.clone(),
                                qos0: p.qos == rumqttc::QoS::AtMostOnce,
                                token: AckToken::V4(p),
                            }))
                        }
                        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked(a.pkid, Ok(())),
                        Event::Incoming(Packet::SubAck(a)) => LinkEvent::Subscribed(
                            match a
                                .return_codes
                                .iter()
                                .find(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                            {
                                Some(_) => Err("the broker refused the subscription".into()),
                                None => Ok(()),
                            },
                        ),
                        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
                        _ => LinkEvent::Other,
                    },
                )
            }
            EventLoop::V5(e) => {
                use r5::mqttbytes::v5::{Packet, PubAckReason};
                use r5::Event;
                Ok(
                    match e.poll().await.map_err(|e| LinkError(e.to_string()))? {
                        Event::Incoming(Packet::ConnAck(a)) => LinkEvent::Connected {
                            session_present: a.session_present,
                        },
                        Event::Incoming(Packet::Publish(p)) => {
                            LinkEvent::Message(Box::new(Received {
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                payload: p.payload.clone(),
                                qos0: p.qos == r5::mqttbytes::QoS::AtMostOnce,
                                token: AckToken::V5(p),
                            }))
                        }
                        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked(
                            a.pkid,
                            match a.reason {
                                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                                    Ok(())
                                }
                                other => Err(Refusal {
                                    reason: format!("the broker refused the message: {other:?}"),
                                    permanent: matches!(
                                        other,
                                        PubAckReason::TopicNameInvalid
                                            | PubAckReason::PayloadFormatInvalid
                                    ),
                                }),
                            },
                        ),
                        Event::Incoming(Packet::SubAck(a)) => LinkEvent::Subscribed(
                            match a.return_codes.iter().find(|c| {
                                !matches!(c, r5::mqttbytes::v5::SubscribeReasonCode::Success(_))
                            }) {
                                Some(code) => {
                                    Err(format!("the broker refused the subscription: {code:?}"))
                                }
                                None => Ok(()),
                            },
                        ),
                        Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
                        _ => LinkEvent::Other,
                    },
                )
            }
        }
    }

    /// Drops the network connection now; the next poll reconnects and the broker sends again what
    /// it has not had acknowledged.
    pub fn drop_connection(&mut self) {
        match self {
            EventLoop::V4(e) => e.clean(),
            EventLoop::V5(e) => e.clean(),
        }
    }
}
