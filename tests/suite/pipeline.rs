//! The records pipeline inside a running agent: acknowledgements come after commit, source state is
//! committed with the records, and outages still open at stop become gap records.

use std::time::Duration;

use serde_json::json;
use shopfloor_agent::journal::{Appended, StateUpdate, Store};
use shopfloor_agent::records::observation::{Message, Observation, Origin};
use shopfloor_agent::records::pipeline::Input;
use shopfloor_agent::runtime::topology::Agent;

use crate::support::{assert_schema_valid_text, config, tempdir};

const CONFIG: &str = r#"
[agent]
gateway_id = "gw-pipe"
data_dir = "data"

[[records]]
name = "mqtt_inspection"
kind = "inspection"
trigger = { type = "message", source = "mqtt1" }
dedupe_key = "{subject.serial}"
[records.fields]
"subject.serial" = { pointer = "/serial" }
"inspection.value" = { pointer = "/measured" }
"#;

fn message(serial: &str) -> Observation {
    Observation::Message(Message {
        source: "mqtt1".into(),
        origin: Origin {
            protocol: "mqtt".into(),
            endpoint: Some("mqtt://127.0.0.1:1883".into()),
            address: None,
        },
        topic: "plant1/cell1/inspection".into(),
        doc: json!({ "serial": serial, "measured": 25.001 }),
        source_ms: None,
        received_ms: shopfloor_agent::time::unix_ms(shopfloor_agent::time::now()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_is_acknowledged_after_commit_with_its_state_and_duplicates_are_named() {
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), CONFIG))
        .await
        .expect("start");
    let tx = agent.observations();
    let store_dir = dir.path().join("data");
    let mut acked = Vec::new();
    for serial in ["SN-1", "SN-2", "SN-1"] {
        let (ack, rx) = tokio::sync::oneshot::channel();
        tx.send(Input {
            observation: message(serial),
            state: vec![StateUpdate {
                source: "mqtt1".into(),
                key: "last_serial".into(),
                value: serial.into(),
            }],
            ack: Some(ack),
        })
        .await
        .expect("send");
        let outcome = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("acknowledged in time")
            .expect("ack sent")
            .expect("committed");
        // At acknowledgement the record is already in the journal, as a reader sees it.
        let store = Store::open_ro(&store_dir).expect("journal");
        let seq = outcome[0].seq();
        let row = store.read_range(seq - 1, seq, 1).expect("read");
        assert_eq!(row.len(), 1, "acknowledged seq {seq} is committed");
        assert_schema_valid_text(&row[0].body);
        let state = store.source_state(Some("mqtt1")).expect("state");
        assert_eq!(state[0].2, serial, "state committed with the records");
        acked.push(outcome[0]);
    }
    assert!(matches!(acked[0], Appended::New { .. }));
    assert!(matches!(acked[1], Appended::New { .. }));
    assert_eq!(
        acked[2],
        Appended::Duplicate {
            seq: acked[0].seq()
        },
        "redelivery names the record it repeats"
    );
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_open_at_stop_is_closed_by_a_gap_record() {
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), CONFIG))
        .await
        .expect("start");
    let at = shopfloor_agent::time::unix_ms(shopfloor_agent::time::now());
    agent
        .observations()
        .send(Input::new(Observation::SourceDown {
            source: "plc1".into(),
            channel: None,
            at_ms: at,
            reason: "connection refused".into(),
        }))
        .await
        .expect("send");
    agent.stop("test").await;
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let gaps = store.bodies_of_kind("gap").expect("gaps");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let gap: serde_json::Value = serde_json::from_str(&gaps[0]).expect("json");
    assert_eq!(gap["gap"]["source"], "plc1");
    assert!(gap["gap"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("still open when the agent stopped"));
    assert_schema_valid_text(&gaps[0]);
    // The gap comes before the stop record.
    let kinds: Vec<String> = store
        .read_after(0, 100)
        .expect("rows")
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, vec!["agent_event", "gap", "agent_event"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_is_recorded_with_both_hashes() {
    let dir = tempdir();
    let first = config(dir.path(), CONFIG);
    let old_hash = first.sha256.clone();
    Agent::start(first).await.expect("start").stop("test").await;
    let changed = plant_sim::config::AgentToml::parse(CONFIG)
        .set("agent.gateway_id", "gw-pipe-2")
        .to_string();
    let changed = config(dir.path(), &changed);
    let new_hash = changed.sha256.clone();
    assert_ne!(old_hash, new_hash);
    Agent::start(changed)
        .await
        .expect("start")
        .stop("test")
        .await;

    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let events: Vec<serde_json::Value> = store
        .bodies_of_kind("agent_event")
        .expect("events")
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["agent_event"]["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        vec!["start", "stop", "config_change", "start", "stop"]
    );
    assert_eq!(
        events[2]["agent_event"]["details"]["old_config_sha256"],
        old_hash.as_str()
    );
    assert_eq!(
        events[2]["agent_event"]["details"]["new_config_sha256"],
        new_hash.as_str()
    );
    assert_eq!(events[2]["provenance"]["config_sha256"], new_hash.as_str());
}
