//! Synchronous access to the journal database: the writer thread's operations and the readers' queries.

mod delivery;
mod queries;
mod records;
mod retention;
mod sources;
mod wal;

pub use delivery::{DeadLetter, Request, SinkCursor};
pub use queries::{Bodies, DeliveryCount, Grouping, SubjectField};
pub use wal::Checkpointer;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{schema, JournalError, FILE_NAME};

/// One row of the `records` table, as sinks and audit tools read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    /// Sequence number.
    pub seq: i64,
    /// Record id (UUIDv7).
    pub id: String,
    /// Record kind.
    pub kind: String,
    /// Capture time.
    pub captured_at: String,
    /// Canonical JSON of the record.
    pub body: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// This row's chain hash.
    pub hash: String,
    /// Optional signature.
    pub signature: Option<String>,
}

/// How much fsync a commit costs (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// WAL fsynced at every commit: survives power loss. The default.
    Full,
    /// Also fsync the directory after WAL resets.
    Extra,
    /// WAL fsynced only at checkpoints: survives kill -9, may lose the last commits on power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// The end of the chain: the last seq and hash (or the checkpoint's, or genesis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Last seq (0 for an empty journal).
    pub seq: i64,
    /// Last hash.
    pub hash: String,
}

/// What a prune run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneOutcome {
    /// Rows deleted.
    pub pruned: u64,
    /// New checkpoint seq, if any row was pruned.
    pub checkpoint_seq: Option<i64>,
}

/// A connection to the journal database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Signs each appended record's hash (`journal.sign`).
    signer: Option<std::sync::Arc<super::signing::Signer>>,
}

fn open_error(path: &Path, e: impl std::fmt::Display, hint: &str) -> JournalError {
    JournalError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
        hint: hint.to_string(),
    }
}

fn classify_open(path: &Path, e: rusqlite::Error) -> JournalError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => open_error(
            path,
            e,
            "the file is damaged or not a journal: stop the agent, move it aside (keep it for investigation) and start again to create a fresh journal",
        ),
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            open_error(
                path,
                e,
                "give the agent's user write access to the data directory (systemd StateDirectory= does this)",
            )
        }
        _ => JournalError::Sqlite(e),
    }
}

impl Store {
    /// Opens (creating if needed) the journal in `data_dir` for writing, and migrates its schema.
    pub fn open_rw(
        data_dir: &Path,
        sync: Synchronous,
        page_size: u32,
    ) -> Result<Store, JournalError> {
        {
            // Private from the start: the directory 0700, the journal 0600 (SQLite gives its WAL
            // and shared-memory files the journal's mode).
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|e| {
                    open_error(
                        data_dir,
                        e,
                        "create the data directory and give the agent's user write access (systemd StateDirectory= does this)",
                    )
                })?;
            let path = data_dir.join(FILE_NAME);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(open_error(
                        &path,
                        e,
                        "give the agent's user write access to the data directory (or move the file aside if it is not a journal)",
                    ))
                }
            }
        }
        let path = data_dir.join(FILE_NAME);
        let mut conn = Connection::open(&path).map_err(|e| classify_open(&path, e))?;
        let setup = |conn: &Connection| -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // Takes effect only while the file is still empty (a journal being made): in WAL mode
            // SQLite keeps an existing database's page size, and says nothing.
            conn.pragma_update(None, "page_size", page_size)?;
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(rusqlite::Error::InvalidQuery);
            }
            conn.pragma_update(None, "synchronous", sync.pragma())?;
            Ok(())
        };
        setup(&conn).map_err(|e| classify_open(&path, e))?;
        schema::migrate(&mut conn).map_err(|e| match e {
            JournalError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull) => open_error(
                &path,
                e,
                "upgrading the journal's schema rewrites its records table once and needs free space of about the size of journal.sqlite: free space on that disk (nothing was changed), then start the agent again",
            ),
            JournalError::Sqlite(e) => classify_open(&path, e),
            other => other,
        })?;
        let store = Store {
            conn,
            path,
            signer: None,
        };
        if store.meta("journal_id")?.is_none() {
            store.set_meta("journal_id", &uuid::Uuid::now_v7().to_string())?;
            store.set_meta("created_at", &crate::time::now_rfc3339())?;
        }
        let pages = store.page_size()?;
        if pages != page_size {
            tracing::warn!(
                "journal {}: its pages are {pages} bytes; journal.page_size_bytes = {page_size} applies to a journal being made, this one keeps its own (README, Configuration, says how to change it)",
                store.path.display()
            );
        }
        Ok(store)
    }

    /// The database's page size in bytes (`PRAGMA page_size`).
    pub fn page_size(&self) -> Result<u32, JournalError> {
        Ok(self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?)
    }

    /// Opens an existing journal read-only (for `status`, `verify` and sink readers).
    pub fn open_ro(data_dir: &Path) -> Result<Store, JournalError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Err(open_error(
                &path,
                "no such file",
                "the agent has not run with this data_dir yet, or agent.data_dir points elsewhere",
            ));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify_open(&path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify_open(&path, e))?;
        if version > schema::current_version() {
            return Err(JournalError::NewerSchema {
                found: version,
                known: schema::current_version(),
            });
        }
        Ok(Store {
            conn,
            path,
            signer: None,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`): reaching it behaves exactly
    /// like a full disk (tests).
    pub fn set_max_page_count(&self, pages: u64) -> Result<(), JournalError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Reads a `meta` value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Writes a `meta` value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Bytes the database occupies (pages in use) plus the WAL file.
    pub fn used_bytes(&self) -> Result<u64, JournalError> {
        let (pages, free, size): (i64, i64, i64) = self.conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let wal = std::fs::metadata(self.path.with_extension("sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(((pages - free).max(0) as u64) * size as u64 + wal)
    }

    /// Whether the journal has table `name` (a read-only journal of an older schema may not).
    pub fn has_table(&self, name: &str) -> Result<bool, JournalError> {
        Ok(self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )?)
    }

    /// Signs every record appended from now on.
    pub fn set_signer(&mut self, signer: Option<std::sync::Arc<super::signing::Signer>>) {
        self.signer = signer;
    }
}

/// Whether a SQLite error means "no space": the disk or `max_page_count` is full.
pub fn is_disk_full(e: &JournalError) -> bool {
    matches!(e, JournalError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Commits `n` transactions of one ~100 KiB row each (about 25 WAL frames apiece).
    fn commit_rows(store: &Store, n: usize) {
        for _ in 0..n {
            store
                .conn
                .execute("INSERT INTO scratch(x) VALUES (zeroblob(100000))", [])
                .expect("insert");
        }
    }

    fn sizes(dir: &Path) -> (u64, u64) {
        let size = |name: &str| {
            std::fs::metadata(dir.join(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        (size(FILE_NAME), size(&format!("{FILE_NAME}-wal")))
    }

    #[test]
    fn commits_count_their_wal_frames_and_checkpoint_only_past_the_backstop() {
        // A 10-frame backstop is below one commit's ~25 frames: every commit checkpoints in place
        // and the next one writes the same number of frames from the WAL's start, all counted.
        for (backstop, expect_folded) in [(u64::MAX, false), (100, true), (10, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = Store::open_rw(
                dir.path(),
                Synchronous::Normal,
                crate::journal::DEFAULT_PAGE_SIZE,
            )
            .expect("open");
            store
                .conn
                .execute("CREATE TABLE scratch(x BLOB)", [])
                .expect("table");
            let written = Arc::new(AtomicU64::new(0));
            store
                .hand_off_checkpoints(written.clone(), backstop, Arc::new(Mutex::new(())))
                .expect("hook");
            let (db_before, _) = sizes(dir.path());
            // 1,500 frames or more: past SQLite's own automatic checkpoint (1,000), were it active.
            commit_rows(&store, 60);
            let frames = written.load(Ordering::Relaxed);
            assert!(
                frames >= 60 * 100_000 / 4096,
                "the hook counted {frames} WAL frames for ~6 MB committed"
            );
            let (db, wal) = sizes(dir.path());
            if expect_folded {
                // Past the backstop a commit checkpoints in place: the rows reach the database file
                // and the WAL starts over instead of growing.
                assert!(db >= 5_000_000, "database file {db} bytes: no checkpoint");
                assert!(wal < 1_500_000, "WAL {wal} bytes: it did not start over");
            } else {
                // No commit checkpoints by itself any more (SQLite's automatic one is replaced).
                assert_eq!(db, db_before, "a commit checkpointed without the backstop");
                assert!(wal >= 6_000_000, "WAL {wal} bytes");
            }
        }
    }
}
