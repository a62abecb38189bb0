//! Journal append throughput against the disk's physical limit, and single-record commit latency.
//!
//! `cargo bench --bench journal` (`JOURNAL_BENCH_RECORDS`, default 200,000 per run;
//! `JOURNAL_BENCH_ROUNDS`, default 3).
//!
//! 1. **Limit**: plain SQLite inserts of the same bytes (WAL, `synchronous=FULL`, 1,000-row
//!    transactions, a table with nothing but a key and the body): what this disk can do.
//! 2. **Journal**: the real journal (records made and put in canonical JSON by the producers, hash
//!    chain, dedupe index, group commit, fsync before the answer), (a) 2 and 8 producers appending
//!    1,000 records at a time (REST pages, a busy broker), each waiting for its commit before making
//!    the next batch: with 2 the writer sometimes waits for a batch, with 8 it never does (its
//!    capacity); (b) 256 producers appending one record at a time, each waiting for its commit.
//! 3. **Latency**: one producer alone: every append is its own fsynced commit.
//!
//! This disk's rate swings by a third from run to run, so limit and journal are measured in turns,
//! `JOURNAL_BENCH_ROUNDS` times, and each round's ratio is printed with the median. The ratio
//! journal / limit is the figure the README reports.

use std::time::Instant;

use rusqlite::params;
use shopfloor_agent::journal::loadgen::{self, Load};
use shopfloor_agent::journal::{Journal, JournalOptions, NewRecord};
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
    let hash = [0xab_u8; 32];
    let start = Instant::now();
    for (c, chunk) in bodies.chunks(1000).enumerate() {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO records (seq, kind, appended_at, dedupe_key, body, hash, signature)
                     VALUES (?1, 'agent_event', 1763720130123, NULL, ?2, ?3, NULL)",
                )
                .expect("prepare");
            for (i, b) in chunk.iter().enumerate() {
                let seq = (c * 1000 + i + 1) as i64;
                stmt.execute(params![seq, b, &hash[..]]).expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    bodies.len() as f64 / start.elapsed().as_secs_f64()
}

/// The real journal under `load`, in a fresh directory, with the configuration's defaults: records/s
/// and the per-append latency quantiles p50 and p99.
fn journal(ctx: &RecordContext, load: Load) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut opts = JournalOptions::new(dir.path());
    opts.max_disk_bytes = 1 << 30; // the configuration's default: the size check is on the path
    let journal = Journal::open(opts, ctx.clone()).expect("open");
    let r = loadgen::run(&journal, ctx, load, None).expect("load");
    journal.close_blocking();
    (
        r.rate(),
        r.latency(0.5).as_secs_f64() * 1e3,
        r.latency(0.99).as_secs_f64() * 1e3,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env("JOURNAL_BENCH_RECORDS", 200_000);
    let rounds = env("JOURNAL_BENCH_ROUNDS", 3).max(1);
    let ctx = ctx();
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
        "journal bench: {n} records of {} bytes (canonical JSON) per run, WAL, synchronous=FULL, {rounds} rounds",
        bodies[0].len()
    );
    let batched = Load {
        records: n,
        producers: 2,
        batch: 1000,
        record_bytes: RECORD_BYTES,
    };
    let saturated = Load {
        producers: 8,
        ..batched
    };
    let single = Load {
        producers: 256,
        batch: 1,
        ..batched
    };
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for round in 1..=rounds {
        let dir = tempfile::tempdir().expect("tmp");
        let limit_rate = limit(dir.path(), &bodies);
        let rows_rate = limit_same_rows(dir.path(), &bodies);
        let (b, ..) = journal(&ctx, batched);
        let (f, ..) = journal(&ctx, saturated);
        let (s, s50, s99) = journal(&ctx, single);
        for (v, rate) in ratios.iter_mut().zip([rows_rate, b, f, s]) {
            v.push(rate / limit_rate);
        }
        println!(
            "  round {round}: limit {limit_rate:>7.0} rows/s | journal's row shape, plain inserts {rows_rate:>7.0} ({:.0}%) \
             | journal 1,000-record appends: 2 producers {b:>7.0} records/s ({:.0}%), 8 producers {f:>7.0} ({:.0}%) \
             | 256 x 1-record appends {s:>7.0} ({:.0}%, p50 {s50:.2} ms, p99 {s99:.2} ms)",
            100.0 * rows_rate / limit_rate,
            100.0 * b / limit_rate,
            100.0 * f / limit_rate,
            100.0 * s / limit_rate,
        );
    }
    let [shape, b, f, s] = ratios.map(|v| 100.0 * median(v));
    println!(
        "  median of {rounds}: journal, 1,000-record appends from 2 producers = {b:.0}% of the limit, from 8 = {f:.0}%; \
         256 producers of one record = {s:.0}%; the row shape alone = {shape:.0}%"
    );

    let (r, r50, r99) = journal(
        &ctx,
        Load {
            producers: 64,
            ..single
        },
    );
    println!(
        "  journal 64 producers, one record per append: {r:>7.0} records/s (commit latency p50 {r50:.2} ms, p99 {r99:.2} ms)"
    );
    let (r, r50, r99) = journal(
        &ctx,
        Load {
            records: (n / 20).max(1000),
            producers: 1,
            ..single
        },
    );
    println!(
        "  single producer (each append its own commit): {r:>7.0} records/s, commit latency p50 {r50:.3} ms, p99 {r99:.3} ms"
    );
}
