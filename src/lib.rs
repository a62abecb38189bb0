//! shopfloor-agent: quality evidence from the shop floor, journaled and delivered with provenance.
//!
//! The data path shows in the module tree:
//!
//! ```text
//! sources ──▶ records ──▶ journal ──▶ sinks
//!             (model)     (SQLite,     (http, file)
//!                          hash chain)
//! ```
//!
//! - [`config`]: TOML loading, drop-ins, secrets, validation that collects every problem.
//! - [`records`]: the quality record (`quality-record/1`) and its provenance.
//! - [`journal`]: the durable, append-only, hash-chained SQLite journal (group commit).
//! - [`sinks`]: the delivery driver (cursor, batches, retry, dead letters) and the sinks.
//! - [`audit`]: `verify` and `status`, which read the journal.
//! - [`runtime`]: wiring, signals, retry policy and logging.

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

/// The agent's version, as recorded in every record's provenance.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
