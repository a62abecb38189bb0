//! Sinks: where journaled records go. The delivery driver ([`driver`]) is shared; each sink only
//! knows how to send one batch.
//!
//! A sink is one folder here: its configuration implements [`SinkSpec`] (check, delivery options,
//! build), the built sink implements [`Sink`] (send a batch). It is registered by one line in the
//! `registry!` below, behind its Cargo feature.
//!
//! Delivery contract: a sink reads from its own cursor in journal order, sends a batch, and the
//! cursor moves only after the peer acknowledged it. At-least-once on the wire; exactly-once at a
//! receiver that dedupes on the record id. A record the peer refuses for good goes to dead letters
//! with the reason and the sink moves on.

pub mod cloudevents;
pub mod driver;
pub mod file;
#[cfg(feature = "sink-http")]
pub mod http;
#[cfg(feature = "sink-kafka")]
pub mod kafka;
#[cfg(feature = "sink-mqtt")]
pub mod mqtt;
#[cfg(feature = "sink-nats")]
pub mod nats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};

crate::registry! {
    /// `[sinks.<id>]`: one sink, chosen by `type`.
    pub enum SinkConfig: dyn SinkSpec, types SINK_TYPES, table "sinks" {
        /// HTTP(S) POST of batches to a QMS.
        "http" => Http(http::HttpSinkConfig), feature "sink-http";
        /// JSON Lines files with size-based rotation.
        "file" => File(file::FileSinkConfig);
        /// MQTT publish (QoS 1) to the plant's broker.
        "mqtt" => Mqtt(mqtt::MqttSinkConfig), feature "sink-mqtt";
        /// NATS JetStream publish to the fleet's stream, each record acknowledged (PubAck).
        "nats" => Nats(nats::NatsSinkConfig), feature "sink-nats";
        /// Kafka produce (acks=all, idempotent) to the fleet's topic.
        "kafka" => Kafka(kafka::KafkaSinkConfig), feature "sink-kafka";
    }
}

/// A sink's configuration (`[sinks.<id>]` of its type).
pub trait SinkSpec: std::fmt::Debug + Send + Sync {
    /// Checks the values, adding every problem to `errors`; `at` is the key path (`sinks.qms`).
    fn validate(&self, at: &str, opts: LoadOptions, errors: &mut Vec<ConfigError>);

    /// Makes relative paths absolute against `base` (the working directory).
    fn resolve_paths(&mut self, base: &Path) {
        let _ = base;
    }

    /// Batch limits and retry policy for the driver.
    fn delivery(&self) -> driver::DeliveryOptions;

    /// Builds the sink (opens files, loads certificates).
    fn build(&self, id: &str, cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError>;
}

/// The broker sinks' common check (MQTT, NATS, Kafka): `batch_max_records` and `timeout_ms`
/// above 0, each named at its own key.
#[cfg(any(feature = "sink-mqtt", feature = "sink-nats", feature = "sink-kafka"))]
pub(crate) fn check_batch_and_timeout(
    at: &str,
    batch_max_records: usize,
    timeout_ms: u64,
    errors: &mut Vec<ConfigError>,
) {
    if batch_max_records == 0 {
        errors.push(
            ConfigError::new(format!("{at}.batch_max_records"), "must be above 0").hint("e.g. 500"),
        );
    }
    if timeout_ms == 0 {
        errors.push(
            ConfigError::new(format!("{at}.timeout_ms"), "must be above 0").hint("e.g. 30000"),
        );
    }
}

/// A built sink: it only knows how to send one batch; the [`driver`] does the rest.
pub trait Sink: Send + Sync {
    /// Sends one batch (journal order, at least one row); returns the receipts the peer gave.
    fn send<'a>(&'a mut self, rows: &'a [JournalRow])
        -> BoxFuture<'a, Result<Receipts, SendError>>;

    /// Where it sends, for logs and `status`: URLs without user info or secret query values.
    fn target(&self) -> String;

    /// The last record this sink already holds by its own account, when the sink can tell (a file
    /// sink reads its files). Unchecked: the driver compares it with the journal.
    fn delivered_tail(&self) -> Option<Tail> {
        None
    }

    /// Moves the sink's own output aside when it does not match the journal.
    fn set_aside(&mut self) -> Result<Vec<PathBuf>, SetAsideError> {
        Ok(Vec::new())
    }
}

/// Why a sink's own output could not be moved aside.
#[derive(Debug, thiserror::Error)]
pub enum SetAsideError {
    /// A send is in progress.
    #[error("the sink is busy")]
    Busy,
    /// Listing or renaming a file failed.
    #[error("cannot {action} {}: {error}", .path.display())]
    Io {
        /// What was done: `list`, `move aside`.
        action: &'static str,
        /// The directory listed or the file moved.
        path: PathBuf,
        /// The error of the file system.
        error: std::io::Error,
    },
}

/// The last record a sink holds by its own account: unchecked, the driver compares it with the
/// journal before trusting it (a line written by hand, or the output of another journal, must not
/// make the sink skip records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// `seq` of the record.
    pub seq: i64,
    /// `hash` of the record (hex), empty when the sink's copy has none.
    pub hash: String,
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

/// What sinks need to know about the agent.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// `agent.gateway_id`.
    pub gateway_id: String,
    /// `agent.site` (or the gateway id).
    pub site: String,
}
