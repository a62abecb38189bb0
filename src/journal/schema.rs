//! On-disk schema and its migrations, keyed on SQLite's `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up and runs in one transaction with the
//! `user_version` bump, so an upgrade interrupted by a power cut leaves the old version intact. A journal
//! whose version is newer than this agent knows is refused (a downgrade would misread it).

use rusqlite::Connection;

use super::JournalError;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    CREATE TABLE records (
        seq         INTEGER PRIMARY KEY,   -- gap-free, starts at 1, never reused
        id          TEXT NOT NULL,         -- UUIDv7 of the record (unique by construction; not indexed:
                                           -- an index would cost 15% of append throughput, and sinks,
                                           -- dead letters and audits address rows by seq)
        kind        TEXT NOT NULL,
        captured_at TEXT NOT NULL,
        appended_at INTEGER NOT NULL,      -- journal clock, Unix ms; retention uses it
        dedupe_key  TEXT,                  -- rule-declared key of the physical event
        body        TEXT NOT NULL,         -- RFC 8785 canonical JSON of the record
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL,         -- SHA-256(prev_hash || body), hex
        signature   TEXT
    ) STRICT;

    CREATE UNIQUE INDEX records_dedupe ON records(dedupe_key) WHERE dedupe_key IS NOT NULL;

    CREATE TRIGGER records_append_only BEFORE UPDATE ON records
    BEGIN
        SELECT RAISE(ABORT, 'journal records are append-only');
    END;

    CREATE TABLE checkpoints (
        seq            INTEGER PRIMARY KEY, -- last pruned seq
        hash           TEXT NOT NULL,       -- its hash: the next record's prev_hash
        pruned_records INTEGER NOT NULL,
        pruned_at      TEXT NOT NULL
    ) STRICT;

    CREATE TABLE sink_cursors (
        sink          TEXT PRIMARY KEY,
        acked_seq     INTEGER NOT NULL,
        acked_at      TEXT,
        last_error    TEXT,
        failing_since TEXT
    ) STRICT;

    CREATE TABLE dead_letters (
        id         INTEGER PRIMARY KEY,
        sink       TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        record_id  TEXT NOT NULL,
        reason     TEXT NOT NULL,
        at         TEXT NOT NULL,
        retried_at TEXT
    ) STRICT;
    CREATE INDEX dead_letters_open ON dead_letters(sink, seq) WHERE retried_at IS NULL;

    CREATE TABLE source_state (
        source     TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (source, key)
    ) STRICT;
    "#,
    // 2: payloads a source could not turn into observations, kept with the reason.
    r#"
    CREATE TABLE quarantine (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        topic       TEXT NOT NULL,
        payload     BLOB NOT NULL,         -- the first 64 KiB
        size        INTEGER NOT NULL,      -- the full size in bytes
        reason      TEXT NOT NULL,
        received_at TEXT NOT NULL
    ) STRICT;
    "#,
    // 3: every configuration the agent ran with, by the hash its records carry (secret references
    // unresolved), so that an evidence package can include the configurations in force.
    r#"
    CREATE TABLE configs (
        sha256     TEXT PRIMARY KEY,
        first_used TEXT NOT NULL,
        toml       TEXT NOT NULL
    ) STRICT;
    "#,
    // 4: re-sends asked for from the command line (`replay`, `dead-letters retry`), performed by
    // the running agent's sink driver.
    r#"
    CREATE TABLE requests (
        id           INTEGER PRIMARY KEY,
        sink         TEXT NOT NULL,
        action       TEXT NOT NULL,        -- replay | retry_dead_letters
        from_seq     INTEGER,
        to_seq       INTEGER,
        requested_by TEXT NOT NULL,
        reason       TEXT,
        requested_at TEXT NOT NULL,
        done_at      TEXT,
        outcome      TEXT
    ) STRICT;
    CREATE INDEX requests_open ON requests(sink) WHERE done_at IS NULL;
    "#,
    // 5: the receipt ids a QMS answered with, for reconciliation (`status --by`).
    r#"
    CREATE TABLE receipts (
        sink      TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        receipt   TEXT NOT NULL,
        at        TEXT NOT NULL,
        PRIMARY KEY (sink, seq)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 6: a slimmer records row (the append path's cost follows the bytes per row): the id and
    // capture time are read from the body, `prev_hash` from the row before (or the checkpoint), and
    // the hash is kept as its 32 raw bytes. A malformed old hash is kept as its bytes, so `verify`
    // still names that row. The table is rebuilt once, in this migration's transaction.
    r#"
    CREATE TABLE records_v6 (
        seq         INTEGER PRIMARY KEY,   -- gap-free, starts at 1, never reused
        kind        TEXT NOT NULL,         -- the record's kind (status and trace filter on it)
        appended_at INTEGER NOT NULL,      -- journal clock, Unix ms; retention uses it
        dedupe_key  TEXT,                  -- rule-declared key of the physical event
        body        TEXT NOT NULL,         -- RFC 8785 canonical JSON of the record
        hash        BLOB NOT NULL,         -- SHA-256(previous row's hash || body), 32 bytes
        signature   TEXT                   -- Ed25519 signature of hash, hex (journal.sign)
    ) STRICT;
    INSERT INTO records_v6 (seq, kind, appended_at, dedupe_key, body, hash, signature)
        SELECT seq, kind, appended_at, dedupe_key, body, coalesce(unhex(hash), CAST(hash AS BLOB)), signature
        FROM records ORDER BY seq;
    DROP TABLE records;
    ALTER TABLE records_v6 RENAME TO records;

    CREATE UNIQUE INDEX records_dedupe ON records(dedupe_key) WHERE dedupe_key IS NOT NULL;

    CREATE TRIGGER records_append_only BEFORE UPDATE ON records
    BEGIN
        SELECT RAISE(ABORT, 'journal records are append-only');
    END;
    "#,
    // 7: a retention checkpoint carries a signature with signing on (see `seal.rs`).
    r#"
    ALTER TABLE checkpoints ADD COLUMN signature TEXT; -- Ed25519 of seal::checkpoint_digest, hex
    "#,
];

/// The schema version this agent writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the schema up to [`current_version`]; refuses a journal from a newer agent.
pub fn migrate(conn: &mut Connection) -> Result<(), JournalError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > current_version() {
        return Err(JournalError::NewerSchema {
            found,
            known: current_version(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
