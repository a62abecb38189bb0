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
use super::table::{Columns, Layout};
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
    /// Where the serial is in a file's name, for files that do not name it: `{serial}` stands for
    /// it and `*` for anything (`"{serial}_*.qif"` reads `SN-1042` from `SN-1042_OP30.qif`).
    #[serde(default)]
    pub serial_from_name: Option<String>,
    /// How the folder's tables (`*.csv`, Calypso's `*_chr.txt`) are written and which column is
    /// which; without it a table is refused with the reason.
    #[serde(default)]
    pub table: Option<TableConfig>,
}

/// Which kind of table a folder receives (it sets the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// CSV: `,` between cells; `columns` must name at least the characteristic and the value.
    Csv,
    /// Zeiss Calypso's characteristic table: tab-separated; columns `id`, `actual`, `nominal`,
    /// `uppertol`, `lowertol` unless `columns` says otherwise (an installation in another
    /// language, or more columns to map), and `unit` where the table has it.
    Calypso,
}

/// `[sources.<id>.folders.table]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `csv` or `calypso`.
    pub kind: TableKind,
    /// The cell separator (default `,` for csv, a tab for calypso).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Numbers are written with a decimal comma (`24,98`).
    #[serde(default)]
    pub decimal_comma: bool,
    /// Which column (by header name) holds which field.
    #[serde(default)]
    pub columns: Columns,
}

impl TableConfig {
    /// How the tables are read.
    pub fn layout(&self) -> Layout {
        let kind = match self.kind {
            TableKind::Csv => Layout {
                delimiter: ',',
                decimal_comma: false,
                columns: self.columns.clone(),
                if_present: Columns::default(),
            },
            TableKind::Calypso => Layout::calypso(&self.columns),
        };
        Layout {
            delimiter: self.delimiter.unwrap_or(kind.delimiter),
            decimal_comma: self.decimal_comma,
            ..kind
        }
    }
}

/// The serial `pattern` (see [`FolderConfig::serial_from_name`]) finds in `name`, if it matches:
/// `{serial}` takes the longest text that lets the rest match, `*` anything, the rest as written.
pub fn serial_from_name(pattern: &str, name: &str) -> Option<String> {
    let (before, after) = pattern.split_once("{serial}")?;
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    let name_b = name.as_bytes();
    for start in 0..=name_b.len() {
        if !glob(before.as_bytes(), &name_b[..start]) {
            continue;
        }
        for end in (start + 1..=name_b.len()).rev() {
            if glob(after.as_bytes(), &name_b[end..]) {
                return name.get(start..end).map(str::to_string);
            }
        }
    }
    None
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
    /// How long the hash of a file read is kept (days, default 30): the same content dropped again
    /// within it is skipped and counted; after it, read again (and its records still stored once,
    /// by their dedupe keys, while the journal holds them).
    #[serde(default = "default_remember_days")]
    pub remember_days: f64,
}

fn default_remember_days() -> f64 {
    30.0
}

impl MetrologySourceConfig {
    /// `remember_days` as a duration.
    pub fn remember(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.remember_days * 86_400.0)
            .unwrap_or(std::time::Duration::from_secs(30 * 86_400))
    }

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
        if !(self.remember_days > 0.0 && self.remember_days <= 36_500.0) {
            errors.push(ConfigError::new(
                format!("{at}.remember_days"),
                "must be more than 0 and at most 36500",
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
            if let Some(p) = &f.serial_from_name {
                if p.matches("{serial}").count() != 1 {
                    errors.push(
                        ConfigError::new(
                            format!("{here}.serial_from_name"),
                            format!("{p:?} must hold {{serial}} once"),
                        )
                        .hint("e.g. \"{serial}_*.qif\" for SN-1042_OP30.qif"),
                    );
                }
            }
            if let Some(t) = &f.table {
                let layout = t.layout();
                if layout.columns.characteristic.is_none() || layout.columns.value.is_none() {
                    errors.push(
                        ConfigError::new(
                            format!("{here}.table.columns"),
                            "must name the characteristic's and the value's columns",
                        )
                        .hint("e.g. columns = { characteristic = \"Feature\", value = \"Actual\", upper_limit = \"USL\", lower_limit = \"LSL\" }"),
                    );
                }
                if layout.delimiter == '"' || layout.delimiter == '\n' {
                    errors.push(ConfigError::new(
                        format!("{here}.table.delimiter"),
                        format!("{:?} cannot separate cells", layout.delimiter),
                    ));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serial_is_read_from_a_file_name_by_its_pattern() {
        let p = "{serial}_*.qif";
        assert_eq!(
            serial_from_name(p, "SN-1042_OP30.qif").as_deref(),
            Some("SN-1042")
        );
        assert_eq!(serial_from_name(p, "SN_1_OP.qif").as_deref(), Some("SN_1"));
        assert_eq!(serial_from_name(p, "SN-1042.qif"), None, "no underscore");
        assert_eq!(
            serial_from_name("CMM1-*_{serial}.dfq", "CMM1-2026-12-03_P77.dfq").as_deref(),
            Some("P77")
        );
        // Ambiguous: the serial takes the longest text that lets the rest match.
        assert_eq!(
            serial_from_name("CMM1-*-{serial}.dfq", "CMM1-2026-12-03-P77.dfq").as_deref(),
            Some("12-03-P77")
        );
        assert_eq!(
            serial_from_name("{serial}.qif", ".qif"),
            None,
            "never empty"
        );
        assert_eq!(serial_from_name("no placeholder", "x"), None);
    }

    #[test]
    fn a_pattern_without_its_placeholder_is_named() {
        let cfg: MetrologySourceConfig =
            toml::from_str("[[folders]]\npath = \"spool\"\nserial_from_name = \"*.qif\"\n")
                .expect("parse");
        let mut errors = Vec::new();
        cfg.check("sources.cmm", &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "sources.cmm.folders[0].serial_from_name");
    }
}
