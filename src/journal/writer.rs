//! The writer thread: group commit, the head seal, retention, and the gap after a refusal.
//!
//! Every write command goes through one bounded channel to one thread that owns the write connection.
//! The thread takes the first waiting append and every further append already queued (up to
//! `max_batch_records`) and commits them in one transaction: under load, many callers share one fsync;
//! alone, a caller waits for just its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::handle::{Command, JournalOptions, Reply, Shared};
use super::limit::{Refusal, DISK_FULL};
use super::store::{is_disk_full, ChainHead, PruneOutcome, Synchronous};
use super::syncer::{Answer, Durable};
use super::{Appended, JournalError, NewRecord, StateUpdate, Store};
use crate::records::{QualityRecord, RecordContext};

pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) head: ChainHead,
    pub(super) opts: JournalOptions,
    pub(super) ctx: RecordContext,
    pub(super) shared: Arc<Shared>,
    pub(super) refusal: Option<Refusal>,
    /// Bytes that can surely be appended before `max_disk_bytes` is read again ([`Writer::over_limit`]).
    pub(super) room: u64,
    /// The journal's page size in bytes (what a commit writes at least per page it changes).
    pub(super) page_bytes: u64,
    /// Commits on their way to the syncer (None once the writer stops).
    pub(super) sync: Option<std::sync::mpsc::Sender<Durable>>,
    pub(super) syncer: Option<std::thread::JoinHandle<()>>,
    /// The seq of the last head seal and when it was written.
    pub(super) sealed: (i64, Instant),
}

pub(super) struct Pending {
    pub(super) records: Vec<NewRecord>,
    pub(super) state: Vec<StateUpdate>,
    pub(super) reply: Reply<Vec<Appended>>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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
    pub(super) fn seal_now_and_then(&mut self) {
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
    pub(super) fn seal(&mut self, seq: i64, hash: String) {
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
    pub(super) fn after_sync(&self, seq: Option<i64>, started: Option<Instant>, answer: Answer) {
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
    pub(super) fn reply_after_sync<T: Send + 'static>(
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

    pub(super) fn handle(&mut self, cmd: Command) {
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

    pub(super) fn prune(&mut self) -> Result<PruneOutcome, JournalError> {
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

    pub(super) fn commit_group(&mut self, group: Vec<Pending>) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use super::super::handle::Journal;
    use super::super::syncer::SyncFn;
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
