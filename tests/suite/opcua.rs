//! The OPC UA source against an in-process async-opcua server: subscription to records with
//! provenance, SignAndEncrypt with a user name after the server certificate is trusted, no fallback
//! to a weaker policy, a restart that reorders namespaces, poll mode with browse paths and a pinned
//! thumbprint, a silent connection caught by the watchdog.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use plant_sim::config::AgentToml;

use crate::support::opcua::{Cell, Options, NS, PASSWORD};
use crate::support::{assert_schema_valid, config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(30);

fn agent_toml(source: &str) -> String {
    format!(
        r#"
[agent]
gateway_id = "gw-opcua"
data_dir = "data"

{source}

[[records]]
name = "od"
kind = "inspection"
trigger = {{ type = "rising", tag = "plc.part_complete" }}
dedupe_key = "{{subject.serial}}"
[records.fields]
"subject.serial" = {{ tag = "plc.serial" }}
"subject.work_order" = {{ tag = "plc.work_order" }}
"subject.station" = {{ const = "Station10" }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ tag = "plc.diameter" }}
"inspection.unit" = {{ const = "mm" }}
"inspection.nominal" = {{ const = 25.0 }}
"inspection.lower_tolerance" = {{ const = 0.02 }}
"inspection.upper_tolerance" = {{ const = 0.02 }}
"inspection.gauge_id" = {{ tag = "plc.gauge" }}
"#
    )
}

/// `[sources.plc]` with the cell's tags by `nsu=` node id; `extra` adds or overrides options.
fn source(url: &str, extra: &str) -> String {
    format!(
        r#"
[sources.plc]
type = "opcua"
endpoint = "{url}"
publishing_interval_ms = 100
sampling_interval_ms = 50
keep_alive_ms = 500
request_timeout_ms = 2000
reconnect_initial_ms = 100
reconnect_max_ms = 500
{extra}
[[sources.plc.tags]]
name = "serial"
node = "nsu={NS};s=Cell1.Station10.PartSerial"
[[sources.plc.tags]]
name = "part_complete"
node = "nsu={NS};s=Cell1.Station10.PartComplete"
[[sources.plc.tags]]
name = "diameter"
node = "nsu={NS};s=Cell1.Station10.MeasuredDiameter"
deadband = 0.0001
[[sources.plc.tags]]
name = "gauge"
node = "nsu={NS};s=Cell1.Station10.GaugeId"
[[sources.plc.tags]]
name = "work_order"
node = "nsu={NS};s=Cell1.Station10.WorkOrder"
"#
    )
}

const NONE: &str = "security_policy = \"none\"\nsecurity_mode = \"none\"";

fn kind(dir: &Path, kind: &str) -> Vec<Value> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.bodies_of_kind(kind))
        .unwrap_or_default()
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect()
}

fn serials(dir: &Path) -> Vec<String> {
    kind(dir, "inspection")
        .iter()
        .map(|r| r["subject"]["serial"].as_str().unwrap_or("").to_string())
        .collect()
}

fn connection(dir: &Path) -> String {
    crate::support::source_connection(&dir.join("data"), "plc")
}

/// A cell and an agent subscribed to it on the None endpoint, past the initial values.
async fn cell_and_agent(dir: &Path) -> (Cell, Agent) {
    let cell = Cell::start(dir, Options::default()).await;
    let agent = Agent::start(config(dir, &agent_toml(&source(&cell.url, NONE))))
        .await
        .expect("start");
    eventually(WAIT, "the OPC UA source up", || {
        connection(dir).starts_with("up")
    })
    .await;
    (cell, agent)
}

/// After an outage: waits until the source is up again (another `up since` than `up_before`, the
/// state before the outage), then makes a part and waits for its record.
async fn part_after_reconnect(
    cell: &Cell,
    dir: &Path,
    up_before: &str,
    (serial, diameter): (&str, f64),
) {
    eventually(WAIT, "reconnected", || {
        let now = connection(dir);
        now.starts_with("up") && now != up_before
    })
    .await;
    // Up is announced on the first notification; the trigger's monitored item may come a
    // publishing interval later, and a part made before it would be missed by design.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = serials(dir).len();
    cell.part(serial, diameter).await;
    eventually(WAIT, "the part after the outage", || {
        serials(dir).len() == before + 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_makes_one_inspection_per_part_with_opcua_provenance() {
    let dir = tempdir();
    let (cell, agent) = cell_and_agent(dir.path()).await;
    cell.part("SN-000001", 25.004).await;
    cell.part("SN-000002", 25.031).await;
    eventually(WAIT, "two inspections", || serials(dir.path()).len() == 2).await;
    // The gauge fails: the server reports a bad status; the record says so instead of a value.
    cell.set_bad(
        "MeasuredDiameter",
        opcua::types::StatusCode::BadSensorFailure,
    );
    // Pacing, not waiting: each change in its own publishing interval (100 ms), in this order.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cell.set("PartSerial", "SN-000003");
    tokio::time::sleep(Duration::from_millis(150)).await;
    cell.set("PartComplete", true);
    eventually(WAIT, "the third inspection", || {
        serials(dir.path()).len() == 3
    })
    .await;
    agent.stop("test").await;

    let recs = kind(dir.path(), "inspection");
    for r in &recs {
        assert_schema_valid(r);
    }
    assert_eq!(serials(dir.path()), ["SN-000001", "SN-000002", "SN-000003"]);
    let r = &recs[0];
    assert_eq!(r["inspection"]["value"], 25.004);
    assert_eq!(r["inspection"]["result"], "pass");
    assert_eq!(r["inspection"]["gauge_id"], "G-17");
    assert_eq!(r["subject"]["work_order"], "WO-1001");
    assert_eq!(recs[1]["inspection"]["result"], "fail");
    let p = &r["provenance"]["fields"]["inspection.value"];
    assert_eq!(p["protocol"], "opcua");
    assert_eq!(p["endpoint"], cell.url);
    assert_eq!(
        p["address"],
        format!("nsu={NS};s=Cell1.Station10.MeasuredDiameter")
    );
    assert_eq!(p["quality"], "good");
    assert!(
        p["source_timestamp"].is_string(),
        "source timestamp kept: {p}"
    );
    assert!(
        p["server_timestamp"].is_string(),
        "server timestamp kept: {p}"
    );
    assert_eq!(r["provenance"]["trigger"]["tag"], "part_complete");
    let bad = &recs[2];
    assert_eq!(
        bad["incomplete"],
        serde_json::json!(["inspection.value"]),
        "{bad}"
    );
    let p = &bad["provenance"]["fields"]["inspection.value"];
    assert_eq!(p["quality"], "bad");
    assert!(
        p["status"]
            .as_str()
            .unwrap_or("")
            .contains("BadSensorFailure"),
        "{p}"
    );
    // `status` shows the agent's certificate and how long it has left.
    let state = Store::open_ro(&dir.path().join("data"))
        .and_then(|s| s.source_state(Some("plc")))
        .expect("state");
    let cert = state
        .iter()
        .find(|(_, k, _, _)| k == "certificate")
        .expect("certificate state");
    assert!(cert.2.contains("own/cert.der (valid, 72"), "{cert:?}");
    // Every run of the agent made its own certificate in its PKI folder, key readable by it only.
    let key = dir.path().join("data/pki/opcua/private/private.pem");
    assert!(dir.path().join("data/pki/opcua/own/cert.der").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "private key mode {mode:o}");
    }
    cell.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_is_refused_until_its_certificate_is_moved_to_trusted() {
    let dir = tempdir();
    let cell = Cell::start(
        dir.path(),
        Options {
            anonymous: false,
            ..Options::default()
        },
    )
    .await;
    let secure = format!(
        "security_policy = \"basic256sha256\"\nsecurity_mode = \"sign_and_encrypt\"\nusername = \"operator\"\npassword = \"{PASSWORD}\""
    );
    let agent = Agent::start(config(dir.path(), &agent_toml(&source(&cell.url, &secure))))
        .await
        .expect("start");
    let rejected = dir.path().join("data/pki/opcua/rejected");
    eventually(WAIT, "the server certificate in rejected/", || {
        std::fs::read_dir(&rejected)
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    })
    .await;
    eventually(WAIT, "the outage names the file to move", || {
        connection(dir.path()).contains("To trust it: mv")
    })
    .await;
    cell.part("SN-000010", 25.0).await;
    assert!(
        serials(dir.path()).is_empty(),
        "nothing from an untrusted server"
    );

    // The administrator trusts it: the agent connects on its next attempt.
    let file = std::fs::read_dir(&rejected)
        .expect("dir")
        .next()
        .expect("file")
        .expect("entry")
        .path();
    let trusted = dir
        .path()
        .join("data/pki/opcua/trusted")
        .join(file.file_name().expect("name"));
    std::fs::rename(&file, &trusted).expect("trust");
    eventually(WAIT, "connected", || {
        connection(dir.path()).starts_with("up")
    })
    .await;
    cell.part("SN-000011", 25.0).await;
    eventually(WAIT, "an inspection over SignAndEncrypt", || {
        serials(dir.path()) == ["SN-000011"]
    })
    .await;
    agent.stop("test").await;
    // The time it was refused is a gap.
    let gaps = kind(dir.path(), "gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_schema_valid(&gaps[0]);
    cell.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weaker_endpoint_is_never_used_and_a_wrong_password_is_named() {
    let dir = tempdir();
    let cell = Cell::start(dir.path(), Options::default()).await;
    let strict = "security_policy = \"basic256sha256\"\nsecurity_mode = \"sign\"\nusername = \"operator\"\npassword = \"wrong\"";
    let pinned_src = source(&cell.url, strict);
    // Pin the server so trust is not the reason of the refusal.
    let thumb = cell.thumbprint();
    let pinned = AgentToml::parse(&agent_toml(&pinned_src))
        .set("sources.plc.server_thumbprint", thumb)
        .to_string();
    let agent = Agent::start(config(dir.path(), &pinned))
        .await
        .expect("start");
    eventually(WAIT, "the refusal names the identity", || {
        connection(dir.path()).contains("refused the identity")
    })
    .await;
    agent.stop("test").await;

    // The same endpoint with an X.509 user identity instead of the password.
    let (cert, key) = crate::support::opcua::user_certificate(&cell.pki);
    let x509 = AgentToml::parse(&pinned)
        .remove("sources.plc.username")
        .remove("sources.plc.password")
        .set(
            "sources.plc.user_certificate_file",
            cert.display().to_string(),
        )
        .set("sources.plc.user_key_file", key.display().to_string())
        .to_string();
    assert!(x509.contains("user_certificate_file"));
    let dir_x = tempdir();
    let agent = Agent::start(config(dir_x.path(), &x509))
        .await
        .expect("start");
    eventually(WAIT, "the OPC UA source up", || {
        connection(dir_x.path()).starts_with("up")
    })
    .await;
    cell.part("SN-000015", 25.0).await;
    eventually(WAIT, "an inspection read as the X.509 user", || {
        serials(dir_x.path()) == ["SN-000015"]
    })
    .await;
    agent.stop("test").await;

    // The server offers only None but the config asks for Basic256Sha256: no fallback.
    let dir2 = tempdir();
    let none_only = Cell::start(
        dir2.path(),
        Options {
            none_only: true,
            ..Options::default()
        },
    )
    .await;
    let agent = Agent::start(config(
        dir2.path(),
        &agent_toml(&source(
            &none_only.url,
            "security_policy = \"basic256sha256\"\nsecurity_mode = \"sign_and_encrypt\"",
        )),
    ))
    .await
    .expect("start");
    eventually(WAIT, "no fallback", || {
        connection(dir2.path()).contains("does not fall back")
    })
    .await;
    none_only.part("SN-000020", 25.0).await;
    agent.stop("test").await;
    assert!(serials(dir2.path()).is_empty());
    cell.stop().await;
    none_only.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_with_reordered_namespaces_keeps_every_tag_on_its_node() {
    let dir = tempdir();
    // Over Aes256_Sha256_RsaPss SignAndEncrypt, the server pinned (its certificate survives the restart).
    let cell = Cell::start(dir.path(), Options::default()).await;
    let thumb = cell.thumbprint();
    let security = format!(
        "security_policy = \"aes256_sha256_rsapss\"\nsecurity_mode = \"sign_and_encrypt\"\nserver_thumbprint = \"{thumb}\""
    );
    let agent = Agent::start(config(
        dir.path(),
        &agent_toml(&source(&cell.url, &security)),
    ))
    .await
    .expect("start");
    eventually(WAIT, "the OPC UA source up", || {
        connection(dir.path()).starts_with("up")
    })
    .await;
    cell.part("SN-000030", 25.0).await;
    eventually(WAIT, "first part", || serials(dir.path()).len() == 1).await;
    let before = cell.node("PartSerial");
    let up_before = connection(dir.path());

    // The server goes away and comes back with another namespace registered before the cell's.
    let cell = cell
        .restart(Options {
            shifted: true,
            ..Options::default()
        })
        .await;
    assert_ne!(before, cell.node("PartSerial"), "the index moved");
    part_after_reconnect(&cell, dir.path(), &up_before, ("SN-000031", 25.01)).await;
    agent.stop("test").await;

    let recs = kind(dir.path(), "inspection");
    assert_eq!(serials(dir.path()), ["SN-000030", "SN-000031"]);
    assert_eq!(recs[1]["inspection"]["value"], 25.01);
    let gaps = kind(dir.path(), "gap");
    assert_eq!(gaps.len(), 1, "one outage, one gap: {gaps:?}");
    cell.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_with_browse_paths_over_a_pinned_aes_endpoint() {
    let dir = tempdir();
    let cell = Cell::start(dir.path(), Options::default()).await;
    let thumb = cell.thumbprint();
    let src = format!(
        r#"
[sources.plc]
type = "opcua"
endpoint = "{url}"
security_policy = "aes128_sha256_rsaoaep"
security_mode = "sign_and_encrypt"
server_thumbprint = "{thumb}"
mode = "poll"
poll_interval_ms = 50
items_per_request = 2
browse_namespace = "{NS}"
request_timeout_ms = 2000
reconnect_initial_ms = 100
reconnect_max_ms = 500
[[sources.plc.tags]]
name = "serial"
browse_path = "Objects/Cell1/Station10/PartSerial"
[[sources.plc.tags]]
name = "part_complete"
browse_path = "Cell1/Station10/PartComplete"
[[sources.plc.tags]]
name = "diameter"
browse_path = "Cell1/Station10/MeasuredDiameter"
[[sources.plc.tags]]
name = "gauge"
node = "nsu={NS};s=Cell1.Station10.GaugeId"
[[sources.plc.tags]]
name = "work_order"
browse_path = "Cell1/Station10/NoSuchVariable"
"#,
        url = cell.url
    );
    let agent = Agent::start(config(dir.path(), &agent_toml(&src)))
        .await
        .expect("start");
    eventually(WAIT, "the OPC UA source up", || {
        connection(dir.path()).starts_with("up")
    })
    .await;
    cell.part("SN-000040", 24.99).await;
    eventually(WAIT, "a polled part", || serials(dir.path()).len() == 1).await;
    agent.stop("test").await;
    let r = &kind(dir.path(), "inspection")[0];
    assert_schema_valid(r);
    assert_eq!(r["inspection"]["value"], 24.99);
    assert_eq!(
        r["provenance"]["fields"]["inspection.value"]["address"],
        "Objects/Cell1/Station10/MeasuredDiameter"
    );
    // The tag whose path does not exist is a named bad value, and the record says what is missing.
    let wo = &r["provenance"]["fields"]["subject.work_order"];
    assert_eq!(wo["quality"], "bad", "{wo}");
    assert!(
        wo["status"]
            .as_str()
            .unwrap_or("")
            .contains("BadNodeIdUnknown"),
        "{wo}"
    );
    // The pinned certificate went to trusted/ without anyone moving it.
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/pki/opcua/trusted"))
            .expect("dir")
            .count(),
        1
    );
    cell.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_but_silent_server_is_caught_by_the_watchdog_and_leaves_a_gap() {
    let dir = tempdir();
    let cell = Cell::start(dir.path(), Options::default()).await;
    let proxy = crate::support::proxy::Proxy::start(([127, 0, 0, 1], cell.port).into()).await;
    let url = format!("opc.tcp://{}/cell1", proxy.addr);
    let src = source(&url, &format!("{NONE}\nwatchdog_ms = 1500"));
    let agent = Agent::start(config(dir.path(), &agent_toml(&src)))
        .await
        .expect("start");
    eventually(WAIT, "the OPC UA source up", || {
        connection(dir.path()).starts_with("up")
    })
    .await;
    cell.part("SN-000050", 25.0).await;
    eventually(WAIT, "first part", || serials(dir.path()).len() == 1).await;

    // The path hangs: TCP stays up, nothing arrives.
    let up_before = connection(dir.path());
    proxy.freeze(true);
    eventually(WAIT, "the silence is noticed", || {
        connection(dir.path()).contains("watchdog")
    })
    .await;
    proxy.freeze(false);
    part_after_reconnect(&cell, dir.path(), &up_before, ("SN-000051", 25.0)).await;
    agent.stop("test").await;
    let gaps = kind(dir.path(), "gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0]["gap"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("watchdog"),
        "{}",
        gaps[0]
    );
    cell.stop().await;
}
