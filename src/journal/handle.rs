//! The journal's handle: what sources, the pipeline and sinks call. Every write is a command on one
//! bounded channel to the writer thread (`writer.rs`); callers are answered once their commit is on
//! disk (`syncer.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::store::{Checkpointer, PruneOutcome, Synchronous};
use super::syncer::{frames, SyncFn, Syncer, CHECKPOINT_BACKSTOP_BYTES, CHECKPOINT_BYTES};
use super::writer::Writer;
use super::{Appended, JournalError, NewRecord, StateUpdate, Store};
use crate::records::{QualityRecord, RecordContext};

/// Depth of the command queue: callers wait (backpressure) beyond it.
pub(super) const QUEUE_DEPTH: usize = 1024;

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
    /// Page size of a journal made now (`journal.page_size_bytes`); an existing one keeps its own.
    pub page_size: u32,
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
    /// How often the head seal is written while records come (`journal.seal_interval_s`); it is
    /// written at every clean close too. With `synchronous = "normal"` only at close (a seal must
    /// never name a commit that power loss can take back).
    pub seal_interval: std::time::Duration,
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
            page_size: super::DEFAULT_PAGE_SIZE,
            sinks: Vec::new(),
            max_page_count: None,
            metrics: None,
            config_toml: None,
            signer: None,
            seal_interval: std::time::Duration::from_secs(300),
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

pub(super) type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

pub(super) enum Command {
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

pub(super) struct Shared {
    pub(super) data_dir: PathBuf,
    /// The last seq that is on disk (after the fsync covering it).
    pub(super) committed: watch::Sender<i64>,
    /// Set when an fsync of the WAL failed: nothing more is written.
    pub(super) broken: Mutex<Option<String>>,
    pub(super) refusing: AtomicBool,
    pub(super) refused: AtomicU64,
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) startup: Startup,
    pub(super) ctx: RecordContext,
}

impl Shared {
    pub(super) fn broken(&self) -> Option<String> {
        self.broken.lock().ok().and_then(|b| b.clone())
    }
}

/// An append handed to the writer ([`Journal::append_queued`]); awaited, its outcome once
/// committed (or refused).
#[derive(Debug)]
pub struct Queued(oneshot::Receiver<Result<Vec<Appended>, JournalError>>);

impl std::future::Future for Queued {
    type Output = Result<Vec<Appended>, JournalError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(JournalError::Closed)))
    }
}

/// Handle to the journal. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Journal {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) shared: Arc<Shared>,
}

/// Refuses a journal that ends before what its own tables or its head seal name (`seal.rs`):
/// appending to it would give new records seqs that the sinks already hold, and they would never
/// be delivered.
pub(super) fn refuse_a_shortened_journal(
    store: &Store,
    head: i64,
    data_dir: &std::path::Path,
) -> Result<(), JournalError> {
    let mut beyond = store.references_beyond(head)?;
    match super::seal::read(data_dir) {
        Ok(seal) => beyond.extend(seal.and_then(|s| s.beyond(head))),
        Err(e) => {
            return Err(JournalError::Open {
                path: store.path().to_path_buf(),
                message: e.to_string(),
                hint: format!(
                "run `shopfloor-agent verify`; if the journal verifies, remove {} and start again",
                super::seal::path(data_dir).display()
            ),
            })
        }
    }
    beyond.sort_by_key(|b| std::cmp::Reverse(b.seq));
    match beyond.first() {
        None => Ok(()),
        Some(b) => Err(JournalError::Open {
            path: store.path().to_path_buf(),
            message: format!(
                "{}; appending now would reuse seqs that were already delivered",
                b.describe(head)
            ),
            hint: format!(
                "keep this journal as it is for the investigation (`shopfloor-agent verify` names the problem), move the data directory {} aside, and start again: the agent begins a new journal and delivers it in full",
                data_dir.display()
            ),
        }),
    }
}

impl Journal {
    /// Opens the journal and starts its writer and syncer threads. `ctx` is used for the records the
    /// journal writes itself (the gap after a refusal).
    pub fn open(opts: JournalOptions, ctx: RecordContext) -> Result<Journal, JournalError> {
        let wal = opts
            .data_dir
            .join(super::FILE_NAME)
            .with_extension("sqlite-wal");
        let fsync: Option<SyncFn> = (opts.synchronous == Synchronous::Full).then(|| {
            let mut file: Option<std::fs::File> = None;
            Box::new(move || {
                let f = match &file {
                    Some(f) => f,
                    None => file.insert(std::fs::OpenOptions::new().read(true).open(&wal)?),
                };
                f.sync_data()
            }) as SyncFn
        });
        Self::open_with_sync(opts, ctx, fsync)
    }

    /// [`Journal::open`] with the syncer's fsync given (`None`: SQLite's own `synchronous` mode is
    /// the whole durability).
    pub(super) fn open_with_sync(
        opts: JournalOptions,
        ctx: RecordContext,
        mut fsync: Option<SyncFn>,
    ) -> Result<Journal, JournalError> {
        let sqlite_sync = match fsync {
            Some(_) => Synchronous::Normal,
            None => opts.synchronous,
        };
        let mut store = Store::open_rw(&opts.data_dir, sqlite_sync, opts.page_size)?;
        store.set_signer(opts.signer.clone());
        let page_size = store.page_size()?;
        let wal_written = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::open(&opts.data_dir, sqlite_sync)?;
        store.hand_off_checkpoints(
            wal_written.clone(),
            frames(CHECKPOINT_BACKSTOP_BYTES, page_size),
            checkpointer.turn(),
        )?;
        if let Some(pages) = opts.max_page_count {
            store.set_max_page_count(pages)?;
        }
        let head = store.head()?;
        refuse_a_shortened_journal(&store, head.seq, &opts.data_dir)?;
        let startup_seq = head.seq;
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
        // What was written so far (the open's own writes, a WAL left by a crash) is made durable
        // before anything is acknowledged.
        if let Some(sync) = fsync.as_mut() {
            sync().map_err(|e| JournalError::Open {
                path: store.path().to_path_buf(),
                message: format!("cannot fsync the journal's WAL: {e}"),
                hint: "check the disk holding the data directory (dmesg shows I/O errors)".into(),
            })?;
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed, _) = watch::channel(head.seq);
        let shared = Arc::new(Shared {
            data_dir: opts.data_dir.clone(),
            committed,
            broken: Mutex::new(None),
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            thread: Mutex::new(None),
            startup,
            ctx: ctx.clone(),
        });
        let (sync_tx, sync_rx) = std::sync::mpsc::channel();
        // The checkpoint thread ends when the syncer drops its end of the channel.
        let (checkpoint_tx, checkpoint_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpoint_thread = std::thread::Builder::new()
            .name("journal-ckpt".into())
            .spawn(move || {
                while checkpoint_rx.recv().is_ok() {
                    if let Err(e) = checkpointer.checkpoint() {
                        // The next one, or the writer's backstop, folds what this one could not.
                        tracing::debug!("journal: checkpoint failed ({e})");
                    }
                }
            })?;
        let syncer = Syncer {
            fsync,
            checkpoint: Some(checkpoint_tx),
            checkpoint_thread: Some(checkpoint_thread),
            wal_written,
            checkpoint_frames: frames(CHECKPOINT_BYTES, page_size),
            shared: shared.clone(),
            metrics: opts.metrics.clone(),
        };
        let syncer = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || syncer.run(sync_rx))?;
        let writer = Writer {
            store,
            head,
            opts,
            ctx,
            shared: shared.clone(),
            refusal: None,
            room: 0,
            page_bytes: u64::from(page_size),
            sync: Some(sync_tx),
            syncer: Some(syncer),
            sealed: (startup_seq, Instant::now()),
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

    /// Watches the last committed seq, once it is on disk (sinks wake on it and read up to it).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.committed.subscribe()
    }

    /// The last seq on disk: sinks read up to it, never beyond (a row past it is committed but its
    /// fsync has not finished).
    pub fn durable_seq(&self) -> i64 {
        *self.shared.committed.borrow()
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

    /// Hands records and source state to the writer (one transaction, in the order handed) and
    /// returns at once with the receiver of the outcome: the caller can make its next batch while
    /// this one is written. Waits only while the writer's queue is full.
    pub async fn append_queued(
        &self,
        records: Vec<NewRecord>,
        state: Vec<StateUpdate>,
    ) -> Result<Queued, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append {
                records,
                state,
                reply,
            })
            .await
            .map_err(|_| JournalError::Closed)?;
        Ok(Queued(rx))
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
