//! Drain throughput: a journal backlog delivered over HTTP to a local receiver, and memory while it drains.
//!
//! `cargo bench --bench drain` (set `DRAIN_RECORDS`, default 200,000; the README figure for memory
//! uses 1,000,000). The receiver runs in the same process on 127.0.0.1 and parses every batch, so the
//! figure includes both ends on this machine's two cores. Memory is the resident set of the whole
//! process (agent + receiver), sampled while the backlog drains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use shopfloor_agent::config::{Config, LoadOptions};
use shopfloor_agent::journal::{loadgen, Journal, JournalOptions, NewRecord, Store};
use shopfloor_agent::runtime::topology::Agent;

async fn receive(State(count): State<Arc<AtomicU64>>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body) {
        Ok(events) => {
            count.fetch_add(events.len() as u64, Ordering::Relaxed);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn main() {
    let n: u64 = common::env_or("DRAIN_RECORDS", 200_000);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let toml_text = |url: &str| {
        format!(
            "[agent]\ngateway_id = \"bench\"\ndata_dir = \"{}\"\n[journal]\nmax_disk_bytes = 0\n[sinks.qms]\ntype = \"http\"\nurl = \"{url}\"\n",
            data.display()
        )
    };
    // The config hash must match the one the agent will use, so build the config first.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let count = Arc::new(AtomicU64::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}/events", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/events", post(receive))
        .with_state(count.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    let config = Config::from_texts(
        &[(dir.path().join("agent.toml"), toml_text(&url))],
        dir.path(),
        LoadOptions::default(),
    )
    .expect("config");

    let fill = Instant::now();
    {
        let ctx = config.record_context();
        let journal = Journal::open(JournalOptions::new(&data), ctx.clone()).expect("journal");
        for b in 0..n.div_ceil(1000) {
            let batch = (0..1000.min(n - b * 1000))
                .map(|i| {
                    NewRecord::new(loadgen::padded_record(
                        &ctx,
                        600,
                        &format!("batch {b} record {i}"),
                    ))
                })
                .collect();
            journal.append_blocking(batch).expect("append");
        }
        journal.close_blocking();
    }
    println!(
        "drain bench: {n} records of ~600 bytes in the journal (filled in {:.1} s); RSS before start {:.1} MiB",
        fill.elapsed().as_secs_f64(),
        common::own_rss_mib()
    );

    let agent = rt.block_on(Agent::start(config)).expect("agent");
    let start = Instant::now();
    let store = Store::open_ro(&data).expect("ro");
    let mut samples = Vec::new();
    let mut next_mark = 0.1;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let done = count.load(Ordering::Relaxed);
        let progress = done as f64 / (n + 1) as f64;
        if progress >= next_mark {
            samples.push((next_mark, common::own_rss_mib()));
            next_mark += 0.2;
        }
        let acked = store
            .sink_cursors()
            .ok()
            .and_then(|c| c.first().map(|c| c.acked_seq))
            .unwrap_or(0);
        if acked > n as i64 {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            panic!("drain did not finish within an hour");
        }
    }
    let elapsed = start.elapsed();
    rt.block_on(agent.stop("bench done"));
    println!(
        "  drained {} records over HTTP (CloudEvents, batches of 500) in {:.2} s: {:.0} records/s",
        count.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        (n + 1) as f64 / elapsed.as_secs_f64()
    );
    let marks: Vec<String> = samples
        .iter()
        .map(|(p, m)| format!("{:.0}%: {m:.1} MiB", p * 100.0))
        .collect();
    println!(
        "  RSS while draining (agent + receiver): {}",
        marks.join(", ")
    );
}
