//! `fleet verify` against a real JetStream stream that three agents deliver into: clean, then with
//! one gateway's journal shortened and another's re-forged with a re-computed chain after delivery.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shopfloor_agent::journal::{NewRecord, Store};
use shopfloor_agent::runtime::topology::Agent;

use super::journal::inspection;
use super::nats_sink::sink_toml;
use crate::support::nats::NatsServer;
use crate::support::{agent_bin, config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(30);

/// Whether the first sink's cursor is at the journal's head.
pub(crate) fn delivered(dir: &Path) -> bool {
    let Ok(store) = Store::open_ro(&dir.join("data")) else {
        return false;
    };
    let head = store.head().map(|h| h.seq).unwrap_or(-1);
    store
        .sink_cursors()
        .is_ok_and(|c| !c.is_empty() && c[0].acked_seq == head)
}

/// Runs gateway `gw` on `dir` with configuration `toml` until `n` more records are delivered,
/// then stops it.
pub(crate) async fn deliver_with(dir: &Path, gw: &str, toml: &str, n: usize) {
    let agent = Agent::start(config(dir, toml)).await.expect("agent starts");
    let records = (0..n)
        .map(|i| NewRecord::new(inspection(&format!("{gw}-SN-{i:04}"), 1.0 + i as f64)))
        .collect();
    agent.journal().append(records).await.expect("append");
    eventually(WAIT, "delivered", || delivered(dir)).await;
    agent.stop("test").await;
}

/// [`deliver_with`] through the NATS sink to `url`.
async fn deliver(dir: &Path, gw: &str, url: &str, extra: &str, n: usize) {
    deliver_with(dir, gw, &sink_toml(gw, &[url.to_string()], extra), n).await;
}

/// `fleet verify --json`: exit code and report.
fn fleet_verify(url: &str) -> (i32, serde_json::Value, String) {
    let run = |json: bool| {
        let mut cmd = Command::new(agent_bin());
        cmd.args(["fleet", "verify", "--nats", url, "--stream", "QUALITY"]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("fleet verify")
    };
    let out = run(true);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = String::from_utf8_lossy(&run(false).stdout).into_owned();
    (out.status.code().unwrap_or(-1), report, text)
}

/// One gateway's part of a `fleet verify --json` report.
pub(crate) fn gateway<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["gateways"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gateway"] == id))
        .unwrap_or_else(|| panic!("gateway {id} in {report:#}"))
}

fn problems(report: &serde_json::Value, id: &str) -> Vec<String> {
    gateway(report, id)["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_and_a_reforged_journal_are_named_and_the_third_gateway_is_clean() {
    let server = NatsServer::start();
    let url = server.url();
    let stream = "create_stream = { subjects = [\"quality.>\"], duplicate_window_s = 600 }";
    // gw-1 signs and publishes structured CloudEvents; gw-2 and gw-3 binary ones, unsigned.
    let signed = format!("{stream}\nmode = \"structured\"\n[journal]\nsign = true");
    let dirs = [tempdir(), tempdir(), tempdir()];
    deliver(dirs[0].path(), "gw-1", &url, &signed, 100).await;
    deliver(dirs[1].path(), "gw-2", &url, stream, 100).await;
    deliver(dirs[2].path(), "gw-3", &url, stream, 100).await;

    let (code, report, text) = fleet_verify(&url);
    assert_eq!(code, 0, "{text}");
    for gw in ["gw-1", "gw-2", "gw-3"] {
        let g = gateway(&report, gw);
        let head = Store::open_ro(
            &dirs[gw[3..].parse::<usize>().expect("n") - 1]
                .path()
                .join("data"),
        )
        .expect("journal")
        .head()
        .expect("head");
        assert_eq!(g["last_seq"], head.seq, "{gw}");
        assert_eq!(
            g["last_hash"], head.hash,
            "{gw}: the head as the stream holds it"
        );
        assert_eq!(g["first_seq"], 1);
    }
    assert!(gateway(&report, "gw-1")["signed"].as_u64() > Some(100));
    assert!(gateway(&report, "gw-1")["key_from"]
        .as_str()
        .is_some_and(|k| k.starts_with("announced at seq")));
    assert!(text.contains("every gateway's chain verified"), "{text}");

    // gw-2: the newest 5 records deleted, the cursor moved back, the head seal removed.
    let data2 = dirs[1].path().join("data");
    let head2 = Store::open_ro(&data2)
        .expect("journal")
        .head()
        .expect("head")
        .seq;
    {
        let conn = crate::support::forger::forge(&data2);
        conn.execute("DELETE FROM records WHERE seq > ?1", [head2 - 5])
            .expect("delete");
        conn.execute("UPDATE sink_cursors SET acked_seq = ?1", [head2 - 5])
            .expect("rewind");
        let _ = std::fs::remove_file(data2.join(shopfloor_agent::journal::seal::SEAL_FILE));
    }
    // gw-3: record 50's work order changed, every hash from there re-computed.
    let data3 = dirs[2].path().join("data");
    {
        let conn = crate::support::forger::forge(&data3);
        conn.execute(
            "UPDATE records SET body = replace(body, 'WO-1001', 'WO-6666') WHERE seq = 50",
            [],
        )
        .expect("edit");
        crate::support::forger::rechain(&conn, 50, |_, old| old);
        let _ = std::fs::remove_file(data3.join(shopfloor_agent::journal::seal::SEAL_FILE));
    }
    for (dir, gw) in [(&dirs[1], "gw-2"), (&dirs[2], "gw-3")] {
        let verified = shopfloor_agent::audit::verify::verify(
            &Store::open_ro(&dir.path().join("data")).expect("journal"),
        )
        .expect("verify");
        assert!(
            verified.ok(),
            "{gw}'s forged journal verifies on its own: {verified:?}"
        );
    }
    // Both gateways go on and deliver again.
    deliver(dirs[1].path(), "gw-2", &url, stream, 5).await;
    deliver(dirs[2].path(), "gw-3", &url, stream, 5).await;

    let (code, report, text) = fleet_verify(&url);
    assert_eq!(code, 1, "{text}");
    assert!(problems(&report, "gw-1").is_empty(), "{text}");
    let p2 = problems(&report, "gw-2");
    assert!(
        p2.iter().any(|p| p.contains(&format!(
            "seq {} arrived twice with different hashes",
            head2 - 4
        ))),
        "{text}"
    );
    let p3 = problems(&report, "gw-3");
    assert!(
        p3.iter().any(|p| p.contains("does not chain to seq")),
        "{text}"
    );
    assert!(text.contains("gw-2") && text.contains("BROKEN"), "{text}");
    assert!(text.contains("FLEET CHECK FAILED"), "{text}");
}

#[test]
fn an_unreachable_stream_is_exit_69_with_the_reason() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = Command::new(agent_bin())
        .args([
            "fleet",
            "verify",
            "--nats",
            &format!("nats://127.0.0.1:{port}"),
            "--stream",
            "QUALITY",
        ])
        .output()
        .expect("fleet verify");
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

/// The connection dropped in the middle of the read: the messages in flight are gone (the check's
/// consumer takes no acks, so nothing is sent again). The check must not report them missing from
/// the gateway's chain, which would accuse a clean gateway: it sees the connection drop and stops,
/// exit 69, asking to run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_lost_on_the_way_stop_the_check_instead_of_accusing_a_gateway() {
    let server = NatsServer::start();
    let url = server.url();
    let dir = tempdir();
    let stream = "create_stream = { subjects = [\"quality.>\"] }";
    deliver(dir.path(), "gw-1", &url, stream, 3_000).await;
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let proxy = crate::support::proxy::Proxy::start(([127, 0, 0, 1], port).into()).await;
    let via = format!("nats://{}", proxy.addr);
    let (code, _, text) = tokio::task::spawn_blocking({
        let via = via.clone();
        move || fleet_verify(&via)
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "clean through the relay: {text}");

    // About a third of the stream, then the connection is cut mid-message.
    proxy.cut_after(1_000_000);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(agent_bin())
            .args(["fleet", "verify", "--nats", &via, "--stream", "QUALITY"])
            .output()
            .expect("fleet verify")
    })
    .await
    .expect("join");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(69), "{stdout}{stderr}");
    assert!(
        stderr.contains("messages on the way were lost") && stderr.contains("run the check again"),
        "{stderr}"
    );
    assert!(!stdout.contains("BROKEN"), "{stdout}");
}
