//! HTTP sink: POSTs batches of records to a QMS as CloudEvents (or a plain JSON array).
//!
//! - `config.rs`: `[sinks.<id>] type = "http"` options and their validation.
//! - `sink.rs`: the request (body, headers) and the retry policy below; the client (TLS, auth,
//!   OAuth 2.0) is `crate::transport::http`, shared with the REST source.
//!
//! # Retry policy (how an answer is classified)
//!
//! | answer | meaning | what the driver does |
//! |---|---|---|
//! | 2xx | accepted | cursor moves past the batch |
//! | 408, 425, 429, 5xx | try later | wait `Retry-After` (429/503) or back off, send again |
//! | 401, 403, 404, 405, 407, 409 | the sink is misconfigured or busy, not the records | back off, send again, log the hint |
//! | 413 | too large | the batch is sent record by record; a single record is dead-lettered |
//! | other 4xx (400, 422, …) | the records are refused for good | dead letters, sink moves on |
//! | connect error, timeout, TLS error | try later | back off, send again |

pub mod config;
pub mod sink;

pub use config::{HttpSinkConfig, WireFormat};
pub use sink::HttpSink;
