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

use std::path::Path;
use std::time::Duration;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};
use crate::sinks::driver::DeliveryOptions;
use crate::sinks::{Receipts, SendError, Sink, SinkContext, SinkSpec};

impl SinkSpec for HttpSinkConfig {
    fn validate(&self, at: &str, opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        self.check(at, opts, errors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        HttpSinkConfig::resolve_paths(self, base)
    }

    fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions {
            batch_max_records: self.batch_max_records,
            batch_max_bytes: self.batch_max_bytes,
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
        }
    }

    fn build(&self, id: &str, cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(HttpSink::new(id, self, cx)?))
    }
}

impl Sink for HttpSink {
    fn send<'a>(
        &'a mut self,
        rows: &'a [JournalRow],
    ) -> BoxFuture<'a, Result<Receipts, SendError>> {
        Box::pin(HttpSink::send(self, rows))
    }

    fn target(&self) -> String {
        crate::config::redact::url_text(&HttpSink::target(self)).into_owned()
    }
}
