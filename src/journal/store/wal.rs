//! The WAL: checkpoints beside the writer (see `journal::writer`), and the backstop that bounds it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::{classify_open, Store, Synchronous};
use crate::journal::{JournalError, FILE_NAME};

/// A second connection that folds the WAL into the database (`PASSIVE` checkpoints) beside the
/// writer, so that the copying and its two fsyncs do not stall commits ([`Store::hand_off_checkpoints`]).
pub struct Checkpointer {
    conn: Connection,
    /// Held while checkpointing: a commit past the backstop waits for it.
    turn: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// Opens the journal in `data_dir` for checkpointing; `sync` as the writer's connection (in
    /// `NORMAL` and `FULL`, a checkpoint fsyncs the WAL before copying and the database after).
    pub fn open(data_dir: &Path, sync: Synchronous) -> Result<Checkpointer, JournalError> {
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify_open(&path, e))?;
        conn.pragma_update(None, "synchronous", sync.pragma())?;
        Ok(Checkpointer {
            conn,
            turn: Arc::new(Mutex::new(())),
        })
    }

    /// What a commit past the backstop waits on ([`Store::hand_off_checkpoints`]).
    pub fn turn(&self) -> Arc<Mutex<()>> {
        self.turn.clone()
    }

    /// Copies what it can of the WAL into the database without waiting for readers or the writer
    /// (only for a backstop checkpoint in progress, through `turn`); the next commit starts the WAL
    /// over once all of it is copied.
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        let _turn = self.turn.lock();
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

impl Store {
    /// Hands checkpointing to [`Checkpointer`]: SQLite's automatic checkpoint (which runs in the
    /// committing thread) is replaced by a hook that adds the WAL frames each commit wrote to
    /// `written`. Only past `backstop` frames in the WAL (while commits keep coming, a `PASSIVE`
    /// checkpoint never catches up with all of it) does a commit checkpoint in place: it waits for
    /// the checkpointer's run in progress (`turn`; SQLite would answer busy without waiting), then
    /// copies everything (`RESTART`), so the WAL is written over from its start.
    pub fn hand_off_checkpoints(
        &mut self,
        written: Arc<AtomicU64>,
        backstop: u64,
        turn: Arc<Mutex<()>>,
    ) -> Result<(), JournalError> {
        let mut last = 0u64;
        self.conn.wal_hook(Some(
            move |wal: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
                let frames = u64::try_from(frames).unwrap_or(0);
                // Fewer frames than after the last commit: the WAL started over after the
                // checkpointer's run (a restart that a larger commit hides is undercounted: it
                // only delays the next checkpoint request).
                let new = if frames >= last {
                    frames - last
                } else {
                    frames
                };
                last = frames;
                written.fetch_add(new, Ordering::Relaxed);
                if frames >= backstop {
                    // RESTART waits (busy timeout) for readers, not for another checkpoint; the WAL
                    // file is kept and written over from its start (no truncation: an fsync into
                    // blocks already allocated stays cheap).
                    // An error here would be reported as the commit's although the commit is done:
                    // it is ignored, as SQLite's own automatic checkpoint ignores it.
                    let _turn = turn.lock();
                    if wal
                        .checkpoint_v2(rusqlite::wal::CheckpointMode::RESTART)
                        .is_ok()
                    {
                        // The next commit writes from the WAL's start: all its frames are new.
                        last = 0;
                    }
                }
                Ok(())
            },
        ))?;
        Ok(())
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: folds the WAL into the database at a clean shutdown.
    pub fn checkpoint_wal(&self) -> Result<(), JournalError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
