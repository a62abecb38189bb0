//! CloudEvents 1.0 for the sinks that speak it (the HTTP sink's batches, the NATS sink's structured
//! and binary modes): the record is `data`, the journal's chain rides along as the extension
//! attributes `sequence`, `prevhash`, `hash` and `signature`, so a receiver can check each gateway's
//! chain without the gateway (`fleet verify` does).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::journal::JournalRow;
use crate::records::Subject;

/// How a record is put into a message of a stream (NATS, Kafka); both modes carry the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// CloudEvents binary mode (the NATS and Kafka protocol bindings): the payload is the record as journaled,
    /// the event's attributes are `ce-…` headers.
    #[default]
    Binary,
    /// CloudEvents structured mode: the payload is the event (`application/cloudevents+json`) with
    /// the record as `data`.
    Structured,
}

/// The CloudEvents `source` of a gateway's records.
pub fn event_source(gateway_id: &str) -> String {
    format!("urn:shopfloor-agent:{gateway_id}")
}

/// One record as a CloudEvent (structured mode: attributes and `data` in one JSON object).
#[derive(Serialize)]
pub(crate) struct CloudEvent<'a> {
    pub(crate) specversion: &'static str,
    pub(crate) id: &'a str,
    pub(crate) source: &'a str,
    #[serde(rename = "type")]
    pub(crate) ty: String,
    /// The part the record is about: serial, else lot, else work order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
    /// The record's station, for a NATS subject template (not an attribute).
    #[serde(skip)]
    pub(crate) station: Option<String>,
    pub(crate) time: &'a str,
    pub(crate) datacontenttype: &'static str,
    pub(crate) sequence: String,
    pub(crate) prevhash: &'a str,
    pub(crate) hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<&'a str>,
    pub(crate) data: &'a RawValue,
}

#[derive(Deserialize)]
struct SubjectOnly {
    #[serde(default)]
    subject: Subject,
}

/// The record's `subject` (station, serial, …), empty when the body has none.
fn record_subject(body: &str) -> Subject {
    serde_json::from_str::<SubjectOnly>(body)
        .map(|s| s.subject)
        .unwrap_or_default()
}

impl CloudEvent<'_> {
    /// The attributes as CloudEvents binary-mode headers (`ce-…`, and `content-type` of the
    /// payload, which is the record as journaled), as the NATS and Kafka bindings carry them.
    pub(crate) fn binary_headers(&self, mut put: impl FnMut(&'static str, &str)) {
        put("content-type", "application/json");
        put("ce-specversion", self.specversion);
        put("ce-id", self.id);
        put("ce-source", self.source);
        put("ce-type", &self.ty);
        put("ce-time", self.time);
        if let Some(s) = &self.subject {
            put("ce-subject", &header_value(s));
        }
        put("ce-sequence", &self.sequence);
        put("ce-prevhash", self.prevhash);
        put("ce-hash", self.hash);
        if let Some(s) = self.signature {
            put("ce-signature", s);
        }
    }
}

/// A header value without line breaks or other control characters (a serial is free text).
fn header_value(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `r` as a CloudEvent of `source`, typed `<prefix>.<kind>.v1`; `Err` when the body is not JSON.
/// The body's subject is read here once; what a sink keys or routes by comes from the event.
pub(crate) fn cloud_event<'a>(
    r: &'a JournalRow,
    source: &'a str,
    prefix: &str,
) -> Result<CloudEvent<'a>, serde_json::Error> {
    let data: &RawValue = serde_json::from_str(&r.body)?;
    let s = record_subject(&r.body);
    Ok(CloudEvent {
        specversion: "1.0",
        id: &r.id,
        source,
        ty: format!("{prefix}.{}.v1", r.kind),
        subject: s.serial.or(s.lot).or(s.work_order),
        station: s.station,
        time: &r.captured_at,
        datacontenttype: "application/json",
        sequence: r.seq.to_string(),
        prevhash: &r.prev_hash,
        hash: &r.hash,
        signature: r.signature.as_deref(),
        data,
    })
}
