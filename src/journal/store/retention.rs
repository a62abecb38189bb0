//! Retention: pruning records every sink has acknowledged, behind a (signed) checkpoint.

use rusqlite::{params, OptionalExtension};

use super::{PruneOutcome, Store};
use crate::journal::{chain, JournalError};

impl Store {
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
            let signature = match (
                &self.signer,
                super::super::seal::checkpoint_digest(seq, &hash),
            ) {
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
}
