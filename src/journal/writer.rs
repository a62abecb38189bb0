//! The writer thread and the async handle to it: group commit, pipelined fsync, size limit, gap on
//! resume.
//!
//! Every write command goes through one bounded channel to one thread that owns the write connection.
//! The thread takes the first waiting append and every further append already queued (up to
//! `max_batch_records`) and commits them in one transaction: under load, many callers share one fsync;
//! alone, a caller waits for just its own.
//!
//! **Pipelined fsync** (`synchronous = "full"`, the default): the write connection runs SQLite's
//! `synchronous=NORMAL` (a commit writes its WAL frames without fsync) and a second thread, the
//! syncer, fsyncs the WAL file after each commit. Callers are answered, and sinks see the new seq,
//! only after the fsync that covers their commit: acknowledged still means on disk. Meanwhile the
//! writer already commits the next group, so the fsync's wait and the next group's work overlap.
//! WAL frames are recovered as a prefix (each frame's checksum chains to the one before), so a commit
//! can never be durable while an earlier one is not. A failed fsync is not retried (the kernel may
//! have dropped the pages): the callers get the error and the journal refuses every further write
//! until the agent is restarted.
//!
//! **Checkpoints beside the writer**: SQLite folds the WAL into the database in the committing
//! thread once the WAL holds 1,000 pages, which stalls commits for the copy and its two fsyncs. Here
//! the writer's WAL hook only counts the frames it wrote; after every 1,000 the syncer wakes a third
//! thread that runs a `PASSIVE` checkpoint on its own connection while commits and fsyncs go on. The
//! checkpoint itself is SQLite's (in `NORMAL` and `FULL` it fsyncs the WAL before copying and the
//! database after), and the WAL starts over at the next commit once all of it is copied. While commits
//! keep coming a `PASSIVE` checkpoint never catches up completely (the WAL only starts over once all
//! of it is copied); past 4,000 frames (about 16 MiB) a commit waits for the checkpoint thread's run
//! in progress and checkpoints in place (`RESTART`: the WAL is written over from its start, the file
//! keeps its size), which bounds the WAL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::store::{is_disk_full, ChainHead, Checkpointer, PruneOutcome, Synchronous};
use super::{Appended, JournalError, NewRecord, StateUpdate, Store};
use crate::records::{QualityRecord, RecordContext};

/// Depth of the command queue: callers wait (backpressure) beyond it.
const QUEUE_DEPTH: usize = 1024;

/// WAL frames (pages) written between two checkpoints by the syncer: SQLite's own default.
const CHECKPOINT_FRAMES: u64 = 1000;

/// WAL frames beyond which a commit checkpoints in place (the syncer's checkpoints cannot finish
/// while the writer keeps appending): bounds the WAL at about 16 MiB with 4 KiB pages.
const CHECKPOINT_BACKSTOP: u64 = 4 * CHECKPOINT_FRAMES;

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
    /// The last seq that is on disk (after the fsync covering it).
    committed: watch::Sender<i64>,
    /// Set when an fsync of the WAL failed: nothing more is written.
    broken: Mutex<Option<String>>,
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

/// Refuses a journal that ends before what its own tables or its head seal name (`seal.rs`):
/// appending to it would give new records seqs that the sinks already hold, and they would never
/// be delivered.
fn refuse_a_shortened_journal(
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
                message: e,
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
    fn open_with_sync(
        opts: JournalOptions,
        ctx: RecordContext,
        mut fsync: Option<SyncFn>,
    ) -> Result<Journal, JournalError> {
        let sqlite_sync = match fsync {
            Some(_) => Synchronous::Normal,
            None => opts.synchronous,
        };
        let mut store = Store::open_rw(&opts.data_dir, sqlite_sync)?;
        store.set_signer(opts.signer.clone());
        let wal_written = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::open(&opts.data_dir, sqlite_sync)?;
        store.hand_off_checkpoints(
            wal_written.clone(),
            CHECKPOINT_BACKSTOP,
            checkpointer.turn(),
        )?;
        if let Some(pages) = opts.max_page_count {
            store.connection().query_row(
                &format!("PRAGMA max_page_count = {pages}"),
                [],
                |_| Ok(()),
            )?;
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

/// The syncer's fsync of the WAL file.
type SyncFn = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// What to do once a commit is on disk (`Ok`) or its fsync failed (`Err`, the message).
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A committed transaction waiting for its fsync.
struct Durable {
    /// The head seq after it (None when it appended no record).
    seq: Option<i64>,
    /// When its group commit started (commit latency is measured to the end of its fsync).
    started: Option<Instant>,
    answer: Answer,
}

/// The thread that makes commits durable: one fsync covers every commit queued while the previous
/// one ran; callers are answered in commit order. After a durable commit it asks the checkpoint
/// thread to fold the WAL into the database when the writer has written [`CHECKPOINT_FRAMES`] frames
/// since the last time; the writer's commits and the syncer's fsyncs go on meanwhile.
struct Syncer {
    fsync: Option<SyncFn>,
    /// Wakes the checkpoint thread (full: one is already asked for).
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
    checkpoint_thread: Option<std::thread::JoinHandle<()>>,
    /// WAL frames the writer's commits wrote, counted by its WAL hook.
    wal_written: Arc<AtomicU64>,
    shared: Arc<Shared>,
    metrics: Option<crate::metrics::Metrics>,
}

impl Syncer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Durable>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = self.sync();
            if result.is_ok() {
                if let Some(seq) = batch.iter().rev().find_map(|d| d.seq) {
                    self.shared.committed.send_replace(seq);
                }
            }
            for d in batch {
                if let (Some(m), Some(t), Ok(())) = (&self.metrics, d.started, &result) {
                    m.commit(t.elapsed().as_secs_f64());
                }
                (d.answer)(result.clone());
            }
            if let (Ok(()), Some(tx)) = (&result, &self.checkpoint) {
                if self.wal_written.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES
                    && tx.try_send(()).is_ok()
                {
                    self.wal_written.store(0, Ordering::Relaxed);
                }
            }
        }
        // The writer is stopping: the checkpoint in progress ends before its final one.
        self.checkpoint = None;
        if let Some(h) = self.checkpoint_thread.take() {
            let _ = h.join();
        }
    }

    fn sync(&mut self) -> Result<(), String> {
        if let Some(broken) = self.shared.broken() {
            return Err(broken);
        }
        let Some(fsync) = self.fsync.as_mut() else {
            return Ok(());
        };
        fsync().map_err(|e| {
            let message = format!(
                "fsync of the journal's WAL failed ({e}): the last commits may not be on disk; \
                 the journal refuses further writes: check the disk (dmesg shows I/O errors), then restart the agent"
            );
            tracing::error!("journal: {message}");
            if let Ok(mut b) = self.shared.broken.lock() {
                *b = Some(message.clone());
            }
            message
        })
    }
}

impl Shared {
    fn broken(&self) -> Option<String> {
        self.broken.lock().ok().and_then(|b| b.clone())
    }
}

struct Refusal {
    since: String,
    refused: u64,
    /// Of `refused`, those whose source sends them again ([`NewRecord::resent_if_refused`]).
    resent: u64,
    reason: String,
    last_log: Instant,
}

impl Refusal {
    /// The gap's reason: what was refused, and what of it was lost (only what was).
    fn describe(&self) -> String {
        let lost = self.refused - self.resent;
        let again = "their sources send again what was not acknowledged (MQTT QoS 1, REST pages), and they are journaled when they do";
        match (lost, self.resent) {
            (_, 0) => format!(
                "journal refused {} records ({}); they were not captured",
                self.refused, self.reason
            ),
            (0, _) => format!(
                "journal refused {} records ({}); none was lost: {again}",
                self.refused, self.reason
            ),
            _ => format!(
                "journal refused {} records ({}); {lost} were not captured (values read from devices), {}: {again}",
                self.refused, self.reason, self.resent
            ),
        }
    }
}

struct Writer {
    store: Store,
    head: ChainHead,
    opts: JournalOptions,
    ctx: RecordContext,
    shared: Arc<Shared>,
    refusal: Option<Refusal>,
    /// Bytes that can surely be appended before `max_disk_bytes` is read again ([`Writer::over_limit`]).
    room: u64,
    /// Commits on their way to the syncer (None once the writer stops).
    sync: Option<std::sync::mpsc::Sender<Durable>>,
    syncer: Option<std::thread::JoinHandle<()>>,
    /// The seq of the last head seal and when it was written.
    sealed: (i64, Instant),
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
            self.seal_now_and_then();
        }
        // Every caller is answered before the journal is marked clean.
        self.sync = None;
        if let Some(h) = self.syncer.take() {
            let _ = h.join();
        }
        if let Some(broken) = self.shared.broken() {
            tracing::warn!("journal: not marked as cleanly closed: {broken}");
            return;
        }
        if let Err(e) = self.store.set_meta("clean_shutdown", "true") {
            tracing::warn!("journal: could not mark a clean shutdown ({e})");
        }
        // The checkpoint fsyncs the WAL and the database, the mark included.
        if let Err(e) = self.store.checkpoint_wal() {
            tracing::warn!("journal: could not fold the WAL at shutdown ({e}); it will be replayed at next start");
        }
        let head = self.head.clone();
        self.seal(head.seq, head.hash);
    }

    /// Writes the head seal every `seal_interval` while the durable head moves (`seal.rs`).
    fn seal_now_and_then(&mut self) {
        if self.opts.synchronous != Synchronous::Full
            || self.sealed.1.elapsed() < self.opts.seal_interval
        {
            return;
        }
        let durable = *self.shared.committed.borrow();
        if durable <= self.sealed.0 {
            return;
        }
        match self.store.hash_at(durable) {
            Ok(Some(hash)) => self.seal(durable, hash),
            Ok(None) => {}
            Err(e) => tracing::warn!("journal: cannot read seq {durable} for the head seal ({e})"),
        }
    }

    /// Writes the head seal for `seq` (durable) with its `hash`.
    fn seal(&mut self, seq: i64, hash: String) {
        if seq == 0 {
            return;
        }
        let signature = match (&self.opts.signer, super::seal::seal_digest(seq, &hash)) {
            (Some(k), Some(d)) => Some(k.sign(&d)),
            _ => None,
        };
        let s = super::seal::Seal {
            seq,
            hash,
            sealed_at: crate::time::now_rfc3339(),
            signature,
        };
        match super::seal::write(&self.opts.data_dir, &s) {
            Ok(()) => self.sealed = (seq, Instant::now()),
            Err(e) => tracing::warn!("journal: cannot write the head seal ({e})"),
        }
    }

    /// Runs `answer` once everything committed so far is on disk.
    fn after_sync(&self, seq: Option<i64>, started: Option<Instant>, answer: Answer) {
        let durable = Durable {
            seq,
            started,
            answer,
        };
        // Without a syncer (the writer is stopping) nothing can be made durable any more.
        let unsent = match &self.sync {
            Some(tx) => tx.send(durable).err().map(|e| e.0),
            None => Some(durable),
        };
        if let Some(d) = unsent {
            (d.answer)(Err("the journal is closing".into()));
        }
    }

    /// Answers `reply` with `result` once it is on disk (errors at once: nothing was written).
    fn reply_after_sync<T: Send + 'static>(
        &self,
        reply: Reply<T>,
        result: Result<T, JournalError>,
    ) {
        match result {
            Ok(v) => self.after_sync(
                None,
                None,
                Box::new(move |synced| {
                    let _ = reply.send(synced.map(|()| v).map_err(JournalError::Failed));
                }),
            ),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Ack { sink, seq, reply } => {
                let r = self.store.ack(&sink, seq);
                self.reply_after_sync(reply, r);
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
                let r = self.store.dead_letter(&sink, seq, &record_id, &reason);
                self.reply_after_sync(reply, r);
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
                let r = self.store.settle_request(request, &outcome, &retried);
                self.reply_after_sync(reply, r);
            }
            Command::RegisterSink { sink, reply } => {
                let r = self.store.register_sink(&sink);
                self.reply_after_sync(reply, r);
            }
            Command::SetMeta { key, value, reply } => {
                let r = self.store.set_meta(&key, &value);
                self.reply_after_sync(reply, r);
            }
            Command::Prune { reply } => {
                let r = self.prune();
                self.reply_after_sync(reply, r);
            }
            Command::Quarantine {
                source,
                topic,
                payload,
                reason,
                reply,
            } => {
                let r = self.store.quarantine(&source, &topic, &payload, &reason);
                self.reply_after_sync(reply, r);
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

    /// Whether `max_disk_bytes` is reached. The exact size (page counts and the WAL's length) is
    /// read only when the group could use up the room left at the last reading: `room` is half of
    /// what was free then, and a group is taken to need three times its records' bytes plus two
    /// pages per record (rows, index, WAL frames), far more than it does. Near the limit that
    /// means every group; far from it, a reading now and then.
    fn over_limit(&mut self, group: &[Pending]) -> Option<String> {
        let limit = self.opts.max_disk_bytes;
        if limit == 0 {
            return None;
        }
        let need: u64 = group
            .iter()
            .flat_map(|p| &p.records)
            .map(|r| 3 * r.canonical.len() as u64 + 8192)
            .sum();
        if self.refusal.is_none() && need < self.room {
            self.room -= need;
            return None;
        }
        match self.store.used_bytes() {
            Ok(used) if used >= limit => {
                self.room = 0;
                Some(format!(
                    "max_disk_bytes reached: {used} of {limit} bytes used"
                ))
            }
            Ok(used) => {
                self.room = (limit - used) / 2;
                None
            }
            Err(_) => {
                self.room = 0;
                None
            }
        }
    }

    fn refuse(&mut self, group: Vec<Pending>, reason: String) {
        let n: u64 = group.iter().map(|p| p.records.len() as u64).sum();
        let resent: u64 = group
            .iter()
            .flat_map(|p| &p.records)
            .filter(|r| r.resent_if_refused)
            .count() as u64;
        self.shared.refused.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.opts.metrics {
            m.refused(n);
        }
        self.shared.refusing.store(true, Ordering::Relaxed);
        let path = self.store.path().display().to_string();
        match &mut self.refusal {
            None => {
                tracing::error!(
                    "journal {path}: {reason}; new records are REFUSED and evidence is at risk. {}",
                    refusal_advice(&reason, self.store.path())
                );
                self.refusal = Some(Refusal {
                    since: crate::time::now_rfc3339(),
                    refused: n,
                    resent,
                    reason: reason.clone(),
                    last_log: Instant::now(),
                });
            }
            Some(r) => {
                r.refused += n;
                r.resent += resent;
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
        if let Some(broken) = self.shared.broken() {
            for p in group {
                let _ = p.reply.send(Err(JournalError::Failed(broken.clone())));
            }
            return;
        }
        if let Some(reason) = self.over_limit(&group) {
            return self.refuse(group, reason);
        }
        let gap = self.refusal.as_ref().map(|r| {
            NewRecord::new(QualityRecord::gap(
                &self.ctx,
                "journal",
                r.since.clone(),
                crate::time::now_rfc3339(),
                r.describe(),
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
            // One counter update per kind, not per record: this is the journal's hot path.
            let mut per_kind: Vec<(&'static str, u64)> = Vec::new();
            for (r, o) in records.iter().zip(outcomes) {
                if matches!(o, Appended::New { .. }) {
                    let kind = r.kind.as_str();
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
                self.after_sync(
                    Some(self.head.seq),
                    Some(started),
                    Box::new(move |synced| {
                        let mut rest = outcomes.into_iter();
                        for p in group {
                            let _ = p.reply.send(match &synced {
                                Ok(()) => Ok(rest.by_ref().take(p.records.len()).collect()),
                                Err(e) => Err(JournalError::Failed(e.clone())),
                            });
                        }
                    }),
                );
            }
            Err(e) if is_disk_full(&e) => self.refuse(group, DISK_FULL.to_string()),
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

/// The refusal reason when the file system itself is full (not the configured size limit).
const DISK_FULL: &str = "disk full";

/// What an operator can do about a refusal: a full file system and the configured size limit have
/// different remedies (raising the limit cannot help a full disk).
fn refusal_advice(reason: &str, journal: &std::path::Path) -> String {
    let dir = journal
        .parent()
        .map_or_else(|| ".".to_string(), |d| d.display().to_string());
    if reason == DISK_FULL {
        format!(
            "The file system holding {dir} is full: free space on it (`df -h {dir}` shows how much; \
             logs, old packages and core dumps are the usual culprits) or move agent.data_dir to a larger disk; \
             raising journal.max_disk_bytes cannot help. Records flow again as soon as space is free."
        )
    } else {
        "Space is freed only when every sink has acknowledged records older than retention_days: \
         check delivery with `shopfloor-agent status` (a sink that cannot deliver holds the backlog), \
         or raise journal.max_disk_bytes if the disk has room."
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use super::*;

    fn ctx() -> RecordContext {
        RecordContext {
            gateway_id: "gw-test".into(),
            config_sha256: "0".repeat(64),
        }
    }

    fn record(label: &str) -> NewRecord {
        NewRecord::new(super::super::loadgen::padded_record(&ctx(), 300, label))
    }

    /// An fsync that waits while the gate is closed and then answers with `fail` (if set).
    #[derive(Clone, Default)]
    struct Gate {
        closed: Arc<(Mutex<bool>, Condvar)>,
        fail: Arc<AtomicBool>,
    }

    impl Gate {
        fn set(&self, closed: bool) {
            let (lock, cv) = &*self.closed;
            *lock.lock().expect("gate") = closed;
            cv.notify_all();
        }

        fn fsync(&self) -> SyncFn {
            let gate = self.clone();
            Box::new(move || {
                let (lock, cv) = &*gate.closed;
                let mut closed = lock.lock().expect("gate");
                while *closed {
                    closed = cv.wait(closed).expect("gate");
                }
                if gate.fail.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("injected I/O error"));
                }
                Ok(())
            })
        }
    }

    /// A journal in a fresh directory whose fsync goes through a new (open) gate.
    fn gated() -> (tempfile::TempDir, Gate, Journal) {
        let dir = tempfile::tempdir().expect("tmp");
        let gate = Gate::default();
        let journal =
            Journal::open_with_sync(JournalOptions::new(dir.path()), ctx(), Some(gate.fsync()))
                .expect("open");
        (dir, gate, journal)
    }

    #[test]
    fn callers_and_sinks_wait_for_the_fsync_that_covers_their_commit() {
        let (dir, gate, journal) = gated();
        gate.set(true);
        let (done_tx, done) = std::sync::mpsc::channel();
        let j = journal.clone();
        let caller = std::thread::spawn(move || {
            let _ = done_tx.send(j.append_blocking(vec![record("a"), record("b")]));
        });
        // Committed (another connection reads it) but not on disk yet: nobody is told.
        let reader = Store::open_ro(dir.path()).expect("reader");
        let mut rows = Vec::new();
        for _ in 0..200 {
            rows = reader.read_after(0, 10).expect("read");
            if !rows.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(rows.len(), 2, "the group was committed");
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the caller is answered only after the fsync"
        );
        assert_eq!(journal.durable_seq(), 0, "sinks do not read past the disk");

        gate.set(false);
        let appended = done
            .recv_timeout(Duration::from_secs(10))
            .expect("answered after the fsync")
            .expect("appended");
        assert_eq!(
            appended,
            vec![Appended::New { seq: 1 }, Appended::New { seq: 2 }]
        );
        assert_eq!(journal.durable_seq(), 2);
        caller.join().expect("caller");
        journal.close_blocking();
        assert_eq!(
            Store::open_ro(dir.path())
                .expect("ro")
                .meta("clean_shutdown")
                .expect("meta")
                .as_deref(),
            Some("true")
        );
    }

    #[test]
    fn a_failed_fsync_fails_its_callers_and_refuses_every_later_write() {
        let (dir, gate, journal) = gated();
        journal
            .append_blocking(vec![record("before")])
            .expect("a good fsync");
        gate.fail.store(true, Ordering::SeqCst);
        let err = journal
            .append_blocking(vec![record("lost")])
            .expect_err("the fsync failed");
        assert!(
            err.to_string()
                .contains("fsync of the journal's WAL failed (injected I/O error)"),
            "{err}"
        );
        assert_eq!(journal.durable_seq(), 1);
        // The disk may have dropped pages: nothing more is written, even once fsync "works" again.
        gate.fail.store(false, Ordering::SeqCst);
        let err = journal
            .append_blocking(vec![record("after")])
            .expect_err("refused");
        assert!(err.to_string().contains("restart the agent"), "{err}");
        journal.close_blocking();
        let store = Store::open_ro(dir.path()).expect("ro");
        assert_eq!(
            store.head().expect("head").seq,
            2,
            "only the failed group's row"
        );
        assert_eq!(
            store.meta("clean_shutdown").expect("meta").as_deref(),
            Some("false"),
            "not marked clean"
        );
    }
}
