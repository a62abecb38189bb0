//! Fleet scale run: N agents (release binary, one process each) on loopback, each taking R
//! inspection messages a second from Mosquitto (MQTT source, QoS 1) into one JetStream stream
//! with three replicas on a three-node cluster; then `fleet verify` reads the whole stream. Prints
//! one JSON line.
//!
//! `benches/fleet.sh [--seconds 300] [--agents 20] [--rate 100] [--single]` (or `cargo bench
//! --bench fleet -- …`; `FLEET_AGENT` names another agent binary). Needs mosquitto and
//! nats-server.
//!
//! Reported: records offered and stored (and stored/s over the run), capture-to-stored latency
//! p50/p99 (the record's `captured_at` to its arrival at an ordered consumer of the stream, so
//! after the three replicas stored it), per agent CPU (% of one core, mean) and resident memory
//! (median of the agents at the end), the NATS servers' CPU, and `fleet verify`'s time and
//! records/s over the whole stream, with its verdict.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{cpu_ticks, rss_kib, TICKS_PER_SECOND};

use plant_sim::mosquitto::Broker;
use plant_sim::nats::{NatsCluster, NatsServer};

struct Args {
    seconds: u64,
    agents: usize,
    rate: u64,
    single: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 300,
        agents: 20,
        rate: 100,
        single: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).and_then(|s| s.parse::<u64>().ok());
        match v[i].as_str() {
            "--seconds" => a.seconds = next(i).expect("--seconds N"),
            "--agents" => a.agents = next(i).expect("--agents N") as usize,
            "--rate" => a.rate = next(i).expect("--rate N"),
            "--single" => {
                a.single = true;
                i -= 1;
            }
            _ => {}
        }
        i += 2;
    }
    a
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn captured_ms(body: &[u8]) -> Option<f64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let t = time::OffsetDateTime::parse(
        v["captured_at"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e6)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let agent_bin = std::env::var("FLEET_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/shopfloor-agent"));
    assert!(
        agent_bin.exists(),
        "{} missing: cargo build --release (benches/fleet.sh does)",
        agent_bin.display()
    );
    let broker = Broker::start();
    let (_single, cluster, urls) = if a.single {
        let s = NatsServer::start();
        let u = vec![s.url()];
        (Some(s), None, u)
    } else {
        let c = NatsCluster::start();
        let u = c.urls();
        (None, Some(c), u)
    };
    let replicas = if a.single { 1 } else { 3 };
    let client = async_nats::connect(urls.clone()).await.expect("connect");
    let js = jetstream::new(client);
    let mut created = None;
    for _ in 0..100 {
        match js
            .get_or_create_stream(jetstream::stream::Config {
                name: "QUALITY".into(),
                subjects: vec!["quality.>".into()],
                num_replicas: replicas,
                ..Default::default()
            })
            .await
        {
            Ok(s) => {
                created = Some(s);
                break;
            }
            // The cluster elects its meta leader first.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    created.expect("stream QUALITY");

    // The agents.
    let work = tempfile::tempdir().expect("dir");
    let servers: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let mut agents = Vec::new();
    for n in 0..a.agents {
        let dir = work.path().join(format!("gw-{n:02}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let toml = format!(
            r#"
[agent]
gateway_id = "gw-{n:02}"
site = "plant1"
data_dir = "{data}"
[metrics]
enabled = false
[sources.line]
type = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "fleet-gw-{n:02}"
topics = ["fleet/gw-{n:02}/inspection"]
[[records]]
name = "inspection"
kind = "inspection"
trigger = {{ type = "message", source = "line" }}
dedupe_key = "{{/seq}}"
[records.fields]
"subject.serial" = {{ pointer = "/serial" }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ pointer = "/measured" }}
[sinks.fleet]
type = "nats"
servers = [{servers}]
stream = "QUALITY"
"#,
            data = dir.join("data").display(),
            port = broker.port,
            servers = servers.join(", ")
        );
        let conf = dir.join("agent.toml");
        std::fs::write(&conf, toml).expect("config");
        let child = Command::new(&agent_bin)
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent");
        agents.push(Killed(child));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Latency: an ordered consumer from the first new message.
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let seen = latencies.clone();
    let mut stream = js.get_stream("QUALITY").await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let reader = tokio::spawn(async move {
        let mut messages = consumer.messages().await.expect("messages");
        while let Some(Ok(m)) = messages.next().await {
            if m.subject.as_str().ends_with(".inspection") {
                if let Some(c) = captured_ms(&m.payload) {
                    seen.lock().expect("lock").push(now_ms() - c);
                }
            }
        }
    });

    // The load: one MQTT client, QoS 1, paced per 10 ms.
    let mut opts = rumqttc::MqttOptions::new("fleet-load", "127.0.0.1", broker.port);
    opts.set_inflight(1000);
    let (mqtt, mut events) = rumqttc::AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let pids: Vec<u32> = agents.iter().map(|k| k.0.id()).collect();
    let ticks0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let nats_pids: Vec<u32> = cluster
        .as_ref()
        .map(|c| c.nodes.iter().filter_map(|n| n.pid()).collect())
        .unwrap_or_default();
    let nats0: u64 = nats_pids.iter().map(|p| cpu_ticks(*p)).sum();
    let start = Instant::now();
    let total = a.seconds * a.rate * a.agents as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * (a.rate * a.agents as u64) as f64) as u64;
        while sent < due.min(total) {
            let n = sent as usize % a.agents;
            let payload =
                json!({ "seq": sent, "serial": format!("SN-{sent:08}"), "measured": 25.0 })
                    .to_string();
            mqtt.publish(
                format!("fleet/gw-{n:02}/inspection"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run_s = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&ticks0)
        .map(|(p, t0)| (cpu_ticks(*p) - t0) as f64 / TICKS_PER_SECOND / run_s * 100.0)
        .collect();
    let nats_cpu = (nats_pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - nats0) as f64
        / TICKS_PER_SECOND
        / run_s
        * 100.0;
    let mut rss: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
    rss.sort_unstable();

    // Wait until the inspections offered are stored (or 60 s without progress).
    let mut last = 0;
    let mut still = Instant::now();
    loop {
        let stored = latencies.lock().expect("lock").len() as u64;
        if stored >= total || still.elapsed() > Duration::from_secs(60) {
            break;
        }
        if stored != last {
            last = stored;
            still = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_s = start.elapsed().as_secs_f64();
    reader.abort();
    for k in &agents {
        let _ = Command::new("kill")
            .args(["-TERM", &k.0.id().to_string()])
            .status();
    }
    for mut k in agents {
        let _ = k.0.wait();
    }
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort_by(f64::total_cmp);
    let messages = stream.info().await.expect("info").state.messages;

    // The verifier over the whole stream.
    let t = Instant::now();
    let out = Command::new(&agent_bin)
        .args([
            "fleet", "verify", "--nats", &urls[0], "--stream", "QUALITY", "--json",
        ])
        .output()
        .expect("fleet verify");
    let verify_s = t.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let verified: u64 = report["gateways"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["records"].as_u64()).sum())
        .unwrap_or(0);
    println!(
        "{}",
        json!({
            "bench": "fleet",
            "agents": a.agents,
            "rate_per_agent": a.rate,
            "seconds": a.seconds,
            "cluster": if a.single { "1 server" } else { "3 nodes, R3" },
            "inspections_offered": total,
            "inspections_stored": lat.len(),
            "stored_per_s": lat.len() as f64 / drained_s,
            "latency_ms_p50": percentile(&lat, 0.5),
            "latency_ms_p99": percentile(&lat, 0.99),
            "agent_cpu_pct_mean": cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
            "agent_rss_mib_median": rss.get(rss.len() / 2).copied().unwrap_or(0) as f64 / 1024.0,
            "nats_cpu_pct_total": nats_cpu,
            "stream_messages": messages,
            "verify_seconds": verify_s,
            "verify_records": verified,
            "verify_records_per_s": verified as f64 / verify_s,
            "verify_exit": out.status.code(),
        })
    );
}
