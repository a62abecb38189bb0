//! Journal append throughput against the disk's physical limit, and single-record commit latency.
//!
//! `cargo bench --bench journal` (set `JOURNAL_BENCH_RECORDS` to change the size; default 200,000).
//!
//! 1. **Limit**: plain SQLite inserts of the same bytes (WAL, `synchronous=FULL`, 1,000-row
//!    transactions, a table with nothing but a key and the body): what this disk can do.
//! 2. **Journal**: the real journal (hash chain, canonical JSON, ids, dedupe index, group commit),
//!    with 64 and 256 producers each appending one record at a time and waiting for its commit.
//! 3. **Latency**: one producer alone: every append is its own fsynced commit.
//!
//! The ratio journal / limit is the figure the README reports.

use std::time::Instant;

use rusqlite::params;
use shopfloor_agent::journal::{loadgen, Journal, JournalOptions, NewRecord};
use shopfloor_agent::records::RecordContext;

const RECORD_BYTES: usize = 600;

fn ctx() -> RecordContext {
    RecordContext {
        gateway_id: "bench".into(),
        config_sha256: "0".repeat(64),
    }
}

fn limit(dir: &std::path::Path, bodies: &[String]) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("plain.sqlite")).expect("open");
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .expect("table");
    let start = Instant::now();
    for chunk in bodies.chunks(1000) {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn
                .prepare_cached("INSERT INTO t(body) VALUES (?1)")
                .expect("prepare");
            for b in chunk {
                stmt.execute(params![b]).expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    bodies.len() as f64 / start.elapsed().as_secs_f64()
}

/// The journal's own table (same columns, indexes and row contents, from `schema.rs`), filled with
/// plain inserts: what the row shape alone costs, without hashing, canonical JSON or group commit.
fn limit_same_rows(dir: &std::path::Path, bodies: &[String]) -> f64 {
    let mut conn = rusqlite::Connection::open(dir.join("rows.sqlite")).expect("open");
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    shopfloor_agent::journal::schema::migrate(&mut conn).expect("schema");
    let hash = "ab".repeat(32);
    let start = Instant::now();
    for (c, chunk) in bodies.chunks(1000).enumerate() {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO records (seq, id, kind, captured_at, appended_at, dedupe_key, body, prev_hash, hash)
                     VALUES (?1, ?2, 'agent_event', '2026-11-21T10:15:30.123Z', 1763720130123, NULL, ?3, ?4, ?4)",
                )
                .expect("prepare");
            for (i, b) in chunk.iter().enumerate() {
                let seq = (c * 1000 + i + 1) as i64;
                stmt.execute(params![seq, format!("{seq:036}"), b, hash])
                    .expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    bodies.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("JOURNAL_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let ctx = ctx();
    let sample = NewRecord::new(loadgen::padded_record(
        &ctx,
        RECORD_BYTES,
        "producer 0 record 0",
    ));
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            NewRecord::new(loadgen::padded_record(
                &ctx,
                RECORD_BYTES,
                &format!("producer 0 record {i}"),
            ))
            .canonical
        })
        .collect();
    println!(
        "journal bench: {n} records of {} bytes (canonical JSON), WAL, synchronous=FULL",
        sample.canonical.len()
    );

    let dir = tempfile::tempdir().expect("tmp");
    let limit_rate = limit(dir.path(), &bodies);
    let rows_rate = limit_same_rows(dir.path(), &bodies);
    drop(bodies);
    println!("  limit   plain SQLite, 1,000-row transactions: {limit_rate:>9.0} rows/s");
    println!(
        "          the journal's table and rows, plain 1,000-row inserts: {rows_rate:>9.0} rows/s ({:.0}% of the limit: the cost of the row shape)",
        100.0 * rows_rate / limit_rate
    );

    {
        let dir = tempfile::tempdir().expect("tmp");
        let journal = Journal::open(JournalOptions::new(dir.path()), ctx.clone()).expect("open");
        let start = Instant::now();
        let mut made = std::time::Duration::ZERO;
        for b in 0..(n / 1000) {
            let t = Instant::now();
            let batch: Vec<NewRecord> = (0..1000)
                .map(|i| {
                    NewRecord::new(loadgen::padded_record(
                        &ctx,
                        RECORD_BYTES,
                        &format!("batch {b} record {i}"),
                    ))
                })
                .collect();
            made += t.elapsed();
            journal.append_blocking(batch).expect("append");
        }
        let total = start.elapsed();
        journal.close_blocking();
        println!(
            "  journal one producer, 1,000 records per append: {:>9.0} records/s = {:.0}% of the limit ({:.0}% of the time making records)",
            n as f64 / total.as_secs_f64(),
            100.0 * n as f64 / total.as_secs_f64() / limit_rate,
            100.0 * made.as_secs_f64() / total.as_secs_f64()
        );
    }

    for producers in [64u64, 256] {
        let dir = tempfile::tempdir().expect("tmp");
        let journal = Journal::open(JournalOptions::new(dir.path()), ctx.clone()).expect("open");
        let r = loadgen::run(&journal, &ctx, n, producers, RECORD_BYTES, None).expect("load");
        journal.close_blocking();
        println!(
            "  journal {producers:>3} producers, one record per append:  {:>9.0} records/s = {:.0}% of the limit (commit latency p50 {:.2} ms, p99 {:.2} ms)",
            r.rate(),
            100.0 * r.rate() / limit_rate,
            r.latency(0.5).as_secs_f64() * 1e3,
            r.latency(0.99).as_secs_f64() * 1e3
        );
    }

    let dir = tempfile::tempdir().expect("tmp");
    let journal = Journal::open(JournalOptions::new(dir.path()), ctx.clone()).expect("open");
    let r = loadgen::run(&journal, &ctx, (n / 20).max(1000), 1, RECORD_BYTES, None).expect("load");
    journal.close_blocking();
    println!(
        "  single producer (each append its own commit): {:>9.0} records/s, commit latency p50 {:.3} ms, p99 {:.3} ms",
        r.rate(),
        r.latency(0.5).as_secs_f64() * 1e3,
        r.latency(0.99).as_secs_f64() * 1e3
    );
}
