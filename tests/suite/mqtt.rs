//! The MQTT source against a Mosquitto broker: messages become records acknowledged after commit, bad
//! payloads are quarantined (and acknowledged), and SIGKILL of the agent while messages flow loses none
//! and duplicates none.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use plant_sim::config::AgentToml;

use crate::support::mosquitto::{publish_all, Broker};
use crate::support::{
    agent_bin, assert_schema_valid_text, config, eventually, tempdir, KillOnDrop,
};

const WAIT: Duration = Duration::from_secs(30);

/// An MQTT source on `port` turning `plant1/+/inspection` messages into inspections.
pub(crate) fn toml(port: u16, client_id: &str, data_dir: &str) -> String {
    format!(
        r#"
[agent]
gateway_id = "gw-mqtt"
data_dir = "{data_dir}"

[sources.mqtt1]
type = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "{client_id}"
topics = ["plant1/+/inspection"]

[[records]]
name = "mqtt_inspection"
kind = "inspection"
trigger = {{ type = "message", source = "mqtt1" }}
dedupe_key = "{{/seq}}"
[records.fields]
"subject.serial" = {{ pointer = "/serial" }}
"subject.station" = {{ topic_level = 1 }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ pointer = "/measured" }}
"#
    )
}

/// Message `seq` (serial `SN-<seq>`).
pub(crate) fn message(seq: usize) -> (String, Vec<u8>) {
    (
        "plant1/cell1/inspection".to_string(),
        json!({ "seq": seq, "serial": format!("SN-{seq:05}"), "measured": 25.0 + seq as f64 / 10_000.0 })
            .to_string()
            .into_bytes(),
    )
}

/// The first column of `sql`'s one row on the journal of `dir` (0 when it cannot be read).
pub(crate) fn count(dir: &std::path::Path, sql: &str) -> i64 {
    Store::open_ro(&dir.join("data"))
        .ok()
        .and_then(|s| {
            crate::support::journal_sql(&s)
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_become_records_and_bad_payloads_are_quarantined_once() {
    let broker = Broker::start();
    let dir = tempdir();
    let cfg = toml(broker.port, "gw-mqtt-a", "data");
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    let mut msgs: Vec<(String, Vec<u8>)> = (0..5).map(message).collect();
    msgs.push(("plant1/cell1/inspection".into(), b"{oops".to_vec()));
    msgs.extend((5..7).map(message));
    msgs.push(("plant1/cell1/status".into(), b"RUNNING".to_vec())); // not subscribed
    publish_all(broker.port, msgs, Duration::from_millis(5)).await;
    eventually(WAIT, "7 inspections and 1 quarantined payload", || {
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == 7
            && count(dir.path(), "SELECT count(*) FROM quarantine") == 1
    })
    .await;
    agent.stop("test").await;
    // Everything was acknowledged: a restart with the same session gets nothing again.
    let agent = Agent::start(config(dir.path(), &cfg))
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.stop("test").await;
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'"
        ),
        7
    );
    assert_eq!(count(dir.path(), "SELECT count(*) FROM quarantine"), 1);
    let status = shopfloor_agent::audit::status::collect(&config(dir.path(), &cfg))
        .expect("status")
        .render();
    assert!(status.contains("(1 payloads quarantined)"), "{status}");
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let reason: String = crate::support::journal_sql(&store)
        .query_row("SELECT reason FROM quarantine", [], |r| r.get(0))
        .expect("reason");
    assert!(reason.starts_with("not JSON"), "{reason}");
    for b in store.bodies_of_kind("inspection").expect("bodies") {
        assert_schema_valid_text(&b);
        let v: serde_json::Value = serde_json::from_str(&b).expect("json");
        assert_eq!(v["subject"]["station"], "cell1");
        assert_eq!(
            v["provenance"]["fields"]["inspection.value"]["protocol"],
            "mqtt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_messages_flow_loses_none_and_duplicates_none() {
    sigkill_while_messages_flow("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_sigkill_while_messages_flow_loses_none_and_duplicates_none() {
    // MQTT 5: the session survives the agent's absence through its session expiry interval.
    sigkill_while_messages_flow("5").await;
}

/// `protocol = "<version>"` in the `[sources.mqtt1]` (or sink) section of `cfg`.
fn with_protocol(cfg: &str, protocol: &str) -> String {
    cfg.replacen(
        "type = \"mqtt\"\n",
        &format!("type = \"mqtt\"\nprotocol = \"{protocol}\"\n"),
        1,
    )
}

async fn sigkill_while_messages_flow(protocol: &str) {
    let mut rng = crate::support::seeded(&format!("sigkill_while_messages_flow ({protocol})"));
    let broker = Broker::start();
    let dir = tempdir();
    let cfg_path = dir.path().join("agent.toml");
    let cfg = with_protocol(&toml(broker.port, "gw-mqtt-kill", "data"), protocol);
    assert!(cfg.contains("protocol = "));
    std::fs::write(&cfg_path, cfg).expect("config");
    let start = || {
        Command::new(agent_bin())
            .current_dir(dir.path())
            .arg("--config")
            .arg(&cfg_path)
            .arg("run")
            .stderr(Stdio::null())
            .spawn()
            .map(KillOnDrop)
            .expect("agent")
    };
    // A first run creates the persistent session and its subscription.
    let mut agent = start();
    let path = dir.path().to_path_buf();
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&path.join("data"), "mqtt1")
    })
    .await;
    const N: usize = 400;
    let publisher = tokio::spawn(publish_all(
        broker.port,
        (0..N).map(message).collect(),
        Duration::from_millis(8),
    ));
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(rng.u64(100..400))).await;
        agent.0.kill().expect("SIGKILL");
        agent.0.wait().expect("reap");
        agent = start();
    }
    publisher.await.expect("publisher");
    eventually(WAIT, "every published message journaled", || {
        count(
            &path,
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == N as i64
    })
    .await;
    // Journaled is not yet acknowledged to the broker: the acknowledgements follow the commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    agent.0.wait().expect("reap");
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM records WHERE kind = 'inspection'"
        ),
        N as i64,
        "no duplicates"
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(DISTINCT dedupe_key) FROM records WHERE kind = 'inspection'"
        ),
        N as i64
    );
    let store = Store::open_ro(&path.join("data")).expect("journal");
    assert!(shopfloor_agent::audit::verify::verify(&store)
        .expect("verify")
        .ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca() {
    let pki_dir = tempdir();
    let pki = crate::support::tls::TestPki::create(pki_dir.path());
    let broker = Broker::start_mtls(&pki);
    let path = |p: &std::path::Path| p.display().to_string();
    let dir = tempdir();
    let cfg = AgentToml::parse(&toml(broker.port, "gw-mqtt-tls", "data"))
        .set("sources.mqtt1.tls.ca_file", path(&pki.ca_file))
        .set("sources.mqtt1.tls.client_cert_file", path(&pki.client_cert))
        .set("sources.mqtt1.tls.client_key_file", path(&pki.client_key))
        .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    // The test publisher connects over TLS too.
    publish_all_tls(broker.port, &pki, (0..5).map(message).collect()).await;
    eventually(WAIT, "5 inspections over mutual TLS", || {
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == 5
    })
    .await;
    agent.stop("test").await;
    let b = Store::open_ro(&dir.path().join("data"))
        .expect("journal")
        .bodies_of_kind("inspection")
        .expect("b");
    assert!(
        b[0].contains("mqtts://127.0.0.1"),
        "provenance names the TLS endpoint"
    );

    // Without the client certificate the broker refuses the session: nothing arrives.
    let dir = tempdir();
    let cfg = AgentToml::parse(&toml(broker.port, "gw-mqtt-tls-2", "data"))
        .set("sources.mqtt1.tls.ca_file", path(&pki.ca_file))
        .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    // A refused first session writes no state to wait on: a window for it to try.
    tokio::time::sleep(Duration::from_millis(800)).await;
    publish_all_tls(broker.port, &pki, (5..8).map(message).collect()).await;
    // A window for a wrong delivery to show itself (a negative check: nothing may arrive).
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop("test").await;
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password() {
    let broker = Broker::start_auth("edge123");
    let dir = tempdir();
    let cfg = AgentToml::parse(&toml(broker.port, "gw-mqtt-auth", "data"))
        .set("sources.mqtt1.username", "edge")
        .set("sources.mqtt1.password", "edge123")
        .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    crate::support::mosquitto::publish_all_auth(
        broker.port,
        ("edge", "edge123"),
        (0..3).map(message).collect(),
    )
    .await;
    eventually(WAIT, "3 inspections with a password", || {
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == 3
    })
    .await;
    agent.stop("test").await;
    // A wrong password is refused (CONNACK 5): nothing arrives.
    let dir = tempdir();
    let cfg = AgentToml::parse(&toml(broker.port, "gw-mqtt-auth-2", "data"))
        .set("sources.mqtt1.username", "edge")
        .set("sources.mqtt1.password", "nope")
        .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    // A refused first session writes no state to wait on: a window for it to try.
    tokio::time::sleep(Duration::from_millis(800)).await;
    crate::support::mosquitto::publish_all_auth(
        broker.port,
        ("edge", "edge123"),
        (3..5).map(message).collect(),
    )
    .await;
    // A window for a wrong delivery to show itself (a negative check: nothing may arrive).
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop("test").await;
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'"
        ),
        0
    );
}

async fn publish_all_tls(
    port: u16,
    pki: &crate::support::tls::TestPki,
    msgs: Vec<(String, Vec<u8>)>,
) {
    crate::support::mosquitto::publish_with(port, msgs, |opts| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: std::fs::read(&pki.ca_file).expect("ca"),
                alpn: None,
                client_auth: Some((
                    std::fs::read(&pki.client_cert).expect("cert"),
                    std::fs::read(&pki.client_key).expect("key"),
                )),
            },
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_sink_publishes_every_record_and_moves_the_cursor_after_puback() {
    sink_publishes_every_record("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt5_sink_publishes_every_record_and_moves_the_cursor_after_puback() {
    sink_publishes_every_record("5").await;
}

async fn sink_publishes_every_record(protocol: &str) {
    use shopfloor_agent::journal::NewRecord;
    let mut broker = Broker::start();
    // A subscriber collects what the sink publishes.
    let received = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(String, serde_json::Value)>::new(),
    ));
    let mut opts = rumqttc::MqttOptions::new("test-sub", "127.0.0.1", broker.port);
    opts.set_clean_session(false);
    let (sub, mut events) = rumqttc::AsyncClient::new(opts, 64);
    sub.subscribe("plant1/#", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let sink_received = received.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    sink_received
                        .lock()
                        .expect("lock")
                        .push((p.topic.clone(), v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    // The collecting subscriber connects and subscribes before the sink publishes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempdir();
    let cfg = with_protocol(
        &format!(
            "[agent]\ngateway_id = \"gw-sink\"\nsite = \"plant1\"\ndata_dir = \"data\"\n[sinks.uns]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"gw-sink-pub\"\nbatch_max_records = 20\n",
            broker.port
        ),
        protocol,
    );
    assert!(cfg.contains("protocol = "));
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    let batch = |range: std::ops::Range<usize>| -> Vec<NewRecord> {
        range
            .map(|i| {
                let mut r = shopfloor_agent::records::QualityRecord::new(
                    &agent.config().record_context(),
                    shopfloor_agent::records::RecordKind::Inspection,
                );
                r.subject.station = Some("cell4".into());
                r.subject.serial = Some(format!("SN-{i}"));
                r.inspection = Some(Default::default());
                NewRecord::new(r)
            })
            .collect()
    };
    let recs = batch(0..50);
    agent.journal().append(recs).await.expect("append");
    let inspections = || {
        received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| t == "plant1/cell4/quality/inspection")
            .count()
    };
    eventually(
        WAIT,
        "50 inspections on plant1/cell4/quality/inspection",
        || inspections() >= 50,
    )
    .await;
    // The broker restarts: what comes after is still delivered.
    broker.restart();
    let more = batch(50..60);
    agent.journal().append(more).await.expect("append");
    let distinct = || {
        received
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(_, v)| v["subject"]["serial"].as_str().map(str::to_string))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    eventually(WAIT, "all 60 records after the broker restart", || {
        distinct() == 60
    })
    .await;
    agent.stop("test").await;
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let head = store.head().expect("head").seq;
    assert!(
        store.sink_cursors().expect("cursor")[0].acked_seq >= head - 1,
        "the cursor follows the PUBACKs"
    );
    assert!(received
        .lock()
        .expect("lock")
        .iter()
        .any(|(t, _)| t == "plant1/unknown/quality/agent_event"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_with_qos0_traffic_leaves_a_gap_record() {
    let mut broker = Broker::start();
    let dir = tempdir();
    let cfg = toml(broker.port, "gw-mqtt-qos0", "data");
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    // A QoS 0 publisher: the broker does not keep these for a disconnected subscriber.
    let mut opts = rumqttc::MqttOptions::new("qos0-pub", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 16);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let (topic, payload) = message(1);
    client
        .publish(topic, rumqttc::QoS::AtMostOnce, false, payload)
        .await
        .expect("publish");
    let gap = restart_broker_and_take_the_gap(&mut broker, dir.path(), agent).await;
    assert!(gap.contains("QoS 0"), "{gap}");
}

/// Once the one message is journaled (and no gap yet): restarts the broker, waits for the one gap
/// record the reconnect leaves, stops the agent and returns the gap's body (schema-checked).
async fn restart_broker_and_take_the_gap(
    broker: &mut Broker,
    dir: &std::path::Path,
    agent: Agent,
) -> String {
    eventually(WAIT, "the message journaled", || {
        count(
            dir,
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == 1
    })
    .await;
    assert_eq!(
        count(dir, "SELECT count(*) FROM records WHERE kind = 'gap'"),
        0
    );
    broker.restart();
    eventually(WAIT, "a gap record after the reconnect", || {
        count(dir, "SELECT count(*) FROM records WHERE kind = 'gap'") == 1
    })
    .await;
    agent.stop("test").await;
    let store = Store::open_ro(&dir.join("data")).expect("journal");
    let gap = store.bodies_of_kind("gap").expect("gap").remove(0);
    assert_schema_valid_text(&gap);
    gap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_comes_back_without_the_agents_session_leaves_a_gap_record() {
    // QoS 1 only: a broker that keeps sessions loses nothing across a restart (the e2e suite shows
    // it); this one keeps them in memory, so what it held for the agent is gone.
    let mut broker = Broker::start_volatile();
    let dir = tempdir();
    let cfg = toml(broker.port, "gw-mqtt-volatile", "data");
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the MQTT source subscribed", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    publish_all(broker.port, vec![message(1)], Duration::ZERO).await;
    let gap = restart_broker_and_take_the_gap(&mut broker, dir.path(), agent).await;
    assert!(gap.contains("no longer had the agent's session"), "{gap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_sink_over_mutual_tls() {
    let pki_dir = tempdir();
    let pki = crate::support::tls::TestPki::create(pki_dir.path());
    let broker = Broker::start_mtls(&pki);
    let sink = |tls: &str| {
        format!(
            "[agent]\ngateway_id = \"gw-sink-tls\"\nsite = \"plant1\"\ndata_dir = \"data\"\n[sinks.uns]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"gw-sink-tls-{}\"\n{tls}",
            broker.port,
            fastrand::u32(..)
        )
    };
    let full = format!(
        "tls = {{ ca_file = \"{}\", client_cert_file = \"{}\", client_key_file = \"{}\" }}\n",
        pki.ca_file.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let cursor = |dir: &std::path::Path| {
        Store::open_ro(&dir.join("data"))
            .ok()
            .and_then(|s| s.sink_cursors().ok())
            .and_then(|c| c.first().map(|c| (c.acked_seq, c.last_error.clone())))
            .unwrap_or((0, None))
    };
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &sink(&full)))
        .await
        .expect("start");
    eventually(
        WAIT,
        "the start record acknowledged over mutual TLS",
        || cursor(dir.path()).0 >= 1,
    )
    .await;
    agent.stop("test").await;

    let dir = tempdir();
    let only_ca = format!("tls = {{ ca_file = \"{}\" }}\n", pki.ca_file.display());
    let agent = Agent::start(config(dir.path(), &sink(&only_ca)))
        .await
        .expect("start");
    eventually(WAIT, "a failing sink without a client certificate", || {
        cursor(dir.path()).1.is_some()
    })
    .await;
    agent.stop("test").await;
    assert_eq!(
        cursor(dir.path()).0,
        0,
        "nothing acknowledged without the client certificate"
    );
}
