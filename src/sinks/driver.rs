//! The delivery driver: reads a sink's batches from its cursor, sends them, retries, dead-letters.
//!
//! Per sink, in a loop: read up to `batch_max_records` rows (and `batch_max_bytes`) after the cursor;
//! send; on success move the cursor to the last row. On [`SendError::Retry`] wait (the peer's
//! `Retry-After`, else exponential backoff with jitter) and send the same batch again. On
//! [`SendError::Reject`] of a batch, send its rows one by one to find the refused ones; each refused
//! row is written to `dead_letters` with the reason and the cursor moves past it. Memory is bounded by
//! one batch whatever the backlog.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{SendError, Sink};
use crate::journal::{Journal, JournalError, JournalRow, Store};
use crate::runtime::logging::{human_duration, Repeat, RepeatLog};
use crate::runtime::retry::Backoff;
use crate::runtime::Shutdown;

/// Batch limits and retry policy of one sink.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Most records per batch.
    pub batch_max_records: usize,
    /// Most bytes of record bodies per batch (a single larger record is still sent alone).
    pub batch_max_bytes: usize,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// Longest wait honoured from a peer's `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Delivers the journal to one sink until shutdown.
pub struct Driver {
    id: String,
    sink: Sink,
    journal: Journal,
    reader: Arc<Mutex<Store>>,
    opts: DeliveryOptions,
    backoff: Backoff,
    repeat: RepeatLog,
    cursor: i64,
    metrics: crate::metrics::Metrics,
}

impl Driver {
    /// Prepares delivery for sink `id`; registers its cursor in the journal.
    pub async fn new(
        id: &str,
        sink: Sink,
        journal: Journal,
        opts: DeliveryOptions,
        repeat_summary: Duration,
        metrics: crate::metrics::Metrics,
    ) -> Result<Driver, JournalError> {
        let mut cursor = journal.register_sink(id).await?;
        if let Some(held) = sink.delivered_seq() {
            if held > cursor {
                // The sink has records the cursor did not record (a crash between write and ack).
                tracing::info!(
                    "sink {id}: already holds records up to seq {held}; continuing after it"
                );
                journal.ack(id, held).await?;
                cursor = held;
            }
        }
        let dir = journal.data_dir().to_path_buf();
        let reader = tokio::task::spawn_blocking(move || Store::open_ro(&dir))
            .await
            .map_err(|e| JournalError::Failed(e.to_string()))??;
        Ok(Driver {
            id: id.to_string(),
            sink,
            journal,
            reader: Arc::new(Mutex::new(reader)),
            backoff: Backoff::new(opts.retry_initial, opts.retry_max),
            opts,
            repeat: RepeatLog::new(repeat_summary),
            cursor,
            metrics,
        })
    }

    async fn read_batch(&self) -> Result<Vec<JournalRow>, JournalError> {
        let reader = self.reader.clone();
        let (after, max_records, max_bytes) = (
            self.cursor,
            self.opts.batch_max_records,
            self.opts.batch_max_bytes,
        );
        tokio::task::spawn_blocking(move || {
            let store = reader
                .lock()
                .map_err(|_| JournalError::Failed("reader lock poisoned".into()))?;
            let mut rows = store.read_after(after, max_records)?;
            let mut bytes = 0usize;
            let mut keep = 0usize;
            for r in &rows {
                bytes += r.body.len();
                if keep > 0 && bytes > max_bytes {
                    break;
                }
                keep += 1;
            }
            rows.truncate(keep);
            Ok(rows)
        })
        .await
        .map_err(|e| JournalError::Failed(e.to_string()))?
    }

    /// Runs until `shutdown`; a batch in flight is finished (or times out) first.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut committed = self.journal.subscribe();
        tracing::info!(
            "sink {}: delivering to {} from seq {}",
            self.id,
            self.sink.target(),
            self.cursor + 1
        );
        loop {
            // After shutdown the driver keeps delivering while it can (the stop record included),
            // and leaves at the first empty read or failure; the caller bounds this with a grace time.
            let draining = shutdown.is_triggered();
            let rows = match self.read_batch().await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("sink {}: cannot read the journal: {e}; retrying", self.id);
                    self.pause(&mut shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                if draining {
                    break;
                }
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = shutdown.wait() => {}
                    // A safety net: also look again now and then.
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            match self.sink.send(&rows).await {
                Ok(()) => {
                    let last = rows[rows.len() - 1].seq;
                    self.metrics.sent(&self.id, rows.len() as u64);
                    self.delivered(last).await;
                }
                Err(SendError::Retry {
                    reason,
                    retry_after,
                }) => {
                    let delay = self.failed(&reason, retry_after);
                    if draining {
                        break;
                    }
                    self.pause(&mut shutdown, delay).await;
                }
                Err(SendError::Reject { reason }) if rows.len() == 1 => {
                    self.reject(&rows[0], &reason).await;
                }
                Err(SendError::Reject { reason }) => {
                    tracing::warn!(
                        "sink {}: batch of {} records (seq {}..{}) refused ({reason}); sending them one by one to find the refused records",
                        self.id,
                        rows.len(),
                        rows[0].seq,
                        rows[rows.len() - 1].seq
                    );
                    self.one_by_one(rows, &mut shutdown).await;
                }
            }
        }
        tracing::info!("sink {}: stopped at seq {}", self.id, self.cursor);
    }

    async fn one_by_one(&mut self, rows: Vec<JournalRow>, shutdown: &mut Shutdown) {
        for row in rows {
            loop {
                match self.sink.send(std::slice::from_ref(&row)).await {
                    Ok(()) => {
                        self.metrics.sent(&self.id, 1);
                        self.delivered(row.seq).await;
                        break;
                    }
                    Err(SendError::Reject { reason }) => {
                        self.reject(&row, &reason).await;
                        break;
                    }
                    Err(SendError::Retry {
                        reason,
                        retry_after,
                    }) => {
                        let delay = self.failed(&reason, retry_after);
                        if shutdown.is_triggered() {
                            return;
                        }
                        self.pause(shutdown, delay).await;
                    }
                }
            }
        }
    }

    async fn delivered(&mut self, seq: i64) {
        loop {
            match self.journal.ack(&self.id, seq).await {
                Ok(()) => break,
                Err(JournalError::Closed) => return,
                Err(e) => {
                    tracing::error!(
                        "sink {}: cannot record delivery up to seq {seq}: {e}; retrying",
                        self.id
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        self.cursor = seq;
        self.backoff.reset();
        if let Some((attempts, took)) = self.repeat.success() {
            tracing::info!(
                "sink {}: delivering again after {attempts} failed attempts over {}",
                self.id,
                human_duration(took)
            );
            self.journal.sink_error(&self.id, None);
        }
    }

    async fn reject(&mut self, row: &JournalRow, reason: &str) {
        tracing::warn!(
            "sink {}: record seq {} (id {}) refused for good: {reason}; moved to dead letters, delivery goes on. \
             See `shopfloor-agent status`; re-send it once the peer is fixed.",
            self.id,
            row.seq,
            row.id
        );
        if let Err(e) = self
            .journal
            .dead_letter(&self.id, row.seq, &row.id, reason)
            .await
        {
            tracing::error!(
                "sink {}: cannot write dead letter for seq {}: {e}",
                self.id,
                row.seq
            );
            return; // cursor stays: the record is sent again rather than lost
        }
        self.metrics.dead_lettered(&self.id, 1);
        self.delivered(row.seq).await;
    }

    fn failed(&mut self, reason: &str, retry_after: Option<Duration>) -> Duration {
        self.metrics.retry(&self.id);
        let delay = match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => self.backoff.next_delay(),
        };
        match self.repeat.failure() {
            Repeat::First => {
                tracing::warn!(
                    "sink {}: cannot deliver to {} ({reason}); records stay in the journal, retrying in {}",
                    self.id,
                    self.sink.target(),
                    human_duration(delay)
                );
                self.journal.sink_error(&self.id, Some(reason.to_string()));
            }
            Repeat::Summary { attempts, since } => {
                tracing::warn!(
                    "sink {}: still failing, {attempts} attempts in {} (last: {reason}); backlog waits in the journal",
                    self.id,
                    human_duration(since)
                );
                self.journal.sink_error(&self.id, Some(reason.to_string()));
            }
            Repeat::Quiet => {}
        }
        delay
    }

    async fn pause(&self, shutdown: &mut Shutdown, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => {}
        }
    }
}
