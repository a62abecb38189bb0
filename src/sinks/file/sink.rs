//! The file sink at run time: append, fsync, rotate, and resume after the last complete line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::config::FileSinkConfig;
use crate::journal::JournalRow;
use crate::sinks::SendError;

struct Inner {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: u32,
    file: Option<(File, u64)>,
    last_seq: Option<i64>,
}

/// Writes JSON Lines files.
pub struct FileSink {
    inner: Option<Inner>,
    target: String,
    delivered: Option<i64>,
}

fn file_name(first_seq: i64) -> String {
    format!("records-{first_seq:020}.jsonl")
}

/// The sink's files, oldest first.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("records-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Drops a torn last line and returns the seq of the last complete one.
fn recover_tail(path: &Path) -> std::io::Result<Option<i64>> {
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
    let last_line = text[..complete].lines().last();
    Ok(last_line.and_then(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v.get("seq").and_then(|s| s.as_i64()))
    }))
}

/// The seq of the last complete line in the newest file that has one, after dropping torn lines.
fn recover(dir: &Path) -> std::io::Result<Option<i64>> {
    for f in list_files(dir)?.iter().rev() {
        if let Some(seq) = recover_tail(f)? {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

impl FileSink {
    /// Opens the directory and finds where the previous run stopped.
    pub fn new(config: &FileSinkConfig) -> Result<FileSink, String> {
        let dir = config.path.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let last_seq = recover(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        Ok(FileSink {
            target: dir.display().to_string(),
            inner: Some(Inner {
                dir,
                max_file_bytes: config.max_file_bytes,
                max_files: config.max_files,
                file: None,
                last_seq,
            }),
            delivered: last_seq,
        })
    }

    /// The last seq already in the files.
    pub fn delivered_seq(&self) -> Option<i64> {
        self.delivered
    }

    /// The directory.
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
        self.delivered = inner.last_seq;
        self.inner = Some(inner);
        result.map_err(|e| SendError::Retry {
            reason: format!("cannot write to {}: {e}", self.target),
            retry_after: None,
        })
    }
}

impl Inner {
    fn open_for(&mut self, first_seq: i64) -> std::io::Result<()> {
        if self.file.is_none() {
            let existing = list_files(&self.dir)?.pop();
            let path = match existing {
                Some(p) => p,
                None => self.dir.join(file_name(first_seq)),
            };
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            let len = f.seek(SeekFrom::End(0))?;
            self.file = Some((f, len));
        }
        if let Some((_, len)) = &self.file {
            if *len >= self.max_file_bytes {
                self.rotate(first_seq)?;
            }
        }
        Ok(())
    }

    fn rotate(&mut self, first_seq: i64) -> std::io::Result<()> {
        if let Some((f, _)) = self.file.take() {
            f.sync_all()?;
        }
        let path = self.dir.join(file_name(first_seq));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        // Make the new file's directory entry durable too.
        File::open(&self.dir)?.sync_all()?;
        self.file = Some((f, 0));
        if self.max_files > 0 {
            let files = list_files(&self.dir)?;
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
            if let Ok(seq) = recover(&self.dir) {
                self.last_seq = seq;
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
            self.open_for(row.seq)?;
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
