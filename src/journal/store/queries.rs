//! Read-only queries of the audit tools (`status`, `trace`, `export`, `reconcile`): every SQL they
//! need lives here, so a schema change touches the store only.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::journal::JournalError;

/// A subject field a part is traced by (`$.subject.<field>` of a record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectField {
    /// `subject.serial`.
    Serial,
    /// `subject.lot`.
    Lot,
    /// `subject.work_order`.
    WorkOrder,
}

impl SubjectField {
    /// The field's name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectField::Serial => "serial",
            SubjectField::Lot => "lot",
            SubjectField::WorkOrder => "work_order",
        }
    }
}

/// How records are grouped when a sink's delivery is reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// By `subject.work_order` (`(none)` for records without one).
    WorkOrder,
    /// By the day of `captured_at`.
    Day,
}

/// One group of a sink's reconciliation: what was captured, acknowledged and receipted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCount {
    /// The group's key (a work order, a day).
    pub key: String,
    /// Records captured (agent events aside).
    pub captured: i64,
    /// Of them, acknowledged by the sink and not dead-lettered.
    pub acknowledged: i64,
    /// Of them, with a receipt from the peer.
    pub receipted: i64,
}

/// (seq, body) of the rows a query found, in seq order.
pub type Bodies = Vec<(i64, String)>;

impl Store {
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

    /// Bodies of every record of `kind`, in journal order (a full scan: used once at start).
    pub fn bodies_of_kind(&self, kind: &str) -> Result<Vec<String>, JournalError> {
        Ok(self
            .records_of_kind(kind)?
            .into_iter()
            .map(|(_, body)| body)
            .collect())
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

    fn seq_bodies(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Bodies, JournalError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every record whose subject's `field` is `value` (a part's thread).
    pub fn records_of_subject(
        &self,
        field: SubjectField,
        value: &str,
    ) -> Result<Bodies, JournalError> {
        let sql = format!(
            "SELECT seq, body FROM records WHERE json_extract(body, '$.subject.{}') = ?1 ORDER BY seq",
            field.as_str()
        );
        self.seq_bodies(&sql, &[&value])
    }

    /// Every record of `kind`, with its seq.
    pub fn records_of_kind(&self, kind: &str) -> Result<Bodies, JournalError> {
        self.seq_bodies(
            "SELECT seq, body FROM records WHERE kind = ?1 ORDER BY seq",
            &[&kind],
        )
    }

    /// The calibration records of instrument `id`.
    pub fn calibrations_of(&self, id: &str) -> Result<Bodies, JournalError> {
        self.seq_bodies(
            "SELECT seq, body FROM records WHERE kind = 'calibration'
               AND json_extract(body, '$.calibration.instrument_id') = ?1 ORDER BY seq",
            &[&id],
        )
    }

    /// The inspection records measured with gauge `id`.
    pub fn inspections_with_gauge(&self, id: &str) -> Result<Bodies, JournalError> {
        self.seq_bodies(
            "SELECT seq, body FROM records WHERE kind = 'inspection'
               AND json_extract(body, '$.inspection.gauge_id') = ?1 ORDER BY seq",
            &[&id],
        )
    }

    /// The first and last seq appended between `from_ms` and `to_ms` (Unix ms, inclusive).
    pub fn seqs_appended_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(Option<i64>, Option<i64>), JournalError> {
        Ok(self.conn.query_row(
            "SELECT min(seq), max(seq) FROM records WHERE appended_at >= ?1 AND appended_at <= ?2",
            [from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// When the oldest and the newest record held were appended (Unix ms).
    pub fn appended_span(&self) -> Result<(Option<i64>, Option<i64>), JournalError> {
        Ok(self.conn.query_row(
            "SELECT min(appended_at), max(appended_at) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Sink `sink`'s delivery up to `acked_seq`, grouped.
    pub fn delivery_counts(
        &self,
        sink: &str,
        acked_seq: i64,
        by: Grouping,
    ) -> Result<Vec<DeliveryCount>, JournalError> {
        let key = match by {
            Grouping::WorkOrder => "coalesce(json_extract(body, '$.subject.work_order'), '(none)')",
            Grouping::Day => "substr(json_extract(body, '$.captured_at'), 1, 10)",
        };
        let receipted = if self.has_table("receipts")? {
            "(SELECT count(*) FROM receipts x WHERE x.sink = ?1 AND x.seq = r.seq)"
        } else {
            "0"
        };
        let sql = format!(
            "SELECT {key} AS k, count(*),
                    sum(r.seq <= ?2 AND NOT EXISTS (SELECT 1 FROM dead_letters d
                        WHERE d.sink = ?1 AND d.seq = r.seq AND d.retried_at IS NULL)),
                    sum({receipted})
             FROM records r WHERE r.kind <> 'agent_event' GROUP BY k ORDER BY k"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![sink, acked_seq], |r| {
            Ok(DeliveryCount {
                key: r.get(0)?,
                captured: r.get(1)?,
                acknowledged: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                receipted: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
