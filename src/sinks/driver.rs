//! The delivery driver: reads a sink's batches from its cursor, sends them, retries, dead-letters.
//!
//! Per sink, in a loop: read up to `batch_max_records` rows (and `batch_max_bytes`) after the cursor;
//! send; on success move the cursor to the last row. On [`SendError::Retry`] wait (the peer's
//! `Retry-After`, else exponential backoff with jitter) and send the same batch again. On
//! [`SendError::Reject`] of a batch, send its rows one by one to find the refused ones; each refused
//! row is written to `dead_letters` with the reason and the cursor moves past it. Memory is bounded by
//! one batch whatever the backlog.
//!
//! Receipt ids in the peer's answer are kept (`receipts`, for `status --by`). Once a second the driver
//! also serves the re-send requests the command line wrote (`replay`, `dead-letters retry`): it sends
//! those rows without moving its cursor, logs what it did and appends an `agent_event` naming who
//! asked.

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

impl DeliveryOptions {
    /// Batches of up to `n` records, no byte bound, retries from 0.5 s doubling to 30 s: the
    /// broker sinks' policy (MQTT, NATS, Kafka), whose clients bound what they send themselves.
    pub fn records(n: usize) -> DeliveryOptions {
        DeliveryOptions {
            batch_max_records: n,
            batch_max_bytes: usize::MAX,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// How often the driver looks for `replay` and `dead-letters retry` requests.
const REQUEST_CHECK: Duration = Duration::from_secs(1);

/// Longest wait honoured from a peer's `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Delivers the journal to one sink until shutdown.
pub struct Driver {
    id: String,
    sink: Box<dyn Sink>,
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
        sink: Box<dyn Sink>,
        journal: Journal,
        opts: DeliveryOptions,
        repeat_summary: Duration,
        metrics: crate::metrics::Metrics,
    ) -> Result<Driver, JournalError> {
        let mut cursor = journal.register_sink(id).await?;
        let dir = journal.data_dir().to_path_buf();
        let reader = tokio::task::spawn_blocking(move || Store::open_ro(&dir))
            .await
            .map_err(|e| JournalError::Failed(e.to_string()))??;
        let mut sink = sink;
        if let Some(held) = sink.delivered_tail() {
            // The sink's own account is trusted only where the journal confirms it: the record of
            // that seq, with that hash. Anything else (a line added by hand, the output of a journal
            // that was moved aside) would make the sink skip records.
            match reader.hash_at(held.seq)? {
                Some(hash) if hash == held.hash => {
                    if held.seq > cursor {
                        // A crash between the write and the ack.
                        tracing::info!(
                            "sink {id}: already holds records up to seq {}; continuing after it",
                            held.seq
                        );
                        journal.ack(id, held.seq).await?;
                        cursor = held.seq;
                    }
                }
                // Pruned by retention after every sink had it: the line cannot be checked, and
                // cannot make the sink skip anything (delivery goes on after the cursor).
                None if held.seq <= cursor => {}
                other => {
                    let why = match other {
                        None => format!(
                            "its last line is seq {}, which this journal does not hold",
                            held.seq
                        ),
                        Some(_) => format!(
                            "its last line (seq {}) has another hash than the journal's record of that seq",
                            held.seq
                        ),
                    };
                    let moved = sink
                        .set_aside()
                        .map_err(|e| JournalError::Failed(e.to_string()))?;
                    let names: Vec<String> =
                        moved.iter().map(|p| p.display().to_string()).collect();
                    tracing::warn!(
                        "sink {id}: its output does not match the journal ({why}); moved aside: {}; delivering again from seq {}",
                        names.join(", "),
                        cursor + 1
                    );
                    let event = crate::records::QualityRecord::agent_event(
                        &journal.context(),
                        "sink_output_set_aside",
                        format!("sink {id}: output did not match the journal ({why}); moved aside"),
                        serde_json::json!({ "sink": id, "files": names, "line_seq": held.seq, "cursor": cursor }),
                    );
                    journal
                        .append(vec![crate::journal::NewRecord::new(event)])
                        .await?;
                }
            }
        }
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

    /// The next batch after the cursor, up to what is on disk.
    async fn read_batch(&self) -> Result<Vec<JournalRow>, JournalError> {
        self.read(self.cursor, self.journal.durable_seq()).await
    }

    /// Rows after `after` up to `to`, within the batch limits.
    async fn read(&self, after: i64, to: i64) -> Result<Vec<JournalRow>, JournalError> {
        let (max_records, max_bytes) = (self.opts.batch_max_records, self.opts.batch_max_bytes);
        self.with_reader(move |store| {
            let mut rows = store.read_range(after, to, max_records)?;
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
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let store = reader
                .lock()
                .map_err(|_| JournalError::Failed("reader lock poisoned".into()))?;
            f(&store)
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
        let mut requests_checked = std::time::Instant::now() - REQUEST_CHECK;
        // A batch the sink refused for now is sent again as it was: the same records under the
        // same idempotency key, and no reading and decoding of the journal on every retry of a
        // long outage (what made memory creep in the allocator's arenas).
        let mut held: Option<Vec<JournalRow>> = None;
        loop {
            // After shutdown the driver keeps delivering while it can (the stop record included),
            // and leaves at the first empty read or failure; the caller bounds this with a grace time.
            let draining = shutdown.is_triggered();
            if !draining && requests_checked.elapsed() >= REQUEST_CHECK {
                requests_checked = std::time::Instant::now();
                self.serve_requests(&mut shutdown).await;
            }
            let again = held
                .take()
                .filter(|rows| rows.first().is_some_and(|r| r.seq == self.cursor + 1));
            let rows = match again {
                Some(rows) => Ok(rows),
                None => self.read_batch().await,
            };
            let rows = match rows {
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
                    // Requests from the command line, and a safety net.
                    _ = tokio::time::sleep(REQUEST_CHECK) => {}
                }
                continue;
            }
            match self.sink.send(&rows).await {
                Ok(receipts) => {
                    self.keep_receipts(&rows, receipts);
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
                    held = Some(rows);
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
            match self
                .send_answered(std::slice::from_ref(&row), shutdown)
                .await
            {
                Some(Ok(())) => self.delivered(row.seq).await,
                Some(Err(reason)) => self.reject(&row, &reason).await,
                None => return,
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

    /// Performs the pending `replay` and `dead-letters retry` requests for this sink, each
    /// recorded by an `agent_event` and a log line. A request cut short by shutdown stays pending
    /// and runs again after the next start (the QMS sees the same ids again).
    async fn serve_requests(&mut self, shutdown: &mut Shutdown) {
        let id = self.id.clone();
        let pending = match self.with_reader(move |s| s.requests(Some(&id), true)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("sink {}: cannot read requests: {e}", self.id);
                return;
            }
        };
        for r in pending {
            let done = match r.action.as_str() {
                "replay" => self.replay(&r, shutdown).await,
                "retry_dead_letters" => self.retry_dead_letters(&r, shutdown).await,
                other => Some(Resent {
                    outcome: format!("unknown request {other}: ignored"),
                    ..Resent::default()
                }),
            };
            let Some(done) = done else { return };
            self.settle(&r, done).await;
        }
    }

    async fn settle(&mut self, r: &crate::journal::store::Request, done: Resent) {
        tracing::info!(
            "sink {}: {} (request {} by {} at {}{})",
            self.id,
            done.outcome,
            r.id,
            r.requested_by,
            r.requested_at,
            r.reason
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
        let event = crate::records::QualityRecord::agent_event(
            &self.journal.context(),
            if r.action == "replay" {
                "replay"
            } else {
                "dead_letters_retried"
            },
            done.outcome.clone(),
            serde_json::json!({
                "sink": self.id,
                "request": r.id,
                "requested_by": r.requested_by,
                "requested_at": r.requested_at,
                "reason": r.reason,
                "from_seq": r.from_seq,
                "to_seq": r.to_seq,
                "sent": done.sent,
                "refused": done
                    .refused
                    .iter()
                    .map(|(seq, why)| serde_json::json!({ "seq": seq, "reason": why }))
                    .collect::<Vec<_>>(),
            }),
        );
        if let Err(e) = self.journal.append_record(event).await {
            tracing::error!("sink {}: cannot record request {}: {e}", self.id, r.id);
            return;
        }
        let retried = done
            .retried
            .into_iter()
            .map(|seq| (self.id.clone(), seq))
            .collect();
        if let Err(e) = self
            .journal
            .settle_request(r.id, done.outcome, retried)
            .await
        {
            tracing::error!("sink {}: cannot mark request {} done: {e}", self.id, r.id);
        }
    }

    /// Sends `rows` until the peer answers for good: `Some(Ok)` sent, `Some(Err)` refused, `None`
    /// if shutdown came first.
    async fn send_answered(
        &mut self,
        rows: &[JournalRow],
        shutdown: &mut Shutdown,
    ) -> Option<Result<(), String>> {
        loop {
            match self.sink.send(rows).await {
                Ok(receipts) => {
                    self.keep_receipts(rows, receipts);
                    self.metrics.sent(&self.id, rows.len() as u64);
                    return Some(Ok(()));
                }
                Err(SendError::Reject { reason }) => return Some(Err(reason)),
                Err(SendError::Retry {
                    reason,
                    retry_after,
                }) => {
                    let delay = self.failed(&reason, retry_after);
                    if shutdown.is_triggered() {
                        return None;
                    }
                    self.pause(shutdown, delay).await;
                    if shutdown.is_triggered() {
                        return None;
                    }
                }
            }
        }
    }

    fn keep_receipts(&self, rows: &[JournalRow], receipts: super::Receipts) {
        if receipts.is_empty() {
            return;
        }
        let with_seq = receipts
            .into_iter()
            .filter_map(|(id, receipt)| {
                let row = rows.iter().find(|r| r.id == id)?;
                Some((row.seq, id, receipt))
            })
            .collect();
        self.journal.keep_receipts(&self.id, with_seq);
    }

    async fn replay(
        &mut self,
        r: &crate::journal::store::Request,
        shutdown: &mut Shutdown,
    ) -> Option<Resent> {
        let (from, to) = (r.from_seq.unwrap_or(1), r.to_seq.unwrap_or(i64::MAX));
        let mut done = Resent::default();
        let mut after = from - 1;
        let mut last = None;
        while after < to {
            let rows = self.read(after, to).await.ok()?;
            let Some(tail) = rows.last() else { break };
            after = tail.seq;
            last = Some(tail.seq);
            match self.send_answered(&rows, shutdown).await? {
                Ok(()) => done.sent += rows.len() as u64,
                // One by one, to send all but the refused ones.
                Err(_) => {
                    for row in &rows {
                        match self
                            .send_answered(std::slice::from_ref(row), shutdown)
                            .await?
                        {
                            Ok(()) => done.sent += 1,
                            Err(why) => done.refused.push((row.seq, why)),
                        }
                    }
                }
            }
        }
        done.outcome = match last {
            Some(last) => format!(
                "replayed seq {from}..{last}: {} record(s) sent again{}",
                done.sent,
                refused_note(&done.refused)
            ),
            None => format!("replay of seq {from}..: no records in that range"),
        };
        Some(done)
    }

    async fn retry_dead_letters(
        &mut self,
        r: &crate::journal::store::Request,
        shutdown: &mut Shutdown,
    ) -> Option<Resent> {
        let id = self.id.clone();
        let letters = self
            .with_reader(move |s| s.dead_letters(Some(&id)))
            .await
            .ok()?;
        let mut done = Resent::default();
        for d in letters
            .iter()
            .filter(|d| r.from_seq.is_none_or(|s| s == d.seq))
        {
            let rows = self.read(d.seq - 1, d.seq).await.ok()?;
            let Some(row) = rows.first() else {
                done.refused
                    .push((d.seq, "the record is no longer in the journal".into()));
                continue;
            };
            match self
                .send_answered(std::slice::from_ref(row), shutdown)
                .await?
            {
                Ok(()) => {
                    done.sent += 1;
                    done.retried.push(d.seq);
                }
                Err(why) => done.refused.push((d.seq, why)),
            }
        }
        done.outcome = format!(
            "dead letters re-sent: {} delivered{}",
            done.sent,
            refused_note(&done.refused)
        );
        Some(done)
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

/// What a request re-sent.
#[derive(Debug, Default)]
struct Resent {
    outcome: String,
    sent: u64,
    /// Seqs of dead letters now delivered.
    retried: Vec<i64>,
    /// Seqs the peer refused again, with its reason.
    refused: Vec<(i64, String)>,
}

fn refused_note(refused: &[(i64, String)]) -> String {
    match refused {
        [] => String::new(),
        [(seq, why), ..] => format!(
            ", {} refused again (seq {seq}: {why}{})",
            refused.len(),
            if refused.len() > 1 { ", …" } else { "" }
        ),
    }
}
