//! Reconciliation (`status --by work-order|day`): per work order or per capture day, how many
//! records were captured, how many each sink acknowledged (delivered and not refused for good),
//! and how many its peer answered with a receipt id (HTTP sinks, `receipts` in the sink's
//! configuration). Counts cover the records still in the journal; pruned records had been
//! acknowledged by every sink.

use std::fmt::Write as _;

use serde::Serialize;

use crate::journal::store::Grouping;
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
    let grouping = match by {
        By::WorkOrder => Grouping::WorkOrder,
        By::Day => Grouping::Day,
    };
    let mut out = Vec::new();
    for cursor in store.sink_cursors()? {
        let lines = store
            .delivery_counts(&cursor.sink, cursor.acked_seq, grouping)?
            .into_iter()
            .map(|c| Line {
                key: c.key,
                captured: c.captured,
                acknowledged: c.acknowledged,
                receipted: c.receipted,
            })
            .collect();
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
