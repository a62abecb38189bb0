//! Sinks: where journaled records go. The delivery driver ([`driver`]) is shared; each sink only
//! knows how to send one batch.
//!
//! Delivery contract: a sink reads from its own cursor in journal order, sends a batch, and the
//! cursor moves only after the peer acknowledged it. At-least-once on the wire; exactly-once at a
//! receiver that dedupes on the record id. A record the peer refuses for good goes to dead letters
//! with the reason and the sink moves on.

pub mod driver;
pub mod file;
#[cfg(feature = "sink-http")]
pub mod http;
#[cfg(feature = "sink-mqtt")]
pub mod mqtt;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;

/// The `type` names of the sinks built in (by Cargo feature): the one list hints and errors use.
pub const SINK_TYPES: &[&str] = &[
    #[cfg(feature = "sink-http")]
    "http",
    "file",
    #[cfg(feature = "sink-mqtt")]
    "mqtt",
];

impl crate::config::Component for SinkConfig {
    const TABLE: &'static str = "sinks";
    const TYPES: &'static [&'static str] = SINK_TYPES;

    fn from_type(kind: &str, v: toml::Value) -> Option<crate::config::Parsed<Self>> {
        Some(match kind {
            #[cfg(feature = "sink-http")]
            "http" => serde_path_to_error::deserialize(v).map(Self::Http),
            "file" => serde_path_to_error::deserialize(v).map(Self::File),
            #[cfg(feature = "sink-mqtt")]
            "mqtt" => serde_path_to_error::deserialize(v).map(Self::Mqtt),
            _ => return None,
        })
    }
}

/// `[sinks.<id>]`: one sink, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // built once at start; boxing would only add noise
pub enum SinkConfig {
    /// HTTP(S) POST of batches to a QMS.
    #[cfg(feature = "sink-http")]
    Http(http::HttpSinkConfig),
    /// JSON Lines files with size-based rotation.
    File(file::FileSinkConfig),
    /// MQTT publish (QoS 1) to the plant's broker.
    #[cfg(feature = "sink-mqtt")]
    Mqtt(mqtt::MqttSinkConfig),
}

impl SinkConfig {
    /// Checks the values; `at` is the key path (`sinks.qms`).
    pub fn validate(&self, at: &str, opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        match self {
            #[cfg(feature = "sink-http")]
            SinkConfig::Http(c) => c.validate(at, opts, errors),
            SinkConfig::File(c) => c.validate(at, opts, errors),
            #[cfg(feature = "sink-mqtt")]
            SinkConfig::Mqtt(c) => {
                let _ = opts;
                c.validate(at, errors)
            }
        }
    }

    /// Makes relative paths absolute against `base` (the working directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        match self {
            #[cfg(feature = "sink-http")]
            SinkConfig::Http(c) => c.resolve_paths(base),
            SinkConfig::File(c) => c.resolve_paths(base),
            #[cfg(feature = "sink-mqtt")]
            SinkConfig::Mqtt(_) => {}
        }
    }

    /// Batch limits and retry policy for the driver.
    pub fn delivery(&self) -> driver::DeliveryOptions {
        match self {
            #[cfg(feature = "sink-http")]
            SinkConfig::Http(c) => driver::DeliveryOptions {
                batch_max_records: c.batch_max_records,
                batch_max_bytes: c.batch_max_bytes,
                retry_initial: Duration::from_millis(c.retry_initial_ms),
                retry_max: Duration::from_millis(c.retry_max_ms),
            },
            SinkConfig::File(c) => driver::DeliveryOptions {
                batch_max_records: c.batch_max_records,
                batch_max_bytes: usize::MAX,
                retry_initial: Duration::from_secs(1),
                retry_max: Duration::from_secs(60),
            },
            #[cfg(feature = "sink-mqtt")]
            SinkConfig::Mqtt(c) => driver::DeliveryOptions {
                batch_max_records: c.batch_max_records,
                batch_max_bytes: usize::MAX,
                retry_initial: Duration::from_millis(500),
                retry_max: Duration::from_secs(30),
            },
        }
    }
}

/// Receipt ids a peer gave for delivered records: (record id, receipt id).
pub type Receipts = Vec<(String, String)>;

/// Why a batch was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Not delivered now; try again (after `retry_after` if the peer said so).
    #[error("{reason}")]
    Retry {
        /// What happened, for the log and `status`.
        reason: String,
        /// The peer's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The peer refused the records for good (they will never be accepted as they are).
    #[error("{reason}")]
    Reject {
        /// The peer's answer.
        reason: String,
    },
}

/// A built sink, ready to send.
pub enum Sink {
    /// HTTP sink.
    #[cfg(feature = "sink-http")]
    Http(http::HttpSink),
    /// File sink.
    File(file::FileSink),
    /// MQTT sink.
    #[cfg(feature = "sink-mqtt")]
    Mqtt(mqtt::MqttSink),
}

impl Sink {
    /// Builds the sink of `config` (opens files, loads certificates).
    pub fn build(id: &str, config: &SinkConfig, ctx: &SinkContext) -> Result<Sink, String> {
        match config {
            #[cfg(feature = "sink-http")]
            SinkConfig::Http(c) => http::HttpSink::new(id, c, ctx).map(Sink::Http),
            SinkConfig::File(c) => file::FileSink::new(c).map(Sink::File),
            #[cfg(feature = "sink-mqtt")]
            SinkConfig::Mqtt(c) => mqtt::MqttSink::new(id, c, ctx).map(Sink::Mqtt),
        }
    }

    /// Sends one batch (journal order, at least one row); returns the receipts the peer gave.
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<Receipts, SendError> {
        match self {
            #[cfg(feature = "sink-http")]
            Sink::Http(s) => s.send(rows).await,
            Sink::File(s) => s.send(rows).await.map(|()| Vec::new()),
            #[cfg(feature = "sink-mqtt")]
            Sink::Mqtt(s) => s.send(rows).await.map(|()| Vec::new()),
        }
    }

    /// The last record this sink already holds by its own account, when the sink can tell (a file
    /// sink reads its files). Unchecked: the driver compares it with the journal.
    pub fn delivered_tail(&self) -> Option<file::sink::Tail> {
        match self {
            #[cfg(feature = "sink-http")]
            Sink::Http(_) => None,
            Sink::File(s) => s.delivered_tail(),
            #[cfg(feature = "sink-mqtt")]
            Sink::Mqtt(_) => None,
        }
    }

    /// Moves the sink's own output aside when it does not match the journal (file sink only).
    pub fn set_aside(&mut self) -> Result<Vec<std::path::PathBuf>, String> {
        match self {
            Sink::File(s) => s.set_aside(),
            #[allow(unreachable_patterns)]
            _ => Ok(Vec::new()),
        }
    }

    /// Where it sends, for logs and `status`: URLs without user info or secret query values.
    pub fn target(&self) -> String {
        match self {
            #[cfg(feature = "sink-http")]
            Sink::Http(s) => crate::config::redact::url_text(&s.target()).into_owned(),
            Sink::File(s) => s.target(),
            #[cfg(feature = "sink-mqtt")]
            Sink::Mqtt(s) => crate::config::redact::url_text(&s.target()).into_owned(),
        }
    }
}

/// What sinks need to know about the agent.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// `agent.gateway_id`.
    pub gateway_id: String,
    /// `agent.site` (or the gateway id).
    pub site: String,
}
