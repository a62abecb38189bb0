//! Synchronous access to the journal database: the writer thread's operations and the readers' queries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{chain, schema, Appended, JournalError, NewRecord, StateUpdate, FILE_NAME};

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

/// A sink's delivery position and health, from `sink_cursors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCursor {
    /// Sink id.
    pub sink: String,
    /// Every record up to this seq was acknowledged.
    pub acked_seq: i64,
    /// When the cursor last moved.
    pub acked_at: Option<String>,
    /// The current failure, if failing.
    pub last_error: Option<String>,
    /// Since when it has been failing.
    pub failing_since: Option<String>,
}

/// A record the peer rejected for good.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Sink id.
    pub sink: String,
    /// Seq of the record.
    pub seq: i64,
    /// Record id.
    pub record_id: String,
    /// Why the peer refused it.
    pub reason: String,
    /// When.
    pub at: String,
}

/// A re-send asked for from the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Request {
    /// Request id.
    pub id: i64,
    /// Sink id.
    pub sink: String,
    /// `replay` or `retry_dead_letters`.
    pub action: String,
    /// First seq (replay; a dead letter's seq, or all of the sink's).
    pub from_seq: Option<i64>,
    /// Last seq.
    pub to_seq: Option<i64>,
    /// Who asked (user name as the system knows it).
    pub requested_by: String,
    /// Why, as given.
    pub reason: Option<String>,
    /// When.
    pub requested_at: String,
    /// When it was done (None: pending).
    pub done_at: Option<String>,
    /// What was done.
    pub outcome: Option<String>,
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
    pub fn open_rw(data_dir: &Path, sync: Synchronous) -> Result<Store, JournalError> {
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
        Ok(store)
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

    /// The raw connection (for tests and audit queries).
    pub fn connection(&self) -> &Connection {
        &self.conn
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

    /// The last checkpoint left by retention, if any.
    pub fn checkpoint(&self) -> Result<Option<ChainHead>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, hash FROM checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(ChainHead {
                        seq: r.get(0)?,
                        hash: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// The chain hash (hex) of the record at `seq`, if the journal holds it.
    pub fn hash_at(&self, seq: i64) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM records WHERE seq = ?1", [seq], |r| {
                Ok(chain::hash_column_hex(r.get_ref(0)?))
            })
            .optional()?)
    }

    /// The signature of the last retention checkpoint, if it has one (journals of schema 6 and
    /// before have none).
    pub fn checkpoint_signature(&self) -> Result<Option<String>, JournalError> {
        let r = self.conn.query_row(
            "SELECT signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get::<_, Option<String>>(0),
        );
        match r {
            Ok(s) => Ok(s),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such column") => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Everything in the journal's own tables that names a seq after `head` (sink cursors, dead
    /// letters, requests, receipts), largest first: each means records after `head` were removed.
    pub fn references_beyond(&self, head: i64) -> Result<Vec<super::seal::Beyond>, JournalError> {
        let mut out = Vec::new();
        let mut query = |sql: &str, what: &dyn Fn(&str) -> String| -> Result<(), JournalError> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([head], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (name, seq) = row?;
                out.push(super::seal::Beyond {
                    what: what(&name),
                    seq,
                });
            }
            Ok(())
        };
        query(
            "SELECT sink, acked_seq FROM sink_cursors WHERE acked_seq > ?1",
            &|s| format!("the cursor of sink {s} (every record up to it was delivered)"),
        )?;
        query(
            "SELECT sink, max(seq) FROM dead_letters WHERE seq > ?1 GROUP BY sink",
            &|s| format!("a dead letter of sink {s}"),
        )?;
        if self.has_table("requests")? {
            query(
                "SELECT sink, max(m) FROM (
                   SELECT sink, max(coalesce(from_seq, 0), coalesce(to_seq, 0)) AS m FROM requests)
                 WHERE m > ?1 GROUP BY sink",
                &|s| format!("a re-send request for sink {s}"),
            )?;
        }
        if self.has_table("receipts")? {
            query(
                "SELECT sink, max(seq) FROM receipts WHERE seq > ?1 GROUP BY sink",
                &|s| format!("a receipt kept for sink {s}"),
            )?;
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.seq));
        Ok(out)
    }

    /// The end of the chain.
    pub fn head(&self) -> Result<ChainHead, JournalError> {
        let last = self
            .conn
            .query_row(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(ChainHead {
                        seq: r.get(0)?,
                        hash: chain::hash_column_hex(r.get_ref(1)?),
                    })
                },
            )
            .optional()?;
        match last {
            Some(h) => Ok(h),
            None => Ok(self.checkpoint()?.unwrap_or(ChainHead {
                seq: 0,
                hash: chain::GENESIS.to_string(),
            })),
        }
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

    /// Appends records (and source state) in one transaction, extending the chain from `head`.
    ///
    /// `head` is updated only when the transaction commits.
    pub fn append(
        &mut self,
        head: &mut ChainHead,
        records: &[&NewRecord],
        state: &[&StateUpdate],
    ) -> Result<Vec<Appended>, JournalError> {
        let now_ms = crate::time::now_ms();
        let now_text = crate::time::now_rfc3339();
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(records.len());
        let mut seq = head.seq;
        // The first new row chains from the head's hex as `verify` does (a head that is not 64 hex
        // digits is only a tampered checkpoint, which `verify` reports); the next ones from raw hashes.
        let mut hash: Option<[u8; 32]> = None;
        {
            let mut find = tx.prepare_cached("SELECT seq FROM records WHERE dedupe_key = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (seq, kind, appended_at, dedupe_key, body, hash, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in records {
                if let Some(key) = &r.dedupe_key {
                    if let Some(existing) = find
                        .query_row([key], |row| row.get::<_, i64>(0))
                        .optional()?
                    {
                        out.push(Appended::Duplicate { seq: existing });
                        continue;
                    }
                }
                seq += 1;
                let next = match &hash {
                    Some(prev) => chain::chain_hash_raw(prev, r.canonical.as_bytes()),
                    None => chain::chain_hash_from_hex(&head.hash, r.canonical.as_bytes()),
                };
                hash = Some(next);
                insert.execute(params![
                    seq,
                    r.kind.as_str(),
                    now_ms,
                    r.dedupe_key,
                    r.canonical,
                    &next[..],
                    self.signer.as_ref().map(|k| k.sign(&next)),
                ])?;
                out.push(Appended::New { seq });
            }
            if !state.is_empty() {
                let mut put = tx.prepare_cached(
                    "INSERT INTO source_state(source, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(source, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?;
                for s in state {
                    put.execute(params![s.source, s.key, s.value, now_text])?;
                }
            }
        }
        tx.commit()?;
        if let Some(hash) = hash {
            head.seq = seq;
            head.hash = chain::to_hex(&hash);
        }
        Ok(out)
    }

    /// Keeps a configuration's text under its hash (the first use is kept).
    pub fn remember_config(&self, sha256: &str, toml: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO configs (sha256, first_used, toml) VALUES (?1, ?2, ?3)",
            params![sha256, crate::time::now_rfc3339(), toml],
        )?;
        Ok(())
    }

    /// Whether the journal has table `name` (a read-only journal of an older schema may not).
    pub fn has_table(&self, name: &str) -> Result<bool, JournalError> {
        Ok(self.conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )?)
    }

    /// A configuration's text by its hash (None also for a journal older than schema 3).
    pub fn config(&self, sha256: &str) -> Result<Option<String>, JournalError> {
        if !self.has_table("configs")? {
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT toml FROM configs WHERE sha256 = ?1",
                [sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Signs every record appended from now on.
    pub fn set_signer(&mut self, signer: Option<std::sync::Arc<super::signing::Signer>>) {
        self.signer = signer;
    }

    /// Up to `limit` rows after `after`, in seq order.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<Vec<JournalRow>, JournalError> {
        self.read_range(after, i64::MAX, limit)
    }

    /// Up to `limit` rows with `after < seq <= to`, in seq order.
    pub fn read_range(
        &self,
        after: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<JournalRow>, JournalError> {
        // The row at `after` itself is read too (when it is still there): its hash is the first
        // row's prev_hash.
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, json_extract(body, '$.id'), kind, json_extract(body, '$.captured_at'), body, hash, signature
             FROM records WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![after, to, (limit as i64).saturating_add(1)])?;
        let mut out: Vec<JournalRow> = Vec::with_capacity(limit.min(10_000));
        let mut prev: Option<String> = None;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let hash = chain::hash_column_hex(r.get_ref(5)?);
            if seq == after {
                prev = Some(hash);
                continue;
            }
            if out.len() == limit {
                break;
            }
            let prev_hash = match prev.take() {
                Some(p) => p,
                None => self.hash_before(seq)?,
            };
            prev = Some(hash.clone());
            out.push(JournalRow {
                seq,
                id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                kind: r.get(2)?,
                captured_at: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                body: r.get(4)?,
                prev_hash,
                hash,
                signature: r.get(6)?,
            });
        }
        Ok(out)
    }

    /// The hash `seq` chains from: the row before it, the retention checkpoint at `seq - 1`, or
    /// genesis for seq 1. Empty when none of these exists (a row deleted outside retention; `verify`
    /// names it).
    fn hash_before(&self, seq: i64) -> Result<String, JournalError> {
        if seq == 1 {
            return Ok(chain::GENESIS.to_string());
        }
        let row = self
            .conn
            .query_row("SELECT hash FROM records WHERE seq = ?1", [seq - 1], |r| {
                Ok(chain::hash_column_hex(r.get_ref(0)?))
            })
            .optional()?;
        if let Some(h) = row {
            return Ok(h);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT hash FROM checkpoints WHERE seq = ?1",
                [seq - 1],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Ensures a cursor row exists for `sink` (a new sink starts at the beginning of the journal).
    pub fn register_sink(&self, sink: &str) -> Result<i64, JournalError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO sink_cursors(sink, acked_seq) VALUES (?1, 0)",
            [sink],
        )?;
        Ok(self.conn.query_row(
            "SELECT acked_seq FROM sink_cursors WHERE sink = ?1",
            [sink],
            |r| r.get(0),
        )?)
    }

    /// Moves `sink`'s cursor to `seq` (never backwards) and clears its error.
    pub fn ack(&self, sink: &str, seq: i64) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO sink_cursors(sink, acked_seq, acked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(sink) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq),
               acked_at = excluded.acked_at, last_error = NULL, failing_since = NULL",
            params![sink, seq, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Records that `sink` is failing (or, with `None`, that it recovered).
    pub fn set_sink_error(&self, sink: &str, error: Option<&str>) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE sink_cursors SET last_error = ?2,
               failing_since = CASE WHEN ?2 IS NULL THEN NULL ELSE coalesce(failing_since, ?3) END
             WHERE sink = ?1",
            params![sink, error, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Moves a record the peer refused for good to dead letters (the sink's cursor moves on separately).
    pub fn dead_letter(
        &self,
        sink: &str,
        seq: i64,
        record_id: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO dead_letters(sink, seq, record_id, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sink, seq, record_id, reason, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Prunes, in chunks of `chunk` rows, records that every sink in `sinks` acknowledged, that no open
    /// dead letter refers to and that were appended before `older_than_ms`; leaves a checkpoint.
    pub fn prune(
        &mut self,
        sinks: &[String],
        older_than_ms: i64,
        chunk: usize,
    ) -> Result<PruneOutcome, JournalError> {
        let mut outcome = PruneOutcome::default();
        if sinks.is_empty() {
            return Ok(outcome);
        }
        let mut bound = i64::MAX;
        for s in sinks {
            let acked: i64 = self
                .conn
                .query_row(
                    "SELECT acked_seq FROM sink_cursors WHERE sink = ?1",
                    [s],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            bound = bound.min(acked);
        }
        let open_dead: Option<i64> = self.conn.query_row(
            "SELECT min(seq) FROM dead_letters WHERE retried_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        if let Some(d) = open_dead {
            bound = bound.min(d - 1);
        }
        // Age is judged by the journal clock; after the clock was stepped back, a row can look older
        // than rows before it. Only the prefix before the first young row goes, so a young row is
        // never pruned because a later one carries an earlier time.
        let young: Option<i64> = self.conn.query_row(
            "SELECT min(seq) FROM records WHERE seq <= ?1 AND appended_at >= ?2",
            params![bound, older_than_ms],
            |r| r.get(0),
        )?;
        if let Some(y) = young {
            let later_older: bool = self.conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM records WHERE seq > ?1 AND seq <= ?2 AND appended_at < ?3)",
                params![y, bound, older_than_ms],
                |r| r.get(0),
            )?;
            if later_older {
                tracing::info!(
                    "retention: keeps the records from seq {y} on: seq {y} is younger than retention_days, and later ones that look older were appended after the clock was set back"
                );
            }
            bound = bound.min(y - 1);
        }
        loop {
            let tx = self.conn.transaction()?;
            let last: Option<(i64, String, i64)> = tx
                .query_row(
                    "SELECT seq, hash, n FROM (
                       SELECT seq, hash, row_number() OVER (ORDER BY seq) AS n FROM records
                       WHERE seq <= ?1 AND appended_at < ?2 ORDER BY seq LIMIT ?3)
                     ORDER BY seq DESC LIMIT 1",
                    params![bound, older_than_ms, chunk as i64],
                    |r| Ok((r.get(0)?, chain::hash_column_hex(r.get_ref(1)?), r.get(2)?)),
                )
                .optional()?;
            let Some((seq, hash, n)) = last else {
                break;
            };
            // Only a prefix may go: stop at the first row that is too young.
            tx.execute("DELETE FROM records WHERE seq <= ?1", [seq])?;
            let signature = match (&self.signer, super::seal::checkpoint_digest(seq, &hash)) {
                (Some(k), Some(d)) => Some(k.sign(&d)),
                _ => None,
            };
            tx.execute(
                "INSERT INTO checkpoints(seq, hash, pruned_records, pruned_at, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![seq, hash, n, crate::time::now_rfc3339(), signature],
            )?;
            tx.commit()?;
            outcome.pruned += n as u64;
            outcome.checkpoint_seq = Some(seq);
            if (n as usize) < chunk {
                break;
            }
        }
        Ok(outcome)
    }

    /// All sink cursors.
    pub fn sink_cursors(&self) -> Result<Vec<SinkCursor>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT sink, acked_seq, acked_at, last_error, failing_since FROM sink_cursors ORDER BY sink",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SinkCursor {
                sink: r.get(0)?,
                acked_seq: r.get(1)?,
                acked_at: r.get(2)?,
                last_error: r.get(3)?,
                failing_since: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Open (not retried) dead letters, oldest first.
    pub fn dead_letters(&self, sink: Option<&str>) -> Result<Vec<DeadLetter>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT sink, seq, record_id, reason, at FROM dead_letters
             WHERE retried_at IS NULL AND (?1 IS NULL OR sink = ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map([sink], |r| {
            Ok(DeadLetter {
                sink: r.get(0)?,
                seq: r.get(1)?,
                record_id: r.get(2)?,
                reason: r.get(3)?,
                at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Asks the running agent to re-send (see [`Request`]); returns the request id.
    pub fn request(
        &self,
        sink: &str,
        action: &str,
        seqs: (Option<i64>, Option<i64>),
        requested_by: &str,
        reason: Option<&str>,
    ) -> Result<i64, JournalError> {
        self.conn.execute(
            "INSERT INTO requests (sink, action, from_seq, to_seq, requested_by, reason, requested_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![sink, action, seqs.0, seqs.1, requested_by, reason, crate::time::now_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Requests for `sink` (pending only, or all), oldest first.
    pub fn requests(
        &self,
        sink: Option<&str>,
        pending: bool,
    ) -> Result<Vec<Request>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, sink, action, from_seq, to_seq, requested_by, reason, requested_at, done_at, outcome
             FROM requests WHERE (?1 IS NULL OR sink = ?1) AND (?2 = 0 OR done_at IS NULL) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![sink, pending], |r| {
            Ok(Request {
                id: r.get(0)?,
                sink: r.get(1)?,
                action: r.get(2)?,
                from_seq: r.get(3)?,
                to_seq: r.get(4)?,
                requested_by: r.get(5)?,
                reason: r.get(6)?,
                requested_at: r.get(7)?,
                done_at: r.get(8)?,
                outcome: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps receipt ids a sink's peer answered with: (seq, record id, receipt).
    pub fn keep_receipts(
        &mut self,
        sink: &str,
        receipts: &[(i64, String, String)],
    ) -> Result<(), JournalError> {
        let now = crate::time::now_rfc3339();
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO receipts (sink, seq, record_id, receipt, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(sink, seq) DO UPDATE SET receipt = excluded.receipt, at = excluded.at",
            )?;
            for (seq, id, receipt) in receipts {
                put.execute(params![sink, seq, id, receipt, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks a request done with its outcome, and the dead letters it re-sent as retried.
    pub fn settle_request(
        &mut self,
        id: i64,
        outcome: &str,
        retried: &[(String, i64)],
    ) -> Result<(), JournalError> {
        let now = crate::time::now_rfc3339();
        let tx = self.conn.transaction()?;
        for (sink, seq) in retried {
            tx.execute(
                "UPDATE dead_letters SET retried_at = ?1 WHERE sink = ?2 AND seq = ?3 AND retried_at IS NULL",
                params![now, sink, seq],
            )?;
        }
        tx.execute(
            "UPDATE requests SET done_at = ?1, outcome = ?2 WHERE id = ?3",
            params![now, outcome, id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Source state of `source`, as (key, value, updated_at).
    pub fn source_state(
        &self,
        source: Option<&str>,
    ) -> Result<Vec<(String, String, String, String)>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT source, key, value, updated_at FROM source_state
             WHERE (?1 IS NULL OR source = ?1) ORDER BY source, key",
        )?;
        let rows = stmt.query_map([source], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bodies of every record of `kind`, in journal order (a full scan: used once at start).
    pub fn bodies_of_kind(&self, kind: &str) -> Result<Vec<String>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM records WHERE kind = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([kind], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The bodies of the last `limit` records of `kind`, in seq order.
    pub fn recent_bodies_of_kind(
        &self,
        kind: &str,
        limit: usize,
    ) -> Result<Vec<String>, JournalError> {
        let mut stmt = self.conn.prepare(
            "SELECT body FROM (SELECT seq, body FROM records WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2)
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![kind, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a payload a source could not use, with the reason (the first 64 KiB of it).
    pub fn quarantine(
        &self,
        source: &str,
        topic: &str,
        payload: &[u8],
        reason: &str,
    ) -> Result<(), JournalError> {
        let kept = &payload[..payload.len().min(64 * 1024)];
        self.conn.execute(
            "INSERT INTO quarantine(source, topic, payload, size, reason, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![source, topic, kept, payload.len() as i64, reason, crate::time::now_rfc3339()],
        )?;
        Ok(())
    }

    /// Quarantined payloads per source.
    pub fn quarantine_counts(&self) -> Result<Vec<(String, i64)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT source, count(*) FROM quarantine GROUP BY source ORDER BY source")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of records per kind.
    pub fn counts_by_kind(&self) -> Result<Vec<(String, i64)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, count(*) FROM records GROUP BY kind ORDER BY kind")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Capture time of the first record after `seq`, if any.
    pub fn captured_at_after(&self, seq: i64) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT json_extract(body, '$.captured_at') FROM records WHERE seq > ?1 ORDER BY seq LIMIT 1",
                [seq],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Appended-at (Unix ms) of the last record, if any.
    pub fn last_appended_ms(&self) -> Result<Option<i64>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT appended_at FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

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

/// Whether a SQLite error means "no space": the disk or `max_page_count` is full.
pub fn is_disk_full(e: &JournalError) -> bool {
    matches!(e, JournalError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits `n` transactions of one ~100 KiB row each (about 25 WAL frames apiece).
    fn commit_rows(store: &Store, n: usize) {
        for _ in 0..n {
            store
                .connection()
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
            let mut store = Store::open_rw(dir.path(), Synchronous::Normal).expect("open");
            store
                .connection()
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
