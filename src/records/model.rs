//! The quality record (`quality-record/1`), serialized exactly as
//! `config/quality-record.v1.schema.json` describes it (the schema is the contract with receivers;
//! a test validates records against it).
//!
//! **Fields are declared in alphabetical order** (of their JSON names): serde then writes them in the
//! order RFC 8785 requires, so a record is canonicalized in one pass
//! ([`crate::journal::chain::to_canonical_json`]). A unit test there fails if a field is out of order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The schema identifier written into every record.
pub const SCHEMA_ID: &str = "quality-record/1";

/// What a record is evidence of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A step of a part's traveler (routing): work order, operation, status, quantities.
    Traveler,
    /// A measured or attribute characteristic of a part.
    Inspection,
    /// A calibration of an instrument (gauge).
    Calibration,
    /// Evidence that is missing: a source was unreachable or the journal refused writes.
    Gap,
    /// Something the agent itself did: start, stop, config change, replay.
    AgentEvent,
}

impl RecordKind {
    /// The snake_case name used in the journal, on the wire and in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Traveler => "traveler",
            RecordKind::Inspection => "inspection",
            RecordKind::Calibration => "calibration",
            RecordKind::Gap => "gap",
            RecordKind::AgentEvent => "agent_event",
        }
    }
}

/// Which part, order and operation a record is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Lot or batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    /// Routing operation (e.g. `0040`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Part number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    /// Part revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Serial number of the part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Station or cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// ERP work (production) order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_order: Option<String>,
}

/// Body of a `traveler` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traveler {
    /// When the operation completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Good quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_good: Option<f64>,
    /// Scrap quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_scrap: Option<f64>,
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// queued, started, completed, on_hold or scrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Work center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_center: Option<String>,
}

/// Calibration status of the gauge an inspection used, looked up at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaugeCalibration {
    /// When the calibration is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// Id of the calibration record the status was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// valid, overdue, failed (last calibration failed) or unknown.
    pub status: String,
}

/// Body of an `inspection` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspection {
    /// The characteristic (feature) measured, e.g. `OD-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characteristic: Option<String>,
    /// The gauge's calibration status at capture time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge_calibration: Option<GaugeCalibration>,
    /// The gauge (instrument) used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge_id: Option<String>,
    /// Who inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector: Option<String>,
    /// Lower specification limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_limit: Option<f64>,
    /// Nominal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal: Option<f64>,
    /// pass or fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Unit of the value and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Upper specification limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_limit: Option<f64>,
    /// Measured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Body of a `calibration` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// When it was calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_at: Option<String>,
    /// Certificate reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// What the instrument is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the next calibration is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// Instrument (gauge) id.
    pub instrument_id: String,
    /// Who calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_by: Option<String>,
    /// pass, fail, adjusted or limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Reference standard used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<String>,
}

/// Body of a `gap` record: evidence that could not be captured or kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// Start of the gap (RFC 3339).
    pub from: String,
    /// Why, in words an auditor understands.
    pub reason: String,
    /// The source (or `journal`, `agent`) the gap concerns.
    pub source: String,
    /// End of the gap (RFC 3339).
    pub to: String,
}

/// Body of an `agent_event` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    /// Event-specific details (old and new config hash, ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// start, stop, config_change, unclean_stop, clock_step, key_rotation, replay.
    pub event: String,
    /// A sentence describing the event.
    pub message: String,
}

/// Where one field's value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldProvenance {
    /// Address inside the peer (register, node id, topic + JSON pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Peer address (`10.1.4.30:502`, a broker URL, an endpoint URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// opcua, modbus, mqtt, rest, constant, agent.
    pub protocol: String,
    /// good, bad or uncertain.
    pub quality: String,
    /// The value as received, before scaling or decoding.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub raw: Value,
    /// When the gateway received it.
    pub received_at: String,
    /// Timestamp of the server that relayed the value (OPC UA), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timestamp: Option<String>,
    /// Source id from the config (`cell4_plc`), or `constant`, `enrichment`.
    pub source: String,
    /// Timestamp given by the source, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_timestamp: Option<String>,
    /// Status detail for a bad or uncertain value (exception, status code name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// What fired the rule that produced a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerProvenance {
    /// Source id.
    pub source: String,
    /// Source timestamp of the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_timestamp: Option<String>,
    /// Tag name, topic or endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Value at the trigger.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
}

/// Where a record came from as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Version of the agent.
    pub agent_version: String,
    /// SHA-256 of the effective configuration in force.
    pub config_sha256: String,
    /// Per-field provenance, keyed by the field's path in the record (`inspection.value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldProvenance>,
    /// The gateway that captured the record.
    pub gateway_id: String,
    /// The record rule that produced the record (none for agent-made records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What fired the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerProvenance>,
}

/// A normalized quality record (`quality-record/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRecord {
    /// Body of an agent_event record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_event: Option<AgentEvent>,
    /// Body of a calibration record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Gateway clock (UTC) at capture.
    pub captured_at: String,
    /// What an auditor should look at: `gauge_overdue`, `gauge_calibration_failed`,
    /// `gauge_calibration_unknown`, `result_disagrees_with_limits`, `incomplete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Body of a gap record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// UUIDv7: time-ordered; the idempotency key downstream.
    pub id: Uuid,
    /// Required fields that had no usable value (the record is kept, marked incomplete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// Body of an inspection record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<Inspection>,
    /// What the record is evidence of.
    pub kind: RecordKind,
    /// Where the record and each of its fields came from.
    pub provenance: Provenance,
    /// Always `quality-record/1`.
    pub schema: String,
    /// Which part and operation.
    #[serde(default)]
    pub subject: Subject,
    /// Body of a traveler record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traveler: Option<Traveler>,
}

/// What every record made on this gateway shares: identity and the config in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext {
    /// `agent.gateway_id`.
    pub gateway_id: String,
    /// SHA-256 (hex) of the effective configuration.
    pub config_sha256: String,
}

impl RecordContext {
    /// Provenance for a record the agent makes itself (no rule, no fields).
    pub fn provenance(&self) -> Provenance {
        Provenance {
            gateway_id: self.gateway_id.clone(),
            agent_version: crate::AGENT_VERSION.to_string(),
            config_sha256: self.config_sha256.clone(),
            rule: None,
            trigger: None,
            fields: BTreeMap::new(),
        }
    }
}

/// A new UUIDv7 record id (RFC 9562): 48-bit Unix milliseconds, a 12-bit counter that keeps ids made
/// in the same millisecond in order across the whole process (method 1 of §6.2), 62 random bits.
///
/// `Uuid::now_v7` reads the OS random source on every call (a system call, ~0.4 µs here); ids need
/// uniqueness and order, not secrecy, so the random part comes from a per-thread generator seeded
/// from the OS once.
pub fn new_record_id() -> Uuid {
    use std::sync::Mutex;
    static CLOCK: Mutex<(u64, u16)> = Mutex::new((0, 0));
    let now = crate::time::now_ms().max(0) as u64;
    let (ms, counter) = {
        let mut st = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
        if now > st.0 {
            // A random start in the lower half leaves room to count up within the millisecond.
            *st = (now, fastrand::u16(..0x800));
        } else if st.1 >= 0xFFF {
            *st = (st.0 + 1, 0); // counter exhausted: borrow the next millisecond
        } else {
            st.1 += 1;
        }
        *st
    };
    let random = fastrand::u64(..).to_be_bytes();
    let mut bytes = [0u8; 10];
    bytes[0] = (counter >> 8) as u8;
    bytes[1] = counter as u8;
    bytes[2..].copy_from_slice(&random);
    uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
}

impl QualityRecord {
    /// An empty record of `kind` captured now, with a fresh UUIDv7.
    pub fn new(ctx: &RecordContext, kind: RecordKind) -> Self {
        QualityRecord {
            schema: SCHEMA_ID.to_string(),
            id: new_record_id(),
            kind,
            captured_at: crate::time::now_rfc3339(),
            flags: Vec::new(),
            incomplete: Vec::new(),
            subject: Subject::default(),
            traveler: None,
            inspection: None,
            calibration: None,
            gap: None,
            agent_event: None,
            provenance: ctx.provenance(),
        }
    }

    /// A gap record: `source` produced no evidence from `from` to `to` because of `reason`.
    pub fn gap(
        ctx: &RecordContext,
        source: &str,
        from: String,
        to: String,
        reason: impl Into<String>,
    ) -> Self {
        let mut r = Self::new(ctx, RecordKind::Gap);
        r.gap = Some(Gap {
            source: source.to_string(),
            from,
            to,
            reason: reason.into(),
        });
        r
    }

    /// An agent_event record.
    pub fn agent_event(
        ctx: &RecordContext,
        event: &str,
        message: impl Into<String>,
        details: Value,
    ) -> Self {
        let mut r = Self::new(ctx, RecordKind::AgentEvent);
        r.agent_event = Some(AgentEvent {
            event: event.to_string(),
            message: message.into(),
            details,
        });
        r
    }

    /// The serial, lot or work order: what a QMS shows as the record's subject.
    pub fn subject_label(&self) -> Option<&str> {
        let s = &self.subject;
        s.serial
            .as_deref()
            .or(s.lot.as_deref())
            .or(s.work_order.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RecordContext {
        RecordContext {
            gateway_id: "gw1".into(),
            config_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn round_trips_through_json() {
        let mut r = QualityRecord::new(&ctx(), RecordKind::Inspection);
        r.subject.serial = Some("SN-1".into());
        r.inspection = Some(Inspection {
            characteristic: Some("OD-1".into()),
            value: Some(25.004),
            ..Default::default()
        });
        let text = serde_json::to_string(&r).expect("serialize");
        let back: QualityRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
        assert_eq!(r.subject_label(), Some("SN-1"));
    }

    #[test]
    fn ids_are_uuid_v7_strictly_ordered_across_threads() {
        let a = QualityRecord::new(&ctx(), RecordKind::Gap);
        assert_eq!(a.id.get_version_num(), 7);
        assert_eq!(a.id.get_variant(), uuid::Variant::RFC4122);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..20_000).map(|_| new_record_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let ids = t.join().expect("thread");
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "each thread sees increasing ids"
            );
            all.extend(ids);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no duplicates");
        let ms = |u: &Uuid| u.get_timestamp().map(|t| t.to_unix().0).unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        assert!(
            ms(&all[n - 1]).abs_diff(now) <= 2,
            "timestamp is the wall clock"
        );
    }
}
