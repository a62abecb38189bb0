//! A synthetic append load: `bench-journal` (storage check on a gateway), `cargo bench` and crash tests.
//!
//! Producers are threads that each append one record at a time and wait for its commit, as sources
//! do; their records are `agent_event`s padded to the requested size.

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
    /// Commit latency of every append, sorted.
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

/// Appends `records` records from `producers` tasks on a two-thread runtime (as sources run);
/// `on_ack(seq, id)` runs in the task after each commit.
pub fn run(
    journal: &Journal,
    ctx: &RecordContext,
    records: u64,
    producers: u64,
    record_bytes: usize,
    on_ack: Option<OnAck>,
) -> Result<LoadReport, JournalError> {
    let producers = producers.max(1);
    let per = records / producers;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (journal, ctx, on_ack) = (journal.clone(), ctx.clone(), on_ack.clone());
            rt.spawn(async move {
                let mut latencies = Vec::with_capacity(per as usize);
                for i in 0..per {
                    let t = Instant::now();
                    let r = padded_record(&ctx, record_bytes, &format!("producer {p} record {i}"));
                    let id = r.id;
                    let out = journal.append(vec![NewRecord::new(r)]).await?;
                    latencies.push(t.elapsed());
                    if let Some(f) = &on_ack {
                        f(out[0].seq(), &id.to_string());
                    }
                }
                Ok::<_, JournalError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(records as usize);
    for h in handles {
        latencies.extend(
            rt.block_on(h)
                .map_err(|e| JournalError::Failed(e.to_string()))??,
        );
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(LoadReport {
        records: latencies.len() as u64,
        elapsed,
        latencies,
    })
}
