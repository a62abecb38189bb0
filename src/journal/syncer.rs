//! The syncer and checkpoint threads beside the writer.
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
//! the writer's WAL hook only counts the frames it wrote; after every 4 MB of them (1,000 pages of
//! 4 KiB, 250 of 16 KiB: `journal.page_size_bytes`) the syncer wakes a third thread that runs a
//! `PASSIVE` checkpoint on its own connection while commits and fsyncs go on. The checkpoint itself
//! is SQLite's (in `NORMAL` and `FULL` it fsyncs the WAL before copying and the database after),
//! and the WAL starts over at the next commit once all of it is copied. While commits keep coming a
//! `PASSIVE` checkpoint never catches up completely (the WAL only starts over once all of it is
//! copied); past 16 MB of frames (4,000 pages of 4 KiB) a commit waits for the checkpoint thread's
//! run in progress and checkpoints in place (`RESTART`: the WAL is written over from its start, the
//! file keeps its size), which bounds the WAL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::handle::Shared;

/// WAL bytes written between two checkpoints by the syncer: SQLite's own default (1,000 frames of
/// its default 4 KiB pages), whatever the journal's page size.
pub(super) const CHECKPOINT_BYTES: u64 = 1000 * 4096;

/// WAL bytes beyond which a commit checkpoints in place (the syncer's checkpoints cannot finish
/// while the writer keeps appending): bounds the WAL at about 16 MiB.
pub(super) const CHECKPOINT_BACKSTOP_BYTES: u64 = 4 * CHECKPOINT_BYTES;

/// [`CHECKPOINT_BYTES`] or [`CHECKPOINT_BACKSTOP_BYTES`] in WAL frames of `page_size` bytes.
pub(super) fn frames(bytes: u64, page_size: u32) -> u64 {
    (bytes / u64::from(page_size.max(512))).max(1)
}

/// The syncer's fsync of the WAL file.
pub(super) type SyncFn = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// What to do once a commit is on disk (`Ok`) or its fsync failed (`Err`, the message).
pub(super) type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A committed transaction waiting for its fsync.
pub(super) struct Durable {
    /// The head seq after it (None when it appended no record).
    pub(super) seq: Option<i64>,
    /// When its group commit started (commit latency is measured to the end of its fsync).
    pub(super) started: Option<Instant>,
    pub(super) answer: Answer,
}

/// The thread that makes commits durable: one fsync covers every commit queued while the previous
/// one ran; callers are answered in commit order. After a durable commit it asks the checkpoint
/// thread to fold the WAL into the database when the writer has written `checkpoint_frames` frames
/// ([`CHECKPOINT_BYTES`]) since the last time; the writer's commits and the syncer's fsyncs go on
/// meanwhile.
pub(super) struct Syncer {
    pub(super) fsync: Option<SyncFn>,
    /// Wakes the checkpoint thread (full: one is already asked for).
    pub(super) checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
    pub(super) checkpoint_thread: Option<std::thread::JoinHandle<()>>,
    /// WAL frames the writer's commits wrote, counted by its WAL hook.
    pub(super) wal_written: Arc<AtomicU64>,
    /// [`CHECKPOINT_BYTES`] in frames of the journal's page size.
    pub(super) checkpoint_frames: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Option<crate::metrics::Metrics>,
}

impl Syncer {
    pub(super) fn run(mut self, rx: std::sync::mpsc::Receiver<Durable>) {
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
                if self.wal_written.load(Ordering::Relaxed) >= self.checkpoint_frames
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

    pub(super) fn sync(&mut self) -> Result<(), String> {
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
