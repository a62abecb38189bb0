//! `[sources.<id>] type = "metrology"`: folders where measuring machines write result files.
//!
//! ```toml
//! [sources.cmm1]
//! type = "metrology"
//! station = "CMM-1"            # subject.station: the traveler at the station gives order and serial
//!
//! [[sources.cmm1.folders]]
//! path = "spool"               # relative to the working directory
//! completion = "stable"        # or "rename", "marker"
//! settle_ms = 2000
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::UtcOffset;

use super::aqdef::Encoding;
use super::folder::Completion;
use crate::config::ConfigError;

/// What happens to a file once its records are journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// Moved to `processed/` in the folder.
    #[default]
    Move,
    /// Left where it is (its SHA-256 in the journal keeps it from being read again).
    Leave,
}

/// One watched folder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The folder (a local directory or a mounted share).
    pub path: PathBuf,
    /// How a file is known to be complete: `stable` (size and time unchanged for `settle_ms`),
    /// `rename` (files are renamed in when complete) or `marker` (`<name><marker_suffix>` appears).
    #[serde(default)]
    pub completion: Completion,
    /// For `stable`: how long size and modification time must stay unchanged.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// For `marker`: the marker's suffix.
    #[serde(default = "default_marker")]
    pub marker_suffix: String,
    /// After the records are journaled: `move` to `processed/` or `leave`.
    #[serde(default)]
    pub after: After,
    /// Text encoding of AQDEF files: `detect` (UTF-8, else Windows-1252, line by line), `utf-8`,
    /// `windows-1252`.
    #[serde(default)]
    pub encoding: Encoding,
    /// A folder of QIF plan files that results files reference by QPId (besides this folder and
    /// its `processed/`).
    #[serde(default)]
    pub plans: Option<PathBuf>,
}

fn default_settle_ms() -> u64 {
    2000
}
fn default_marker() -> String {
    ".done".into()
}
fn default_poll_ms() -> u64 {
    1000
}

/// Options of a metrology source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetrologySourceConfig {
    /// The watched folders.
    pub folders: Vec<FolderConfig>,
    /// How often the folders are looked at.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// The station (`subject.station`) the machine stands at: records without a serial take the
    /// traveler's there.
    #[serde(default)]
    pub station: Option<String>,
    /// The offset of times the files write without one (`"+01:00"`); without it such times are
    /// kept as written only.
    #[serde(default)]
    pub utc_offset: Option<String>,
}

impl MetrologySourceConfig {
    /// `utc_offset` read (checked by [`Self::check`]).
    pub fn offset(&self) -> Option<UtcOffset> {
        self.utc_offset.as_deref().and_then(parse_offset)
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for f in &mut self.folders {
            if f.path.is_relative() {
                f.path = base.join(&f.path);
            }
            if let Some(p) = f.plans.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
    }

    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.folders.is_empty() {
            errors.push(
                ConfigError::new(format!("{at}.folders"), "no folders")
                    .hint("add [[sources.<id>.folders]] with path = \"spool\""),
            );
        }
        if !(100..=3_600_000).contains(&self.poll_ms) {
            errors.push(ConfigError::new(
                format!("{at}.poll_ms"),
                "must be from 100 to 3600000",
            ));
        }
        if let Some(o) = &self.utc_offset {
            if parse_offset(o).is_none() {
                errors.push(
                    ConfigError::new(
                        format!("{at}.utc_offset"),
                        format!("{o:?} is not an offset"),
                    )
                    .hint("e.g. \"+01:00\", \"-05:00\" or \"Z\""),
                );
            }
        }
        for (i, f) in self.folders.iter().enumerate() {
            let here = format!("{at}.folders[{i}]");
            if f.path.as_os_str().is_empty() {
                errors.push(ConfigError::new(format!("{here}.path"), "is empty"));
            }
            if f.settle_ms > 3_600_000 {
                errors.push(ConfigError::new(
                    format!("{here}.settle_ms"),
                    "must be at most 3600000 (one hour)",
                ));
            }
            if f.completion == Completion::Marker && f.marker_suffix.trim().is_empty() {
                errors.push(
                    ConfigError::new(format!("{here}.marker_suffix"), "is empty")
                        .hint("e.g. \".done\""),
                );
            }
            for (j, g) in self.folders.iter().enumerate().skip(i + 1) {
                if g.path == f.path {
                    errors.push(ConfigError::new(
                        format!("{at}.folders[{j}].path"),
                        format!("{} is watched twice", g.path.display()),
                    ));
                }
            }
        }
    }
}

/// `Z`, `+HH:MM` or `-HH:MM`.
fn parse_offset(text: &str) -> Option<UtcOffset> {
    if text == "Z" {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}
