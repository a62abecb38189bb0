//! A synthetic append load: `bench-journal` (storage check on a gateway), `cargo bench` and crash tests.
//!
//! Producers are tasks that each append a batch of records (one, or a page's worth) and wait for its
//! commit before making the next, as sources do; their records are `agent_event`s padded to the
//! requested size.

use std::time::{Duration, Instant};

use super::{Journal, JournalError, NewRecord};
use crate::records::{QualityRecord, RecordContext};

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Records appended.
    pub records: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Commit latency of every append (making its records included), sorted.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q` (0..=1).
    pub fn latency(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q) as usize).min(n - 1)]
    }
}

/// A record whose canonical JSON is about `bytes` long.
pub fn padded_record(ctx: &RecordContext, bytes: usize, label: &str) -> QualityRecord {
    QualityRecord::agent_event(
        ctx,
        "load",
        label.to_string(),
        serde_json::json!({ "padding": "x".repeat(bytes.saturating_sub(400)) }),
    )
}

/// A callback run after each commit with the record's seq and id.
pub type OnAck = std::sync::Arc<dyn Fn(i64, &str) + Send + Sync>;

/// The shape of a load: how many records, from how many producers, how many per append.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Records to append in all.
    pub records: u64,
    /// Concurrent producers (tasks), each waiting for its append's commit before the next.
    pub producers: u64,
    /// Records per append (a source's page or poll cycle); 1 for one record at a time.
    pub batch: u64,
    /// Approximate canonical JSON size of one record.
    pub record_bytes: usize,
}

/// Appends `load.records` records from `load.producers` tasks on a two-thread runtime (as sources
/// run), `load.batch` records per append; `on_ack(seq, id)` runs in the task after each commit,
/// for every record of the append. Latencies are per append.
pub fn run(
    journal: &Journal,
    ctx: &RecordContext,
    load: Load,
    on_ack: Option<OnAck>,
) -> Result<LoadReport, JournalError> {
    let producers = load.producers.max(1);
    let batch = load.batch.max(1);
    let appends = load.records / producers / batch;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (journal, ctx, on_ack) = (journal.clone(), ctx.clone(), on_ack.clone());
            rt.spawn(async move {
                let mut latencies = Vec::with_capacity(appends as usize);
                for a in 0..appends {
                    let t = Instant::now();
                    let records: Vec<NewRecord> = (0..batch)
                        .map(|i| {
                            NewRecord::new(padded_record(
                                &ctx,
                                load.record_bytes,
                                &format!("producer {p} record {}", a * batch + i),
                            ))
                        })
                        .collect();
                    let ids: Vec<String> = match &on_ack {
                        Some(_) => records.iter().map(|r| r.id.to_string()).collect(),
                        None => Vec::new(),
                    };
                    let out = journal.append(records).await?;
                    latencies.push(t.elapsed());
                    if let Some(f) = &on_ack {
                        for (o, id) in out.iter().zip(&ids) {
                            f(o.seq(), id);
                        }
                    }
                }
                Ok::<_, JournalError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity((appends * producers) as usize);
    for h in handles {
        latencies.extend(
            rt.block_on(h)
                .map_err(|e| JournalError::Failed(e.to_string()))??,
        );
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(LoadReport {
        records: latencies.len() as u64 * batch,
        elapsed,
        latencies,
    })
}
