//! Delivery state: sink cursors, dead letters, re-send requests and the receipts peers gave.

use rusqlite::params;

use super::Store;
use crate::journal::JournalError;

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

impl Store {
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
}
