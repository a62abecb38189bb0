//! The size limit (`journal.max_disk_bytes`) and a full disk: what the writer refuses, what it tells
//! the callers and the log, and the gap record once it accepts again.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::writer::{Pending, Writer};
use super::JournalError;

pub(super) struct Refusal {
    pub(super) since: String,
    pub(super) refused: u64,
    /// Of `refused`, those whose source sends them again ([`NewRecord::resent_if_refused`]).
    pub(super) resent: u64,
    pub(super) reason: String,
    pub(super) last_log: Instant,
}

impl Refusal {
    /// The gap's reason: what was refused, and what of it was lost (only what was).
    pub(super) fn describe(&self) -> String {
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

/// The refusal reason when the file system itself is full (not the configured size limit).
pub(super) const DISK_FULL: &str = "disk full";

/// What an operator can do about a refusal: a full file system and the configured size limit have
/// different remedies (raising the limit cannot help a full disk).
pub(super) fn refusal_advice(reason: &str, journal: &std::path::Path) -> String {
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

impl Writer {
    /// Whether `max_disk_bytes` is reached. The exact size (page counts and the WAL's length) is
    /// read only when the group could use up the room left at the last reading: `room` is half of
    /// what was free then, and a group is taken to need three times its records' bytes plus two
    /// pages per record (rows, index, WAL frames), far more than it does. Near the limit that
    /// means every group; far from it, a reading now and then.
    pub(super) fn over_limit(&mut self, group: &[Pending]) -> Option<String> {
        let limit = self.opts.max_disk_bytes;
        if limit == 0 {
            return None;
        }
        let need: u64 = group
            .iter()
            .flat_map(|p| &p.records)
            .map(|r| 3 * r.canonical.len() as u64 + 2 * self.page_bytes)
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

    pub(super) fn refuse(&mut self, group: Vec<Pending>, reason: String) {
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
}
