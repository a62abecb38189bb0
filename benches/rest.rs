//! REST ingest: 100,000 rows in pages of 1,000 from a local OData-style server into the journal.
//!
//! `cargo bench --bench rest` (`REST_BENCH_ROWS` to change the size). The server (axum, in this
//! process) answers the keyset query `$filter=modifiedAt ge …&$top=1000`; the agent runs in process
//! with a traveler rule per row and a dedupe key, so each row is parsed, turned into a record with
//! provenance, canonicalized, hashed and committed (`synchronous=FULL`) with the page's watermark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use shopfloor_agent::config::{Config, LoadOptions};
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn work_orders(
    State(rows): State<Arc<Vec<Value>>>,
    RawQuery(q): RawQuery,
) -> axum::Json<Value> {
    let q = q.unwrap_or_default();
    let from = param(&q, "$filter")
        .and_then(|f| f.strip_prefix("modifiedAt ge ").map(str::to_string))
        .unwrap_or_default();
    let top: usize = param(&q, "$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1000);
    let start = rows.partition_point(|r| r["modifiedAt"].as_str().unwrap_or("") < from.as_str());
    let page: Vec<Value> = rows[start..].iter().take(top).cloned().collect();
    axum::Json(json!({ "value": page }))
}

fn main() {
    let n: usize = std::env::var("REST_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            let at = shopfloor_agent::time::format(shopfloor_agent::time::from_unix_ms(1_750_000_000_000 + i as i64));
            json!({ "ID": i, "workOrder": format!("WO-{i:06}"), "partNumber": "PN-4711", "operation": "0040",
                    "workCenter": "WC-TURN-01", "status": "RELEASED", "modifiedAt": at })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!("http://{}/erp/", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/erp/WorkOrders", get(work_orders))
        .with_state(Arc::new(rows));
    rt.spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tmp");
    let toml = format!(
        r#"
[agent]
gateway_id = "bench"
data_dir = "{data}"
[journal]
max_disk_bytes = 0
[sources.erp]
type = "rest"
url = "{url}"
poll_interval_ms = 60000
[[sources.erp.endpoints]]
name = "WorkOrders"
path = "WorkOrders"
key = "/ID"
watermark = {{ field = "/modifiedAt", filter = "$filter=modifiedAt ge {{watermark}}&$top=1000", overlap_s = 0 }}
[[records]]
name = "wo"
kind = "traveler"
trigger = {{ type = "row", source = "erp", endpoint = "WorkOrders" }}
dedupe_key = "{{/ID}}/{{/modifiedAt}}"
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}
"subject.part_number" = {{ pointer = "/partNumber" }}
"subject.operation" = {{ pointer = "/operation" }}
"subject.station" = {{ pointer = "/workCenter" }}
"traveler.status" = {{ pointer = "/status", map = {{ RELEASED = "queued" }} }}
"#,
        data = dir.path().join("data").display()
    );
    let config = Config::from_texts(
        &[(dir.path().join("agent.toml"), toml)],
        dir.path(),
        LoadOptions::default(),
    )
    .expect("config");
    let start = Instant::now();
    let agent = rt.block_on(Agent::start(config)).expect("agent");
    let store_dir = dir.path().join("data");
    let mut done = 0;
    while start.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(50));
        done = Store::open_ro(&store_dir)
            .and_then(|s| s.head())
            .map(|h| h.seq as usize)
            .unwrap_or(0);
        if done > n {
            break; // n travelers + the start record
        }
    }
    let elapsed = start.elapsed();
    rt.block_on(agent.stop("bench done"));
    println!(
        "rest bench: {} rows in pages of 1,000 from a local server into the journal in {:.2} s: {:.0} rows/s",
        done.saturating_sub(1),
        elapsed.as_secs_f64(),
        done.saturating_sub(1) as f64 / elapsed.as_secs_f64()
    );
}
