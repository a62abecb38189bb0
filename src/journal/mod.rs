//! The journal: the agent's durable buffer and local audit trail, one SQLite database in WAL mode.
//!
//! # Invariants
//!
//! 1. **Acknowledged means on disk.** [`Journal::append`] returns only after the transaction holding
//!    the records has committed and the WAL has been fsynced past it (`journal.synchronous = "full"`,
//!    the default: the fsync runs on its own thread, pipelined with the next commit, see `syncer.rs`),
//!    so a source acknowledges upstream (MQTT PUBACK, REST watermark) only for data that survives
//!    kill -9 and power loss. Sinks read only up to that point ([`Journal::durable_seq`]).
//!    `journal.synchronous = "normal"` trades the last commits on power loss for speed and is
//!    documented as such in `config/agent.toml`.
//! 2. **Append-only and gap-free.** `seq` starts at 1 and grows by one per record; rows are never
//!    updated (a trigger refuses UPDATE) and only deleted by retention, from the front.
//! 3. **Hash chain.** `hash = SHA-256(prev_hash ‖ body)` where `body` is the RFC 8785 canonical JSON of
//!    the record and `prev_hash` is the previous row's `hash` (32 zero bytes for seq 1, the checkpoint's
//!    hash after a prune). Any edit, removal or reordering of rows breaks the chain at that seq
//!    ([`crate::audit::verify`]). `prev_hash` is not stored: readers take it from the row before.
//! 4. **Retention keeps the chain provable.** Rows are pruned only when every configured sink
//!    acknowledged them, no open dead letter refers to them, and they are older than `retention_days`;
//!    the last pruned row's seq and hash stay in `checkpoints`, where verification starts.
//! 5. **Never delete to make room.** When `max_disk_bytes` is reached (or the disk is full), new records
//!    are refused with [`JournalError::Full`]; nothing undelivered is deleted. The first append that
//!    succeeds afterwards writes a `gap` record covering the refusal, in the same transaction.
//! 6. **State with its data.** Source state (watermarks, cursors) given with an append is written in
//!    the same transaction as those records, so a restart resumes exactly where the journal stands.
//! 7. **Dedupe.** A record whose `dedupe_key` is already in the journal is not appended again; the
//!    caller learns the seq it already has ([`Appended::Duplicate`]).
//! 8. **One writer.** Every write goes through one thread that owns the write connection; concurrent
//!    appends are grouped into one transaction (group commit), each caller is answered after commit.
//!    Readers (sinks, `status`, `verify`) use their own connections (WAL lets them read while it writes).
//! 9. **Anchored ends, seqs never reused** ([`seal`]). Nothing in the journal's own tables (sink
//!    cursors, dead letters, requests, receipts) may name a seq after the newest record, nor may the
//!    head seal (`head.seal`, written at every stop and every `seal_interval_s`); `verify` fails and
//!    [`Journal::open`] refuses such a journal, so a seq a sink has acknowledged is never given to
//!    a new record.
//!
//! # Where each invariant is enforced
//!
//! | file | what it holds | invariants |
//! |---|---|---|
//! | `handle.rs` | [`Journal`]: the commands callers send, `open` (refuses a shortened journal) | 8, 9 |
//! | `writer.rs` | the writer thread: group commit, chaining, the head seal, retention runs | 2, 3, 6, 7, 8, 9 |
//! | `syncer.rs` | fsync after each commit before anyone is answered; checkpoints beside the writer | 1 |
//! | `limit.rs` | `max_disk_bytes` and a full disk: refuse, tell, write the gap once accepting again | 5 |
//! | `store/records.rs` | appending a group in one transaction (hash, dedupe, signature, state), reading in order | 2, 3, 6, 7 |
//! | `store/retention.rs` | pruning behind a (signed) checkpoint | 4 |
//! | `store/delivery.rs` | sink cursors, dead letters, requests, receipts | 4, 9 |
//! | `store/sources.rs` | source state and quarantine | 6 |
//! | `store/wal.rs` | the checkpoint thread's connection and the WAL backstop | 1 |
//! | `store/queries.rs` | every query the audit tools make (they hold no SQL of their own) | – |
//! | `schema.rs` | the DDL, the UPDATE trigger, migrations | 2 |
//! | `chain.rs`, `signing.rs`, `seal.rs` | canonical JSON and hashes, Ed25519 signatures, the head seal | 3, 9 |
//!
//! # What tampering is found, and what is not
//!
//! | tampering | found by | with signing off | with `journal.sign = true` |
//! |---|---|---|---|
//! | a body, hash or order changed, a row deleted in the middle | the chain (`verify` names the seq) | yes | yes |
//! | the chain rewritten consistently from some row on | the head seal (another hash at the sealed seq); the signatures | if the seal is kept | yes: the forger cannot sign |
//! | a signature removed (with the rows re-chained) | a row without a signature after a signed one, or after the key's `signing_key_created` event | – | yes |
//! | the newest rows deleted | a sink cursor, dead letter, request or receipt beyond the head; the head seal | yes, unless every one of them is edited too | yes, unless all are edited and the seal deleted |
//! | the oldest rows deleted behind a made-up retention checkpoint | the checkpoint's signature | no | yes |
//!
//! What no local check can find: an attacker with the signing key and the whole disk can write any
//! journal they like; one without the key who deletes the newest rows *and* the seal *and* rewinds
//! every cursor leaves a shorter journal that verifies. What catches them is what the gateway
//! already sent away: every record carries its `seq`, `prev_hash` and `hash` to each sink (the
//! CloudEvents `sequence`, `prevhash` and `hash`, the file sink's line), so a QMS that checks that
//! each gateway's seqs have no holes and each `prev_hash` is the hash it received before sees a
//! shortened or rewritten journal as soon as the gateway sends again: new records under seqs it
//! already holds, with another chain.
//!
//! # On-disk schema (version 7, `PRAGMA user_version`)
//!
//! | table | rows | key columns |
//! |---|---|---|
//! | `records` | one per record | `seq`, `kind`, `appended_at` (ms), `dedupe_key`, `body` (JCS), `hash` (32 bytes), `signature` (hex); the id and capture time are read from `body` |
//! | `checkpoints` | one per prune | `seq`, `hash` of the last pruned row, `signature` (signing on) |
//! | `sink_cursors` | one per sink | `acked_seq`: every record up to it was acknowledged by the sink |
//! | `dead_letters` | one per rejected record | `sink`, `seq`, `record_id`, `reason`, `retried_at` |
//! | `source_state` | one per source key | `source`, `key`, `value` (watermarks, cursors) |
//! | `quarantine` | one per unusable payload | `source`, `topic`, `payload` (first 64 KiB), `size`, `reason` |
//! | `configs` | one per configuration run | `sha256` (as in the records' provenance), `first_used`, `toml` (secret references unresolved) |
//! | `requests` | one per `replay` / `dead-letters retry` | `sink`, `action`, `from_seq`, `to_seq`, `requested_by`, `reason`, `requested_at`, `done_at`, `outcome` |
//! | `receipts` | one per record a sink's peer answered for | `sink`, `seq`, `record_id`, `receipt` (the QMS's id), `at` |
//! | `meta` | settings | `journal_id`, `created_at`, `last_config_sha256`, `clean_shutdown` |
//!
//! The exact DDL is in [`schema`]. The page size is set once, when the journal is made
//! (`journal.page_size_bytes`, SQLite's 4096 by default); the checkpoint thresholds are WAL bytes,
//! so the WAL's bound does not depend on it.

pub mod chain;
mod handle;
mod limit;
pub mod loadgen;
pub mod schema;
pub mod seal;
pub mod signing;
pub mod store;
mod syncer;
mod writer;

use std::path::PathBuf;

use crate::records::{QualityRecord, RecordKind};

pub use handle::{Journal, JournalOptions, Queued, Startup};
pub use store::{JournalRow, Store};

/// The journal's file name inside the data directory.
pub const FILE_NAME: &str = "journal.sqlite";

/// The page size of a new journal unless `journal.page_size_bytes` says otherwise (SQLite's own).
pub const DEFAULT_PAGE_SIZE: u32 = 4096;

/// Whether SQLite can use `bytes` as a page size (a power of two; 512 is left out, as too small
/// for any record).
pub fn page_size_ok(bytes: u32) -> bool {
    bytes.is_power_of_two() && (1024..=65536).contains(&bytes)
}

/// A record ready to append: its canonical JSON is computed by the caller, off the writer thread,
/// and the record itself is dropped there too: the writer needs only the bytes it hashes and stores.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The record's id (UUIDv7).
    pub id: uuid::Uuid,
    /// The record's kind.
    pub kind: RecordKind,
    /// Canonical (JCS) JSON of the record.
    pub canonical: String,
    /// Rule-declared key of the physical event; a second record with the same key is not appended.
    pub dedupe_key: Option<String>,
    /// Its source sends the data again if the journal refuses it (it waits for the commit before
    /// it acknowledges: MQTT QoS 1, REST pages); a refusal then delays the record, it does not
    /// lose it. The refusal's gap record counts these apart.
    pub resent_if_refused: bool,
}

impl NewRecord {
    /// Prepares `record` for the journal.
    pub fn new(record: QualityRecord) -> Self {
        NewRecord {
            id: record.id,
            kind: record.kind,
            canonical: chain::to_canonical_json(&record),
            dedupe_key: None,
            resent_if_refused: false,
        }
    }

    /// Sets the dedupe key.
    pub fn with_dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }
}

/// A source-state entry (watermark, cursor) committed together with records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    /// Source id.
    pub source: String,
    /// Key inside the source (`watermark:WorkOrders`).
    pub key: String,
    /// Value; an empty value removes the key (a source forgets what it no longer needs).
    pub value: String,
}

/// The outcome of appending one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Appended at this seq.
    New {
        /// Journal sequence number.
        seq: i64,
    },
    /// Its dedupe key was already present, at this seq.
    Duplicate {
        /// Seq of the record that holds the key.
        seq: i64,
    },
}

impl Appended {
    /// The seq of the record now holding this event.
    pub fn seq(self) -> i64 {
        match self {
            Appended::New { seq } | Appended::Duplicate { seq } => seq,
        }
    }
}

/// Errors of the journal. Messages are lowercase and carry the offending value.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The data directory or database file could not be created or opened.
    #[error("cannot open journal {path}: {message}; {hint}")]
    Open {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The journal was written by a newer agent.
    #[error("journal schema version {found} is newer than this agent knows ({known}); upgrade the agent or restore the matching version")]
    NewerSchema {
        /// Version in the file.
        found: i64,
        /// Newest version this agent knows.
        known: i64,
    },
    /// New records are refused: the size limit or the disk is full. Nothing was written.
    #[error("journal full ({reason}); record refused")]
    Full {
        /// `max_disk_bytes reached (…)` or `disk full`.
        reason: String,
    },
    /// The writer thread has stopped (the agent is shutting down).
    #[error("journal is closed")]
    Closed,
    /// An append failed; nothing of it was written.
    #[error("journal append failed: {0}")]
    Failed(String),
    /// Any other SQLite error.
    #[error("journal database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record is not what the journal wrote (not JSON, say).
    #[error("journal record unreadable: {0}")]
    Unreadable(String),
    /// File system error outside SQLite.
    #[error("journal i/o error: {0}")]
    Io(#[from] std::io::Error),
}
