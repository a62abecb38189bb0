//! Quality records: the normalized, provenance-carrying unit of evidence (schema `quality-record/1`).
//!
//! Later stages (observations, the tag table, record rules and enrichment) live beside the model here;
//! the journal stores records and the sinks forward them, neither looks inside.

pub mod model;

pub use model::{
    AgentEvent, Calibration, FieldProvenance, Gap, Inspection, Provenance, QualityRecord,
    RecordContext, RecordKind, Subject, Traveler, TriggerProvenance, SCHEMA_ID,
};
