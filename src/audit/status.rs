//! `status`: what OT staff need at a glance, read from the journal (the agent need not be running).
//!
//! The health verdict ([`Health`]) is made here once: `status` prints it, `/healthz` answers it and
//! `/metrics` exports it, all from the same journal reading. Degraded means someone should look:
//! the journal refuses records (size limit or full disk), a configured sink is failing, or a
//! configured source is in an outage. Dead letters are counted, not judged: they wait for a replay.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Config;
use crate::journal::{JournalError, Store};

/// Delivery state of one sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    /// Sink id.
    pub id: String,
    /// Whether the sink is in the current configuration.
    pub configured: bool,
    /// Everything up to this seq was acknowledged.
    pub acked_seq: i64,
    /// Records waiting.
    pub backlog: i64,
    /// Capture time of the oldest waiting record.
    pub oldest_waiting: Option<String>,
    /// When the cursor last moved.
    pub acked_at: Option<String>,
    /// Current failure.
    pub last_error: Option<String>,
    /// Failing since.
    pub failing_since: Option<String>,
    /// Records refused for good.
    pub dead_letters: usize,
}

/// The health verdict: `ok`, or `degraded` with one reason per problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// What is wrong, one line each (empty when ok).
    pub reasons: Vec<String>,
}

impl Health {
    /// A verdict from its reasons: ok when there are none.
    pub fn degraded(reasons: Vec<String>) -> Health {
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
        }
    }

    /// Whether all is well.
    pub fn ok(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Gateway id.
    pub gateway_id: String,
    /// Journal file.
    pub journal: String,
    /// Bytes used by the journal.
    pub used_bytes: u64,
    /// The journal's page size (`journal.page_size_bytes` when it was made).
    pub page_size_bytes: u32,
    /// The configured limit (0: none).
    pub max_disk_bytes: u64,
    /// Bytes free for the agent on the file system holding the journal (None: not known).
    pub disk_free_bytes: Option<u64>,
    /// Whether the agent stopped cleanly last time (false also while it runs).
    pub clean_shutdown: bool,
    /// The PID of the agent running on this data directory (from its lock), if one is.
    pub running_pid: Option<u32>,
    /// First and last seq held.
    pub first_seq: Option<i64>,
    /// Last seq.
    pub last_seq: i64,
    /// Records held per kind.
    pub kinds: Vec<(String, i64)>,
    /// Per sink.
    pub sinks: Vec<SinkStatus>,
    /// Ids of the configured sources.
    pub configured_sources: Vec<String>,
    /// Source state (connection, watermarks, cursors) as (source, key, value, updated_at).
    pub sources: Vec<(String, String, String, String)>,
    /// Quarantined payloads per source.
    pub quarantined: Vec<(String, i64)>,
    /// The verdict.
    pub health: Health,
}

/// Collects the status of the journal of `config`.
pub fn collect(config: &Config) -> Result<Status, JournalError> {
    collect_with(config, true)
}

/// The status without the records-per-kind count (a scan of the journal): what `/metrics` and
/// `/healthz` read on every request.
pub fn collect_live(config: &Config) -> Result<Status, JournalError> {
    collect_with(config, false)
}

fn collect_with(config: &Config, kinds: bool) -> Result<Status, JournalError> {
    let store = Store::open_ro(&config.agent.data_dir)?;
    let head = store.head()?;
    let first_seq = store.read_after(i64::MIN, 1)?.first().map(|r| r.seq);
    let dead = store.dead_letters(None)?;
    let mut sinks = Vec::new();
    let cursors = store.sink_cursors()?;
    let mut ids: Vec<String> = config.sinks.keys().cloned().collect();
    for c in &cursors {
        if !ids.contains(&c.sink) {
            ids.push(c.sink.clone());
        }
    }
    for id in ids {
        let cursor = cursors.iter().find(|c| c.sink == id);
        let acked = cursor.map_or(0, |c| c.acked_seq);
        sinks.push(SinkStatus {
            configured: config.sinks.contains_key(&id),
            acked_seq: acked,
            backlog: (head.seq - acked).max(0),
            oldest_waiting: store.captured_at_after(acked)?,
            acked_at: cursor.and_then(|c| c.acked_at.clone()),
            last_error: cursor.and_then(|c| c.last_error.clone()),
            failing_since: cursor.and_then(|c| c.failing_since.clone()),
            dead_letters: dead.iter().filter(|d| d.sink == id).count(),
            id,
        });
    }
    let mut status = Status {
        gateway_id: config.agent.gateway_id.clone(),
        journal: store.path().display().to_string(),
        used_bytes: store.used_bytes()?,
        page_size_bytes: store.page_size()?,
        max_disk_bytes: config.journal.max_disk_bytes,
        disk_free_bytes: disk_free(&config.agent.data_dir),
        clean_shutdown: store.meta("clean_shutdown")?.as_deref() != Some("false"),
        running_pid: crate::runtime::lock::holder(&config.agent.data_dir),
        first_seq,
        last_seq: head.seq,
        kinds: if kinds {
            store.counts_by_kind()?
        } else {
            Vec::new()
        },
        sinks,
        configured_sources: config.sources.keys().cloned().collect(),
        sources: store.source_state(None)?,
        quarantined: store.quarantine_counts()?,
        health: Health::degraded(Vec::new()),
    };
    status.health = status.judge();
    Ok(status)
}

/// Below this much free space on the journal's disk, health is degraded: the journal refuses
/// records when the disk is full, and SQLite needs room for its write-ahead log before that.
pub const LOW_DISK_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn disk_free(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1_048_576.0)
}

impl Status {
    /// Whether the journal has reached `max_disk_bytes` (new records are refused): health is degraded.
    pub fn is_full(&self) -> bool {
        self.max_disk_bytes != 0 && self.used_bytes >= self.max_disk_bytes
    }

    fn judge(&self) -> Health {
        let mut reasons = Vec::new();
        if self.is_full() {
            reasons.push(format!(
                "journal full ({} of {} bytes): new records are refused; get the sinks delivering or raise journal.max_disk_bytes",
                self.used_bytes, self.max_disk_bytes
            ));
        }
        if let Some(free) = self.disk_free_bytes.filter(|f| *f < LOW_DISK_BYTES) {
            reasons.push(format!(
                "disk holding the journal almost full ({} free): records are refused when it is full; free space on that file system",
                mib(free)
            ));
        }
        if let Some(k) = self.sinks.iter().find(|k| k.acked_seq > self.last_seq) {
            reasons.push(format!(
                "the journal ends at seq {} but sink {} acknowledged up to seq {}: records were removed from the journal; run `shopfloor-agent verify`",
                self.last_seq, k.id, k.acked_seq
            ));
        }
        for k in self.sinks.iter().filter(|k| k.configured) {
            if let Some(e) = &k.last_error {
                reasons.push(format!(
                    "sink {} failing since {} ({} waiting): {e}",
                    k.id,
                    k.failing_since.as_deref().unwrap_or("?"),
                    k.backlog
                ));
            }
        }
        for id in &self.configured_sources {
            for (_, key, v, _) in self
                .sources
                .iter()
                .filter(|(src, key, v, _)| src == id && is_connection(key) && v.starts_with("DOWN"))
            {
                reasons.push(format!("source {} {v}", connection_label(id, key)));
            }
        }
        Health::degraded(reasons)
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "gateway   {}", self.gateway_id);
        if self.health.ok() {
            let _ = writeln!(s, "health    ok");
        } else {
            let _ = writeln!(s, "health    DEGRADED");
            for r in &self.health.reasons {
                let _ = writeln!(s, "          - {r}");
            }
        }
        let limit = if self.max_disk_bytes == 0 {
            format!("{} used, no limit", mib(self.used_bytes))
        } else {
            format!(
                "{} of {} ({:.0}%){}",
                mib(self.used_bytes),
                mib(self.max_disk_bytes),
                100.0 * self.used_bytes as f64 / self.max_disk_bytes as f64,
                if self.is_full() {
                    "  FULL: new records are REFUSED; get the sinks delivering or raise journal.max_disk_bytes"
                } else {
                    ""
                }
            )
        };
        let _ = writeln!(
            s,
            "journal   {} ({} KiB pages)  {}",
            self.journal,
            self.page_size_bytes / 1024,
            limit
        );
        if let Some(free) = self.disk_free_bytes {
            let _ = writeln!(s, "disk      {} free", mib(free));
        }
        let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            s,
            "records   seq {}..{}  ({})",
            self.first_seq.unwrap_or(0),
            self.last_seq,
            if kinds.is_empty() {
                "empty".to_string()
            } else {
                kinds.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "agent     {}",
            match (self.running_pid, self.clean_shutdown) {
                (Some(pid), _) => format!("running (pid {pid})"),
                (None, true) => "stopped cleanly".to_string(),
                (None, false) =>
                    "stopped without a clean shutdown (the next start records the gap)".to_string(),
            }
        );
        let _ = writeln!(
            s,
            "\nSINK            STATE     BACKLOG  OLDEST WAITING            DEAD LETTERS"
        );
        for k in &self.sinks {
            let state = if !k.configured {
                "removed"
            } else if k.last_error.is_some() {
                "FAILING"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "{:<15} {:<9} {:>7}  {:<25} {}",
                k.id,
                state,
                k.backlog,
                k.oldest_waiting.as_deref().unwrap_or("-"),
                k.dead_letters
            );
            if let Some(e) = &k.last_error {
                let _ = writeln!(
                    s,
                    "                failing since {}: {e}",
                    k.failing_since.as_deref().unwrap_or("?")
                );
            }
        }
        if self.sinks.is_empty() {
            let _ = writeln!(s, "(no sinks: records stay in the journal)");
        }
        let _ = writeln!(s, "\nSOURCE          STATE");
        for id in &self.configured_sources {
            let q = self
                .quarantined
                .iter()
                .find(|(src, _)| src == id)
                .map(|(_, n)| format!("  ({n} payloads quarantined)"))
                .unwrap_or_default();
            let mut connections: Vec<(String, &str)> = self
                .sources
                .iter()
                .filter(|(src, key, _, _)| src == id && is_connection(key))
                .map(|(_, key, v, _)| (connection_label(id, key), v.as_str()))
                .collect();
            if connections.is_empty() {
                connections.push((id.clone(), "no outage recorded"));
            }
            for (i, (label, state)) in connections.iter().enumerate() {
                let q = if i == 0 { q.as_str() } else { "" };
                let _ = writeln!(s, "{label:<15} {state}{q}");
            }
        }
        if self.configured_sources.is_empty() {
            let _ = writeln!(s, "(no sources configured)");
        }
        // Result files' SHA-256 (`file:<sha>`, one per file a metrology source read) are
        // bookkeeping: counted, not listed.
        let other: Vec<_> = self
            .sources
            .iter()
            .filter(|(_, key, _, _)| !is_connection(key) && !key.starts_with("file:"))
            .collect();
        let mut files: Vec<(&str, usize)> = Vec::new();
        for (src, key, _, _) in &self.sources {
            if key.starts_with("file:") {
                match files.iter_mut().find(|(s, _)| s == src) {
                    Some((_, n)) => *n += 1,
                    None => files.push((src, 1)),
                }
            }
        }
        if !other.is_empty() || !files.is_empty() {
            let _ = writeln!(s, "\nSOURCE STATE (watermarks, cursors, folders)");
            for (src, key, value, at) in other {
                let _ = writeln!(s, "{src:<15} {key} = {value}  (at {at})");
            }
            for (src, n) in files {
                let _ = writeln!(s, "{src:<15} {n} result files known by SHA-256");
            }
        }
        s
    }
}

/// Whether a source-state key is a connection state (`connection`, or `connection:<channel>` for
/// one REST endpoint).
fn is_connection(key: &str) -> bool {
    key == "connection" || key.starts_with("connection:")
}

/// `erp` or `erp/WorkOrders`.
fn connection_label(source: &str, key: &str) -> String {
    match key.strip_prefix("connection:") {
        Some(channel) => format!("{source}/{channel}"),
        None => source.to_string(),
    }
}
