//! From observations to quality records: the record model (schema `quality-record/1`), the tag
//! table, record rules, enrichment, and the pipeline that journals what the rules make.
//!
//! - [`observation`]: what sources emit (tag samples, messages, source up/down).
//! - [`tags`]: the latest value and origin of every tag of every source.
//! - [`rules`]: `[[records]]` configuration, triggers and field mappings.
//! - [`enrich`]: tolerance result, gauge calibration status, traveler context.
//! - [`documents`]: inspection records from result files (no rule: the file names the fields).
//! - [`engine`]: observations in, records out (pure).
//! - [`pipeline`]: the task that runs the engine and journals its records, acknowledging sources after
//!   commit.

pub mod documents;
pub mod engine;
pub mod enrich;
pub mod model;
pub mod observation;
pub mod pipeline;
pub mod rules;
pub mod tags;
pub mod targets;

pub use model::{
    AgentEvent, Calibration, FieldProvenance, Gap, Inspection, Provenance, QualityRecord,
    RecordContext, RecordKind, Subject, Traveler, TriggerProvenance, SCHEMA_ID,
};
