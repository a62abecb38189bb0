//! The Modbus source against in-process tokio-modbus devices: values and provenance, the request
//! plan, exceptions as bad quality, a device that disappears and comes back, a dead device beside a
//! live one.

use std::time::Duration;

use serde_json::Value;
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use crate::support::modbus::Device;
use crate::support::{assert_schema_valid, config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(20);

fn source(id: &str, addr: &str) -> String {
    format!(
        r#"
[sources.{id}]
type = "modbus"
transport = "tcp"
address = "{addr}"
addressing = "pdu"
poll_interval_ms = 50
timeout_ms = 500
reconnect_initial_ms = 100
reconnect_max_ms = 500
[[sources.{id}.tags]]
name = "part_complete"
kind = "coil"
address = 0
type = "bool"
[[sources.{id}.tags]]
name = "serial"
kind = "holding"
address = 10
type = "u32"
[[sources.{id}.tags]]
name = "work_order"
kind = "holding"
address = 16
type = "string"
registers = 5
[[sources.{id}.tags]]
name = "diameter"
kind = "holding"
address = 100
type = "f32"
order = "cdab"
[[sources.{id}.tags]]
name = "spare"
kind = "holding"
address = 200
type = "u16"
[[sources.{id}.tags]]
name = "lot"
unit = 2
kind = "holding"
address = 0
type = "u16"
[[sources.{id}.tags]]
name = "temperature"
kind = "input"
address = 0
type = "i16"
scale = 0.1
"#
    )
}

fn rule(id: &str) -> String {
    format!(
        r#"
[[records]]
name = "od_{id}"
kind = "inspection"
trigger = {{ type = "rising", tag = "{id}.part_complete" }}
dedupe_key = "{{subject.serial}}"
[records.fields]
"subject.serial" = {{ tag = "{id}.serial", format = "SN-{{value}}" }}
"subject.work_order" = {{ tag = "{id}.work_order" }}
"subject.station" = {{ const = "{id}" }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ tag = "{id}.diameter" }}
"inspection.nominal" = {{ const = 25.0 }}
"inspection.lower_tolerance" = {{ const = 0.02 }}
"inspection.upper_tolerance" = {{ const = 0.02 }}
"inspection.inspector" = {{ tag = "{id}.spare" }}
"subject.lot" = {{ tag = "{id}.lot" }}
"#
    )
}

fn agent_config(parts: &[String]) -> String {
    format!(
        "[agent]\ngateway_id = \"gw-modbus\"\ndata_dir = \"data\"\n{}",
        parts.join("\n")
    )
}

fn inspections(dir: &std::path::Path) -> Vec<Value> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.bodies_of_kind("inspection"))
        .unwrap_or_default()
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect()
}

fn gaps(dir: &std::path::Path) -> Vec<Value> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.bodies_of_kind("gap"))
        .unwrap_or_default()
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect()
}

fn load_part(dev: &Device, serial: u32, diameter: f32) {
    dev.set(|m| {
        m.holding.insert((1, 10), (serial >> 16) as u16);
        m.holding.insert((1, 11), serial as u16);
        for (i, pair) in b"WO-1001\0\0\0".chunks(2).enumerate() {
            m.holding
                .insert((1, 16 + i as u16), u16::from_be_bytes([pair[0], pair[1]]));
        }
        m.input.insert((1, 0), (-123i16) as u16);
        m.holding.insert((1, 200), 7);
    });
    dev.set_f32_cdab(1, 100, diameter);
}

async fn pulse(dev: &Device) {
    dev.pulse_coil(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_decoded_into_records_with_provenance_in_the_planned_requests() {
    let dir = tempdir();
    let dev = Device::start().await;
    load_part(&dev, 123, 25.004);
    let agent = Agent::start(config(
        dir.path(),
        &agent_config(&[source("gauge1", &dev.addr.to_string()), rule("gauge1")]),
    ))
    .await
    .expect("start");
    eventually(WAIT, "the gauge1 polled", || {
        crate::support::source_up(&dir.path().join("data"), "gauge1")
    })
    .await;
    pulse(&dev).await;
    load_part(&dev, 124, 25.03);
    pulse(&dev).await;
    eventually(WAIT, "two inspections", || {
        inspections(dir.path()).len() == 2
    })
    .await;
    let before = dev.requests();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let per_second = dev.requests() - before;
    agent.stop("test").await;

    let recs = inspections(dir.path());
    for r in &recs {
        assert_schema_valid(r);
    }
    let r = &recs[0];
    assert_eq!(r["subject"]["serial"], "SN-123");
    assert_eq!(r["subject"]["work_order"], "WO-1001");
    assert!((r["inspection"]["value"].as_f64().unwrap_or(0.0) - 25.004).abs() < 1e-5);
    assert_eq!(r["inspection"]["result"], "pass");
    assert_eq!(recs[1]["inspection"]["result"], "fail");
    assert_eq!(recs[1]["subject"]["serial"], "SN-124");
    let p = &r["provenance"]["fields"]["inspection.value"];
    assert_eq!(p["protocol"], "modbus");
    assert_eq!(p["endpoint"], dev.addr.to_string());
    assert_eq!(p["address"], "unit=1 holding=100 f32 cdab");
    assert_eq!(p["raw"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["provenance"]["trigger"]["tag"], "part_complete");
    // Plan: unit 1 coils 0 | holding 10..21 (serial + work order, gap 4) | holding 100 |
    // holding 200 | input 0, unit 2 holding 0 = 6 requests per 50 ms cycle: about 120 per second.
    let cycles = per_second as f64 / 6.0;
    assert!(
        (14.0..=21.0).contains(&cycles),
        "{per_second} requests in 1 s is not 6 per cycle at 20 cycles/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_are_bad_quality_not_disconnects() {
    let dir = tempdir();
    let dev = Device::start().await;
    load_part(&dev, 5, 25.0);
    dev.set(|m| m.illegal.insert(200));
    dev.set(|m| m.failing_units.insert(2));
    let agent = Agent::start(config(
        dir.path(),
        &agent_config(&[source("gauge1", &dev.addr.to_string()), rule("gauge1")]),
    ))
    .await
    .expect("start");
    eventually(WAIT, "the gauge1 polled", || {
        crate::support::source_up(&dir.path().join("data"), "gauge1")
    })
    .await;
    pulse(&dev).await;
    eventually(WAIT, "an inspection", || inspections(dir.path()).len() == 1).await;
    agent.stop("test").await;

    let r = &inspections(dir.path())[0];
    assert_schema_valid(r);
    let p = &r["provenance"]["fields"]["inspection.inspector"];
    assert_eq!(p["quality"], "bad");
    assert_eq!(p["status"], "exception 02 (Illegal data address)");
    assert_eq!(p["raw"]["exception"], 2);
    assert!(
        r["inspection"].get("inspector").is_none(),
        "a bad value is not used"
    );
    let lot = &r["provenance"]["fields"]["subject.lot"];
    assert_eq!(lot["quality"], "bad");
    assert_eq!(lot["status"], "exception 04 (Server device failure)");
    assert_eq!(lot["address"], "unit=2 holding=0 u16");
    assert_eq!(
        r["inspection"]["value"], 25.0,
        "the other requests are unaffected"
    );
    assert_eq!(
        dev.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "exceptions never reconnect"
    );
    assert!(
        gaps(dir.path()).is_empty(),
        "a device that answers is not an outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_disappears_and_comes_back_leaves_a_gap() {
    let dir = tempdir();
    let dev = Device::start().await;
    load_part(&dev, 1, 25.0);
    let agent = Agent::start(config(
        dir.path(),
        &agent_config(&[source("gauge1", &dev.addr.to_string()), rule("gauge1")]),
    ))
    .await
    .expect("start");
    eventually(WAIT, "the gauge1 polled", || {
        crate::support::source_up(&dir.path().join("data"), "gauge1")
    })
    .await;
    dev.stop();
    eventually(WAIT, "the outage noticed", || {
        crate::support::source_connection(&dir.path().join("data"), "gauge1").starts_with("DOWN")
    })
    .await;
    // The outage the gap must cover: the device stays away a while longer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let dev2 = dev.restart().await;
    load_part(&dev2, 2, 25.0);
    eventually(WAIT, "the gauge polled again", || {
        crate::support::source_up(&dir.path().join("data"), "gauge1")
    })
    .await;
    pulse(&dev2).await;
    eventually(
        WAIT,
        "the gap record and an inspection after the outage",
        || gaps(dir.path()).len() == 1 && inspections(dir.path()).len() == 1,
    )
    .await;
    agent.stop("test").await;
    let status = shopfloor_agent::audit::status::collect(&config(
        dir.path(),
        &agent_config(&[source("gauge1", &dev.addr.to_string()), rule("gauge1")]),
    ))
    .expect("status");
    assert!(
        status.render().contains("gauge1          up since"),
        "{}",
        status.render()
    );
    let g = &gaps(dir.path())[0];
    assert_schema_valid(g);
    assert_eq!(g["gap"]["source"], "gauge1");
    assert!(
        g["gap"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("unreachable"),
        "{g}"
    );
    let from = shopfloor_agent::time::parse(g["gap"]["from"].as_str().unwrap_or("")).expect("from");
    let to = shopfloor_agent::time::parse(g["gap"]["to"].as_str().unwrap_or("")).expect("to");
    let span = (to - from).as_seconds_f64();
    assert!(
        (1.0..10.0).contains(&span),
        "the gap covers the outage: {span} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_does_not_delay_a_live_one() {
    let dir = tempdir();
    let live = Device::start().await;
    load_part(&live, 1, 25.0);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let parts = [
        source("live", &live.addr.to_string()),
        rule("live"),
        source("dead", &dead.to_string()),
        rule("dead"),
    ];
    let agent = Agent::start(config(dir.path(), &agent_config(&parts)))
        .await
        .expect("start");
    eventually(WAIT, "the live polled", || {
        crate::support::source_up(&dir.path().join("data"), "live")
    })
    .await;
    let before = live.requests();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let per_second = live.requests() - before;
    for serial in 10..13 {
        load_part(&live, serial, 25.0);
        pulse(&live).await;
    }
    eventually(WAIT, "three inspections from the live device", || {
        inspections(dir.path()).len() == 3
    })
    .await;
    agent.stop("test").await;
    // 5 requests per 50 ms cycle, undisturbed by the dead neighbour.
    assert!(
        per_second >= 70,
        "live device polled {per_second} times in 1 s"
    );
    let g = gaps(dir.path());
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0]["gap"]["source"], "dead");
    let status =
        shopfloor_agent::audit::status::collect(&config(dir.path(), &agent_config(&parts)))
            .expect("status")
            .render();
    assert!(status.contains("dead            DOWN since"), "{status}");
    assert!(status.contains("live            up since"), "{status}");
    assert!(g[0]["gap"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("still open when the agent stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_bus_with_several_units_and_one_silent() {
    use crate::support::modbus::{new_state, serve_rtu, PtyPair, RtuSvc};
    let dir = tempdir();
    let pty = PtyPair::start(dir.path());
    let state = new_state();
    {
        let mut m = state.memory.lock().expect("lock");
        m.holding.insert((1, 0), 1);
        m.holding.insert((2, 0), 2500);
        m.holding.insert((3, 0), 3);
    }
    let svc = RtuSvc {
        state: state.clone(),
        silent_units: [3].into_iter().collect(),
    };
    serve_rtu(&pty.a, 19200, svc);
    let toml = format!(
        r#"
[agent]
gateway_id = "gw-rtu"
data_dir = "data"

[sources.bus]
type = "modbus"
transport = "rtu"
device = "{}"
baud_rate = 19200
parity = "none"
addressing = "modicon"
units = [1, 2, 3]
poll_interval_ms = 100
timeout_ms = 200
[[sources.bus.tags]]
name = "counter"
unit = 1
address = 40001
type = "u16"
[[sources.bus.tags]]
name = "diameter"
unit = 2
address = 40001
type = "u16"
scale = 0.01
[[sources.bus.tags]]
name = "silent"
unit = 3
address = 40001
type = "u16"

[[records]]
name = "rtu_check"
kind = "inspection"
trigger = {{ type = "change", tag = "bus.counter" }}
[records.fields]
"subject.serial" = {{ tag = "bus.counter", format = "SN-{{value}}" }}
"inspection.value" = {{ tag = "bus.diameter" }}
"inspection.inspector" = {{ tag = "bus.silent" }}
"#,
        pty.b.display()
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "the first record", || {
        inspections(dir.path()).len() == 1
    })
    .await;
    state.memory.lock().expect("lock").holding.insert((1, 0), 2);
    eventually(WAIT, "the second record", || {
        inspections(dir.path()).len() == 2
    })
    .await;
    agent.stop("test").await;
    let recs = inspections(dir.path());
    for r in &recs {
        assert_schema_valid(r);
    }
    assert_eq!(recs[1]["subject"]["serial"], "SN-2");
    assert_eq!(recs[1]["inspection"]["value"], 25.0);
    let p = &recs[1]["provenance"]["fields"];
    assert_eq!(p["inspection.value"]["address"], "unit=2 holding=0 u16");
    assert_eq!(
        p["inspection.value"]["endpoint"],
        pty.b.display().to_string()
    );
    assert_eq!(p["inspection.inspector"]["quality"], "bad");
    assert!(p["inspection.inspector"]["status"]
        .as_str()
        .unwrap_or("")
        .contains("no response"));
    assert!(
        gaps(dir.path()).is_empty(),
        "a silent unit on a working bus is not a bus outage"
    );
}
