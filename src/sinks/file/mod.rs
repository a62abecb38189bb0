//! File sink: records as JSON Lines, rotated by size; for air-gapped plants, audits and the demo.
//!
//! Each line is `{"seq":…,"prev_hash":…,"hash":…,"record":{…}}`, so a file carries its own chain.
//! The sink appends to the active file (`path`, e.g. `out/records.jsonl`); a full file is renamed to
//! `records-<its first seq, 20 digits>.jsonl` beside it. Writes are fsynced before the cursor moves. At
//! start the sink reads the newest file's last complete line (dropping a torn one) and continues after
//! it, so a crash between write and acknowledgement neither loses nor duplicates a line.

pub mod config;
pub mod sink;

pub use config::FileSinkConfig;
pub use sink::FileSink;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};
use crate::sinks::driver::DeliveryOptions;
use crate::sinks::{Receipts, SendError, Sink, SinkContext, SinkSpec, Tail};

impl SinkSpec for FileSinkConfig {
    fn validate(&self, at: &str, opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        self.check(at, opts, errors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        FileSinkConfig::resolve_paths(self, base)
    }

    fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions {
            batch_max_records: self.batch_max_records,
            batch_max_bytes: usize::MAX,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }

    fn build(&self, _id: &str, _cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(FileSink::new(self)?))
    }
}

impl Sink for FileSink {
    fn send<'a>(
        &'a mut self,
        rows: &'a [JournalRow],
    ) -> BoxFuture<'a, Result<Receipts, SendError>> {
        Box::pin(async move { FileSink::send(self, rows).await.map(|()| Vec::new()) })
    }

    fn target(&self) -> String {
        FileSink::target(self)
    }

    fn delivered_tail(&self) -> Option<Tail> {
        FileSink::delivered_tail(self)
    }

    fn set_aside(&mut self) -> Result<Vec<PathBuf>, crate::sinks::SetAsideError> {
        FileSink::set_aside(self)
    }
}
