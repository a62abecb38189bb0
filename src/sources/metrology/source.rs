//! The metrology source: looks at its folders when the kernel says a file was written or renamed
//! in (inotify, [`super::watch`]) and every `poll_ms` (network mounts, where no event comes), reads
//! each complete result file in chunks into the journal, then moves it to `processed/` (or leaves
//! it).
//!
//! Exactly once, by the file's SHA-256, kept in the source's state in the journal:
//!
//! | state `file:<sha256>` | meaning | when the same content is found |
//! |---|---|---|
//! | `<n> <name>` | at least the first `n` measurements are journaled | read on from measurement `n` |
//! | `done <n> <name>` | all `n` are journaled | not read: moved (a crash before the move) or counted as a duplicate |
//! | `failed <reason>` | refused | read again (a fixed file may come back) |
//!
//! Each chunk's records and its `file:` state commit in one transaction. Two chunks are in flight
//! (the records of one are made while the other is written), so the state a chunk carries names
//! only the chunks acknowledged before it was sent, never itself: the state is never ahead of the
//! journal. Every record has the dedupe key of its place in the content
//! ([`crate::records::documents::dedupe_key`]), so what a restart reads again is stored once.
//!
//! Each folder is a channel of the source's outages: a folder that cannot be listed (a share
//! unmounted) is down until it can, with a gap record. `status` shows per folder (`folder:<path>`)
//! the files waiting, ingested, duplicates, failed and the last error.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::config::{After, FolderConfig, MetrologySourceConfig};
use super::folder::{self, Folder};
use super::read::{self, Failure, Format, Job};
use super::watch::Watcher;
use crate::journal::{Journal, StateUpdate};
use crate::records::observation::{Measurements, Observation, Origin, Stated};
use crate::records::pipeline::Input;
use crate::sources::{SourceRuntime, Stopped, Supervisor};

/// Chunks of a file handed to the pipeline before the first of them is acknowledged.
const IN_FLIGHT: usize = 2;

/// The pipeline's answer to one chunk.
type Acked = tokio::sync::oneshot::Receiver<
    Result<Vec<crate::journal::Appended>, crate::journal::JournalError>,
>;

/// Hands `input` to the pipeline with an acknowledgement to wait for.
async fn send(mut input: Input, rt: &SourceRuntime) -> Result<Acked, Stopped> {
    let (ack, answer) = tokio::sync::oneshot::channel();
    input.ack = Some(ack);
    rt.tx.send(input).await.map_err(|_| Stopped)?;
    Ok(answer)
}

/// A file's chunks handed to the pipeline and not yet answered, oldest first.
struct Flight {
    /// (first measurement, end, the answer to wait for).
    chunks: VecDeque<(usize, usize, Acked)>,
    /// Measurements journaled, counted from the file's start: what the file's state may name.
    acked: usize,
    /// The first refusal: the refused chunk's first measurement and the journal's reason. After
    /// it nothing more counts as acknowledged (the chunks after a refused one are read again).
    refused: Option<(usize, String)>,
}

impl Flight {
    /// Nothing in flight, the first `acked` measurements journaled before.
    fn after(acked: usize) -> Flight {
        Flight {
            chunks: VecDeque::new(),
            acked,
            refused: None,
        }
    }

    /// Waits for the oldest chunk's answer; false when none is in flight.
    async fn settle_oldest(&mut self) -> Result<bool, Stopped> {
        let Some((first, end, answer)) = self.chunks.pop_front() else {
            return Ok(false);
        };
        match answer.await.map_err(|_| Stopped)? {
            Ok(_) if self.refused.is_none() => self.acked = end,
            Ok(_) => {}
            Err(e) => {
                self.refused.get_or_insert((first, e.to_string()));
            }
        }
        Ok(true)
    }
}

/// What the journal says of a content.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// This many measurements are journaled.
    Partly(usize),
    /// All journaled, from a file of this name, at this time (Unix ms): forgotten after
    /// `remember_days`.
    Done(String, i64),
}

/// A folder's counts, shown by `status`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    waiting: usize,
    ingested: u64,
    duplicates: u64,
    failed: u64,
    last_error: Option<String>,
}

impl Counts {
    fn text(&self) -> String {
        format!(
            "waiting {} · ingested {} · duplicates {} · failed {}{}",
            self.waiting,
            self.ingested,
            self.duplicates,
            self.failed,
            self.last_error
                .as_deref()
                .map(|e| format!(" · last error: {e}"))
                .unwrap_or_default()
        )
    }

    fn parse(text: &str) -> Counts {
        let mut c = Counts::default();
        let (numbers, error) = match text.split_once(" · last error: ") {
            Some((n, e)) => (n, Some(e.to_string())),
            None => (text, None),
        };
        c.last_error = error;
        for part in numbers.split(" · ") {
            let Some((name, n)) = part.rsplit_once(' ') else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match name {
                "ingested" => c.ingested = n,
                "duplicates" => c.duplicates = n,
                "failed" => c.failed = n,
                _ => {}
            }
        }
        c
    }
}

fn file_key(sha: &str) -> String {
    format!("file:{sha}")
}

fn folder_key(dir: &Path) -> String {
    format!("folder:{}", dir.display())
}

/// A built metrology source.
pub struct MetrologySource {
    id: String,
    cfg: MetrologySourceConfig,
    journal: Journal,
    seen: HashMap<String, Seen>,
    counts: Vec<Counts>,
}

/// One watched folder while running.
struct Watched {
    folder: Folder,
    cfg: FolderConfig,
    supervisor: Supervisor,
    /// Files left in place (`after = "leave"`) and already journaled: not hashed again while
    /// their size and time stay.
    left: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    shown: Option<Counts>,
    /// After the journal refused a commit (full): no file is read before this instant, and the
    /// next wait is twice as long (up to a minute), so a full journal is not answered by reading
    /// and hashing the same large file again at every scan.
    hold: Option<(Instant, Duration)>,
}

impl Watched {
    /// The journal refused: holds the folder; returns how long.
    fn refused(&mut self) -> Duration {
        let wait = match self.hold {
            Some((_, last)) => (last * 2).min(Duration::from_secs(60)),
            None => Duration::from_secs(1),
        };
        self.hold = Some((Instant::now() + wait, wait));
        wait
    }
}

impl MetrologySource {
    /// Prepares the source; `state` is its state in the journal.
    pub fn new(
        id: &str,
        cfg: &MetrologySourceConfig,
        journal: &Journal,
        state: &[(String, String)],
    ) -> MetrologySource {
        let mut seen = HashMap::new();
        for (key, value) in state {
            let Some(sha) = key.strip_prefix("file:") else {
                continue;
            };
            let s = if let Some(rest) = value.strip_prefix("done ") {
                // `done <n> <ms> <name>`, or `done <n> <name>` as written before `remember_days`
                // (remembered from now on).
                let after_n = rest.split_once(' ').map_or("", |(_, r)| r);
                let stamped = after_n
                    .split_once(' ')
                    .and_then(|(ms, name)| Some((name, ms.parse::<i64>().ok()?)));
                match stamped {
                    Some((name, at)) => Seen::Done(name.to_string(), at),
                    None => Seen::Done(after_n.to_string(), crate::time::now_ms()),
                }
            } else if let Some(n) = value.split(' ').next().and_then(|n| n.parse().ok()) {
                Seen::Partly(n)
            } else {
                continue;
            };
            seen.insert(sha.to_string(), s);
        }
        let counts = cfg
            .folders
            .iter()
            .map(|f| {
                state
                    .iter()
                    .find(|(k, _)| *k == folder_key(&f.path))
                    .map(|(_, v)| Counts::parse(v))
                    .unwrap_or_default()
            })
            .collect();
        MetrologySource {
            id: id.to_string(),
            cfg: cfg.clone(),
            journal: journal.clone(),
            seen,
            counts,
        }
    }

    /// Runs until shutdown.
    pub async fn run(mut self, rt: SourceRuntime) {
        let mut folders: Vec<Watched> = self
            .cfg
            .folders
            .iter()
            .map(|f| Watched {
                folder: Folder::new(
                    f.path.clone(),
                    f.completion,
                    Duration::from_millis(f.settle_ms),
                    &f.marker_suffix,
                    read::accept,
                ),
                cfg: f.clone(),
                supervisor: rt
                    .supervisor(
                        &self.id,
                        format!("result folder {}", f.path.display()),
                        (Duration::from_secs(1), Duration::from_secs(60)),
                    )
                    .channel(f.path.display().to_string())
                    .advice("check that the folder exists and the agent may read it (a share: that it is mounted)"),
                left: HashMap::new(),
                shown: None,
                hold: None,
            })
            .collect();
        let mut shutdown = rt.shutdown.clone();
        let poll = Duration::from_millis(self.cfg.poll_ms);
        let mut watcher = match Watcher::new() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("source {}: no file events from the kernel ({e}); the folders are polled every {} only", self.id, crate::runtime::logging::human_duration(poll));
                None
            }
        };
        let mut forgotten_at = Instant::now();
        loop {
            if self.forget(&mut forgotten_at, &rt).await.is_err() {
                return;
            }
            for (i, w) in folders.iter_mut().enumerate() {
                if let Some(watcher) = &watcher {
                    // Again at every scan: a folder that came back needs a new watch. One that
                    // cannot be watched is polled (its listing says why, if it is gone).
                    let _ = watcher.watch(w.folder.dir());
                }
                if self.scan(i, w, &rt).await.is_err() {
                    return;
                }
            }
            let events = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = events => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Forgets the hashes of files read more than `remember_days` ago, in memory and in the
    /// journal's source state, so neither grows with every file for ever. The same content
    /// dropped again after that is read again; the journal's dedupe keys still keep each of its
    /// records once while the journal holds them.
    async fn forget(&mut self, last: &mut Instant, rt: &SourceRuntime) -> Result<(), Stopped> {
        let remember = self.cfg.remember();
        if last.elapsed() < (remember / 10).min(Duration::from_secs(60)) {
            return Ok(());
        }
        *last = Instant::now();
        let cutoff =
            crate::time::now_ms() - i64::try_from(remember.as_millis()).unwrap_or(i64::MAX);
        let old: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Done(_, at) if *at < cutoff))
            .map(|(sha, _)| sha.clone())
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let updates = old
            .iter()
            .map(|sha| StateUpdate {
                source: self.id.clone(),
                key: file_key(sha),
                value: String::new(),
            })
            .collect();
        if self.commit(Input::state(updates), rt).await?.is_ok() {
            for sha in &old {
                self.seen.remove(sha);
            }
        }
        Ok(())
    }

    async fn scan(&mut self, i: usize, w: &mut Watched, rt: &SourceRuntime) -> Result<(), Stopped> {
        match w.folder.ready(Instant::now()) {
            Ok(files) => {
                w.supervisor.alive();
                w.supervisor.up().await?;
                for file in files {
                    if rt.shutdown.is_triggered() {
                        return Err(Stopped);
                    }
                    if w.hold.is_some_and(|(until, _)| Instant::now() < until) {
                        // Held after a refusal: the files wait (complete files stay complete).
                        break;
                    }
                    self.take(i, w, &file, rt).await?;
                }
            }
            Err(e) => {
                let why = format!("cannot list {}: {e}", w.folder.dir().display());
                w.supervisor.failed(&why);
                w.supervisor.down(why).await?;
            }
        }
        self.counts[i].waiting = w.folder.waiting();
        if w.shown.as_ref() != Some(&self.counts[i]) {
            let update = StateUpdate {
                source: self.id.clone(),
                key: folder_key(w.folder.dir()),
                value: self.counts[i].text(),
            };
            rt.tx
                .send(Input::state(vec![update]))
                .await
                .map_err(|_| Stopped)?;
            w.shown = Some(self.counts[i].clone());
        }
        Ok(())
    }

    /// Reads one complete file (and moves it).
    async fn take(
        &mut self,
        i: usize,
        w: &mut Watched,
        file: &Path,
        rt: &SourceRuntime,
    ) -> Result<(), Stopped> {
        let meta = std::fs::metadata(file).ok();
        let stamp = meta.as_ref().map(|m| (m.len(), m.modified().ok()));
        if stamp.is_some() && w.left.get(file) == stamp.as_ref() {
            return Ok(());
        }
        let parts = match read::parts(file) {
            Ok(p) => p,
            Err(Failure::Bad(reason)) => {
                return self.refuse(i, w, &[file.to_path_buf()], &reason).await
            }
            Err(_) => return Ok(()),
        };
        let hashed = {
            let parts = parts.clone();
            tokio::task::spawn_blocking(move || content_sha256(&parts)).await
        };
        let sha = match hashed {
            Ok(Ok(sha)) => sha,
            Ok(Err(e)) => {
                tracing::warn!(
                    "source {}: cannot read {} ({e}); tried again at the next scan",
                    self.id,
                    file.display()
                );
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let name = read::name(file);
        let skip = match self.seen.get(&sha) {
            Some(Seen::Done(was, _)) => {
                if *was == name {
                    tracing::info!("source {}: {} was journaled before the agent stopped; it is not read again", self.id, file.display());
                } else {
                    self.counts[i].duplicates += 1;
                    tracing::info!("source {}: {} has the same content (SHA-256 {sha}) as {was}, already journaled; it is not read again", self.id, file.display());
                }
                self.finish(w, &parts, stamp);
                return Ok(());
            }
            Some(Seen::Partly(n)) => *n,
            None => 0,
        };
        let format = Format::of(file).unwrap_or(Format::Qif);
        let mut plan_dirs = vec![
            w.folder.dir().to_path_buf(),
            w.folder.dir().join(folder::PROCESSED),
        ];
        plan_dirs.extend(w.cfg.plans.clone());
        let job = Job {
            parts: parts.clone(),
            format,
            encoding: w.cfg.encoding,
            plan_dirs,
            offset: self.cfg.offset(),
            skip,
            table: w.cfg.table.as_ref().map(|t| t.layout()),
            serial_from_name: w.cfg.serial_from_name.as_deref().and_then(|p| {
                super::config::serial_from_name(p, &name).map(|serial| Stated {
                    value: serial.into(),
                    address: format!("file name (serial_from_name {p:?})"),
                    raw: name.clone(),
                })
            }),
        };
        let (tx, mut rx) = mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || read::read(&job, &tx));
        let origin = Origin {
            protocol: format.name().into(),
            endpoint: Some(file.display().to_string()),
            address: None,
        };
        // Chunks in flight: the records of one are made while the one before is written. The
        // state each carries names only measurements already acknowledged, never its own: a
        // restart reads again from there, and the dedupe keys drop what was journaled twice.
        let mut flight = Flight::after(skip);
        let mut sent = skip;
        while let Some(items) = rx.recv().await {
            let first = sent;
            sent += items.len();
            let doc = Measurements {
                source: self.id.clone(),
                origin: origin.clone(),
                sha256: sha.clone(),
                station: self.cfg.station.clone(),
                first,
                items,
                received_ms: crate::time::now_ms(),
            };
            let mut input = Input::new(Observation::Measurements(doc));
            input.state.push(StateUpdate {
                source: self.id.clone(),
                key: file_key(&sha),
                value: format!("{} {name}", flight.acked),
            });
            flight
                .chunks
                .push_back((first, sent, send(input, rt).await?));
            while flight.chunks.len() >= IN_FLIGHT
                || (flight.refused.is_some() && !flight.chunks.is_empty())
            {
                flight.settle_oldest().await?;
            }
            if flight.refused.is_some() {
                break;
            }
            self.seen.insert(sha.clone(), Seen::Partly(flight.acked));
        }
        while flight.settle_oldest().await? {}
        let acked = flight.acked;
        self.seen.insert(sha.clone(), Seen::Partly(acked));
        if let Some((first, e)) = flight.refused {
            let wait = w.refused();
            tracing::warn!("source {}: the journal refused measurements of {} from measurement {first} ({e}); reading it again from measurement {acked} in {}", self.id, file.display(), crate::runtime::logging::human_duration(wait));
            drop(rx);
            let _ = reader.await;
            return Ok(());
        }
        match reader.await {
            Ok(Ok(total)) => {
                let done_at = crate::time::now_ms();
                let state = StateUpdate {
                    source: self.id.clone(),
                    key: file_key(&sha),
                    value: format!("done {total} {done_at} {name}"),
                };
                if self.commit(Input::state(vec![state]), rt).await?.is_err() {
                    w.refused();
                    return Ok(());
                }
                w.hold = None;
                self.seen.insert(sha, Seen::Done(name, done_at));
                self.counts[i].ingested += 1;
                tracing::info!(
                    "source {}: {} read: {total} measurements journaled",
                    self.id,
                    file.display()
                );
                self.finish(w, &parts, stamp);
                Ok(())
            }
            Ok(Err(Failure::Bad(reason))) => self.refuse(i, w, &parts, &reason).await,
            Ok(Err(Failure::Io(e))) => {
                tracing::warn!(
                    "source {}: cannot read {} ({e}); tried again at the next scan",
                    self.id,
                    file.display()
                );
                Ok(())
            }
            Ok(Err(Failure::Stopped)) | Err(_) => Err(Stopped),
        }
    }

    /// Sends `input` and waits for its commit: `Ok(Err)` when the journal refused it.
    async fn commit(
        &self,
        input: Input,
        rt: &SourceRuntime,
    ) -> Result<Result<(), String>, Stopped> {
        match send(input, rt).await?.await {
            Ok(Ok(_)) => Ok(Ok(())),
            Ok(Err(e)) => Ok(Err(e.to_string())),
            Err(_) => Err(Stopped),
        }
    }

    /// After the records are journaled: moved to `processed/`, or remembered as left.
    fn finish(&self, w: &mut Watched, parts: &[PathBuf], stamp: Option<(u64, Option<SystemTime>)>) {
        match w.cfg.after {
            After::Move => {
                for p in parts {
                    if let Err(e) = w.folder.processed(p) {
                        tracing::warn!("source {}: {} is journaled but cannot be moved to {}/ ({e}); it is not read again", self.id, p.display(), folder::PROCESSED);
                    }
                }
            }
            After::Leave => {
                if let (Some(s), Some(last)) = (stamp, parts.last()) {
                    w.left.insert(last.clone(), s);
                }
            }
        }
    }

    /// A file that is not a readable result file: `failed/` with the reason, a quarantine entry,
    /// one log line.
    async fn refuse(
        &mut self,
        i: usize,
        w: &mut Watched,
        parts: &[PathBuf],
        reason: &str,
    ) -> Result<(), Stopped> {
        let file = parts
            .last()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        tracing::warn!("source {}: {file} cannot be read: {reason}; moved to {}/ with the reason, and quarantined", self.id, folder::FAILED);
        let head = parts.last().map(|p| head_of(p)).unwrap_or_default();
        if let Err(e) = self.journal.quarantine(&self.id, &file, head, reason).await {
            tracing::error!("source {}: cannot quarantine {file}: {e}", self.id);
        }
        for p in parts {
            if let Err(e) = w.folder.failed(p, reason) {
                tracing::warn!(
                    "source {}: cannot move {} to {}/ ({e})",
                    self.id,
                    p.display(),
                    folder::FAILED
                );
            }
        }
        self.counts[i].failed += 1;
        self.counts[i].last_error = Some(format!("{}: {reason}", read::name(Path::new(&file))));
        Ok(())
    }
}

/// The first 64 KiB of a file (what a quarantine entry keeps).
fn head_of(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(64 * 1024).read_to_end(&mut buf);
    }
    buf
}

/// The SHA-256 of a result's content: its file, or its files in reading order (`.dfd`, `.dfx`).
fn content_sha256(parts: &[PathBuf]) -> std::io::Result<String> {
    folder::sha256_of(parts).map(|(sha, _)| sha)
}
