//! Metrology result files: what coordinate measuring machines, vision systems and SPC stations
//! write after measuring a part, read into one [`Measured`] per characteristic.
//!
//! | file | what |
//! |---|---|
//! | `measured.rs` | [`Measured`]: what every format parser gives, each field with its place in the file |
//! | `qif.rs` | QIF 3.0 Results (ISO 23952): two streaming passes, plans in other files joined by QPId |
//! | `folder.rs` | a watched folder: which files are complete (stable, renamed in, marked), `processed/`, `failed/` |
//! | `aqdef.rs` | Q-DAS AQDEF: K-lines and compact value lines, `.dfq` or `.dfd` + `.dfx`, Windows-1252 |
//! | `table.rs` | CSV with a column mapping, Zeiss Calypso `*_chr.txt` tables |
//! | `lines.rs` | bounded line reading for AQDEF and tables (a line is at most 64 KiB) |
//! | `config.rs` | `[sources.<id>] type = "metrology"`: folders, completion, after, encoding, plans |
//! | `read.rs` | one file into chunks of measurements, on a blocking thread |
//! | `source.rs` | the scan loop, exactly once by SHA-256, `processed/` and `failed/`, status per folder |
//! | `watch.rs` | inotify wake-ups (polling stays, for network mounts) |
//!
//! Each format parser is pure (bytes in, measurements out: no file system, no clock, no
//! journal); `folder.rs`, `read.rs` and `source.rs` are the file-system and journal side. The
//! records are made without a rule, in [`crate::records::documents`].

pub mod aqdef;
pub mod config;
pub mod folder;
pub mod lines;
pub mod measured;
pub mod qif;
pub mod read;
pub mod source;
pub mod table;
pub mod watch;

pub use config::MetrologySourceConfig;
pub use measured::{Located, Measured};
pub use source::MetrologySource;

use std::path::Path;

use crate::config::ConfigError;
use crate::runtime::{BoxFuture, BuildError};
use crate::sources::{BuildContext, Source, SourceRuntime, SourceSpec};

impl SourceSpec for MetrologySourceConfig {
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        MetrologySourceConfig::resolve_paths(self, base)
    }

    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(MetrologySource::new(
            id, self, cx.journal, cx.state,
        )))
    }
}

impl Source for MetrologySource {
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()> {
        Box::pin((*self).run(rt))
    }
}
