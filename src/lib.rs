//! shopfloor-agent: quality evidence from the shop floor, journaled and delivered with provenance.
//!
//! The data path shows in the module tree:
//!
//! ```text
//! sources ──────▶ records ──▶ journal ──▶ sinks
//! (opcua, modbus,  (model,     (SQLite,     (http, mqtt, file)
//!  mqtt, rest)      rules)      hash chain)
//! ```
//!
//! - [`config`]: TOML loading, drop-ins, secret references and secret fields by type, validation
//!   that collects every problem.
//! - [`sources`]: one folder per source type; [`sources::SOURCE_TYPES`] lists those built in.
//! - [`records`]: the quality record (`quality-record/1`), its provenance, the rules that make it.
//! - [`journal`]: the durable, append-only, hash-chained SQLite journal (group commit); its module
//!   doc lists the invariants and where each is enforced.
//! - [`sinks`]: the delivery driver (cursor, batches, retry, dead letters) and one folder per sink
//!   type; [`sinks::SINK_TYPES`] lists those built in.
//! - [`audit`]: `verify`, `status`, `trace`, `export`, reconciliation: they read the journal.
//! - [`metrics`]: `/metrics` and `/healthz`.
//! - [`transport`]: what sources and sinks share to reach peers (the HTTP client, the MQTT link).
//! - [`runtime`]: wiring, signals, the data-directory lock, retry policy and logging.

pub mod audit;
pub mod cli;
pub mod config;
pub mod journal;
pub mod metrics;
pub mod records;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod time;
pub mod transport;

/// The agent's version, as recorded in every record's provenance.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
