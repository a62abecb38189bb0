//! The writer thread and the async handle to it: group commit, size limit, gap on resume.
//!
//! Every write command goes through one bounded channel to one thread that owns the write connection.
//! The thread takes the first waiting append and every further append already queued (up to
//! `max_batch_records`) and commits them in one transaction: under load, many callers share one fsync;
//! alone, a caller waits for just its own. Each caller is answered after the commit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::store::{is_disk_full, ChainHead, PruneOutcome, Synchronous};
use super::{Appended, JournalError, NewRecord, StateUpdate, Store};
use crate::records::{QualityRecord, RecordContext};

/// Depth of the command queue: callers wait (backpressure) beyond it.
const QUEUE_DEPTH: usize = 1024;

/// How the journal is opened.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Directory holding `journal.sqlite`.
    pub data_dir: PathBuf,
    /// Commit durability.
    pub synchronous: Synchronous,
    /// Refuse new records beyond this size (0: no limit).
    pub max_disk_bytes: u64,
    /// Records older than this, acknowledged by every sink, are pruned.
    pub retention_days: u32,
    /// Most records in one group commit.
    pub max_batch_records: usize,
    /// Sinks whose acknowledgement retention waits for.
    pub sinks: Vec<String>,
    /// Hard cap on database pages (`PRAGMA max_page_count`); reaching it behaves exactly like a full
    /// disk. Tests use it to exercise the disk-full path without mounting a small file system.
    pub max_page_count: Option<u64>,
    /// Where commits are counted and timed (`/metrics`).
    pub metrics: Option<crate::metrics::Metrics>,
    /// The configuration's effective TOML (secret references unresolved), kept in the journal
    /// under the hash the records carry, for evidence packages.
    pub config_toml: Option<String>,
    /// Signs each record's hash (`journal.sign`).
    pub signer: Option<Arc<super::signing::Signer>>,
}

impl JournalOptions {
    /// Defaults for `data_dir`: FULL sync, no size limit, 30 days, 1,000 records per commit, no sinks.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        JournalOptions {
            data_dir: data_dir.into(),
            synchronous: Synchronous::Full,
            max_disk_bytes: 0,
            retention_days: 30,
            max_batch_records: 1000,
            sinks: Vec::new(),
            max_page_count: None,
            metrics: None,
            config_toml: None,
            signer: None,
        }
    }
}

/// What the journal found when it opened.
#[derive(Debug, Clone)]
pub struct Startup {
    /// Last seq in the journal.
    pub last_seq: i64,
    /// Whether the previous run closed the journal cleanly (true for a new journal).
    pub previous_clean: bool,
    /// When the last record was appended (Unix ms), if any.
    pub last_appended_ms: Option<i64>,
    /// The config hash of the previous run.
    pub previous_config_sha256: Option<String>,
}

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

enum Command {
    Append {
        records: Vec<NewRecord>,
        state: Vec<StateUpdate>,
        reply: Reply<Vec<Appended>>,
    },
    Ack {
        sink: String,
        seq: i64,
        reply: Reply<()>,
    },
    SinkError {
        sink: String,
        error: Option<String>,
    },
    DeadLetter {
        sink: String,
        seq: i64,
        record_id: String,
        reason: String,
        reply: Reply<()>,
    },
    RegisterSink {
        sink: String,
        reply: Reply<i64>,
    },
    SetMeta {
        key: String,
        value: String,
        reply: Reply<()>,
    },
    Prune {
        reply: Reply<PruneOutcome>,
    },
    Quarantine {
        source: String,
        topic: String,
        payload: Vec<u8>,
        reason: String,
        reply: Reply<()>,
    },
    Receipts {
        sink: String,
        receipts: Vec<(i64, String, String)>,
    },
    Settle {
        request: i64,
        outcome: String,
        retried: Vec<(String, i64)>,
        reply: Reply<()>,
    },
    Close,
}

struct Shared {
    data_dir: PathBuf,
    committed: watch::Sender<i64>,
    refusing: AtomicBool,
    refused: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    startup: Startup,
    ctx: RecordContext,
}

/// Handle to the journal. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Opens the journal and starts its writer thread. `ctx` is used for the records the journal
    /// writes itself (the gap after a refusal).
    pub fn open(opts: JournalOptions, ctx: RecordContext) -> Result<Journal, JournalError> {
        let mut store = Store::open_rw(&opts.data_dir, opts.synchronous)?;
        store.set_signer(opts.signer.clone());
        if let Some(pages) = opts.max_page_count {
            store.connection().query_row(
                &format!("PRAGMA max_page_count = {pages}"),
                [],
                |_| Ok(()),
            )?;
        }
        let head = store.head()?;
        let startup = Startup {
            last_seq: head.seq,
            previous_clean: store.meta("clean_shutdown")?.as_deref() != Some("false"),
            last_appended_ms: store.last_appended_ms()?,
            previous_config_sha256: store.meta("last_config_sha256")?,
        };
        store.set_meta("clean_shutdown", "false")?;
        store.set_meta("last_config_sha256", &ctx.config_sha256)?;
        if let Some(text) = &opts.config_toml {
            store.remember_config(&ctx.config_sha256, text)?;
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed, _) = watch::channel(head.seq);
        let shared = Arc::new(Shared {
            data_dir: opts.data_dir.clone(),
            committed,
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            thread: Mutex::new(None),
            startup,
            ctx: ctx.clone(),
        });
        let writer = Writer {
            store,
            head,
            opts,
            ctx,
            shared: shared.clone(),
            refusal: None,
        };
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))?;
        if let Ok(mut slot) = shared.thread.lock() {
            *slot = Some(handle);
        }
        Ok(Journal { tx, shared })
    }

    /// What the journal found at open.
    pub fn startup(&self) -> &Startup {
        &self.shared.startup
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.shared.data_dir
    }

    /// Watches the last committed seq (sinks wake on it).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.committed.subscribe()
    }

    /// Whether new records are being refused (size limit or disk full): health is degraded.
    pub fn is_refusing(&self) -> bool {
        self.shared.refusing.load(Ordering::Relaxed)
    }

    /// Records refused since the agent started.
    pub fn refused_total(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Appends records; returns after they are committed.
    pub async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, JournalError> {
        self.append_with_state(records, Vec::new()).await
    }

    /// Appends records and source state in one transaction; returns after commit.
    pub async fn append_with_state(
        &self,
        records: Vec<NewRecord>,
        state: Vec<StateUpdate>,
    ) -> Result<Vec<Appended>, JournalError> {
        self.call(|reply| Command::Append {
            records,
            state,
            reply,
        })
        .await
    }

    /// Appends one record made by the agent itself.
    pub async fn append_record(&self, record: QualityRecord) -> Result<Appended, JournalError> {
        let mut out = self.append(vec![NewRecord::new(record)]).await?;
        out.pop().ok_or(JournalError::Closed)
    }

    /// Blocking form of [`Journal::append`], for threads outside the runtime.
    pub fn append_blocking(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(Command::Append {
                records,
                state: Vec::new(),
                reply,
            })
            .map_err(|_| JournalError::Closed)?;
        rx.blocking_recv().map_err(|_| JournalError::Closed)?
    }

    /// Registers a sink; returns its acknowledged seq.
    pub async fn register_sink(&self, sink: &str) -> Result<i64, JournalError> {
        let sink = sink.to_string();
        self.call(|reply| Command::RegisterSink { sink, reply })
            .await
    }

    /// Moves a sink's cursor to `seq`.
    pub async fn ack(&self, sink: &str, seq: i64) -> Result<(), JournalError> {
        let sink = sink.to_string();
        self.call(|reply| Command::Ack { sink, seq, reply }).await
    }

    /// Records a sink's failure (or recovery, with `None`) for `status`. Fire and forget.
    pub fn sink_error(&self, sink: &str, error: Option<String>) {
        let _ = self.tx.try_send(Command::SinkError {
            sink: sink.to_string(),
            error,
        });
    }

    /// Moves a record to a sink's dead letters.
    pub async fn dead_letter(
        &self,
        sink: &str,
        seq: i64,
        record_id: &str,
        reason: &str,
    ) -> Result<(), JournalError> {
        let (sink, record_id, reason) =
            (sink.to_string(), record_id.to_string(), reason.to_string());
        self.call(|reply| Command::DeadLetter {
            sink,
            seq,
            record_id,
            reason,
            reply,
        })
        .await
    }

    /// The gateway and configuration the journal's own records name.
    pub fn context(&self) -> RecordContext {
        self.shared.ctx.clone()
    }

    /// Keeps receipt ids a sink's peer answered with, as (seq, record id, receipt). Fire and
    /// forget: a receipt lost in a crash only leaves that record unreconciled.
    pub fn keep_receipts(&self, sink: &str, receipts: Vec<(i64, String, String)>) {
        let _ = self.tx.try_send(Command::Receipts {
            sink: sink.to_string(),
            receipts,
        });
    }

    /// Marks a re-send request done, and the dead letters it re-sent as retried.
    pub async fn settle_request(
        &self,
        request: i64,
        outcome: String,
        retried: Vec<(String, i64)>,
    ) -> Result<(), JournalError> {
        self.call(|reply| Command::Settle {
            request,
            outcome,
            retried,
            reply,
        })
        .await
    }

    /// Writes a `meta` value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), JournalError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(|reply| Command::SetMeta { key, value, reply })
            .await
    }

    /// Keeps an unusable payload with the reason; returns after commit (the source may then
    /// acknowledge it upstream).
    pub async fn quarantine(
        &self,
        source: &str,
        topic: &str,
        payload: Vec<u8>,
        reason: &str,
    ) -> Result<(), JournalError> {
        let (source, topic, reason) = (source.to_string(), topic.to_string(), reason.to_string());
        self.call(|reply| Command::Quarantine {
            source,
            topic,
            payload,
            reason,
            reply,
        })
        .await
    }

    /// Runs retention now.
    pub async fn prune(&self) -> Result<PruneOutcome, JournalError> {
        self.call(|reply| Command::Prune { reply }).await
    }

    /// Finishes queued commands, folds the WAL, marks a clean shutdown and stops the writer thread.
    pub async fn close(&self) {
        let _ = self.tx.send(Command::Close).await;
        let handle = self.shared.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Blocking form of [`Journal::close`].
    pub fn close_blocking(&self) {
        let _ = self.tx.blocking_send(Command::Close);
        let handle = self.shared.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

struct Refusal {
    since: String,
    refused: u64,
    reason: String,
    last_log: Instant,
}

struct Writer {
    store: Store,
    head: ChainHead,
    opts: JournalOptions,
    ctx: RecordContext,
    shared: Arc<Shared>,
    refusal: Option<Refusal>,
}

struct Pending {
    records: Vec<NewRecord>,
    state: Vec<StateUpdate>,
    reply: Reply<Vec<Appended>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut deferred: Option<Command> = None;
        loop {
            let cmd = match deferred.take() {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                },
            };
            match cmd {
                Command::Append {
                    records,
                    state,
                    reply,
                } => {
                    let mut n = records.len();
                    let mut group = vec![Pending {
                        records,
                        state,
                        reply,
                    }];
                    while n < self.opts.max_batch_records {
                        match rx.try_recv() {
                            Ok(Command::Append {
                                records,
                                state,
                                reply,
                            }) => {
                                n += records.len();
                                group.push(Pending {
                                    records,
                                    state,
                                    reply,
                                });
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Command::Close => break,
                other => self.handle(other),
            }
        }
        if let Err(e) = self.store.checkpoint_wal() {
            tracing::warn!("journal: could not fold the WAL at shutdown ({e}); it will be replayed at next start");
        }
        if let Err(e) = self.store.set_meta("clean_shutdown", "true") {
            tracing::warn!("journal: could not mark a clean shutdown ({e})");
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Ack { sink, seq, reply } => {
                let _ = reply.send(self.store.ack(&sink, seq));
            }
            Command::SinkError { sink, error } => {
                if let Err(e) = self.store.set_sink_error(&sink, error.as_deref()) {
                    tracing::warn!("journal: could not record the state of sink {sink}: {e}");
                }
            }
            Command::DeadLetter {
                sink,
                seq,
                record_id,
                reason,
                reply,
            } => {
                let _ = reply.send(self.store.dead_letter(&sink, seq, &record_id, &reason));
            }
            Command::Receipts { sink, receipts } => {
                if let Err(e) = self.store.keep_receipts(&sink, &receipts) {
                    tracing::warn!(
                        "sink {sink}: cannot keep {} receipt id(s): {e}",
                        receipts.len()
                    );
                }
            }
            Command::Settle {
                request,
                outcome,
                retried,
                reply,
            } => {
                let _ = reply.send(self.store.settle_request(request, &outcome, &retried));
            }
            Command::RegisterSink { sink, reply } => {
                let _ = reply.send(self.store.register_sink(&sink));
            }
            Command::SetMeta { key, value, reply } => {
                let _ = reply.send(self.store.set_meta(&key, &value));
            }
            Command::Prune { reply } => {
                let _ = reply.send(self.prune());
            }
            Command::Quarantine {
                source,
                topic,
                payload,
                reason,
                reply,
            } => {
                let _ = reply.send(self.store.quarantine(&source, &topic, &payload, &reason));
            }
            Command::Append { .. } | Command::Close => {}
        }
    }

    fn prune(&mut self) -> Result<PruneOutcome, JournalError> {
        let keep_ms = i64::from(self.opts.retention_days) * 86_400_000;
        let older_than = crate::time::now_ms() - keep_ms;
        let out = self.store.prune(&self.opts.sinks, older_than, 10_000)?;
        if out.pruned > 0 {
            tracing::info!(
                "journal: pruned {} delivered records older than {} days (checkpoint at seq {})",
                out.pruned,
                self.opts.retention_days,
                out.checkpoint_seq.unwrap_or(0)
            );
        }
        Ok(out)
    }

    fn over_limit(&self) -> Option<String> {
        if self.opts.max_disk_bytes == 0 {
            return None;
        }
        match self.store.used_bytes() {
            Ok(used) if used >= self.opts.max_disk_bytes => Some(format!(
                "max_disk_bytes reached: {used} of {} bytes used",
                self.opts.max_disk_bytes
            )),
            _ => None,
        }
    }

    fn refuse(&mut self, group: Vec<Pending>, reason: String) {
        let n: u64 = group.iter().map(|p| p.records.len() as u64).sum();
        self.shared.refused.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.opts.metrics {
            m.refused(n);
        }
        self.shared.refusing.store(true, Ordering::Relaxed);
        let path = self.store.path().display().to_string();
        match &mut self.refusal {
            None => {
                tracing::error!(
                    "journal {path}: {reason}; new records are REFUSED and evidence is at risk. \
                     Space is freed only when every sink has acknowledged records older than retention_days: \
                     check delivery with `shopfloor-agent status`, or raise journal.max_disk_bytes / free disk space."
                );
                self.refusal = Some(Refusal {
                    since: crate::time::now_rfc3339(),
                    refused: n,
                    reason: reason.clone(),
                    last_log: Instant::now(),
                });
            }
            Some(r) => {
                r.refused += n;
                if r.last_log.elapsed() >= Duration::from_secs(60) {
                    tracing::error!(
                        "journal {path}: still refusing records ({} refused since {}): {reason}",
                        r.refused,
                        r.since
                    );
                    r.last_log = Instant::now();
                }
            }
        }
        for p in group {
            let _ = p.reply.send(Err(JournalError::Full {
                reason: reason.clone(),
            }));
        }
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        if let Some(reason) = self.over_limit() {
            return self.refuse(group, reason);
        }
        let gap = self.refusal.as_ref().map(|r| {
            NewRecord::new(QualityRecord::gap(
                &self.ctx,
                "journal",
                r.since.clone(),
                crate::time::now_rfc3339(),
                format!(
                    "journal refused {} records ({}); they were not captured",
                    r.refused, r.reason
                ),
            ))
        });
        let mut records: Vec<&NewRecord> = gap.iter().collect();
        let mut state: Vec<&StateUpdate> = Vec::new();
        for p in &group {
            records.extend(p.records.iter());
            state.extend(p.state.iter());
        }
        let started = Instant::now();
        let appended = self.store.append(&mut self.head, &records, &state);
        if let (Some(m), Ok(outcomes)) = (&self.opts.metrics, &appended) {
            m.commit(started.elapsed().as_secs_f64());
            // One counter update per kind, not per record: this is the journal's hot path.
            let mut per_kind: Vec<(&'static str, u64)> = Vec::new();
            for (r, o) in records.iter().zip(outcomes) {
                if matches!(o, Appended::New { .. }) {
                    let kind = r.record.kind.as_str();
                    match per_kind.iter_mut().find(|(k, _)| *k == kind) {
                        Some((_, n)) => *n += 1,
                        None => per_kind.push((kind, 1)),
                    }
                }
            }
            for (kind, n) in per_kind {
                m.appended(kind, n);
            }
        }
        match appended {
            Ok(mut outcomes) => {
                if gap.is_some() {
                    let gap_seq = outcomes.remove(0).seq();
                    if let Some(r) = self.refusal.take() {
                        tracing::warn!(
                            "journal accepts records again after refusing {} since {}; gap record at seq {gap_seq}",
                            r.refused,
                            r.since
                        );
                    }
                    self.shared.refusing.store(false, Ordering::Relaxed);
                }
                self.shared.committed.send_replace(self.head.seq);
                let mut rest = outcomes.into_iter();
                for p in group {
                    let mine: Vec<Appended> = rest.by_ref().take(p.records.len()).collect();
                    let _ = p.reply.send(Ok(mine));
                }
            }
            Err(e) if is_disk_full(&e) => self.refuse(group, "disk full".to_string()),
            Err(e) if group.len() > 1 => {
                // One caller's bad batch must not fail the others: commit each on its own.
                tracing::debug!("journal: group commit failed ({e}); retrying callers one by one");
                for p in group {
                    self.commit_group(vec![p]);
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!("journal: append failed: {message}");
                for p in group {
                    let _ = p.reply.send(Err(JournalError::Failed(message.clone())));
                }
            }
        }
    }
}
