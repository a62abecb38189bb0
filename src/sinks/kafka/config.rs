//! `[sinks.<id>] type = "kafka"`: which brokers, which topic, how records are keyed and secured.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::tls::TlsFiles;
use crate::config::{ConfigError, Secret};
pub use crate::sinks::cloudevents::Mode;
use crate::transport::kafka::SaslMechanism;

/// The Kafka message key of a record: the partitioner keeps messages of one key in one partition,
/// in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// The record id (default): records spread over the partitions.
    #[default]
    Id,
    /// The record's serial (its lot or work order when it has no serial, else the record id):
    /// a part's records in one partition, in order.
    Serial,
    /// The gateway id: all of the gateway's records in one partition, in journal order.
    GatewayId,
}

/// Compression of the produced batches (librdkafka's built-in codecs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// None (default).
    #[default]
    None,
    /// LZ4.
    Lz4,
    /// Snappy.
    Snappy,
}

/// SASL authentication.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN` (only with `tls`), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password; use `${env:NAME}` or `${file:PATH}`.
    pub password: Secret,
}

/// Options of the Kafka sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port`; the rest of the cluster is learnt from them.
    pub brokers: Vec<String>,
    /// The topic the records go to; it must exist (the sink never creates topics).
    pub topic: String,
    /// `id` (default), `serial` or `gateway_id`.
    #[serde(default)]
    pub key: Key,
    /// `binary` (default) or `structured` CloudEvents.
    #[serde(default)]
    pub mode: Mode,
    /// CloudEvents `type` is `<event_type_prefix>.<kind>.v1`.
    #[serde(default = "default_prefix")]
    pub event_type_prefix: String,
    /// `none` (default), `lz4` or `snappy`.
    #[serde(default)]
    pub compression: Compression,
    /// TLS (required when set).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// SASL authentication.
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// Most records per batch: each batch is produced at once, then every acknowledgement awaited.
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
    /// How long a batch may wait for the brokers' acknowledgements (librdkafka retries inside
    /// it: `message.timeout.ms`).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_prefix() -> String {
    "org.shopfloor.quality".into()
}
fn default_batch() -> usize {
    256
}
fn default_timeout() -> u64 {
    30_000
}

impl KafkaSinkConfig {
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if let Some(t) = &self.tls {
            t.check(at, errors);
        }
        crate::sinks::check_batch_and_timeout(at, self.batch_max_records, self.timeout_ms, errors);
        let mut err = |key: &str, msg: String, hint: &str| {
            let e = ConfigError::new(format!("{at}.{key}"), msg);
            errors.push(if hint.is_empty() { e } else { e.hint(hint) });
        };
        if self.brokers.is_empty() {
            err(
                "brokers",
                "names no broker".into(),
                "e.g. [\"kafka1:9092\"]",
            );
        }
        for b in &self.brokers {
            if let Err(why) = check_broker(b) {
                err("brokers", why, "host:port, e.g. \"kafka1:9092\"");
            }
        }
        if !valid_topic(&self.topic) {
            err(
                "topic",
                format!("{:?} is not a Kafka topic name", self.topic),
                "letters, digits, '.', '_' and '-', at most 249, e.g. \"quality\"",
            );
        }
        if let Some(sasl) = &self.sasl {
            if sasl.mechanism == SaslMechanism::Plain && self.tls.is_none() {
                err(
                    "sasl.mechanism",
                    "PLAIN sends the password as it is: it needs tls".into(),
                    "add [sinks.<id>.tls] with ca_file, or use SCRAM-SHA-512",
                );
            }
            if sasl.username.is_empty() || sasl.password.is_empty() {
                err(
                    "sasl.username",
                    "username and password must not be empty".into(),
                    "",
                );
            }
        }
        if self.timeout_ms > i32::MAX as u64 {
            err("timeout_ms", "is too large".into(), "e.g. 30000");
        }
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(t) = &mut self.tls {
            t.resolve_paths(base);
        }
    }
}

/// `host:port` with a port; no scheme and no user info (a broker list is logged).
fn check_broker(b: &str) -> Result<(), String> {
    if b.contains('@') {
        // Not echoed: what comes before the `@` may be a password.
        return Err("a broker address holds a user (`@`): put the user in [sasl]".into());
    }
    if b.contains("://") {
        return Err(format!("{b:?} is not host:port (no scheme)"));
    }
    match b.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("{b:?} is not host:port")),
    }
}

/// A topic name Kafka takes.
fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_topics_kafka_would_refuse_are_named() {
        assert!(check_broker("kafka1:9092").is_ok());
        assert!(check_broker("[::1]:9092").is_ok());
        assert!(check_broker("kafka1").is_err());
        assert!(check_broker("kafka1:0").is_err());
        assert!(check_broker("kafka://kafka1:9092").is_err());
        assert!(check_broker("user:pw@kafka1:9092").is_err_and(|e| !e.contains("pw")));
        assert!(valid_topic("quality.plant-1_a"));
        assert!(!valid_topic("quality/x"));
        assert!(!valid_topic(".."));
        assert!(!valid_topic(&"q".repeat(250)));
    }
}

#[cfg(test)]
mod validation {
    use super::*;

    fn errors(extra: &str) -> Vec<String> {
        let toml = format!("brokers = [\"k1:9092\"]\ntopic = \"quality\"\n{extra}");
        let cfg: KafkaSinkConfig = toml::from_str(&toml).expect("parses");
        let mut errors = Vec::new();
        cfg.check("sinks.fleet", &mut errors);
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn plain_without_tls_half_a_client_certificate_and_empty_values_are_named() {
        assert!(errors("").is_empty());
        let e = errors("sasl = { mechanism = \"PLAIN\", username = \"gw\", password = \"pw\" }");
        assert!(
            e[0].contains("sinks.fleet.sasl.mechanism") && e[0].contains("needs tls"),
            "{e:?}"
        );
        assert!(errors(
            "sasl = { mechanism = \"SCRAM-SHA-512\", username = \"gw\", password = \"pw\" }"
        )
        .is_empty());
        let e = errors("tls = { ca_file = \"ca.pem\", client_cert_file = \"c.pem\" }");
        assert!(e[0].contains("sinks.fleet.tls.client_cert_file"), "{e:?}");
        let e = errors("batch_max_records = 0");
        assert!(
            e[0].contains("sinks.fleet.batch_max_records: must be above 0"),
            "{e:?}"
        );
        let e = errors("timeout_ms = 0");
        assert!(
            e[0].contains("sinks.fleet.timeout_ms: must be above 0"),
            "{e:?}"
        );
        assert!(toml::from_str::<KafkaSinkConfig>(
            "brokers = [\"k1:9092\"]\ntopic = \"q\"\nsasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }"
        )
        .is_err());
    }
}
