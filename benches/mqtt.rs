//! MQTT ingest: QoS 1 messages from Mosquitto into the journal with commit-before-PUBACK.
//!
//! `cargo bench --bench mqtt` (needs `mosquitto`; `MQTT_BENCH_MESSAGES`, default 50,000). A rumqttc
//! publisher in this process sends JSON inspection messages as fast as the broker takes them; the
//! agent (in process) turns each into an inspection record with a dedupe key and acknowledges it
//! after commit. The figure is messages journaled per second, end to end.

use std::time::{Duration, Instant};

use shopfloor_agent::config::{Config, LoadOptions};
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

fn main() {
    let n: usize = std::env::var("MQTT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 1000000\nuser root\n"),
    )
    .expect("conf");
    let bin = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let mut broker = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto (apt-get install mosquitto)");
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let toml = format!(
        r#"
[agent]
gateway_id = "bench"
data_dir = "{}"
[journal]
max_disk_bytes = 0
[sources.mqtt1]
type = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "bench-agent"
topics = ["plant1/+/inspection"]
inflight = 1000
[[records]]
name = "insp"
kind = "inspection"
trigger = {{ type = "message", source = "mqtt1" }}
dedupe_key = "{{/seq}}"
[records.fields]
"subject.serial" = {{ pointer = "/serial" }}
"subject.station" = {{ topic_level = 1 }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ pointer = "/measured" }}
"inspection.lower_limit" = {{ const = 24.98 }}
"inspection.upper_limit" = {{ const = 25.02 }}
"#,
        dir.path().join("data").display()
    );
    let config = Config::from_texts(
        &[(dir.path().join("agent.toml"), toml)],
        dir.path(),
        LoadOptions::default(),
    )
    .expect("config");
    let agent = rt.block_on(Agent::start(config)).expect("agent");
    std::thread::sleep(Duration::from_millis(500)); // subscribed
    let start = Instant::now();
    rt.spawn(async move {
        let mut opts = rumqttc::MqttOptions::new("bench-pub", "127.0.0.1", port);
        opts.set_inflight(1000);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 1000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        for seq in 0..n {
            let payload = serde_json::json!({ "seq": seq, "serial": format!("SN-{seq:06}"), "measured": 25.0 + (seq % 40) as f64 / 1000.0 - 0.02 });
            let _ = client
                .publish("plant1/cell1/inspection", rumqttc::QoS::AtLeastOnce, false, payload.to_string())
                .await;
        }
    });
    let data = dir.path().join("data");
    let mut done = 0;
    while start.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(100));
        done = Store::open_ro(&data)
            .and_then(|s| s.head())
            .map(|h| h.seq as usize)
            .unwrap_or(0);
        if done > n {
            break;
        }
    }
    let elapsed = start.elapsed();
    rt.block_on(agent.stop("bench done"));
    let _ = broker.kill();
    let _ = broker.wait();
    println!(
        "mqtt bench: {} QoS 1 messages from Mosquitto journaled (commit before PUBACK) in {:.2} s: {:.0} messages/s",
        done.saturating_sub(1),
        elapsed.as_secs_f64(),
        done.saturating_sub(1) as f64 / elapsed.as_secs_f64()
    );
}
