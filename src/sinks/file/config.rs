//! `[sinks.<id>] type = "file"`: where to write JSON Lines and when to rotate.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, LoadOptions};

/// Options of the file sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The active JSON Lines file, e.g. `out/records.jsonl` (its directory is created if missing);
    /// full files are renamed `records-<first seq>.jsonl` beside it. Relative paths are taken from
    /// the directory the agent is started in.
    pub path: PathBuf,
    /// Rotate when the active file reaches this size.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Keep at most this many files (the active one included), deleting the oldest (0: keep all).
    #[serde(default)]
    pub max_files: u32,
    /// Most records written per fsync.
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
}

fn default_max_file_bytes() -> u64 {
    64 << 20
}
fn default_batch() -> usize {
    1000
}

impl FileSinkConfig {
    /// A config writing to `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            path: path.into(),
            max_file_bytes: default_max_file_bytes(),
            max_files: 0,
            batch_max_records: default_batch(),
        }
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if self.path.is_relative() {
            self.path = base.join(&self.path);
        }
    }

    pub(crate) fn check(&self, at: &str, _opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        if self.max_file_bytes < 4096 {
            errors.push(
                ConfigError::new(
                    format!("{at}.max_file_bytes"),
                    format!("{} is below the minimum of 4096", self.max_file_bytes),
                )
                .hint("e.g. 67108864 (64 MiB)"),
            );
        }
        if self.batch_max_records == 0 {
            errors.push(ConfigError::new(
                format!("{at}.batch_max_records"),
                "must be at least 1",
            ));
        }
    }
}
