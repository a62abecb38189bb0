//! The file sink at run time: append, fsync, rotate, and resume after the last complete line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::config::FileSinkConfig;
use crate::journal::JournalRow;
use crate::sinks::{SendError, SetAsideError, Tail};

/// Where the sink writes: the active file and its rotated siblings.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The active file (`out/records.jsonl`).
    pub active: PathBuf,
    dir: PathBuf,
    stem: String,
}

impl Layout {
    /// The layout of `active`.
    pub fn new(active: &Path) -> Layout {
        let dir = active
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let stem = active
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "records".into());
        Layout {
            active: active.to_path_buf(),
            dir,
            stem,
        }
    }

    fn rotated_name(&self, first_seq: i64) -> PathBuf {
        self.dir
            .join(format!("{}-{first_seq:020}.jsonl", self.stem))
    }

    /// Every file, oldest first: rotated files by their first seq, then the active file.
    pub fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let prefix = format!("{}-", self.stem);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.strip_prefix(&prefix)
                            .and_then(|r| r.strip_suffix(".jsonl"))
                            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
                    })
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        files.sort();
        if self.active.exists() {
            files.push(self.active.clone());
        }
        Ok(files)
    }
}

struct Inner {
    layout: Layout,
    max_file_bytes: u64,
    max_files: u32,
    file: Option<(File, u64)>,
    last_seq: Option<i64>,
}

/// Writes JSON Lines files.
pub struct FileSink {
    inner: Option<Inner>,
    target: String,
    delivered: Option<Tail>,
}

fn seq_of(line: &str) -> Option<i64> {
    tail_of(line).map(|t| t.seq)
}

fn tail_of(line: &str) -> Option<Tail> {
    let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
    Some(Tail {
        seq: v.get("seq")?.as_i64()?,
        hash: v
            .get("hash")
            .and_then(|h| h.as_str())
            .unwrap_or("")
            .to_string(),
    })
}

/// Drops a torn last line and returns the last complete one.
fn recover_tail(path: &Path) -> std::io::Result<Option<Tail>> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let complete = match text.rfind('\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete < text.len() {
        tracing::warn!(
            "file sink: dropping a torn last line of {} ({} bytes) left by a crash; it is written again",
            path.display(),
            text.len() - complete
        );
        f.set_len(complete as u64)?;
        f.sync_data()?;
    }
    Ok(text[..complete].lines().last().and_then(tail_of))
}

/// The last complete line in the newest file that has one, after dropping torn lines.
fn recover(layout: &Layout) -> std::io::Result<Option<Tail>> {
    for f in layout.files()?.iter().rev() {
        if let Some(tail) = recover_tail(f)? {
            return Ok(Some(tail));
        }
    }
    Ok(None)
}

impl FileSink {
    /// Opens the directory and finds where the previous run stopped.
    pub fn new(config: &FileSinkConfig) -> Result<FileSink, crate::runtime::BuildError> {
        let layout = Layout::new(&config.path);
        std::fs::create_dir_all(&layout.dir)
            .map_err(|e| format!("cannot create {}: {e}", layout.dir.display()))?;
        let tail =
            recover(&layout).map_err(|e| format!("cannot read {}: {e}", layout.dir.display()))?;
        Ok(FileSink {
            target: layout.active.display().to_string(),
            inner: Some(Inner {
                layout,
                max_file_bytes: config.max_file_bytes,
                max_files: config.max_files,
                file: None,
                last_seq: tail.as_ref().map(|t| t.seq),
            }),
            delivered: tail,
        })
    }

    /// The last line already in the files (unchecked: see [`Tail`]).
    pub fn delivered_tail(&self) -> Option<Tail> {
        self.delivered.clone()
    }

    /// Moves every file of the sink aside (`<name>.set-aside-<unix time>`), so that delivery starts
    /// again from the journal's cursor into new files; returns the new names. Used when the files
    /// do not match the journal.
    pub fn set_aside(&mut self) -> Result<Vec<PathBuf>, SetAsideError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(SetAsideError::Busy);
        };
        inner.file = None;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut moved = Vec::new();
        let files = inner.layout.files().map_err(|error| SetAsideError::Io {
            action: "list",
            path: inner.layout.dir.clone(),
            error,
        })?;
        for f in files {
            let mut name = f.clone().into_os_string();
            name.push(format!(".set-aside-{stamp}"));
            let to = PathBuf::from(name);
            std::fs::rename(&f, &to).map_err(|error| SetAsideError::Io {
                action: "move aside",
                path: f.clone(),
                error,
            })?;
            moved.push(to);
        }
        if let Ok(d) = File::open(&inner.layout.dir) {
            let _ = d.sync_all();
        }
        inner.last_seq = None;
        self.delivered = None;
        Ok(moved)
    }

    /// The active file.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// Appends `rows` and fsyncs.
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<(), SendError> {
        let Some(mut inner) = self.inner.take() else {
            return Err(SendError::Retry {
                reason: "file sink is busy".into(),
                retry_after: None,
            });
        };
        let rows = rows.to_vec();
        let (inner, result) = tokio::task::spawn_blocking(move || {
            let r = inner.write(&rows);
            (inner, r)
        })
        .await
        .map_err(|e| SendError::Retry {
            reason: e.to_string(),
            retry_after: None,
        })?;
        self.inner = Some(inner);
        result.map_err(|e| SendError::Retry {
            reason: format!("cannot write to {}: {e}", self.target),
            retry_after: None,
        })
    }
}

impl Inner {
    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.layout.active)?;
            let len = f.seek(SeekFrom::End(0))?;
            self.file = Some((f, len));
        }
        if self
            .file
            .as_ref()
            .is_some_and(|(_, len)| *len >= self.max_file_bytes)
        {
            self.rotate()?;
        }
        Ok(())
    }

    /// Renames the full active file to `<stem>-<its first seq>.jsonl` and starts a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some((f, _)) = self.file.take() {
            f.sync_all()?;
        }
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(File::open(&self.layout.active)?),
            &mut first,
        )?;
        let first_seq = seq_of(&first).unwrap_or(0);
        std::fs::rename(&self.layout.active, self.layout.rotated_name(first_seq))?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.layout.active)?;
        // Make the rename and the new file's directory entry durable.
        File::open(&self.layout.dir)?.sync_all()?;
        self.file = Some((f, 0));
        if self.max_files > 0 {
            let files = self.layout.files()?;
            let excess = files.len().saturating_sub(self.max_files as usize);
            for old in &files[..excess] {
                std::fs::remove_file(old)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, rows: &[JournalRow]) -> std::io::Result<()> {
        let result = self.write_synced(rows);
        if result.is_err() {
            // Start over from what is on disk: drop a torn line, forget unsynced progress.
            self.file = None;
            if let Ok(tail) = recover(&self.layout) {
                self.last_seq = tail.map(|t| t.seq);
            }
        }
        result
    }

    fn write_synced(&mut self, rows: &[JournalRow]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 200).sum());
        for row in rows {
            if self.last_seq.is_some_and(|s| row.seq <= s) {
                continue; // already in the files
            }
            self.open()?;
            buf.clear();
            buf.extend_from_slice(
                format!(
                    "{{\"seq\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"record\":",
                    row.seq, row.prev_hash, row.hash
                )
                .as_bytes(),
            );
            buf.extend_from_slice(row.body.as_bytes());
            buf.extend_from_slice(b"}\n");
            if let Some((f, len)) = &mut self.file {
                f.write_all(&buf)?;
                *len += buf.len() as u64;
            }
            self.last_seq = Some(row.seq);
        }
        if let Some((f, _)) = &self.file {
            f.sync_data()?;
        }
        Ok(())
    }
}
