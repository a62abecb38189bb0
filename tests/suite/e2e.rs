//! End to end: the real binary with `config/demo.toml` against the whole simulated cell
//! (`support::plant`: OPC UA PLC, Modbus gauge, ERP, QMS) and a Mosquitto broker, asserting at the
//! QMS receiver.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shopfloor_agent::journal::Store;

use serde_json::Value;

use crate::support::erp::Fault;
use crate::support::mosquitto::Broker;
use crate::support::plant::{Plant, Ports};
use crate::support::{agent_bin, eventually, tempdir, KillOnDrop};

const WAIT: Duration = Duration::from_secs(30);

/// The cell (PKI under `dir`, the agent's journal in `dir/data`) and the agent on
/// `config/demo.toml` pointed at it (`dir/agent.toml`, its log in `dir/agent.log`), once every
/// source of the demo is up.
async fn start(dir: &Path, broker: &Broker) -> (Plant, PathBuf, KillOnDrop) {
    let (plant, config) = cell(dir, broker, "127.0.0.1:0").await;
    let agent = run(&config);
    let data = dir.join("data");
    eventually(WAIT, "every source of the demo up", || {
        ["plc", "gauge", "vision"]
            .iter()
            .all(|s| crate::support::source_up(&data, s))
            && crate::support::endpoints_up(&data, "erp")
            && crate::support::endpoints_up(&data, "cmm")
    })
    .await;
    (plant, config, agent)
}

/// The cell and the agent's configuration for it (`dir/agent.toml`, metrics on `metrics`).
async fn cell(dir: &Path, broker: &Broker, metrics: &str) -> (Plant, PathBuf) {
    let data = dir.join("data");
    let plant = Plant::start(dir, &data, Ports::any(broker.port))
        .await
        .expect("the cell");
    let config = dir.join("agent.toml");
    let demo =
        std::fs::read_to_string(crate::support::root().join("config/demo.toml")).expect("demo");
    std::fs::write(&config, plant.agent_config(&demo, &data, metrics)).expect("config");
    (plant, config)
}

/// `shopfloor-agent run` on `config`, its log appended to `agent.log` beside it.
fn run(config: &Path) -> KillOnDrop {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(config.with_file_name("agent.log"))
        .expect("log");
    KillOnDrop(
        Command::new(agent_bin())
            .arg("--config")
            .arg(config)
            .arg("run")
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the agent"),
    )
}

/// SIGTERM, as systemd stops it: the agent must exit cleanly.
fn stop(agent: &mut KillOnDrop) {
    assert!(Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill")
        .success());
    assert!(agent.0.wait().expect("wait").success());
}

/// Records at the QMS, each id once, in first-arrival order.
fn received(plant: &Plant) -> Vec<Value> {
    delivered(plant).into_iter().map(|(_, r)| r).collect()
}

/// Ids and records at the QMS, each id once, in first-arrival order.
fn delivered(plant: &Plant) -> Vec<(String, Value)> {
    let mut seen = HashSet::new();
    plant
        .qms_state
        .events
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|e| {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            seen.insert(id.clone()).then(|| (id, e["data"].clone()))
        })
        .collect()
}

fn inspections(plant: &Plant, characteristic: &str) -> Vec<Value> {
    received(plant)
        .into_iter()
        .filter(|r| {
            r["kind"] == "inspection" && r["inspection"]["characteristic"] == characteristic
        })
        .collect()
}

fn has(plant: &Plant, characteristic: &str, n: u32) -> bool {
    let serial = Plant::serial(n);
    inspections(plant, characteristic)
        .iter()
        .any(|r| r["subject"]["serial"] == serial.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_fails_in_turn_the_agent_recovers_by_itself_and_the_other_sources_go_on() {
    let dir = tempdir();
    let mut broker = Broker::start();
    let (mut plant, config, mut agent) = start(dir.path(), &broker).await;

    plant.part(1).await;
    eventually(WAIT, "part 1 measured and seen", || {
        has(&plant, "OD-1", 1) && has(&plant, "VIS-1", 1)
    })
    .await;

    // The PLC restarts: part 2 is made while it is away (no trigger, so no OD record: the gap says
    // why), the vision station and the ERP are not disturbed.
    plant.stop_plc().await;
    plant.part(2).await;
    plant.start_plc(dir.path()).await;
    eventually(WAIT, "the PLC's outage closed by a gap", || {
        gaps(&plant).contains_key("plc")
    })
    .await;
    plant.part(3).await;
    eventually(WAIT, "part 3 measured after the PLC came back", || {
        has(&plant, "OD-1", 3)
    })
    .await;

    // The gauge is unplugged for a part, then plugged back.
    plant.gauge.stop();
    let data = dir.path().join("data");
    eventually(WAIT, "the gauge's outage noticed", || {
        crate::support::source_connection(&data, "gauge").starts_with("DOWN")
    })
    .await;
    plant.part(4).await;
    let gauge = plant.gauge.restart().await;
    plant.gauge = gauge;
    eventually(WAIT, "the gauge's outage closed by a gap", || {
        gaps(&plant).contains_key("gauge")
    })
    .await;
    plant.part(5).await;

    // The broker restarts (it keeps sessions on disk: nothing is lost, so no gap is due).
    broker.restart();
    plant.part(6).await;

    // The ERP fails with 500s for a while.
    plant.erp.erp.lock().expect("lock").faults.insert(
        "WorkOrders".into(),
        std::iter::repeat_n(Fault::Status(500, None), 4).collect(),
    );
    plant.part(7).await;
    plant.part(8).await;
    eventually(WAIT, "the ERP's outage closed by a gap", || {
        gaps(&plant).contains_key("erp")
    })
    .await;
    eventually(
        WAIT,
        "every part's visual check and the last measurements",
        || (1..=8).all(|n| has(&plant, "VIS-1", n)) && has(&plant, "OD-1", 8),
    )
    .await;
    // Each part's traveler in its final version; a version that lived only while the ERP failed
    // (released and completed between two successful polls) is what the ERP gap stands for.
    eventually(WAIT, "every part's completed traveler", || {
        let travelers: Vec<Value> = received(&plant)
            .into_iter()
            .filter(|r| r["kind"] == "traveler" && r["traveler"]["status"] == "completed")
            .collect();
        (1..=8).all(|n| {
            travelers
                .iter()
                .any(|r| r["subject"]["serial"] == Plant::serial(n).as_str())
        })
    })
    .await;

    let gaps = gaps(&plant);
    for source in ["plc", "gauge", "erp"] {
        assert_eq!(
            gaps.get(source).map(Vec::len),
            Some(1),
            "one gap for {source}: {gaps:?}"
        );
    }
    assert!(!gaps.contains_key("vision"), "{gaps:?}");
    // Part 2 was made while the PLC was away: no OD record, as the PLC gap says.
    assert!(!has(&plant, "OD-1", 2));
    for n in [1, 3, 5, 6, 7, 8] {
        assert!(has(&plant, "OD-1", n), "OD-1 of part {n}");
    }
    // Every OD record made while every source was up is complete; the one made with the gauge away
    // (part 4), if any, says the value is missing.
    for r in inspections(&plant, "OD-1") {
        let serial = r["subject"]["serial"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if serial == Plant::serial(4) {
            continue;
        }
        assert!(
            r["incomplete"].as_array().is_none_or(Vec::is_empty),
            "complete: {r}"
        );
        assert_eq!(
            r["subject"]["operation"], "OP-30",
            "joined from the ERP traveler: {r}"
        );
    }

    // The CMM measured parts 3 and 6: its characteristics stand beside the PLC's and the gauge's
    // for the same serial, with the traveler's order and operation and the CMM's calibration.
    for n in [3, 6] {
        let od = inspections(&plant, "OD-1")
            .into_iter()
            .find(|r| r["subject"]["serial"] == Plant::serial(n).as_str())
            .expect("OD-1");
        for c in ["BORE-2", "LEN-1"] {
            let found: Vec<Value> = inspections(&plant, c)
                .into_iter()
                .filter(|r| r["subject"]["serial"] == Plant::serial(n).as_str())
                .collect();
            assert_eq!(found.len(), 1, "{c} of part {n} once: {found:?}");
            let r = &found[0];
            assert_eq!(
                r["subject"]["work_order"], od["subject"]["work_order"],
                "{r}"
            );
            assert_eq!(r["subject"]["operation"], "OP-30", "{r}");
            assert_eq!(r["inspection"]["gauge_id"], "CMM-01");
            assert_eq!(r["inspection"]["gauge_calibration"]["status"], "valid");
            let value = &r["provenance"]["fields"]["inspection.value"];
            assert_eq!(value["protocol"], "qif");
            assert!(value["endpoint"]
                .as_str()
                .is_some_and(|e| e.ends_with(&format!("{}.qif", Plant::serial(n)))));
        }
    }
    assert!(inspections(&plant, "BORE-2").iter().all(|r| [3, 6]
        .iter()
        .any(|n| r["subject"]["serial"] == Plant::serial(*n).as_str())));

    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent is still running"
    );
    stop(&mut agent);
    verifies(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qms_goes_away_for_a_while_and_every_record_arrives_in_order_exactly_once() {
    let dir = tempdir();
    let broker = Broker::start();
    let (plant, config, mut agent) = start(dir.path(), &broker).await;
    plant.part(1).await;
    eventually(WAIT, "part 1 at the QMS", || has(&plant, "OD-1", 1)).await;

    plant.qms_down().await;
    let rss_before = crate::support::process::rss_kib(agent.0.id());
    for n in 2..=7 {
        plant.part(n).await;
    }
    let rss_during = crate::support::process::rss_kib(agent.0.id());
    let waiting = || {
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(["status", "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["sinks"][0]["backlog"].as_i64())
            .unwrap_or(0)
    };
    let backlog = waiting();
    assert!(
        backlog >= 6 * 4,
        "records wait on disk while the QMS is away: {backlog}"
    );
    assert!(
        rss_during < rss_before + rss_before / 10,
        "resident memory stays flat while the backlog grows: {rss_before} KiB -> {rss_during} KiB"
    );
    plant.qms_up().await.expect("QMS back");
    plant.part(8).await;
    eventually(WAIT, "every part at the QMS", || {
        (1..=8).all(|n| has(&plant, "OD-1", n) && has(&plant, "VIS-1", n))
    })
    .await;
    eventually(WAIT, "the backlog drained", || waiting() == 0).await;

    // In journal order, each id once after dedupe, nothing missing.
    let events = plant.qms_state.events.lock().expect("lock").clone();
    let mut seen = HashSet::new();
    let seqs: Vec<i64> = events
        .iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_string()))
        .map(|e| {
            e["sequence"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("sequence")
        })
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "every record once, in journal order");
    stop(&mut agent);
}

/// Gap records at the QMS by source.
fn gaps(plant: &Plant) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for r in received(plant).into_iter().filter(|r| r["kind"] == "gap") {
        out.entry(r["gap"]["source"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(r);
    }
    out
}

/// kill -9 of the agent at random moments while parts flow through all four sources and the vision
/// station streams 100 checks a second: every message the broker took and every ERP row arrives,
/// every part made while the agent ran arrives, each kill is one `agent` gap and disturbs no source,
/// nothing arrives twice under another id, the QMS has the journal in order, the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_under_load_loses_nothing_acknowledged_and_duplicates_nothing() {
    let mut rng = crate::support::seeded("sigkill_at_random_moments_under_load");
    const KILLS: usize = 20;
    let dir = tempdir();
    let broker = Broker::start();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (plant, config) = cell(dir.path(), &broker, &metrics.to_string()).await;
    let plant = Arc::new(plant);
    let mut agent = run(&config);
    steady(metrics).await;
    // The agent's session exists at the broker before the stream starts.
    assert!(plant.publish_check("WARM-UP", "VIS-2", "pass").await);
    eventually(WAIT, "the first check", || {
        inspections(&plant, "VIS-2").len() == 1
    })
    .await;

    let done = Arc::new(AtomicBool::new(false));
    let stream = tokio::spawn({
        let (plant, done) = (plant.clone(), done.clone());
        async move {
            let mut sent = vec!["WARM-UP".to_string()];
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let serial = format!("L-{:06}", sent.len());
                if plant.publish_check(&serial, "VIS-2", "pass").await {
                    sent.push(serial);
                }
            }
            sent
        }
    });
    let parts = tokio::spawn({
        let (plant, done) = (plant.clone(), done.clone());
        async move {
            let mut made = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let n = made.len() as u32 + 1;
                made.push((n, plant.quick_part(n).await));
            }
            made
        }
    });

    // (steady since, killed at): the agent ran with every sampled source delivering.
    let mut ran = Vec::new();
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        let since = steady(metrics).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(500..4000))).await;
        let killed = SystemTime::now();
        agent.0.kill().expect("SIGKILL");
        agent.0.wait().expect("reap");
        ran.push((since, killed));
        kills.push(killed);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        agent = run(&config);
    }
    let since = steady(metrics).await;
    // Load for 3 more seconds after the last restart (pacing of the scenario).
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::Relaxed);
    let sent = stream.await.expect("stream");
    let made = parts.await.expect("parts");
    ran.push((since, SystemTime::now()));

    eventually(
        Duration::from_secs(60),
        "every streamed check and every part's completed traveler",
        || {
            let checks: HashSet<String> = inspections(&plant, "VIS-2")
                .iter()
                .filter_map(|r| r["subject"]["serial"].as_str().map(str::to_string))
                .collect();
            let completed: HashSet<String> = delivered(&plant)
                .iter()
                .filter(|(_, r)| r["kind"] == "traveler" && r["traveler"]["status"] == "completed")
                .filter_map(|(_, r)| r["subject"]["serial"].as_str().map(str::to_string))
                .collect();
            sent.iter().all(|s| checks.contains(s))
                && made
                    .iter()
                    .all(|(n, _)| completed.contains(&Plant::serial(*n)))
        },
    )
    .await;
    // Delivered before the stop, so that the journal and the QMS can be compared.
    let data = dir.path().join("data");
    eventually(WAIT, "the QMS holds as many records as the journal", || {
        let journaled = Store::open_ro(&data)
            .and_then(|s| s.read_after(i64::MIN, usize::MAX >> 1))
            .map(|rows| rows.len())
            .unwrap_or(usize::MAX);
        delivered(&plant).len() == journaled
    })
    .await;
    stop(&mut agent);
    assert!(sent.len() > 1000, "load: {} checks streamed", sent.len());

    // Every part made while the agent ran (and had a second to journal it) has its measurement.
    let margin = Duration::from_secs(1);
    let expected: Vec<u32> = made
        .iter()
        .filter(|(_, rose)| {
            ran.iter()
                .any(|(since, end)| rose >= since && *rose + margin <= *end)
        })
        .map(|(n, _)| *n)
        .collect();
    assert!(
        expected.len() >= KILLS,
        "parts made while the agent ran: {expected:?}"
    );
    for n in &expected {
        assert!(has(&plant, "OD-1", *n), "part {n}'s measurement");
    }

    // Nothing twice under another id.
    let mut ids_of: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, r) in delivered(&plant) {
        if let Some(event) = identity(&r) {
            ids_of.entry(event).or_default().insert(id);
        }
    }
    let twice: Vec<_> = ids_of.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "delivered under two ids: {twice:?}");

    // One gap per kill, spanning it; no source noticed.
    let gaps = gaps(&plant);
    let agent_gaps = gaps.get("agent").cloned().unwrap_or_default();
    assert_eq!(agent_gaps.len(), KILLS, "{agent_gaps:?}");
    for killed in &kills {
        assert!(
            agent_gaps
                .iter()
                .any(|g| at(&g["gap"]["from"]) <= *killed && *killed <= at(&g["gap"]["to"])),
            "a gap spans the kill at {killed:?}: {agent_gaps:?}"
        );
    }
    let others: Vec<_> = gaps.iter().filter(|(s, _)| *s != "agent").collect();
    assert!(others.is_empty(), "no source's gap: {others:?}");

    // The QMS holds the journal, in journal order.
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let journal: Vec<String> = store
        .read_after(i64::MIN, usize::MAX >> 1)
        .expect("read")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let at_qms: Vec<String> = delivered(&plant).into_iter().map(|(id, _)| id).collect();
    assert_eq!(at_qms.len(), journal.len(), "every journaled record once");
    assert!(at_qms == journal, "in journal order");
    verifies(&config);
}

/// `shopfloor-agent verify` passes on the journal of `config`.
fn verifies(config: &Path) {
    let verify = Command::new(agent_bin())
        .arg("--config")
        .arg(config)
        .arg("verify")
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{verify:?}");
}

/// Waits until the agent's metrics say the PLC and the gauge deliver; returns that moment.
async fn steady(metrics: std::net::SocketAddr) -> SystemTime {
    let up = |text: &str, source: &str| {
        text.lines()
            .any(|l| l == format!("shopfloor_source_up{{source=\"{source}\"}} 1"))
    };
    // reqwest is built without a default crypto provider (the agent picks ring).
    shopfloor_agent::transport::install_crypto_provider();
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("http://{metrics}/metrics")).await {
            if let Ok(text) = r.text().await {
                if up(&text, "plc") && up(&text, "gauge") {
                    return SystemTime::now();
                }
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "the agent's sources did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a record is about: two records with the same identity are the same event.
fn identity(r: &Value) -> Option<String> {
    match r["kind"].as_str()? {
        "inspection" => Some(format!(
            "inspection {} {}",
            r["subject"]["serial"], r["inspection"]["characteristic"]
        )),
        "traveler" => Some(format!(
            "traveler {} {}",
            r["subject"]["serial"], r["traveler"]["status"]
        )),
        "calibration" => Some(format!(
            "calibration {} {}",
            r["calibration"]["instrument_id"], r["calibration"]["calibrated_at"]
        )),
        _ => None,
    }
}

/// An RFC 3339 timestamp of a record.
fn at(v: &Value) -> SystemTime {
    let text = v.as_str().unwrap_or_default();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
}
