//! `[sources.<id>] type = "mqtt"`: subscriptions on one broker.

use serde::{Deserialize, Serialize};

use super::payload::PayloadFormat;
use crate::config::ConfigError;

/// Options of an MQTT source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Broker host (use 127.0.0.1, not localhost, for a local broker).
    pub host: String,
    /// Broker port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: crate::transport::mqtt::Protocol,
    /// MQTT 5: how long the broker keeps the session (and queues QoS 1 messages) while the agent is
    /// away. Default 7 days.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_s: u32,
    /// Client id; the broker keeps the persistent session under it, so it must be stable and unique.
    pub client_id: String,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; use `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<crate::config::Secret>,
    /// Topic filters, subscribed with QoS 1 (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// How payloads are read: `json`, `number` or `text`.
    #[serde(default)]
    pub payload: PayloadFormat,
    /// Messages in flight before the broker waits for acknowledgements.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// TLS (verified against `ca_file`; the broker's certificate must name `host`).
    #[serde(default)]
    pub tls: Option<crate::transport::mqtt::MqttTls>,
    /// Largest payload read into a record (default 1 MiB). A larger message is quarantined with
    /// the reason and acknowledged, up to four times this size; beyond that the connection cannot
    /// take it: with MQTT 5 the broker is told so and does not send it, with 3.1.1 the source is
    /// down (an outage and a gap record) until it is removed from the broker.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_message_bytes() -> usize {
    1 << 20
}

impl MqttSourceConfig {
    /// The largest packet the connection takes: room to quarantine messages over
    /// `max_message_bytes` rather than drop the connection on them.
    pub fn max_packet_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_mul(4)
            .saturating_add(64 << 10)
    }
}

fn default_port() -> u16 {
    1883
}
fn default_session_expiry() -> u32 {
    7 * 24 * 3600
}
fn default_keep_alive() -> u64 {
    30
}
fn default_inflight() -> u16 {
    100
}

impl MqttSourceConfig {
    /// Checks the values; `at` is the key path (`sources.mqtt1`).
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.max_message_bytes == 0 || self.max_message_bytes > 64 << 20 {
            errors.push(
                ConfigError::new(
                    format!("{at}.max_message_bytes"),
                    "must be from 1 to 67108864 (64 MiB)",
                )
                .hint("the default, 1048576, fits any inspection result"),
            );
        }
        if self.client_id.is_empty() || self.client_id.len() > 23 && !self.client_id.is_ascii() {
            errors.push(
                ConfigError::new(format!("{at}.client_id"), "must be a non-empty ASCII id")
                    .hint("e.g. \"plant1-cell4-gw01\"; the broker keeps the session under it"),
            );
        }
        if self.topics.is_empty() {
            errors.push(
                ConfigError::new(format!("{at}.topics"), "no topics")
                    .hint("e.g. topics = [\"plant1/+/inspection\"]"),
            );
        }
        for (i, t) in self.topics.iter().enumerate() {
            let bad_hash =
                t.contains('#') && !(t == "#" || t.ends_with("/#")) || t.matches('#').count() > 1;
            let bad_plus = t
                .split('/')
                .any(|level| level.contains('+') && level != "+");
            if t.is_empty() || bad_hash || bad_plus {
                errors.push(
                    ConfigError::new(format!("{at}.topics[{i}]"), format!("{t:?} is not a valid topic filter"))
                        .hint("'+' stands for one whole level, '#' only at the end: \"plant1/+/inspection\", \"plant1/#\""),
                );
            }
        }
        if self.keep_alive_s < 5 {
            errors.push(ConfigError::new(
                format!("{at}.keep_alive_s"),
                "must be at least 5",
            ));
        }
        if let Some(t) = &self.tls {
            if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                errors.push(
                    ConfigError::new(
                        format!("{at}.tls.client_cert_file"),
                        "client_cert_file and client_key_file go together",
                    )
                    .hint("set both for mutual TLS, or neither"),
                );
            }
        }
        if self.password.is_some() && self.username.is_none() {
            errors.push(ConfigError::new(
                format!("{at}.password"),
                "a password needs a username",
            ));
        }
    }
}
