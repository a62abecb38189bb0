//! The `records` table: appending a group (hash chain, dedupe, signatures, the state committed with it),
//! reading in journal order, the chain's head, the retention checkpoint, the kept configurations.

use rusqlite::{params, OptionalExtension};

use super::{ChainHead, JournalRow, Store};
use crate::journal::{chain, Appended, JournalError, NewRecord, StateUpdate};

impl Store {
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
                let mut forget =
                    tx.prepare_cached("DELETE FROM source_state WHERE source = ?1 AND key = ?2")?;
                for s in state {
                    if s.value.is_empty() {
                        forget.execute(params![s.source, s.key])?;
                    } else {
                        put.execute(params![s.source, s.key, s.value, now_text])?;
                    }
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

    /// The chain hash (hex) of the record at `seq`, if the journal holds it.
    pub fn hash_at(&self, seq: i64) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM records WHERE seq = ?1", [seq], |r| {
                Ok(chain::hash_column_hex(r.get_ref(0)?))
            })
            .optional()?)
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
    pub fn references_beyond(
        &self,
        head: i64,
    ) -> Result<Vec<super::super::seal::Beyond>, JournalError> {
        let mut out = Vec::new();
        let mut query = |sql: &str, what: &dyn Fn(&str) -> String| -> Result<(), JournalError> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([head], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (name, seq) = row?;
                out.push(super::super::seal::Beyond {
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

    /// Keeps a configuration's text under its hash (the first use is kept).
    pub fn remember_config(&self, sha256: &str, toml: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO configs (sha256, first_used, toml) VALUES (?1, ?2, ?3)",
            params![sha256, crate::time::now_rfc3339(), toml],
        )?;
        Ok(())
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
}
