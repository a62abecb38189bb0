//! What the Kafka sink and `fleet verify --kafka` share to reach a Kafka cluster: TLS and SASL as
//! librdkafka properties, and librdkafka's own log lines and errors as `tracing` events.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// SASL mechanism (librdkafka's built-in ones; GSSAPI/Kerberos is not built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum SaslMechanism {
    /// User and password in clear inside the connection: only with TLS.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's name (`sasl.mechanisms`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// From a command-line value.
    pub fn parse(s: &str) -> Option<SaslMechanism> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

/// TLS and SASL of one client (both optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaSecurity<'a> {
    /// CA file of the brokers' certificates (TLS when set), and a client certificate and key for
    /// mutual TLS.
    pub tls: Option<(&'a Path, Option<(&'a Path, &'a Path)>)>,
    /// Mechanism, user, password.
    pub sasl: Option<(SaslMechanism, &'a str, &'a str)>,
}

/// Sets `security.protocol`, the `ssl.*` files and the `sasl.*` values on `config`, and
/// librdkafka's log level.
pub fn apply(config: &mut ClientConfig, security: KafkaSecurity<'_>) {
    let protocol = match (security.tls.is_some(), security.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    // librdkafka's own level, from this process's log filter (rdkafka would read the `log`
    // crate's, which is not the one in use here, and log errors only).
    let level = tracing::level_filters::LevelFilter::current();
    config.set_log_level(if level >= tracing::Level::DEBUG {
        RDKafkaLogLevel::Debug
    } else if level >= tracing::Level::INFO {
        RDKafkaLogLevel::Info
    } else {
        RDKafkaLogLevel::Warning
    });
    if let Some((ca, client)) = security.tls {
        config.set("ssl.ca.location", ca.display().to_string());
        // The broker's name is checked against its certificate (librdkafka's default since 2.0;
        // set here so an older library behaves the same).
        config.set("ssl.endpoint.identification.algorithm", "https");
        if let Some((cert, key)) = client {
            config.set("ssl.certificate.location", cert.display().to_string());
            config.set("ssl.key.location", key.display().to_string());
        }
    }
    if let Some((mechanism, user, password)) = security.sasl {
        config.set("sasl.mechanisms", mechanism.as_str());
        config.set("sasl.username", user);
        config.set("sasl.password", password);
    }
}

/// librdkafka's log lines and errors as `tracing` events under the name of their user
/// (`sink fleet`, `fleet verify`). librdkafka never writes the SASL password into either.
#[derive(Debug, Clone)]
pub struct LogContext {
    /// Who the client belongs to, the prefix of each line.
    pub name: String,
    /// Where the last error goes, for a reason to give (`status`).
    pub last_error: Option<Arc<Mutex<Option<String>>>>,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let name = &self.name;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => tracing::warn!("{name}: kafka {fac}: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("{name}: kafka {fac}: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!("{name}: kafka {fac}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("{}: kafka: {error}: {reason}", self.name);
        if let Some(last) = &self.last_error {
            if let Ok(mut last) = last.lock() {
                *last = Some(format!("{error}: {reason}"));
            }
        }
    }
}

/// The consumer of `fleet verify --kafka` assigns its partitions itself: no rebalance to hear of.
impl ConsumerContext for LogContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::{BaseProducer, Producer};

    /// The librdkafka built here has TLS and SCRAM (a build without them refuses these settings
    /// when the client is made, not at the first connection).
    #[test]
    fn the_built_librdkafka_takes_tls_and_every_sasl_mechanism() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = plant_sim::tls::TestPki::create(dir.path());
        let ca = pki.ca_file;
        for mechanism in [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ] {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", "127.0.0.1:9");
            apply(
                &mut c,
                KafkaSecurity {
                    tls: Some((&ca, None)),
                    sasl: Some((mechanism, "gw", "secret")),
                },
            );
            assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
            let p: BaseProducer = c.create().unwrap_or_else(|e| {
                panic!("{}: {e}", mechanism.as_str());
            });
            let features = p.client().fetch_metadata(None, std::time::Duration::ZERO);
            assert!(features.is_err(), "no broker at 127.0.0.1:9");
        }
        assert_eq!(
            SaslMechanism::parse("scram-sha-512"),
            Some(SaslMechanism::ScramSha512)
        );
        assert_eq!(SaslMechanism::parse("GSSAPI"), None);
    }
}
