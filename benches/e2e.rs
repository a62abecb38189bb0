//! End-to-end load run: the release binary against the demo cell's peers with a steady load through
//! one source of each kind into the HTTP sink; prints one JSON line.
//!
//! `benches/e2e.sh [--seconds N] [--rate R] [--report FILE]` (or `cargo bench --bench e2e -- ...`;
//! `E2E_AGENT` names another agent binary, e.g. the gateway build `target/min/shopfloor-agent`).
//! The agent runs `config/demo.toml` (polled faster, journal without a size limit unless
//! `--max-disk-bytes` sets one: at 1,000 records/s the journal grows by about 4 GB an hour, and
//! retention prunes only after a day) plus one record per change of the PLC's and the gauge's
//! diameter. Needs `mosquitto` installed. Defaults: 60 s at 1,000 records/s offered: the PLC (OPC UA,
//! SignAndEncrypt) changes a value 10 times a second (its server samples every 100 ms), the gauge
//! (Modbus TCP, polled every 10 ms) a tenth of the rate, the ERP (OData, polled every 100 ms) gets
//! a fifth of the rate in new rows, the vision station publishes the rest over MQTT (QoS 1).
//!
//! Reported: records/s delivered, capture-to-delivery latency p50/p99 (`captured_at` to arrival
//! at the QMS), the agent's CPU-seconds per minute, resident memory steady (median of the second
//! half) and peak, its growth (last tenth against the second tenth) and open file descriptors at
//! the start and the end, records lost (messages and rows the peers gave that never arrived, plus
//! journaled records not delivered), and for the sampled sources (PLC, gauge) the changes made
//! against records captured: sampling legitimately skips values, so these are not counted as lost.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

mod common;
use common::{cpu_ticks, rss_kib, TICKS_PER_SECOND};

use plant_sim::mosquitto::Broker;
use plant_sim::plant::{Plant, Ports};

struct Args {
    seconds: u64,
    rate: u64,
    report: Option<PathBuf>,
    max_disk_bytes: u64,
    /// The QMS answers 503 to every request from this second of the load ...
    outage_at: Option<u64>,
    /// ... for this many seconds.
    outage_for: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 60,
        rate: 1000,
        report: None,
        max_disk_bytes: 0,
        outage_at: None,
        outage_for: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(60),
            "--rate" => a.rate = it.next().and_then(|v| v.parse().ok()).unwrap_or(1000),
            "--report" => a.report = it.next().map(PathBuf::from),
            "--outage-at" => a.outage_at = it.next().and_then(|v| v.parse().ok()),
            "--outage-for" => a.outage_for = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--max-disk-bytes" => {
                a.max_disk_bytes = it.next().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// What arrived at the QMS, tallied as it arrives (a long run cannot keep every record).
#[derive(Default)]
struct Tally {
    ids: HashSet<u128>,
    duplicates: u64,
    latencies_ms: Vec<u32>,
    vision: HashSet<u64>,
    erp: HashSet<u64>,
    plc: u64,
    gauge: u64,
    /// Records whose capture fell inside the load window.
    in_window: u64,
}

impl Tally {
    fn take(&mut self, events: Vec<Value>, window: (SystemTime, SystemTime)) {
        let now = SystemTime::now();
        for e in events {
            let id = e["id"]
                .as_str()
                .and_then(|s| u128::from_str_radix(&s.replace('-', ""), 16).ok())
                .unwrap_or_default();
            if !self.ids.insert(id) {
                self.duplicates += 1;
                continue;
            }
            let r = &e["data"];
            let captured = r["captured_at"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(SystemTime::from);
            if let Some(c) = captured {
                let ms = now.duration_since(c).unwrap_or_default().as_millis();
                self.latencies_ms.push(ms.min(u32::MAX as u128) as u32);
                if c >= window.0 && c <= window.1 {
                    self.in_window += 1;
                }
            }
            let serial = r["subject"]["serial"].as_str().unwrap_or_default();
            let number = |prefix: &str| serial.strip_prefix(prefix).and_then(|n| n.parse().ok());
            match r["inspection"]["characteristic"].as_str() {
                Some("OD-PLC") => self.plc += 1,
                Some("OD-GAUGE") => self.gauge += 1,
                _ => {}
            }
            if let Some(n) = number("V-") {
                self.vision.insert(n);
            }
            if let Some(n) = number("E-") {
                self.erp.insert(n);
            }
        }
    }
}

/// `config/demo.toml` (the cell's sources, its visual check and traveler rules, the QMS sink)
/// polled faster, with two records made whenever the PLC's or the gauge's diameter changes.
fn config(plant: &Plant, data: &Path, max_disk_bytes: u64) -> String {
    let demo = std::fs::read_to_string("config/demo.toml").expect("config/demo.toml");
    let demo = plant.agent_config(&demo, data, "127.0.0.1:0");
    let demo = plant_sim::config::AgentToml::parse(&demo)
        .set("journal.max_disk_bytes", max_disk_bytes as i64)
        .set("sources.gauge.poll_interval_ms", 10)
        .set("sources.erp.poll_interval_ms", 100)
        .to_string()
        // Inside the ERP endpoints' watermark filters (an array of tables).
        .replace("&$top=100", "&$top=1000");
    let mut load = r#"
[[sources.plc.tags]]
name = "diameter"
node = "nsu=urn:example:cell1;s=Cell1.Station10.MeasuredDiameter"
queue_size = 20
"#
    .to_string();
    for (source, characteristic) in [("plc", "OD-PLC"), ("gauge", "OD-GAUGE")] {
        load += &format!(
            r#"
[[records]]
name = "{source}_diameter"
kind = "inspection"
trigger = {{ type = "change", tag = "{source}.diameter" }}
[records.fields]
"subject.serial" = {{ const = "LOAD" }}
"inspection.characteristic" = {{ const = "{characteristic}" }}
"inspection.value" = {{ tag = "{source}.diameter" }}
"#
        );
    }
    format!("{demo}{load}")
}

/// Runs `every` at `per_second` until `done`, passing the running count; returns the count.
async fn paced<F, Fut>(per_second: u64, done: Arc<AtomicBool>, mut every: F) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if per_second == 0 {
        return 0;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while !done.load(Ordering::Relaxed) {
        if every(n).await {
            n += 1;
        }
        let due = start + Duration::from_secs_f64(n as f64 / per_second as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    n
}

fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} x {cpu}")
}

fn agent_bin() -> PathBuf {
    std::env::var_os("E2E_AGENT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/shopfloor-agent"),
        PathBuf::from,
    )
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let line = rt.block_on(run(&args));
    println!("{line}");
    if let Some(path) = &args.report {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(path, format!("{line}\n")).expect("report");
        eprintln!("report written to {}", path.display());
    }
}

async fn run(args: &Args) -> Value {
    let agent_bin = agent_bin();
    assert!(
        agent_bin.exists(),
        "{} missing: build it first (benches/e2e.sh does: cargo build --release)",
        agent_bin.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let broker = Broker::start();
    let plant = Arc::new(
        Plant::start(dir.path(), &data, Ports::any(broker.port))
            .await
            .expect("the cell"),
    );
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config(&plant, &data, args.max_disk_bytes)).expect("config");

    // Records captured in this window count as delivered during the load; it opens when the load
    // starts and closes when it stops.
    let never = SystemTime::now() + Duration::from_secs(365 * 86_400);
    let window = Arc::new(Mutex::new((never, never)));
    let tally = Arc::new(Mutex::new(Tally::default()));
    {
        let (tally, window) = (tally.clone(), window.clone());
        *plant.qms_state.tap.lock().expect("lock") = Some(Box::new(move |events| {
            let w = *window.lock().expect("lock");
            tally.lock().expect("lock").take(events, w);
        }));
    }
    let log = std::fs::File::create(dir.path().join("agent.log")).expect("log");
    let mut agent = Command::new(&agent_bin)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the agent");
    let pid = agent.id();
    // Connected (the MQTT session exists before the first message), then the load.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rate = args.rate;
    // The in-process PLC (async-opcua's simple node manager) samples every 100 ms at best.
    let (plc_rate, gauge_rate, erp_rate) = (10.min(rate), rate / 10, rate / 5);
    let vision_rate = rate - plc_rate - gauge_rate - erp_rate;
    let done = Arc::new(AtomicBool::new(false));
    let erp_rows = Arc::new(AtomicU64::new(0));
    let started = SystemTime::now();
    *window.lock().expect("lock") = (started, never);
    let t0 = Instant::now();
    let ticks0 = cpu_ticks(pid);
    let fds0 = fds(pid);
    let loads = vec![
        tokio::spawn(paced(plc_rate, done.clone(), {
            let plant = plant.clone();
            move |n| {
                plant
                    .plc()
                    .set("MeasuredDiameter", 25.0 + (n + 1) as f64 * 1e-6);
                async { true }
            }
        })),
        tokio::spawn(paced(gauge_rate, done.clone(), {
            let plant = plant.clone();
            move |n| {
                plant
                    .gauge
                    .set_f32_cdab(1, 100, 24.9 + ((n + 1) % 1000) as f32 * 1e-4);
                async { true }
            }
        })),
        tokio::spawn(paced(vision_rate, done.clone(), {
            let plant = plant.clone();
            move |n| {
                let plant = plant.clone();
                async move {
                    plant
                        .publish_check(&format!("V-{n}"), "VIS-1", "pass")
                        .await
                }
            }
        })),
        tokio::spawn(paced(erp_rate, done.clone(), {
            let (plant, erp_rows) = (plant.clone(), erp_rows.clone());
            move |n| {
                add_row(&plant, n);
                erp_rows.store(n + 1, Ordering::Relaxed);
                async { true }
            }
        })),
    ];

    // Samples every second: (seconds since start, RSS KiB, fds).
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let end = t0 + Duration::from_secs(args.seconds);
    // The outage: every request answered 503 (a real HTTP answer, as a QMS behind a load balancer
    // gives it), so the sink retries and the backlog grows in the journal.
    let outage = args
        .outage_at
        .map(|at| (at as f64, (at + args.outage_for) as f64));
    let (mut outage_started, mut outage_ended) = (false, false);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = t0.elapsed().as_secs_f64();
        if let Some((from, to)) = outage {
            if !outage_started && now >= from {
                outage_started = true;
                let answers = (args.outage_for as usize + 1) * 1000;
                plant
                    .qms_state
                    .script
                    .lock()
                    .expect("lock")
                    .extend(std::iter::repeat_n(
                        plant_sim::qms::Step::Status(503, None),
                        answers,
                    ));
            }
            if outage_started && !outage_ended && now >= to {
                outage_ended = true;
                plant.qms_state.script.lock().expect("lock").clear();
            }
        }
        samples.push((now, rss_kib(pid), fds(pid)));
    }
    done.store(true, Ordering::Relaxed);
    let ticks = cpu_ticks(pid) - ticks0;
    let elapsed = t0.elapsed().as_secs_f64();
    let stopped = SystemTime::now();
    *window.lock().expect("lock") = (started, stopped);
    let mut offered = Vec::new();
    for l in loads {
        offered.push(l.await.expect("load"));
    }
    let (plc_changes, gauge_changes, vision_sent, erp_sent) =
        (offered[0], offered[1], offered[2], offered[3]);

    // Let the agent deliver what it has (the sampled sources have nothing left after that).
    let drained = Instant::now();
    loop {
        let complete = {
            let t = tally.lock().expect("lock");
            t.vision.len() as u64 >= vision_sent && t.erp.len() as u64 >= erp_sent
        };
        if complete || drained.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds_end = fds(pid);
    let rss_drained = rss_kib(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = agent.wait().expect("agent exit");
    let journaled = shopfloor_agent::journal::Store::open_ro(&data)
        .and_then(|s| s.head())
        .map_or(0, |h| h.seq);

    let t = tally.lock().expect("lock");
    let mut lat = t.latencies_ms.clone();
    lat.sort_unstable();
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let mut second_half: Vec<u64> = rss[rss.len() / 2..].to_vec();
    second_half.sort_unstable();
    let tenth = (rss.len() / 10).max(1);
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    let early = mean(&rss[tenth.min(rss.len() - 1)..(2 * tenth).min(rss.len())]);
    let late = mean(&rss[rss.len() - tenth..]);
    let lost_vision = vision_sent.saturating_sub(t.vision.len() as u64);
    let lost_erp = erp_sent.saturating_sub(t.erp.len() as u64);
    // The stop record is written at shutdown, after the last delivery could happen.
    let undelivered = (journaled as u64).saturating_sub(t.ids.len() as u64 + 1);
    // Memory through the outage: the mean of the ten seconds before the end of its first minute
    // against the mean of its last ten seconds (the backlog grows all along), and after the drain.
    let mean_between = |from: f64, to: f64| {
        let v: Vec<u64> = samples
            .iter()
            .filter(|s| s.0 > from && s.0 <= to)
            .map(|s| s.1)
            .collect();
        mean(&v)
    };
    let outage_report = outage.map(|(from, to)| {
        let first = mean_between(from + 50.0, from + 60.0);
        let last = mean_between(to - 10.0, to);
        json!({
            "from_s": from,
            "for_s": to - from,
            "rss_mib_first_minute": (first / 1024.0 * 10.0).round() / 10.0,
            "rss_mib_end": (last / 1024.0 * 10.0).round() / 10.0,
            "growth_pct": ((last - first) / first.max(1.0) * 1000.0).round() / 10.0,
            "rss_mib_after_drain": (rss_drained as f64 / 1024.0 * 10.0).round() / 10.0,
            "answers_503": plant.qms_state.requests.lock().expect("lock").iter().filter(|r| r.status == 503).count(),
        })
    });
    json!({
        "date": shopfloor_agent::time::now_rfc3339(),
        "outage": outage_report,
        "machine": machine(),
        "agent": agent_bin.display().to_string(),
        "seconds": (elapsed * 10.0).round() / 10.0,
        "offered_per_s": ((plc_changes + gauge_changes + vision_sent + erp_sent) as f64 / elapsed).round(),
        "delivered_per_s": (t.in_window as f64 / elapsed).round(),
        "latency_ms_p50": percentile(&lat, 0.50),
        "latency_ms_p99": percentile(&lat, 0.99),
        "cpu_s_per_min": ((ticks as f64 / TICKS_PER_SECOND) / (elapsed / 60.0) * 100.0).round() / 100.0,
        "rss_mib_steady": (percentile(&second_half, 0.5) as f64 / 1024.0 * 10.0).round() / 10.0,
        "rss_mib_peak": (rss.iter().copied().max().unwrap_or(0) as f64 / 1024.0 * 10.0).round() / 10.0,
        "rss_growth_pct": ((late - early) / early.max(1.0) * 1000.0).round() / 10.0,
        "fds_start": fds0,
        "fds_end": fds_end,
        "records_lost": lost_vision + lost_erp + undelivered,
        "lost_detail": { "mqtt": lost_vision, "rest": lost_erp, "journaled_not_delivered": undelivered },
        "duplicates_received": t.duplicates,
        "sampled": {
            "opcua": { "changes": plc_changes, "records": t.plc },
            "modbus": { "changes": gauge_changes, "records": t.gauge },
        },
        "agent_exit_ok": exit.success(),
    })
}

/// One new work order row (`E-<n>`); rows older than 10 s are dropped from the ERP's memory (the
/// agent's watermark is long past them), so a long run does not slow the ERP down.
fn add_row(plant: &Plant, n: u64) {
    let now = shopfloor_agent::time::now();
    let mut erp = plant.erp.erp.lock().expect("lock");
    let rows = erp.sets.entry("WorkOrders".into()).or_default();
    rows.push(json!({
        "ID": n + 1,
        "workOrder": "WO-LOAD",
        "partNumber": "P-2040",
        "revision": "C",
        "serial": format!("E-{n}"),
        "operation": "OP-30",
        "workCenter": "cell1/station10",
        "status": "RELEASED",
        "modifiedAt": shopfloor_agent::time::format(now),
    }));
    let horizon = shopfloor_agent::time::format(now - time::Duration::seconds(10));
    let old = rows
        .iter()
        .take_while(|r| {
            r["modifiedAt"]
                .as_str()
                .is_some_and(|m| m < horizon.as_str())
        })
        .count();
    if old > 0 {
        rows.drain(..old);
    }
    erp.requests.clear();
}
