//! End to end: the real binary with `config/demo.toml` against the whole simulated cell
//! (`support::plant`: OPC UA PLC, Modbus gauge, ERP, QMS) and a Mosquitto broker, asserting at the
//! QMS receiver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::erp::Fault;
use crate::support::mosquitto::Broker;
use crate::support::plant::{Plant, Ports};
use crate::support::{agent_bin, eventually, tempdir, KillOnDrop};

const WAIT: Duration = Duration::from_secs(30);

/// The cell (PKI under `dir`, the agent's journal in `dir/data`) and the agent on
/// `config/demo.toml` pointed at it (`dir/agent.toml`, its log in `dir/agent.log`), given time to
/// connect.
async fn start(dir: &Path, broker: &Broker) -> (Plant, PathBuf, KillOnDrop) {
    let data = dir.join("data");
    let plant = Plant::start(dir, &data, Ports::any(broker.port))
        .await
        .expect("the cell");
    let config = dir.join("agent.toml");
    std::fs::write(&config, plant.agent_config(&data, "127.0.0.1:0")).expect("config");
    let log = std::fs::File::create(dir.join("agent.log")).expect("log");
    let agent = KillOnDrop(
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the agent"),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (plant, config, agent)
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
    let mut seen = std::collections::HashSet::new();
    plant
        .qms_state
        .events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_string()))
        .map(|e| e["data"].clone())
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
    tokio::time::sleep(Duration::from_secs(2)).await;
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

    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent is still running"
    );
    stop(&mut agent);
    let verify = Command::new(agent_bin())
        .arg("--config")
        .arg(&config)
        .arg("verify")
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{verify:?}");
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
    let mut seen = std::collections::HashSet::new();
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
