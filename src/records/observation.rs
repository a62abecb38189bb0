//! What sources emit: tag samples (continuous values) and messages (discrete documents), plus the
//! connection events that become gap records.
//!
//! Times are Unix milliseconds inside the pipeline and formatted only when a record is made.

use serde_json::Value;

/// Index of a tag in the [`super::tags::TagTable`].
pub type TagId = usize;

/// Quality of a sample, as the source judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Usable.
    Good,
    /// Usable with doubt (OPC UA Uncertain).
    Uncertain,
    /// Not usable: the device answered an error or the server a bad status.
    Bad,
}

impl Quality {
    /// `good`, `uncertain` or `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }
}

/// One value of one tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The decoded (and scaled) value: bool, number or string.
    pub value: Value,
    /// The value as received (registers, the OPC UA variant), for provenance.
    pub raw: Value,
    /// Timestamp from the source, if it gives one (OPC UA: the device's source timestamp).
    pub source_ms: Option<i64>,
    /// Timestamp from the server relaying it (OPC UA server timestamp), if any.
    pub server_ms: Option<i64>,
    /// When the gateway received it.
    pub received_ms: i64,
    /// Source's quality.
    pub quality: Quality,
    /// Detail for a bad or uncertain value (Modbus exception, OPC UA status name).
    pub status: Option<String>,
}

impl Sample {
    /// A good sample whose raw value is the value itself.
    pub fn good(value: Value, received_ms: i64) -> Self {
        Sample {
            raw: value.clone(),
            value,
            source_ms: None,
            server_ms: None,
            received_ms,
            quality: Quality::Good,
            status: None,
        }
    }
}

/// Where a tag's values come from (fixed per tag).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// Protocol: opcua, modbus, mqtt, rest.
    pub protocol: String,
    /// Peer address.
    pub endpoint: Option<String>,
    /// Address inside the peer.
    pub address: Option<String>,
}

/// A discrete document: an MQTT payload or a REST row.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Source id.
    pub source: String,
    /// Where it came from (protocol, broker or endpoint URL).
    pub origin: Origin,
    /// MQTT topic, or the REST endpoint's name.
    pub topic: String,
    /// The document.
    pub doc: Value,
    /// Timestamp from the source, if any.
    pub source_ms: Option<i64>,
    /// When the gateway received it.
    pub received_ms: i64,
}

/// A value a document states: the value, where in the document it stands, the text as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Stated {
    /// The value (a string or a number).
    pub value: Value,
    /// Where in the document: an XPath with ids, a K-field and line, a line and column.
    pub address: String,
    /// The text as written.
    pub raw: String,
}

/// One characteristic measured on one part, as a result file states it. It becomes one inspection
/// record without a rule: the source has named each field already.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measurement {
    /// Where the measurement is in the document.
    pub at: String,
    /// Record fields by path (`subject.serial`, `inspection.value`, `inspection.result`, ...).
    pub fields: Vec<(&'static str, Stated)>,
    /// When it was measured, as the document writes it and as Unix milliseconds when that text
    /// names an instant.
    pub measured: Option<(String, Option<i64>)>,
    /// What the document says that the record has no field for (a part's title, an unknown
    /// K-field), by the document's own name, as written.
    pub other: Vec<(String, String)>,
    /// Why fields the record needs are missing, where the document itself does not say.
    pub incomplete: Vec<String>,
}

/// Measurements read from one document (a measuring machine's result file), or from part of a
/// long one.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// Source id.
    pub source: String,
    /// The format as protocol (`qif`, `aqdef`) and the document (its path) as endpoint.
    pub origin: Origin,
    /// SHA-256 (hex) of the document's bytes.
    pub sha256: String,
    /// The station the document was measured at (configured, not from the document): records
    /// without a serial take the traveler's there.
    pub station: Option<String>,
    /// How many of the document's measurements came before `items`.
    pub first: usize,
    /// The measurements, in document order.
    pub items: Vec<Measurement>,
    /// When the gateway read the document.
    pub received_ms: i64,
}

/// Everything a source reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Tag values captured together.
    Tags(Vec<(TagId, Sample)>),
    /// A message or row.
    Message(Message),
    /// Messages that belong together (a page of REST rows): journaled in one transaction, with the
    /// state the source sends along, so a watermark never commits without every row of its page.
    Messages(Vec<Message>),
    /// Characteristics measured, from a result file: one inspection record each.
    Measurements(Measurements),
    /// The source lost its peer (or the device answers only errors) from `at_ms`.
    SourceDown {
        /// Source id.
        source: String,
        /// The part of the source that is down when its parts fail apart (a REST endpoint), or
        /// `None` for the whole source. Each part has its own outage and gap record.
        channel: Option<String>,
        /// Since when.
        at_ms: i64,
        /// Why, for the gap record.
        reason: String,
    },
    /// Nothing observed: the input carries only source state (see `Input::state`).
    Nothing,
    /// The source is delivering again.
    SourceUp {
        /// Source id.
        source: String,
        /// As in `SourceDown`.
        channel: Option<String>,
        /// Since when.
        at_ms: i64,
    },
}
