//! `replay` and `dead-letters`: re-send records after the QMS was fixed.
//!
//! The command line does not send anything itself: it writes a request into the journal's
//! `requests` table (who asked, when, why, which seqs), and the running agent's sink driver performs
//! it within a second (`src/sinks/driver.rs`), logs it and appends an `agent_event` record
//! (`replay` or `dead_letters_retried`) naming who asked and what was re-sent or refused again.
//! A request made while the agent is stopped is performed after its next start. Re-sent records
//! keep their ids, so a QMS that dedupes by id keeps one copy.

use std::fmt::Write as _;

use crate::config::Config;
use crate::journal::store::{DeadLetter, Request, Synchronous};
use crate::journal::{JournalError, Store};

/// Why a request was not made.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The request does not fit the configuration or the journal.
    #[error("{0}")]
    Invalid(String),
}

/// The user who runs this command: the name the environment gives (`USER`, `LOGNAME`; with sudo,
/// `SUDO_USER` and whom it ran as), which anyone can set, and beside it the real uid of the process,
/// which the kernel vouches for: `alice (uid 1000)`, `alice (as root via sudo, uid 0)`.
pub fn who() -> String {
    let uid = real_uid();
    let shown_uid = uid
        .map(|u| format!("uid {u}"))
        .unwrap_or_else(|| "uid unknown".into());
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty());
    match (
        std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
        user,
    ) {
        (Some(sudo), user) => format!(
            "{sudo} (as {} via sudo, {shown_uid})",
            user.as_deref().unwrap_or("another user")
        ),
        (None, Some(user)) => format!("{user} ({shown_uid})"),
        (None, None) => shown_uid,
    }
}

/// The real uid of this process (`/proc/self/status`).
pub fn real_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn check_sink(config: &Config, sink: &str) -> Result<(), RequestError> {
    if config.sinks.contains_key(sink) {
        return Ok(());
    }
    let known: Vec<&str> = config.sinks.keys().map(String::as_str).collect();
    Err(RequestError::Invalid(format!(
        "no sink `{sink}` in the configuration (sinks: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

fn writable(config: &Config) -> Result<Store, RequestError> {
    // Read-only first: a missing journal is named, not created.
    Store::open_ro(&config.agent.data_dir)?;
    Ok(Store::open_rw(
        &config.agent.data_dir,
        Synchronous::Full,
        config.journal.page_size_bytes,
    )?)
}

/// Asks the agent to send seq `from..=to` (default: up to the journal's head) to `sink` again.
pub fn request_replay(
    config: &Config,
    sink: &str,
    from: i64,
    to: Option<i64>,
    reason: Option<&str>,
) -> Result<String, RequestError> {
    check_sink(config, sink)?;
    let store = writable(config)?;
    let head = store.head()?.seq;
    let first = store
        .read_after(i64::MIN, 1)?
        .first()
        .map_or(head + 1, |r| r.seq);
    let to = to.unwrap_or(head);
    if from > to {
        return Err(RequestError::Invalid(format!(
            "--from {from} is after --to {to}"
        )));
    }
    if from < first || to > head {
        return Err(RequestError::Invalid(format!(
            "the journal holds seq {first}..{head} (older records were pruned after delivery, see journal.retention_days); choose --from/--to inside it"
        )));
    }
    let id = store.request(sink, "replay", (Some(from), Some(to)), &who(), reason)?;
    Ok(format!(
        "request {id}: replay of seq {from}..{to} ({} records) to sink {sink}, asked by {}. The running agent performs it within seconds and records it (agent_event `replay`); see `shopfloor-agent dead-letters requests`",
        to - from + 1,
        who()
    ))
}

/// Asks the agent to re-send `sink`'s open dead letters (all, or the one of `seq`). Without a
/// sink, one request per sink that has any.
pub fn request_retry(
    config: &Config,
    sink: Option<&str>,
    seq: Option<i64>,
    reason: Option<&str>,
) -> Result<String, RequestError> {
    if let Some(s) = sink {
        check_sink(config, s)?;
    }
    let store = writable(config)?;
    let letters = store.dead_letters(sink)?;
    let mut sinks: Vec<&str> = letters
        .iter()
        .filter(|d| seq.is_none_or(|s| s == d.seq))
        .map(|d| d.sink.as_str())
        .collect();
    sinks.dedup();
    if sinks.is_empty() {
        return Err(RequestError::Invalid(match seq {
            Some(s) => format!(
                "no open dead letter at seq {s}{}",
                sink.map(|k| format!(" for sink {k}")).unwrap_or_default()
            ),
            None => "no open dead letters".into(),
        }));
    }
    let mut out = String::new();
    for s in sinks {
        check_sink(config, s)?;
        let n = letters
            .iter()
            .filter(|d| d.sink == s && seq.is_none_or(|q| q == d.seq))
            .count();
        let id = store.request(s, "retry_dead_letters", (seq, seq), &who(), reason)?;
        let _ = writeln!(
            out,
            "request {id}: re-send {n} dead letter(s) to sink {s}, asked by {}; the running agent performs it within seconds (agent_event `dead_letters_retried`)",
            who()
        );
    }
    Ok(out)
}

/// The open dead letters as a table.
pub fn render_dead_letters(letters: &[DeadLetter]) -> String {
    let mut s = String::new();
    if letters.is_empty() {
        let _ = writeln!(s, "no open dead letters");
        return s;
    }
    let _ = writeln!(
        s,
        "{:<12} {:>8}  {:<36}  {:<25} REASON",
        "SINK", "SEQ", "RECORD", "SINCE"
    );
    for d in letters {
        let _ = writeln!(
            s,
            "{:<12} {:>8}  {:<36}  {:<25} {}",
            d.sink, d.seq, d.record_id, d.at, d.reason
        );
    }
    let _ = writeln!(
        s,
        "\nonce the peer is fixed: shopfloor-agent dead-letters retry [--sink S] [--seq N] [--reason TEXT]"
    );
    s
}

/// Requests (pending and done) as a table.
pub fn render_requests(requests: &[Request]) -> String {
    let mut s = String::new();
    if requests.is_empty() {
        let _ = writeln!(s, "no requests");
        return s;
    }
    for r in requests {
        let seqs = match (r.from_seq, r.to_seq) {
            (Some(a), Some(b)) if a != b => format!(" seq {a}..{b}"),
            (Some(a), _) => format!(" seq {a}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "#{} {} {}{} to {} by {} at {}{}\n    {}",
            r.id,
            r.action,
            if r.done_at.is_some() {
                "done"
            } else {
                "PENDING"
            },
            seqs,
            r.sink,
            r.requested_by,
            r.requested_at,
            r.reason
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default(),
            match (&r.done_at, &r.outcome) {
                (Some(at), Some(o)) => format!("{at}: {o}"),
                _ => "waits for the running agent".into(),
            }
        );
    }
    s
}
