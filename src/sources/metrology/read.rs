//! Reading one result file into measurements, in chunks: runs on a blocking thread and hands each
//! chunk to the source, which journals it before the next is read (memory stays at one chunk,
//! whatever the file's size).
//!
//! A file is recognised by its name: `.qif` (QIF 3.0), `.dfq` (AQDEF), `.dfx` (AQDEF values,
//! read after the `.dfd` of the same name, which must be beside it), `.csv` and `*_chr.txt`
//! (tables, by the folder's `table` settings). Measurements already
//! journaled (`skip`, after a restart in the middle of the file) are read again but not handed on.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::aqdef::{Aqdef, AqdefError, Encoding};
use super::measured::{instant, Measured};
use super::qif::{Index, Plans, QifError};
use super::table::{self, Layout, TableError};
use crate::records::observation::{Measurement, Stated};

/// Measurements per chunk (one journal transaction each).
pub const CHUNK: usize = 500;

/// A result file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// QIF 3.0 Results.
    Qif,
    /// Q-DAS AQDEF: `.dfq`, or a `.dfx` with its `.dfd`.
    Aqdef,
    /// A CSV table (`.csv`), read by the folder's `table` settings.
    Csv,
    /// A Zeiss Calypso characteristic table (`*_chr.txt`), read by the folder's `table` settings.
    Calypso,
}

impl Format {
    /// The format of `path` by its extension, if it is a result file the source reads (a `.dfd`
    /// is read with its `.dfx`, not alone).
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with("_chr.txt") {
            return Some(Format::Calypso);
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "qif" => Some(Format::Qif),
            "dfq" | "dfx" => Some(Format::Aqdef),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The name in provenance (`protocol`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Qif => "qif",
            Format::Aqdef => "aqdef",
            Format::Csv => "csv",
            Format::Calypso => "calypso",
        }
    }
}

/// Whether the folder scan takes `path`.
pub fn accept(path: &Path) -> bool {
    Format::of(path).is_some()
}

/// The files one result is read from: the file, and for a `.dfx` its `.dfd` first.
pub fn parts(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    let is_dfx = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("dfx"));
    if !is_dfx {
        return Ok(vec![path.to_path_buf()]);
    }
    for ext in ["dfd", "DFD"] {
        let dfd = path.with_extension(ext);
        if dfd.is_file() {
            return Ok(vec![dfd, path.to_path_buf()]);
        }
    }
    Err(Failure::Bad(format!(
        "{} holds values only, and {} with its characteristics is not beside it",
        name(path),
        name(&path.with_extension("dfd"))
    )))
}

/// Why a file was not read to its end.
#[derive(Debug)]
pub enum Failure {
    /// The file is not a readable result file: it goes to `failed/`.
    Bad(String),
    /// It could not be read now (gone, the share away): tried again at the next scan.
    Io(std::io::Error),
    /// The source stops.
    Stopped,
}

impl From<QifError> for Failure {
    fn from(e: QifError) -> Self {
        match e {
            QifError::Io(e) => Failure::Io(e),
            e => Failure::Bad(e.to_string()),
        }
    }
}

impl From<TableError> for Failure {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Io(e) => Failure::Io(e),
            e => Failure::Bad(e.to_string()),
        }
    }
}

impl From<AqdefError> for Failure {
    fn from(e: AqdefError) -> Self {
        match e {
            AqdefError::Io(e) => Failure::Io(e),
            e => Failure::Bad(e.to_string()),
        }
    }
}

/// What a file read needs besides the file.
#[derive(Debug, Clone)]
pub struct Job {
    /// The files (see [`parts`]).
    pub parts: Vec<PathBuf>,
    /// Its format.
    pub format: Format,
    /// AQDEF text encoding.
    pub encoding: Encoding,
    /// Folders where referenced QIF plans may be.
    pub plan_dirs: Vec<PathBuf>,
    /// Offset of times written without one.
    pub offset: Option<time::UtcOffset>,
    /// Measurements already journaled.
    pub skip: usize,
    /// The serial the file's name gives (`serial_from_name`) and where it says it.
    pub serial_from_name: Option<Stated>,
    /// How the folder's tables are written, if it has `table` settings.
    pub table: Option<Layout>,
}

/// Reads the file, sending chunks of at most [`CHUNK`] measurements; returns how many the file
/// holds.
pub fn read(job: &Job, tx: &mpsc::Sender<Vec<Measurement>>) -> Result<usize, Failure> {
    let mut n = 0usize;
    let mut chunk = Vec::new();
    let mut emit = |m: Measured| -> Result<(), Failure> {
        n += 1;
        if n <= job.skip {
            return Ok(());
        }
        let mut m = measurement(m, job.offset);
        if let Some(serial) = &job.serial_from_name {
            if !m.fields.iter().any(|(p, _)| *p == "subject.serial") {
                m.fields.push(("subject.serial", serial.clone()));
            }
        }
        chunk.push(m);
        if chunk.len() >= CHUNK {
            tx.blocking_send(std::mem::take(&mut chunk))
                .map_err(|_| Failure::Stopped)?;
        }
        Ok(())
    };
    match job.format {
        Format::Qif => {
            let path = &job.parts[0];
            let index = Index::read(BufReader::new(File::open(path).map_err(Failure::Io)?))?;
            let plans = plans(&index, &job.plan_dirs);
            let input = BufReader::new(File::open(path).map_err(Failure::Io)?);
            index.measurements(input, &plans, &mut emit)?;
        }
        Format::Aqdef => {
            // A dry pass first: a file with a bad line is refused before any of it is journaled.
            aqdef(job, &mut |_| Ok::<(), Failure>(()))?;
            aqdef(job, &mut emit)?;
        }
        Format::Csv | Format::Calypso => {
            let path = &job.parts[0];
            let Some(layout) = &job.table else {
                return Err(Failure::Bad(format!(
                    "{} is a table, and its folder has no `table` settings saying which column is which; add [sources.<id>.folders.table] (kind, columns)",
                    name(path)
                )));
            };
            let open = || File::open(path).map(BufReader::new).map_err(Failure::Io);
            // A dry pass first, as for AQDEF.
            table::read(open()?, &name(path), layout, &mut |_| Ok::<(), Failure>(()))?;
            table::read(open()?, &name(path), layout, &mut emit)?;
        }
    }
    if !chunk.is_empty() {
        tx.blocking_send(chunk).map_err(|_| Failure::Stopped)?;
    }
    Ok(n)
}

fn aqdef(job: &Job, emit: &mut impl FnMut(Measured) -> Result<(), Failure>) -> Result<(), Failure> {
    let mut reader = Aqdef::new(job.encoding);
    for part in &job.parts {
        let input = BufReader::new(File::open(part).map_err(Failure::Io)?);
        reader.read(input, &name(part), emit)?;
    }
    reader.finish(emit)?;
    Ok(())
}

/// The plans `index` references, found by QPId among the `.qif` files of `dirs`.
fn plans(index: &Index, dirs: &[PathBuf]) -> Plans {
    let mut plans = Plans::new();
    let wanted = index.external_documents();
    if wanted.is_empty() {
        return plans;
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if Format::of(&path) != Some(Format::Qif) {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // A file that is not a readable plan is simply not the plan.
            let Ok(plan) = Index::read(BufReader::new(file)) else {
                continue;
            };
            if let Some(q) = plan.qpid().filter(|q| wanted.iter().any(|(w, _)| w == q)) {
                plans.insert(q.to_string(), plan);
            }
            if plans.len() == wanted.len() {
                return plans;
            }
        }
    }
    plans
}

/// The file's name as text (its path if it has none), as places and state name it.
pub(super) fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A parser's measurement as the records pipeline takes it: each field under its record path.
pub fn measurement(m: Measured, offset: Option<time::UtcOffset>) -> Measurement {
    let mut fields = Vec::with_capacity(12);
    let mut text = |path: &'static str, v: Option<super::Located<String>>| {
        if let Some(v) = v {
            fields.push((
                path,
                Stated {
                    value: serde_json::Value::String(v.value),
                    address: v.at,
                    raw: v.raw,
                },
            ));
        }
    };
    text("subject.serial", m.serial);
    text("subject.part_number", m.part_number);
    text("inspection.characteristic", m.characteristic);
    text("inspection.unit", m.unit);
    text("inspection.result", m.status);
    text("inspection.gauge_id", m.device);
    text("inspection.inspector", m.operator);
    for (path, v) in [
        ("inspection.value", m.value),
        ("inspection.nominal", m.nominal),
        ("inspection.lower_limit", m.lower_limit),
        ("inspection.upper_limit", m.upper_limit),
    ] {
        if let Some(v) = v {
            fields.push((
                path,
                Stated {
                    value: serde_json::Number::from_f64(v.value)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number),
                    address: v.at,
                    raw: v.raw,
                },
            ));
        }
    }
    Measurement {
        at: m.at,
        fields,
        measured: m.measured_at.map(|t| {
            let ms = instant(&t.value, offset);
            (t.raw, ms)
        }),
        other: m.other.into_iter().map(|(k, v)| (k, v.raw)).collect(),
        incomplete: m.incomplete,
    }
}
