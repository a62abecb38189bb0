//! Reconciliation (`status --by work-order|day`): per work order or per capture day, how many
//! records were captured, how many each sink acknowledged (delivered and not refused for good),
//! and how many its peer answered with a receipt id (HTTP sinks, `receipts` in the sink's
//! configuration). Counts cover the records still in the journal; pruned records had been
//! acknowledged by every sink.

use std::fmt::Write as _;

use serde::Serialize;

use crate::journal::{JournalError, Store};

/// How to group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// By `subject.work_order` (records without one under `(none)`).
    WorkOrder,
    /// By the UTC day of `captured_at`.
    Day,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Work order or day.
    pub key: String,
    /// Records captured.
    pub captured: i64,
    /// Records the sink acknowledged (delivered, not dead letters).
    pub acknowledged: i64,
    /// Records the sink's peer gave a receipt id for.
    pub receipted: i64,
}

/// One sink's reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// The sink.
    pub sink: String,
    /// Its groups, sorted by key.
    pub lines: Vec<Line>,
}

/// Reconciles every sink with a cursor in the journal.
pub fn reconcile(store: &Store, by: By) -> Result<Vec<Reconciliation>, JournalError> {
    let conn = store.connection();
    let has_receipts = store.has_table("receipts")?;
    let key = match by {
        By::WorkOrder => "coalesce(json_extract(body, '$.subject.work_order'), '(none)')",
        By::Day => "substr(json_extract(body, '$.captured_at'), 1, 10)",
    };
    let receipted = if has_receipts {
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
    let mut out = Vec::new();
    for cursor in store.sink_cursors()? {
        let mut stmt = conn.prepare(&sql)?;
        let lines = stmt
            .query_map(rusqlite::params![cursor.sink, cursor.acked_seq], |r| {
                Ok(Line {
                    key: r.get(0)?,
                    captured: r.get(1)?,
                    acknowledged: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    receipted: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Reconciliation {
            sink: cursor.sink,
            lines,
        });
    }
    Ok(out)
}

/// The readable form.
pub fn render(all: &[Reconciliation], by: By) -> String {
    let mut s = String::new();
    let head = match by {
        By::WorkOrder => "WORK ORDER",
        By::Day => "DAY",
    };
    if all.is_empty() {
        let _ = writeln!(s, "no sinks have delivered yet");
    }
    for r in all {
        let _ = writeln!(
            s,
            "sink {}\n{:<20} {:>9} {:>13} {:>10}  OPEN",
            r.sink, head, "CAPTURED", "ACKNOWLEDGED", "RECEIPTS"
        );
        for l in &r.lines {
            let open = l.captured - l.acknowledged;
            let _ = writeln!(
                s,
                "{:<20} {:>9} {:>13} {:>10}  {}",
                l.key,
                l.captured,
                l.acknowledged,
                l.receipted,
                if open > 0 {
                    format!("{open} not acknowledged")
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(s);
    }
    s
}
