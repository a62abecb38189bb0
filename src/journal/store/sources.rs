//! Source state (watermarks, connection state) and the quarantine of payloads that could not be read.

use rusqlite::params;

use super::Store;
use crate::journal::JournalError;

impl Store {
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
}
