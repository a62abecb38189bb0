//! `/metrics` and `/healthz` while records flow from a Modbus device to the QMS: the counts match the
//! journal and the QMS, and `/healthz` gives the same verdict as `status`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shopfloor_agent::audit::status;
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use crate::support::modbus::Device;
use crate::support::qms::Qms;
use crate::support::{config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(20);

fn agent_toml(device: SocketAddr, qms: &str) -> String {
    format!(
        r#"
[agent]
gateway_id = "gw-metrics"
data_dir = "data"

[metrics]
listen = "127.0.0.1:0"

[sources.gauge]
type = "modbus"
transport = "tcp"
address = "{device}"
addressing = "pdu"
poll_interval_ms = 50
timeout_ms = 300
reconnect_initial_ms = 100
reconnect_max_ms = 300
[[sources.gauge.tags]]
name = "part_complete"
kind = "coil"
address = 0
type = "bool"
[[sources.gauge.tags]]
name = "serial"
kind = "holding"
address = 10
type = "u32"
[[sources.gauge.tags]]
name = "diameter"
kind = "holding"
address = 100
type = "f32"
order = "cdab"

[[records]]
name = "od"
kind = "inspection"
trigger = {{ type = "rising", tag = "gauge.part_complete" }}
dedupe_key = "{{subject.serial}}"
[records.fields]
"subject.serial" = {{ tag = "gauge.serial", format = "SN-{{value}}" }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ tag = "gauge.diameter" }}
"inspection.nominal" = {{ const = 25.0 }}
"inspection.lower_tolerance" = {{ const = 0.02 }}
"inspection.upper_tolerance" = {{ const = 0.02 }}

[sinks.qms]
type = "http"
url = "{qms}"
retry_initial_ms = 100
retry_max_ms = 300
"#
    )
}

/// One scrape: `(status, body)`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("scrape");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// The samples of an OpenMetrics text, by series (`name{labels}`).
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A sink holding records back, as `status` and `/metrics` show it: its line says FAILING,
/// `status` gives `reason`, and its backlog in `/metrics` is above 0.
pub(crate) async fn assert_sink_waits(
    cfg: &shopfloor_agent::config::Config,
    agent: &Agent,
    sink: &str,
    reason: &str,
) {
    let status = status::collect(cfg).expect("status").render();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{sink} ")))
        .expect("a line for the sink");
    assert!(line.contains("FAILING"), "{status}");
    assert!(status.contains(reason), "{status}");
    let addr = agent.metrics_addr().expect("metrics listening");
    shopfloor_agent::transport::install_crypto_provider();
    let metrics = samples(&get(addr, "/metrics").await.1);
    let backlog = *metrics
        .get(&format!(
            "shopfloor_sink_backlog_records{{sink=\"{sink}\"}}"
        ))
        .expect("the sink's backlog in /metrics");
    assert!(backlog > 0.0, "backlog {backlog}");
}

async fn part(dev: &Device, serial: u32) {
    dev.set(|m| {
        m.holding.insert((1, 10), (serial >> 16) as u16);
        m.holding.insert((1, 11), serial as u16);
    });
    dev.set_f32_cdab(1, 100, 25.001);
    dev.pulse_coil(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_while_records_flow_match_the_journal_and_healthz_agrees_with_status() {
    let dir = tempdir();
    let dev = Device::start().await;
    let qms = Qms::start().await;
    let cfg = config(dir.path(), &agent_toml(dev.addr, &qms.url()));
    let agent = Agent::start(cfg.clone()).await.expect("start");
    let addr = agent.metrics_addr().expect("metrics endpoint");
    eventually(WAIT, "the gauge polled", || {
        crate::support::source_up(&dir.path().join("data"), "gauge")
    })
    .await;

    // While parts are made.
    let mut during = Vec::new();
    for serial in 1..=8 {
        part(&dev, serial).await;
        let (code, text) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        during.push(samples(&text));
    }
    let observed =
        |m: &HashMap<String, f64>| m["shopfloor_source_observations_total{source=\"gauge\"}"];
    assert!(observed(&during[0]) > 0.0);
    assert!(
        observed(&during[7]) > observed(&during[0]),
        "observations grow while the device is polled"
    );
    assert_eq!(during[7]["shopfloor_source_up{source=\"gauge\"}"], 1.0);

    eventually(
        WAIT,
        "8 inspections and the start record at the QMS",
        || qms.unique_ids().len() == 9,
    )
    .await;
    eventually(WAIT, "the cursor at the head", || {
        let s = status::collect(&cfg).expect("status");
        s.sinks[0].backlog == 0
    })
    .await;
    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    let m = samples(&text);
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let head = store.head().expect("head").seq;
    let kinds: HashMap<String, i64> = store.counts_by_kind().expect("kinds").into_iter().collect();
    assert_eq!(m["shopfloor_journal_last_seq"], head as f64);
    assert_eq!(
        m["shopfloor_journal_records_appended_total{kind=\"inspection\"}"],
        kinds["inspection"] as f64
    );
    assert_eq!(kinds["inspection"], 8);
    let appended: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("shopfloor_journal_records_appended_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        appended, head as f64,
        "every record of a fresh journal counted once"
    );
    assert_eq!(
        m["shopfloor_sink_records_sent_total{sink=\"qms\"}"],
        qms.unique_ids().len() as f64
    );
    assert_eq!(m["shopfloor_sink_backlog_records{sink=\"qms\"}"], 0.0);
    assert!(m["shopfloor_journal_commit_seconds_count"] >= 1.0);
    assert_eq!(m["shopfloor_healthy"], 1.0);
    let (code, body) = get(addr, "/healthz").await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"status":"ok","reasons":[]}"#)
    );

    // The QMS goes away, then the device: /healthz and status say the same, reason by reason.
    qms.stop();
    part(&dev, 9).await;
    eventually(WAIT, "the sink failing in the journal", || {
        status::collect(&cfg).expect("status").sinks[0]
            .last_error
            .is_some()
    })
    .await;
    dev.stop();
    eventually(WAIT, "the source down in the journal", || {
        status::collect(&cfg).expect("status").health.reasons.len() == 2
    })
    .await;
    let (code, body) = get(addr, "/healthz").await;
    let from_status = status::collect(&cfg).expect("status").health;
    assert_eq!(code, 503);
    assert_eq!(body, serde_json::to_string(&from_status).expect("json"));
    assert!(
        from_status.reasons[0].starts_with("sink qms failing since"),
        "{from_status:?}"
    );
    assert!(
        from_status.reasons[1].starts_with("source gauge DOWN since"),
        "{from_status:?}"
    );
    let m = samples(&get(addr, "/metrics").await.1);
    assert_eq!(m["shopfloor_healthy"], 0.0);
    assert_eq!(m["shopfloor_source_up{source=\"gauge\"}"], 0.0);
    assert_eq!(
        m["shopfloor_source_errors_total{source=\"gauge\",kind=\"outage\"}"],
        1.0
    );
    assert!(m["shopfloor_sink_retries_total{sink=\"qms\"}"] >= 1.0);
    assert!(m["shopfloor_sink_backlog_records{sink=\"qms\"}"] >= 1.0);
    assert!(m["shopfloor_sink_lag_seconds{sink=\"qms\"}"] > 0.0);
    agent.stop("test").await;
}
