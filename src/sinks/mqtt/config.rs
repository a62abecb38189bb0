//! `[sinks.<id>] type = "mqtt"`: where and how records are published.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Options of the MQTT sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// `"3.1.1"` (default) or `"5"` (with 5, a PUBACK whose reason code refuses a record is an error,
    /// not a delivery).
    #[serde(default)]
    pub protocol: crate::transport::mqtt::Protocol,
    /// Client id.
    pub client_id: String,
    /// Topic of each record; `{site}`, `{gateway}`, `{station}` (the record's station, or
    /// `unknown`) and `{kind}` are replaced.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Publish retained.
    #[serde(default)]
    pub retain: bool,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; use `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<crate::config::Secret>,
    /// Most records per batch.
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
    /// How long to wait for the PUBACKs of a batch.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// TLS (as for the MQTT source).
    #[serde(default)]
    pub tls: Option<crate::transport::mqtt::MqttTls>,
    /// Largest record published (default 1 MiB; a broker may take less: Mosquitto's
    /// `message_size_limit`). A larger record is a dead letter, like one whose topic is not a valid
    /// MQTT topic name; neither holds up the records behind it.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_message_bytes() -> usize {
    1 << 20
}

fn default_port() -> u16 {
    1883
}
fn default_topic() -> String {
    "{site}/{station}/quality/{kind}".into()
}
fn default_batch() -> usize {
    100
}
fn default_timeout() -> u64 {
    10_000
}

impl MqttSinkConfig {
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.client_id.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.client_id"),
                "must not be empty",
            ));
        }
        if self.topic.is_empty() || self.topic.contains('+') || self.topic.contains('#') {
            errors.push(
                ConfigError::new(
                    format!("{at}.topic"),
                    format!("{:?} is not a topic to publish to", self.topic),
                )
                .hint("e.g. \"{site}/{station}/quality/{kind}\" (no wildcards)"),
            );
        }
        crate::sinks::check_batch_and_timeout(at, self.batch_max_records, self.timeout_ms, errors);
    }
}
