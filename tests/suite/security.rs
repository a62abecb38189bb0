//! Attacks: each test performs one finding of the security review against the agent and asserts
//! that it fails. The finding is named in each test's comment ("finding N" as numbered in the
//! review). Each attack was run with its fix reverted and failed, except those whose comment says
//! the attack was caught already, and the positive checks beside them (a signed journal still
//! verifies after retention; the unit's memory limits).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use super::journal::inspection;
use crate::support::forger::{forge, rechain};
use crate::support::hostile::{self, Hostile};
use crate::support::{config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(20);

/// Every journaled body of `kind`.
fn bodies(dir: &std::path::Path, kind: &str) -> Vec<Value> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.bodies_of_kind(kind))
        .unwrap_or_default()
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .collect()
}

/// The `connection*` source state of `source` (`DOWN since …` while an outage is open).
fn connection(dir: &std::path::Path, source: &str, key: &str) -> Option<String> {
    crate::support::source_state_value(&dir.join("data"), source, key)
}

/// A REST source `erp` on `url` with basic auth and an API key header, one endpoint per name, each
/// journaling its rows as travelers; failed polls wait a minute, so a test counts one poll.
fn rest_agent_toml(url: &str, endpoints: &[(&str, &str)]) -> String {
    let mut toml = format!(
        r#"
[agent]
gateway_id = "gw-sec"
data_dir = "data"

[sources.erp]
type = "rest"
url = "{url}"
poll_interval_ms = 60000
retry_initial_ms = 60000
retry_max_ms = 60000
auth = {{ type = "basic", username = "erp-reader", password = "erp-secret" }}
headers = {{ "X-Api-Key" = "api-key-123" }}
"#
    );
    for (name, extra) in endpoints {
        let lower = name.to_lowercase();
        toml.push_str(&format!(
            r#"
[[sources.erp.endpoints]]
name = "{name}"
path = "{name}"
key = "/ID"
{extra}

[[records]]
name = "rows_{lower}"
kind = "traveler"
trigger = {{ type = "row", source = "erp", endpoint = "{name}" }}
dedupe_key = "{name}/{{/ID}}"
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}
"#
        ));
    }
    toml
}

/// Finding 1: an ERP answer whose `@odata.nextLink` points to another origin made the agent send
/// its Authorization header and API key there, and journal what that host returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_next_link_to_another_origin_gets_no_credentials_and_no_rows() {
    let thief = Hostile::start(|_, _| {
        hostile::json(
            200,
            json!({ "value": [{ "ID": "X", "workOrder": "WO-STOLEN" }] }),
        )
    })
    .await;
    let steal = format!("{}steal", thief.url());
    let erp = Hostile::start(move |req, _| {
        if req.target.starts_with("/WorkOrders") {
            hostile::json(
                200,
                json!({ "value": [{ "ID": "1", "workOrder": "WO-1" }], "@odata.nextLink": steal }),
            )
        } else {
            hostile::json(
                200,
                json!({ "value": [{ "ID": "2", "workOrder": "WO-2" }] }),
            )
        }
    })
    .await;
    let dir = tempdir();
    let toml = rest_agent_toml(&erp.url(), &[("WorkOrders", ""), ("Other", "")]);
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "the endpoint is down for the foreign link", || {
        connection(dir.path(), "erp", "connection:WorkOrders")
            .is_some_and(|c| c.starts_with("DOWN") && c.contains("another origin"))
    })
    .await;
    eventually(WAIT, "the other endpoint's row", || {
        bodies(dir.path(), "traveler")
            .iter()
            .any(|b| b["subject"]["work_order"] == "WO-2")
    })
    .await;
    agent.stop("test").await;
    assert!(
        thief.requests().is_empty(),
        "the foreign origin was sent a request: {:?}",
        thief.requests()
    );
    let orders: Vec<Value> = bodies(dir.path(), "traveler")
        .iter()
        .map(|b| b["subject"]["work_order"].clone())
        .collect();
    assert!(orders.contains(&json!("WO-1")), "{orders:?}");
    assert!(!orders.contains(&json!("WO-STOLEN")), "{orders:?}");
    // The outage is the endpoint's, not the source's (finding 13): one gap, naming it.
    let gaps = bodies(dir.path(), "gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let reason = gaps[0]["gap"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("endpoint WorkOrders"), "{reason}");
    assert!(reason.contains("another origin"), "{reason}");
    assert!(
        !reason.contains("erp-secret") && !reason.contains("api-key-123"),
        "{reason}"
    );
}

/// Finding 1: a next link back to a page already read (A→B→A) made 6,661 requests in 10 s; more
/// pages than any poll should read kept the agent busy the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_paging_cycles_and_endless_pages_stop_the_poll() {
    let erp = Hostile::start(|req, _| {
        let page: u64 = req
            .target
            .split("p=")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let (row, next) = if req.target.starts_with("/Loop") {
            let next = if page == 1 { "Loop?p=2" } else { "Loop" };
            (page, next.to_string())
        } else {
            (100 + page, format!("Endless?p={}", page + 1))
        };
        hostile::json(
            200,
            json!({ "value": [{ "ID": row.to_string(), "workOrder": format!("WO-{row}") }], "@odata.nextLink": next }),
        )
    })
    .await;
    let dir = tempdir();
    let toml = rest_agent_toml(&erp.url(), &[("Loop", ""), ("Endless", "max_pages = 5")]);
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "both endpoints down", || {
        connection(dir.path(), "erp", "connection:Loop").is_some_and(|c| c.contains("already read"))
            && connection(dir.path(), "erp", "connection:Endless")
                .is_some_and(|c| c.contains("max_pages (5)"))
    })
    .await;
    // Give a looping agent the time to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop("test").await;
    assert_eq!(
        erp.count("/Loop"),
        2,
        "A, B, then the link back to A is refused"
    );
    assert_eq!(erp.count("/Endless"), 5, "max_pages");
    assert_eq!(bodies(dir.path(), "traveler").len(), 2 + 5);
}

/// Finding 8: a 307 from the QMS sent the batch and its API key to another origin, and the sink
/// counted it delivered. The same for the REST source and its credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_by_the_sink_or_the_rest_source() {
    let thief = Hostile::start(|_, _| hostile::json(200, json!({ "value": [] }))).await;
    let to = format!("{}steal", thief.url());
    let qms = Hostile::start(move |_, _| hostile::redirect(307, &to)).await;
    let to = format!("{}steal", thief.url());
    let erp = Hostile::start(move |_, _| hostile::redirect(302, &to)).await;
    let dir = tempdir();
    let toml = format!(
        "{}\n[sinks.qms]\ntype = \"http\"\nurl = \"{}events\"\nretry_initial_ms = 50\nretry_max_ms = 200\nheaders = {{ \"X-Api-Key\" = \"qms-key\" }}\n",
        rest_agent_toml(&erp.url(), &[("WorkOrders", "")]),
        qms.url()
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    append_inspections(&agent, 1, "SN").await;
    eventually(WAIT, "the sink retried the redirect", || {
        qms.requests().len() >= 3
    })
    .await;
    eventually(WAIT, "the REST endpoint failed on its redirect", || {
        erp.count("/WorkOrders") >= 1
    })
    .await;
    // A window for a wrong delivery to show itself (a negative check: nothing may arrive).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cursors = Store::open_ro(&dir.path().join("data"))
        .and_then(|s| s.sink_cursors())
        .expect("cursors");
    agent.stop("test").await;
    assert!(
        thief.requests().is_empty(),
        "a redirect was followed: {:?}",
        thief.requests()
    );
    let qms_cursor = cursors.iter().find(|c| c.sink == "qms").expect("qms");
    assert_eq!(qms_cursor.acked_seq, 0, "nothing counts as delivered");
    let error = qms_cursor.last_error.clone().unwrap_or_default();
    assert!(error.contains("redirect"), "{error}");
}

/// Finding 11: a 1.5 GB error body from the QMS drove the agent to 3.7 GiB. Here the body never
/// ends: without a cap the sink reads it until its timeout, with the cap it reads its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_answer_is_read_only_to_its_cap() {
    let qms = Hostile::start(|_, peer| hostile::endless_body(500, peer)).await;
    let dir = tempdir();
    let toml = format!(
        "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"{}events\"\nretry_initial_ms = 50\nretry_max_ms = 100\ntimeout_ms = 2000\n",
        qms.url()
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    append_inspections(&agent, 1, "SN").await;
    eventually(WAIT, "three attempts", || qms.requests().len() >= 3).await;
    agent.stop("test").await;
    let streamed = qms.streamed.load(Ordering::Relaxed);
    // Each attempt reads 16 KiB; what the transport buffers beyond that (socket buffers, a chunk
    // in flight) is a few MiB at most per connection.
    assert!(
        streamed < 64 << 20,
        "{} MiB of error body were pulled for three attempts",
        streamed >> 20
    );
}

/// Finding 3: `url = "http://user:pw@host/…"` put the password into every record's provenance,
/// gap reasons, logs and the unauthenticated `/healthz`. `validate` refuses it, naming the key and
/// not the password, also when the URL comes from a secret reference.
#[test]
fn a_url_with_user_info_is_refused_without_showing_the_password() {
    let dir = tempdir();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\ngateway_id = \"gw-sec\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"http://qms:hunter2@127.0.0.1:9/events\"\n\n[sinks.backup]\ntype = \"http\"\nurl = \"${env:BACKUP_URL}\"\n",
    )
    .expect("config");
    let out = std::process::Command::new(crate::support::agent_bin())
        .arg("--config")
        .arg(&config)
        .arg("validate")
        .env("BACKUP_URL", "https://svc:s3cr3t-env@127.0.0.1:9/events")
        .output()
        .expect("validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("sinks.qms.url: the URL carries user info"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sinks.backup.url: the URL carries user info"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: remove it from the URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("s3cr3t-env"),
        "{stderr}"
    );
}

/// Finding 3: a secret in a URL's query (`?code=…`, as Azure Functions and signed URLs carry it)
/// reached logs, `status`, `/healthz` and records. The real binary runs against a QMS that answers
/// 503; nothing it shows or journals carries the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_url_query_is_never_shown_or_journaled() {
    let qms = Hostile::start(|_, _| hostile::json(503, json!({ "error": "busy" }))).await;
    let dir = tempdir();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"{}events?code=s3cr3t-code&plant=4\"\nretry_initial_ms = 50\nretry_max_ms = 100\n",
            data.display(),
            qms.url()
        ),
    )
    .expect("config");
    let log = dir.path().join("stderr.log");
    let mut child = crate::support::KillOnDrop(
        std::process::Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("run"),
    );
    eventually(WAIT, "the sink's failure in the journal", || {
        Store::open_ro(&data)
            .and_then(|s| s.sink_cursors())
            .is_ok_and(|c| c.iter().any(|c| c.last_error.is_some()))
    })
    .await;
    // The agent bound port 0 for its metrics and says where.
    let metrics = std::fs::read_to_string(&log)
        .ok()
        .and_then(|l| {
            l.split("health on http://")
                .nth(1)
                .and_then(|r| r.split('/').next().map(str::to_string))
        })
        .expect("the log names the health address");
    shopfloor_agent::transport::install_crypto_provider();
    let health = reqwest::get(format!("http://{metrics}/healthz"))
        .await
        .expect("healthz")
        .text()
        .await
        .expect("body");
    let status = std::process::Command::new(crate::support::agent_bin())
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .expect("status");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(health.contains("qms"), "{health}");
    assert!(logs.contains("code=REDACTED"), "{logs}");
    let store = Store::open_ro(&data).expect("journal");
    let mut shown = vec![
        ("logs", logs),
        ("healthz", health),
        (
            "status",
            String::from_utf8_lossy(&status.stdout).into_owned(),
        ),
    ];
    for kind in ["agent_event", "gap"] {
        for b in store.bodies_of_kind(kind).expect("bodies") {
            shown.push(("record", b));
        }
    }
    for c in store.sink_cursors().expect("cursors") {
        shown.push(("sink error", c.last_error.unwrap_or_default()));
    }
    for (what, text) in shown {
        assert!(
            !text.contains("s3cr3t-code"),
            "{what} shows the secret: {text}"
        );
    }
}

/// The seqs in the file sink's active file.
fn file_seqs(path: &std::path::Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["seq"].as_i64())
        .collect()
}

const FILE_SINK: &str = "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sinks.audit]\ntype = \"file\"\npath = \"out/records.jsonl\"\n";

async fn append_inspections(agent: &Agent, n: usize, prefix: &str) {
    let records = (0..n)
        .map(|i| {
            shopfloor_agent::journal::NewRecord::new(inspection(&format!("{prefix}-{i}"), 25.0))
        })
        .collect();
    agent.journal().append(records).await.expect("append");
}

/// Finding 4: a line `{"seq":1000000,…}` appended to the sink's file made the sink skip every
/// later record while `status` said backlog 0. The journal's cursor is the truth: a file whose last
/// line the journal does not confirm is moved aside and delivery goes on from the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_line_in_the_file_sink_output_skips_nothing() {
    let dir = tempdir();
    let out = dir.path().join("out/records.jsonl");
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start");
    append_inspections(&agent, 5, "A").await;
    eventually(WAIT, "the first records in the file", || {
        file_seqs(&out).len() >= 6
    })
    .await;
    agent.stop("test").await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .and_then(|mut f| {
            std::io::Write::write_all(
                &mut f,
                b"{\"seq\":1000000,\"prev_hash\":\"00\",\"hash\":\"00\",\"record\":{}}\n",
            )
        })
        .expect("forge");
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start again");
    append_inspections(&agent, 5, "B").await;
    let head = agent.journal().durable_seq();
    eventually(
        WAIT,
        "every record after the cursor in the new file",
        || file_seqs(&out).last() == Some(&head),
    )
    .await;
    agent.stop("test").await;
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    // The stop record came after `head` and was delivered while the agent stopped.
    let head = store.head().expect("head").seq;
    let events: Vec<Value> = store
        .bodies_of_kind("agent_event")
        .expect("events")
        .iter()
        .map(|b| serde_json::from_str(b).expect("json"))
        .filter(|e: &Value| e["agent_event"]["event"] == "sink_output_set_aside")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .expect("out")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".set-aside-"))
        .collect();
    assert_eq!(aside.len(), 1, "the forged file is kept for inspection");
    // The new file holds every record from the cursor on, each once, chained.
    let seqs = file_seqs(&out);
    let first = seqs[0];
    assert_eq!(seqs, (first..=head).collect::<Vec<_>>());
    let cursor = store
        .sink_cursors()
        .expect("cursors")
        .into_iter()
        .find(|c| c.sink == "audit")
        .expect("audit");
    assert_eq!(cursor.acked_seq, head);
}

/// Finding 4: the journal moved aside (as the agent's own "damaged journal" hint advises) left a
/// file sink whose output ran far ahead of the new journal, and it skipped every new record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_journal_behind_the_file_sink_output_skips_nothing() {
    let dir = tempdir();
    let out = dir.path().join("out/records.jsonl");
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start");
    append_inspections(&agent, 30, "A").await;
    let old_head = agent.journal().durable_seq();
    eventually(WAIT, "the old journal in the file", || {
        file_seqs(&out).last() == Some(&old_head)
    })
    .await;
    agent.stop("test").await;
    std::fs::rename(dir.path().join("data"), dir.path().join("data.damaged")).expect("move");
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start on a new journal");
    append_inspections(&agent, 3, "B").await;
    let head = agent.journal().durable_seq();
    assert!(head < old_head);
    eventually(WAIT, "the new journal's records in a new file", || {
        file_seqs(&out) == (1..=head).collect::<Vec<_>>()
    })
    .await;
    agent.stop("test").await;
}

// ---------------------------------------------------------------------------------------------
// Finding 2: the journal shortened or re-forged without `verify` noticing.

const SIGNED: &str = "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[journal]\nsign = true\n\n[sinks.audit]\ntype = \"file\"\npath = \"out/records.jsonl\"\n";

/// A signed journal of 20 inspections (plus the agent's own records), every record delivered to a
/// file sink, stopped cleanly (so sealed). Returns the data directory and the public key.
async fn signed_journal(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let agent = Agent::start(config(dir, SIGNED)).await.expect("start");
    append_inspections(&agent, 20, "SN").await;
    let head = agent.journal().durable_seq();
    let data = dir.join("data");
    eventually(WAIT, "everything delivered", || {
        Store::open_ro(&data)
            .and_then(|s| s.sink_cursors())
            .is_ok_and(|c| c.iter().all(|c| c.acked_seq >= head))
    })
    .await;
    agent.stop("test").await;
    let key = shopfloor_agent::journal::signing::Signer::load(&data)
        .expect("key")
        .expect("made")
        .public_key_hex();
    (data, key)
}

/// `verify` with `key`: the seq and words of the first problem, if any.
fn verify_with(data: &std::path::Path, key: Option<&str>) -> Option<(i64, String)> {
    let store = Store::open_ro(data).expect("journal");
    shopfloor_agent::audit::verify::verify_signed(&store, key)
        .expect("verify")
        .problem
        .map(|p| (p.seq, p.what))
}

fn remove_seal(data: &std::path::Path) {
    std::fs::remove_file(data.join(shopfloor_agent::journal::seal::SEAL_FILE)).expect("seal");
}

/// A row rewritten and re-chained with its signature (and those after it) set to NULL passed
/// ("2 signatures verified"). With signing on, a row without a signature after a signed one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_row_with_its_signature_removed_is_named() {
    let dir = tempdir();
    let (data, key) = signed_journal(dir.path()).await;
    assert_eq!(verify_with(&data, Some(&key)), None, "the journal verifies");
    let conn = forge(&data);
    conn.execute(
        "UPDATE records SET body = replace(body, '\"SN-9\"', '\"SN-X\"') WHERE body LIKE '%\"SN-9\"%'",
        [],
    )
    .expect("edit");
    let seq: i64 = conn
        .query_row(
            "SELECT seq FROM records WHERE body LIKE '%SN-X%'",
            [],
            |r| r.get(0),
        )
        .expect("edited row");
    rechain(&conn, seq, |_, _| None);
    remove_seal(&data); // the forger cannot sign a new one
    let (at, what) = verify_with(&data, Some(&key)).expect("found");
    assert_eq!(at, seq, "{what}");
    assert!(what.contains("carries no signature"), "{what}");
    // Every signature stripped: the key's own `signing_key_created` event says records are signed
    // from there on.
    conn.execute("UPDATE records SET signature = NULL", [])
        .expect("strip");
    let (_, what) = verify_with(&data, Some(&key)).expect("found");
    assert!(what.contains("carries no signature"), "{what}");
    // And that event removed as well (the chain rebuilt without it): nothing is signed at all.
    conn.execute(
        "DELETE FROM records WHERE body LIKE '%signing_key_created%'",
        [],
    )
    .expect("drop the event");
    let bodies: Vec<String> = conn
        .prepare("SELECT body FROM records ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("bodies");
    conn.execute("DELETE FROM records", []).expect("clear");
    conn.execute("DELETE FROM sink_cursors", [])
        .expect("cursors");
    let mut prev = [0u8; 32];
    for (i, body) in bodies.iter().enumerate() {
        let hash = shopfloor_agent::journal::chain::chain_hash_raw(&prev, body.as_bytes());
        conn.execute(
            "INSERT INTO records(seq, kind, appended_at, body, hash) VALUES (?1, json_extract(?2, '$.kind'), 0, ?2, ?3)",
            rusqlite::params![i as i64 + 1, body, &hash[..]],
        )
        .expect("insert");
        prev = hash;
    }
    assert_eq!(verify_with(&data, None), None, "the chain alone holds");
    let (_, what) = verify_with(&data, Some(&key)).expect("found");
    assert!(what.contains("no record carries a signature"), "{what}");
}

/// Deleting the newest rows passed (the sink cursors still pointed past the new head); after a
/// restart the agent appended new records under the deleted seqs, which every sink believed it
/// had, so they never reached the QMS or the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_rows_is_found_and_run_refuses_to_reuse_their_seqs() {
    let dir = tempdir();
    let (data, key) = signed_journal(dir.path()).await;
    let head = Store::open_ro(&data)
        .expect("journal")
        .head()
        .expect("head")
        .seq;
    let conn = forge(&data);
    conn.execute("DELETE FROM records WHERE seq > ?1", [head - 5])
        .expect("delete");
    // By the sink's cursor (the seal removed too).
    std::fs::copy(
        data.join(shopfloor_agent::journal::seal::SEAL_FILE),
        dir.path().join("seal.kept"),
    )
    .expect("keep");
    remove_seal(&data);
    let (at, what) = verify_with(&data, None).expect("found");
    assert_eq!(at, head - 4, "{what}");
    assert!(
        what.contains(&format!("records after seq {} are missing", head - 5))
            && what.contains("sink audit"),
        "{what}"
    );
    let refused = Agent::start(config(dir.path(), SIGNED)).await;
    let err = refused.err().expect("run refuses").to_string();
    assert!(
        err.contains("records after seq") && err.contains("move the data directory"),
        "{err}"
    );
    // By the seal, when the forger also moved the cursor back.
    conn.execute("UPDATE sink_cursors SET acked_seq = ?1", [head - 5])
        .expect("cursor");
    std::fs::copy(
        dir.path().join("seal.kept"),
        data.join(shopfloor_agent::journal::seal::SEAL_FILE),
    )
    .expect("restore");
    let (_, what) = verify_with(&data, Some(&key)).expect("found");
    assert!(what.contains("the head seal"), "{what}");
    assert!(Agent::start(config(dir.path(), SIGNED)).await.is_err());
    // Nothing was appended by the refused starts.
    let now = Store::open_ro(&data)
        .expect("journal")
        .head()
        .expect("head")
        .seq;
    assert_eq!(now, head - 5);
}

/// Deleting the oldest rows and inserting a matching retention checkpoint passed. With signing on
/// the checkpoint carries a signature the forger cannot make; a record's signature does not pass
/// for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_oldest_rows_behind_a_forged_checkpoint_is_named() {
    let dir = tempdir();
    let (data, key) = signed_journal(dir.path()).await;
    let conn = forge(&data);
    let (hash, signature): (Vec<u8>, String) = conn
        .query_row(
            "SELECT hash, signature FROM records WHERE seq = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row 5");
    let hex = shopfloor_agent::journal::chain::to_hex(&hash);
    conn.execute("DELETE FROM records WHERE seq <= 5", [])
        .expect("delete");
    conn.execute(
        "INSERT INTO checkpoints(seq, hash, pruned_records, pruned_at) VALUES (5, ?1, 5, '2026-01-01T00:00:00Z')",
        [&hex],
    )
    .expect("checkpoint");
    let (at, what) = verify_with(&data, Some(&key)).expect("found");
    assert_eq!(at, 5, "{what}");
    assert!(what.contains("checkpoint carries no signature"), "{what}");
    conn.execute("UPDATE checkpoints SET signature = ?1", [&signature])
        .expect("borrowed signature");
    let (at, what) = verify_with(&data, Some(&key)).expect("found");
    assert_eq!(at, 5, "{what}");
    assert!(
        what.contains("checkpoint's signature does not verify"),
        "{what}"
    );
}

/// Two rows' bodies swapped: named at the first of them, also when re-chained (by the signature).
/// This attack was caught already before the review (the chain, the signatures); the test keeps it so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_two_rows_bodies_is_named() {
    let dir = tempdir();
    let (data, key) = signed_journal(dir.path()).await;
    let conn = forge(&data);
    let body = |seq: i64| -> String {
        conn.query_row("SELECT body FROM records WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("body")
    };
    let (a, b) = (body(8), body(9));
    conn.execute("UPDATE records SET body = ?1 WHERE seq = 8", [&b])
        .expect("swap");
    conn.execute("UPDATE records SET body = ?1 WHERE seq = 9", [&a])
        .expect("swap");
    let (at, what) = verify_with(&data, None).expect("found");
    assert_eq!(at, 8, "{what}");
    // Re-chained, keeping the old signatures: the chain holds, the signature at seq 8 does not.
    rechain(&conn, 8, |_, old| old);
    remove_seal(&data);
    let (at, what) = verify_with(&data, Some(&key)).expect("found");
    assert_eq!(at, 8, "{what}");
    assert!(what.contains("signature does not verify"), "{what}");
}

/// The other side of the forged checkpoint: retention with signing on leaves a signed checkpoint,
/// and the journal verifies with the key after the prune and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_journal_still_verifies_after_retention() {
    use shopfloor_agent::journal::{signing::Signer, Journal, JournalOptions};
    let dir = tempdir();
    let (signer, _) = Signer::load_or_create(dir.path()).expect("key");
    let key = signer.public_key_hex();
    let mut opts = JournalOptions::new(dir.path());
    opts.retention_days = 0;
    opts.sinks = vec!["qms".into()];
    opts.signer = Some(std::sync::Arc::new(signer));
    let ctx = shopfloor_agent::records::RecordContext {
        gateway_id: "gw-sec".into(),
        config_sha256: "0".repeat(64),
    };
    let journal = Journal::open(opts, ctx).expect("open");
    journal.register_sink("qms").await.expect("register");
    let records = (0..30)
        .map(|i| shopfloor_agent::journal::NewRecord::new(inspection(&format!("SN-{i}"), 25.0)))
        .collect();
    journal.append(records).await.expect("append");
    journal.ack("qms", 20).await.expect("ack");
    crate::support::past_this_millisecond().await;
    assert_eq!(
        journal.prune().await.expect("prune").checkpoint_seq,
        Some(20)
    );
    journal.close().await;
    assert_eq!(verify_with(dir.path(), Some(&key)), None);
    let sealed = shopfloor_agent::journal::seal::read(dir.path())
        .expect("seal")
        .expect("written at close");
    assert_eq!(sealed.seq, 30);
    assert!(sealed.signature.is_some());
}

/// The head seal is also written while the journal runs (a SIGKILL leaves no clean stop), and only
/// for durable records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_seal_follows_the_journal_while_it_runs() {
    use shopfloor_agent::journal::{Journal, JournalOptions};
    let dir = tempdir();
    let mut opts = JournalOptions::new(dir.path());
    opts.seal_interval = Duration::ZERO;
    let ctx = shopfloor_agent::records::RecordContext {
        gateway_id: "gw-sec".into(),
        config_sha256: "0".repeat(64),
    };
    let journal = Journal::open(opts, ctx).expect("open");
    for i in 0..5 {
        journal
            .append(vec![shopfloor_agent::journal::NewRecord::new(inspection(
                &format!("SN-{i}"),
                25.0,
            ))])
            .await
            .expect("append");
    }
    let seal = shopfloor_agent::journal::seal::read(dir.path())
        .expect("seal")
        .expect("written while running");
    // It trails the writer by a commit or two: the fsync of the newest one may not be done.
    assert!(
        seal.seq >= 1 && seal.seq <= journal.durable_seq(),
        "{seal:?}"
    );
    assert_eq!(seal.signature, None, "no signing: no signature");
    journal.close().await;
    let seal = shopfloor_agent::journal::seal::read(dir.path())
        .expect("seal")
        .expect("written at close");
    assert_eq!(seal.seq, 5);
}

/// Finding 12: two agents on one data directory corrupted each other (a false "unclean shutdown"
/// gap, then `UNIQUE constraint failed`, a lost stop record). The second `run` is refused, naming
/// the first one's PID; read-only commands work beside it, and `status` tells running from crashed.
#[test]
fn a_second_agent_on_the_same_data_directory_is_refused() {
    use std::process::{Command, Stdio};
    let dir = tempdir();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .expect("config");
    let cli = |args: &[&str]| {
        Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("cli")
    };
    let mut first = crate::support::KillOnDrop(
        Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    let pid = first.0.id();
    crate::support::eventually_blocking(WAIT, "the first agent's start record", || {
        Store::open_ro(&data)
            .and_then(|s| s.head())
            .is_ok_and(|h| h.seq >= 1)
    });
    let head = Store::open_ro(&data)
        .expect("journal")
        .head()
        .expect("head");
    let mut second = crate::support::KillOnDrop(
        Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(Stdio::piped())
            .spawn()
            .expect("run"),
    );
    let mut code = None;
    crate::support::eventually_blocking(WAIT, "the second agent to give up", || {
        code = second.0.try_wait().expect("wait").map(|s| s.code());
        code.is_some()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(second.0.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read");
    assert_eq!(code, Some(Some(75)), "{stderr}");
    assert!(
        stderr.contains(&format!("another shopfloor-agent (pid {pid}) is running")),
        "{stderr}"
    );
    assert_eq!(
        Store::open_ro(&data)
            .expect("journal")
            .head()
            .expect("head"),
        head,
        "the second agent wrote nothing"
    );
    let status = String::from_utf8_lossy(&cli(&["status"]).stdout).into_owned();
    assert!(status.contains(&format!("running (pid {pid})")), "{status}");
    assert_eq!(cli(&["verify"]).status.code(), Some(0));
    first.0.kill().expect("kill -9");
    first.0.wait().expect("reaped");
    let status = String::from_utf8_lossy(&cli(&["status"]).stdout).into_owned();
    assert!(
        status.contains("stopped without a clean shutdown"),
        "{status}"
    );
}

// ---------------------------------------------------------------------------------------------
// Findings 9 and 14: evidence packages.

/// A journal of 10 inspections, stopped; and a full export of it in `dir/package`.
async fn exported(dir: &std::path::Path) -> std::path::PathBuf {
    let agent = Agent::start(config(dir, FILE_SINK)).await.expect("start");
    append_inspections(&agent, 10, "SN").await;
    agent.stop("test").await;
    let package = dir.join("package");
    let store = Store::open_ro(&dir.join("data")).expect("journal");
    export_to(&store, &package).expect("export");
    assert!(shopfloor_agent::audit::package::verify_package(&package, None).ok());
    package
}

fn export_to(
    store: &Store,
    out: &std::path::Path,
) -> Result<shopfloor_agent::audit::export::Exported, shopfloor_agent::audit::export::ExportError> {
    let now = shopfloor_agent::time::now();
    shopfloor_agent::audit::export::export(
        store,
        &shopfloor_agent::audit::export::ExportQuery {
            from: now - time::Duration::hours(1),
            to: now + time::Duration::hours(1),
            work_order: None,
        },
        out,
    )
}

/// Rewrites the manifest's SHA-256 of `name` after an edit (as a forger would).
fn rehash(package: &std::path::Path, name: &str) {
    let path = package.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    let bytes = std::fs::read(package.join(name)).expect("file");
    manifest["files"][name] = json!(shopfloor_agent::journal::chain::sha256_hex(&bytes));
    std::fs::write(&path, manifest.to_string()).expect("write");
}

/// Finding 9: a seq marked `included: false` in a full export, its line removed, still said intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_marked_left_out_of_a_full_export_is_named() {
    let dir = tempdir();
    let package = exported(dir.path()).await;
    let chain = std::fs::read_to_string(package.join("chain.jsonl")).expect("chain");
    let mut entries: Vec<Value> = chain
        .lines()
        .map(|l| serde_json::from_str(l).expect("entry"))
        .collect();
    let victim = entries
        .iter_mut()
        .find(|e| e["kind"] == "inspection")
        .expect("an inspection");
    victim["included"] = json!(false);
    let (seq, id) = (victim["seq"].clone(), victim["id"].clone());
    let chain: String = entries.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(package.join("chain.jsonl"), chain).expect("write");
    let records: String = std::fs::read_to_string(package.join("records.jsonl"))
        .expect("records")
        .lines()
        .filter(|l| !l.contains(id.as_str().unwrap_or("?")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(package.join("records.jsonl"), records).expect("write");
    rehash(&package, "chain.jsonl");
    rehash(&package, "records.jsonl");
    let report = shopfloor_agent::audit::package::verify_package(&package, None);
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("(seq {seq}): marked as left out"))),
        "{:?}",
        report.problems
    );
}

/// Finding 9: two symbolic links to `.` hung `verify --package`; an absolute path in the manifest
/// made it hash `/etc/passwd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_with_links_or_paths_outside_it_is_refused_without_hanging() {
    let dir = tempdir();
    let package = exported(dir.path()).await;
    std::os::unix::fs::symlink(".", package.join("a")).expect("link");
    std::os::unix::fs::symlink(".", package.join("b")).expect("link");
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "not part of the package").expect("outside");
    let path = package.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    let sha = shopfloor_agent::journal::chain::sha256_hex(b"not part of the package");
    manifest["files"][outside.display().to_string()] = json!(sha);
    manifest["files"]["../outside.txt"] = json!(sha);
    std::fs::write(&path, manifest.to_string()).expect("write");
    let (tx, rx) = std::sync::mpsc::channel();
    let p = package.clone();
    std::thread::spawn(move || {
        let _ = tx.send(shopfloor_agent::audit::package::verify_package(&p, None));
    });
    let report = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("verify --package returned");
    let problems = report.problems.join("\n");
    assert!(problems.contains("a: a symbolic link"), "{problems}");
    assert!(problems.contains("b: a symbolic link"), "{problems}");
    assert!(
        problems.contains(&format!(
            "{:?} is not a plain name",
            outside.display().to_string()
        )),
        "{problems}"
    );
    assert!(
        problems.contains("\"../outside.txt\" is not a plain name"),
        "{problems}"
    );
    assert_eq!(report.files, 7, "only the package's own files were read");
}

/// Finding 14: `export --out` followed symbolic links planted in an existing directory (a root-run
/// export overwrote a root-owned file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_never_writes_through_a_planted_link() {
    let dir = tempdir();
    let _ = exported(dir.path()).await;
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").expect("victim");
    // A link planted where a package file will be.
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).expect("dir");
    std::os::unix::fs::symlink(&victim, planted.join("records.jsonl")).expect("link");
    let err = export_to(&store, &planted)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    // `--out` itself a link to an empty directory elsewhere.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("dir");
    let link = dir.path().join("out-link");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("link");
    let err = export_to(&store, &link).expect_err("refused").to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).expect("dir").count(), 0);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
}

/// Finding 15: the OPC UA trust hint printed `mv '<file>' …` where the file name held the server
/// certificate's common name; a name with a quote turned the copy-pasted hint into a command. Here
/// the server's common name carries a command; the hint, run by a shell as an administrator would
/// paste it, only moves the certificate, and the agent then connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opcua_trust_hint_runs_no_command_from_the_servers_certificate() {
    use crate::support::opcua::{Cell, Options};
    let dir = tempdir();
    let marker = dir.path().join("pwned");
    let cell = Cell::start(
        dir.path(),
        Options {
            common_name: format!("cell1'; touch '{}'; echo '", marker.display()),
            ..Options::default()
        },
    )
    .await;
    let toml = format!(
        "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sources.plc]\ntype = \"opcua\"\nendpoint = \"{}\"\nsecurity_policy = \"basic256sha256\"\nsecurity_mode = \"sign_and_encrypt\"\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n[[sources.plc.tags]]\nname = \"serial\"\nnode = \"nsu={};s=Cell1.Station10.PartSerial\"\n",
        cell.url,
        crate::support::opcua::NS
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    let mut hint = String::new();
    eventually(WAIT, "the outage names the command that trusts it", || {
        hint = connection(dir.path(), "plc", "connection").unwrap_or_default();
        hint.contains("To trust it: mv")
    })
    .await;
    let command = hint
        .split("To trust it: ")
        .nth(1)
        .and_then(|c| c.split(" (or set").next())
        .expect("command");
    let rejected = dir.path().join("data/pki/opcua/rejected");
    for e in std::fs::read_dir(&rejected).expect("rejected") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name.strip_suffix(".der")
                .is_some_and(|t| t.bytes().all(|b| b.is_ascii_hexdigit())),
            "a file named from the certificate: {name:?}"
        );
    }
    let ran = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir.path())
        .status()
        .expect("sh");
    assert!(ran.success(), "{command}");
    assert!(!marker.exists(), "the hint ran a command: {command}");
    eventually(WAIT, "connected once trusted", || {
        connection(dir.path(), "plc", "connection").is_some_and(|c| c.starts_with("up"))
    })
    .await;
    agent.stop("test").await;
}

/// Finding 16: on an OPC UA `None` endpoint whose user-name token policy does not encrypt, the
/// password was sent in clear text. It is not sent (a named error) unless the user opts in; and a
/// thumbprint pin, which nothing checks under `None`, is refused by `validate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opcua_password_is_never_sent_in_clear_text_unless_allowed() {
    use crate::support::opcua::{Cell, Options, NS, PASSWORD};
    let dir = tempdir();
    let cell = Cell::start(
        dir.path(),
        Options {
            anonymous: false,
            none_only: true,
            ..Options::default()
        },
    )
    .await;
    let toml = |extra: &str| {
        format!(
            "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sources.plc]\ntype = \"opcua\"\nendpoint = \"{}\"\nsecurity_policy = \"none\"\nsecurity_mode = \"none\"\nusername = \"operator\"\npassword = \"{PASSWORD}\"\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n{extra}\n[[sources.plc.tags]]\nname = \"serial\"\nnode = \"nsu={NS};s=Cell1.Station10.PartSerial\"\n\n[[records]]\nname = \"serial\"\nkind = \"traveler\"\ntrigger = {{ type = \"change\", tag = \"plc.serial\" }}\n[records.fields]\n\"subject.serial\" = {{ tag = \"plc.serial\" }}\n",
            cell.url
        )
    };
    let agent = Agent::start(config(dir.path(), &toml("")))
        .await
        .expect("start");
    eventually(WAIT, "the refusal to send the password", || {
        connection(dir.path(), "plc", "connection").is_some_and(|c| c.contains("clear text"))
    })
    .await;
    agent.stop("test").await;
    // Opted in: it connects (the server accepts the password).
    let dir2 = tempdir();
    let agent = Agent::start(config(
        dir2.path(),
        &toml("allow_cleartext_password = true"),
    ))
    .await
    .expect("start");
    // A change trigger fires on a change after the first value read.
    let mut n = 0;
    eventually(WAIT, "a record read with the password in clear", || {
        n += 1;
        if n % 25 == 1 {
            cell.set("PartSerial", format!("SN-CLEAR-{n}"));
        }
        bodies(dir2.path(), "traveler").iter().any(|b| {
            b["subject"]["serial"]
                .as_str()
                .is_some_and(|s| s.starts_with("SN-CLEAR"))
        })
    })
    .await;
    agent.stop("test").await;
    // A pin under None checks nothing: refused.
    let errors = shopfloor_agent::config::Config::from_texts(
        &[(
            dir.path().join("agent.toml"),
            toml("server_thumbprint = \"0123456789abcdef0123456789abcdef01234567\""),
        )],
        dir.path(),
        shopfloor_agent::config::LoadOptions::default(),
    )
    .expect_err("refused")
    .to_string();
    assert!(
        errors.contains(
            "sources.plc.server_thumbprint: has no effect with security_policy = \"none\""
        ),
        "{errors}"
    );
}

/// Low finding: retention after a backwards clock step deleted young rows (a row appended after
/// the step looks older than the rows before it). Only the prefix before the first young row goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_after_a_backwards_clock_step_keeps_young_rows() {
    use shopfloor_agent::journal::{Journal, JournalOptions};
    let dir = tempdir();
    let mut opts = JournalOptions::new(dir.path());
    opts.retention_days = 1;
    opts.sinks = vec!["qms".into()];
    let ctx = shopfloor_agent::records::RecordContext {
        gateway_id: "gw-sec".into(),
        config_sha256: "0".repeat(64),
    };
    let journal = Journal::open(opts.clone(), ctx.clone()).expect("open");
    journal.register_sink("qms").await.expect("register");
    append_to(&journal, 10).await;
    journal.ack("qms", 10).await.expect("ack");
    journal.close().await;
    // Rows 1-3 three days old; 4-6 young; 7-10 appended after the clock was set back 3 days.
    let three_days_ago = shopfloor_agent::time::now_ms() - 3 * 86_400_000;
    let conn = forge(dir.path());
    conn.execute(
        "UPDATE records SET appended_at = ?1 WHERE seq <= 3 OR seq >= 7",
        [three_days_ago],
    )
    .expect("times");
    drop(conn);
    let journal = Journal::open(opts, ctx).expect("open again");
    let out = journal.prune().await.expect("prune");
    journal.close().await;
    assert_eq!(out.checkpoint_seq, Some(3), "{out:?}");
    assert_eq!(verify_with(dir.path(), None), None);
}

async fn append_to(journal: &shopfloor_agent::journal::Journal, n: usize) {
    let records = (0..n)
        .map(|i| shopfloor_agent::journal::NewRecord::new(inspection(&format!("SN-{i}"), 25.0)))
        .collect();
    journal.append(records).await.expect("append");
}

/// Low finding: `export … | head -1` panicked on the broken pipe. Every command that writes to a
/// reader that went away ends quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_a_command_quietly() {
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start");
    append_inspections(&agent, 50, "SN").await;
    agent.stop("test").await;
    let config_file = cli_config(dir.path());
    for args in [
        vec!["generate-config"],
        vec!["status"],
        vec!["verify", "--json"],
        vec!["trace", "--serial", "SN-1", "--json"],
    ] {
        let mut child = std::process::Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config_file)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// Low finding: `trace` and `status` printed control characters from source data (a crafted
/// serial cleared the auditor's screen). They are shown as escapes; `--json` keeps the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_devices_do_not_reach_the_terminal() {
    let dir = tempdir();
    let serial = "SN-\u{1b}[2J\u{1b}]0;owned\u{7}";
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start");
    agent
        .journal()
        .append(vec![shopfloor_agent::journal::NewRecord::new(inspection(
            serial, 25.0,
        ))])
        .await
        .expect("append");
    agent.stop("test").await;
    let config_file = cli_config(dir.path());
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .output()
            .expect("run")
    };
    let text = run(&["trace", "--serial", serial]);
    let shown = String::from_utf8_lossy(&text.stdout);
    assert!(shown.contains("SN-\\u{1b}[2J"), "{shown}");
    assert!(
        !text.stdout.contains(&0x1b) && !text.stdout.contains(&0x07),
        "{shown}"
    );
    let json = run(&["trace", "--serial", serial, "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert!(
        v.to_string().contains("\\u001b[2J"),
        "the value itself is kept"
    );
}

/// Low finding: the journal file was created 0644 and the data directory 0755 (0700 only with
/// signing). Both are private from the start, and so are the WAL and the head seal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_and_its_directory_are_private_from_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), FILE_SINK))
        .await
        .expect("start");
    append_inspections(&agent, 3, "SN").await;
    let data = dir.path().join("data");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("journal.sqlite")), 0o600);
    assert_eq!(mode(&data.join("journal.sqlite-wal")), 0o600);
    agent.stop("test").await;
    assert_eq!(
        mode(&data.join(shopfloor_agent::journal::seal::SEAL_FILE)),
        0o600
    );
}

/// Low finding: a refused reload journaled the resolved secret in `config_reload_refused` (an
/// error quoting the value). Errors show the reference as written instead.
#[test]
fn a_refused_reload_journals_the_reference_not_the_secret() {
    use std::process::{Command, Stdio};
    let dir = tempdir();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    let base = format!(
        "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"{}\"\n",
        data.display()
    );
    std::fs::write(&config, &base).expect("config");
    let mut agent = crate::support::KillOnDrop(
        Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("BAD_URL", "s3cr3t-reload-value")
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    crate::support::eventually_blocking(WAIT, "the start record", || {
        Store::open_ro(&data)
            .and_then(|s| s.head())
            .is_ok_and(|h| h.seq >= 1)
    });
    std::fs::write(
        &config,
        format!("{base}\n[sinks.qms]\ntype = \"http\"\nurl = \"${{env:BAD_URL}}\"\n"),
    )
    .expect("broken config");
    let _ = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status();
    let refused = || -> Vec<String> {
        Store::open_ro(&data)
            .and_then(|s| s.bodies_of_kind("agent_event"))
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b.contains("config_reload_refused"))
            .collect()
    };
    crate::support::eventually_blocking(WAIT, "the refusal journaled", || !refused().is_empty());
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    let _ = agent.0.wait();
    let event = refused().join("\n");
    assert!(event.contains("${env:BAD_URL}"), "{event}");
    assert!(!event.contains("s3cr3t-reload-value"), "{event}");
}

/// Low finding: the unit set no memory limit. `MemoryMax=` caps a runaway agent, sized well above
/// the measured peak (46 MiB in the 30-minute soak), with `MemoryHigh=` below it.
#[test]
fn the_unit_caps_memory_above_the_measured_peak() {
    let unit =
        std::fs::read_to_string(crate::support::root().join("systemd/shopfloor-agent.service"))
            .expect("unit");
    let mib = |key: &str| -> u64 {
        let v = unit
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= missing"));
        let n: u64 = v.trim_end_matches('M').parse().expect("a size in M");
        n
    };
    let (high, max) = (mib("MemoryHigh"), mib("MemoryMax"));
    assert!(
        high >= 4 * 46 && high < max,
        "MemoryHigh {high}M, MemoryMax {max}M"
    );
}

/// `FILE_SINK` as a file for the command line, with the data directory's absolute path.
fn cli_config(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("agent.toml");
    plant_sim::config::AgentToml::parse(FILE_SINK)
        .set("agent.data_dir", dir.join("data").display().to_string())
        .write(&file);
    file
}

// ---------------------------------------------------------------------------------------------
// Finding 10: MQTT message limits.

/// One message over 10 KiB (rumqttc's default maximum) made the source reconnect forever, nothing
/// quarantined, no gap; a JSON array became an empty incomplete inspection. Now: messages up to
/// `max_message_bytes` become records, larger ones and non-objects are quarantined and
/// acknowledged (not sent again), and the source never goes down for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_odd_mqtt_messages_are_quarantined_not_looped_on() {
    use crate::support::mosquitto::{publish_all, Broker};
    let broker = Broker::start();
    let dir = tempdir();
    let cfg =
        plant_sim::config::AgentToml::parse(&super::mqtt::toml(broker.port, "gw-sec-mqtt", "data"))
            .set("sources.mqtt1.max_message_bytes", 65536)
            .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the source up", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    let topic = "plant1/cell1/inspection".to_string();
    let padded = |seq: usize, bytes: usize| -> Vec<u8> {
        json!({ "seq": seq, "serial": format!("SN-{seq}"), "measured": 25.0, "note": "x".repeat(bytes) })
            .to_string()
            .into_bytes()
    };
    publish_all(
        broker.port,
        vec![
            (topic.clone(), padded(1, 20 << 10)), // over rumqttc's old 10 KiB, under the limit
            (topic.clone(), padded(2, 100 << 10)), // over max_message_bytes: quarantined
            (topic.clone(), b"[1,2,3]".to_vec()), // not an object: quarantined
            (topic.clone(), padded(3, 10)),
        ],
        Duration::from_millis(20),
    )
    .await;
    eventually(WAIT, "2 inspections and 2 quarantined payloads", || {
        super::mqtt::count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'",
        ) == 2
            && super::mqtt::count(dir.path(), "SELECT count(*) FROM quarantine") == 2
    })
    .await;
    agent.stop("test").await;
    // Acknowledged: a restart with the same session gets nothing again.
    let agent = Agent::start(config(dir.path(), &cfg))
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.stop("test").await;
    assert_eq!(
        super::mqtt::count(dir.path(), "SELECT count(*) FROM quarantine"),
        2
    );
    assert_eq!(
        super::mqtt::count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'inspection'"
        ),
        2
    );
    assert_eq!(
        super::mqtt::count(
            dir.path(),
            "SELECT count(*) FROM records WHERE kind = 'gap'"
        ),
        0
    );
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let reasons: Vec<String> = crate::support::journal_sql(&store)
        .prepare("SELECT reason FROM quarantine ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("reasons");
    assert!(
        reasons[0].contains("over max_message_bytes (65536)"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("JSON array"), "{reasons:?}");
}

/// A message even the connection cannot take (MQTT 3.1.1 cannot tell the broker the limit): the
/// source is down, says why, and `/metrics` and `status` say so, instead of "up" while it loops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_message_too_large_to_take_is_an_outage_not_a_silent_loop() {
    use crate::support::mosquitto::{publish_all, Broker};
    let broker = Broker::start();
    let dir = tempdir();
    let cfg =
        plant_sim::config::AgentToml::parse(&super::mqtt::toml(broker.port, "gw-sec-big", "data"))
            .set("sources.mqtt1.max_message_bytes", 4096)
            .to_string();
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    eventually(WAIT, "the source up", || {
        crate::support::source_up(&dir.path().join("data"), "mqtt1")
    })
    .await;
    publish_all(
        broker.port,
        vec![("plant1/cell1/inspection".into(), vec![b'x'; 200 << 10])],
        Duration::from_millis(5),
    )
    .await;
    eventually(WAIT, "the source down, naming the message", || {
        connection(dir.path(), "mqtt1", "connection")
            .is_some_and(|c| c.starts_with("DOWN") && c.contains("larger than"))
    })
    .await;
    agent.stop("test").await;
    let gaps = bodies(dir.path(), "gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
}

/// The MQTT sink was wedged for good by a record whose topic is invalid (a `{station}` of
/// `cell+4`). Such a record is a dead letter; the records around it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_sink_record_with_an_invalid_topic_is_a_dead_letter() {
    use crate::support::mosquitto::Broker;
    let broker = Broker::start();
    let dir = tempdir();
    let cfg = format!(
        "[agent]\ngateway_id = \"gw-sec\"\nsite = \"plant1\"\ndata_dir = \"data\"\n[sinks.uns]\ntype = \"mqtt\"\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"gw-sec-pub\"\n",
        broker.port
    );
    let agent = Agent::start(config(dir.path(), &cfg)).await.expect("start");
    let records = ["cell4", "cell+4", "cell5"]
        .iter()
        .map(|station| {
            let mut r = inspection(&format!("SN-{station}"), 25.0);
            r.subject.station = Some((*station).into());
            shopfloor_agent::journal::NewRecord::new(r)
        })
        .collect();
    agent.journal().append(records).await.expect("append");
    let head = agent.journal().durable_seq();
    eventually(WAIT, "every record acknowledged or dead-lettered", || {
        Store::open_ro(&dir.path().join("data"))
            .and_then(|s| s.sink_cursors())
            .is_ok_and(|c| c.iter().any(|c| c.sink == "uns" && c.acked_seq >= head))
    })
    .await;
    agent.stop("test").await;
    let letters = Store::open_ro(&dir.path().join("data"))
        .and_then(|s| s.dead_letters(Some("uns")))
        .expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].reason.contains("cell+4"), "{letters:?}");
}

// ---------------------------------------------------------------------------------------------
// Finding 5: gap records start where data was last known good.

/// The `from` of the only gap of `source`, as an instant.
fn gap_from(dir: &std::path::Path, source: &str) -> time::OffsetDateTime {
    let gaps: Vec<Value> = bodies(dir, "gap")
        .into_iter()
        .filter(|g| g["gap"]["source"] == source)
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    shopfloor_agent::time::parse(gaps[0]["gap"]["from"].as_str().unwrap_or("")).expect("from")
}

/// Freezes the path to `source`'s peer until the agent notices, thaws it until the source is up
/// again, stops the agent, and checks that the gap starts no later than the freeze.
async fn freeze_and_thaw(
    proxy: &crate::support::proxy::Proxy,
    agent: Agent,
    dir: &std::path::Path,
    source: &str,
) {
    let state = |prefix: &'static str| {
        move || connection(dir, source, "connection").is_some_and(|c| c.starts_with(prefix))
    };
    let frozen_at = shopfloor_agent::time::now();
    proxy.freeze(true);
    eventually(WAIT, "the silence noticed", state("DOWN")).await;
    proxy.freeze(false);
    eventually(WAIT, "back", state("up")).await;
    agent.stop("test").await;
    let from = gap_from(dir, source);
    assert!(
        from <= frozen_at + time::Duration::milliseconds(100),
        "the gap starts {} s after the freeze",
        (from - frozen_at).as_seconds_f64()
    );
}

/// A frozen OPC UA server: the gap began when the watchdog fired (18 s after the last record in
/// the review's run). It starts at the last value or publish keep-alive received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opcua_gap_starts_at_the_last_data_not_at_the_watchdog() {
    use crate::support::opcua::{Cell, Options, NS};
    let dir = tempdir();
    let cell = Cell::start(dir.path(), Options::default()).await;
    let proxy = crate::support::proxy::Proxy::start(([127, 0, 0, 1], cell.port).into()).await;
    let toml = format!(
        "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sources.plc]\ntype = \"opcua\"\nendpoint = \"opc.tcp://{}/cell1\"\nsecurity_policy = \"none\"\nsecurity_mode = \"none\"\npublishing_interval_ms = 100\nsampling_interval_ms = 50\nkeep_alive_ms = 300\nwatchdog_ms = 2000\nrequest_timeout_ms = 1000\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n[[sources.plc.tags]]\nname = \"serial\"\nnode = \"nsu={NS};s=Cell1.Station10.PartSerial\"\n",
        proxy.addr
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "the source up", || {
        crate::support::source_up(&dir.path().join("data"), "plc")
    })
    .await;
    freeze_and_thaw(&proxy, agent, dir.path(), "plc").await;
}

/// A Modbus device that hangs: the gap began when the request timed out. It starts at the last
/// poll that was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_gap_starts_at_the_last_answered_poll() {
    let dir = tempdir();
    let dev = crate::support::modbus::Device::start().await;
    let proxy = crate::support::proxy::Proxy::start(dev.addr).await;
    let toml = format!(
        "[agent]\ngateway_id = \"gw-sec\"\ndata_dir = \"data\"\n\n[sources.gauge]\ntype = \"modbus\"\ntransport = \"tcp\"\naddress = \"{}\"\naddressing = \"pdu\"\npoll_interval_ms = 50\ntimeout_ms = 1000\nreconnect_initial_ms = 100\nreconnect_max_ms = 500\n[[sources.gauge.tags]]\nname = \"serial\"\nkind = \"holding\"\naddress = 10\ntype = \"u32\"\n",
        proxy.addr
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "the source up", || {
        crate::support::source_up(&dir.path().join("data"), "gauge")
    })
    .await;
    freeze_and_thaw(&proxy, agent, dir.path(), "gauge").await;
}

// ---------------------------------------------------------------------------------------------
// Finding 7: literal secrets.

/// A configuration with literal secrets in every kind of place: a password, header values under
/// names no list would guess, a URL query, the default of an environment reference. `password`
/// is the one a dictionary attack guesses.
fn with_literal_secrets(password: &str) -> String {
    format!(
        r#"[agent]
gateway_id = "gw-sec-7"
data_dir = "data"

[sources.erp]
type = "rest"
url = "http://127.0.0.1:9/odata/"
auth = {{ type = "basic", username = "reader", password = "{password}" }}
headers = {{ "Ocp-Apim-Subscription-Key" = "sub-key-1", "X-Auth" = "x-auth-2", "X-Access-Key" = "x-access-3" }}
[[sources.erp.endpoints]]
name = "WorkOrders"
path = "WorkOrders"
key = "/ID"

[sinks.qms]
type = "http"
url = "http://127.0.0.1:9/events?code=code-4&plant=4"
auth = {{ type = "bearer", token = "${{env:SFA_SEC7_NEVER_SET:-default-5}}" }}

[sinks.audit]
type = "file"
path = "out/records.jsonl"
"#
    )
}

const LITERAL_SECRETS: &[&str] = &[
    "pw-guess-7",
    "sub-key-1",
    "x-auth-2",
    "x-access-3",
    "code-4",
    "default-5",
];

/// Finding 7: the config hash was taken over the text with literal secrets in it and travels in
/// every record and in `/metrics`, so a dictionary attack confirmed a password in 10 guesses; the
/// journal's `configs` table kept literal secrets in clear; export redaction by key name missed
/// `?code=`, a `${env:X:-default}` default and headers such as `Ocp-Apim-Subscription-Key`,
/// `X-Auth`, `X-Access-Key`; `Config`'s `Debug` printed passwords. Secrets are now marked by type
/// and replaced before the configuration is hashed or kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_secrets_are_never_hashed_stored_exported_or_printed() {
    let dir = tempdir();
    // The dictionary attack: hash the configuration with each guess in the password's place and
    // compare with the hash the records carry. The hash does not depend on the password, so no
    // guess is confirmed (and none refuted).
    let real = config(dir.path(), &with_literal_secrets("pw-guess-7"));
    for guess in ["123456", "password", "operator", "pw-guess-6", "pw-guess-8"] {
        let other = config(dir.path(), &with_literal_secrets(guess));
        assert_eq!(
            other.sha256, real.sha256,
            "the hash depends on the password"
        );
    }
    let printed = format!("{real:?}\n{}", real.effective_toml());
    for secret in LITERAL_SECRETS {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    // References stay as written, so the kept text still says where the secret comes from.
    assert!(
        printed.contains("${env:SFA_SEC7_NEVER_SET:-REDACTED}"),
        "{printed}"
    );

    // A configuration error quoting a value shows no secret either (it is printed, logged and,
    // for a refused reload, journaled).
    let broken = with_literal_secrets("pw-guess-7")
        .replace("[sinks.audit]", "[sinks.audit]\nmax_file_bytes = 1")
        .replace("/events?code", "/events?x=1&code")
        .replace(
            "type = \"bearer\", token",
            "type = \"bearer\", token = \"x-auth-2\", tokn",
        );
    let errors = shopfloor_agent::config::Config::from_texts(
        &[(dir.path().join("agent.toml"), broken)],
        dir.path(),
        shopfloor_agent::config::LoadOptions::default(),
    )
    .expect_err("invalid")
    .to_string();
    for secret in LITERAL_SECRETS {
        assert!(
            !errors.contains(secret),
            "{secret} in the errors:\n{errors}"
        );
    }

    // The journal (configs table and every other byte of it) and an evidence package.
    let sha = real.sha256.clone();
    let agent = Agent::start(real).await.expect("start");
    append_inspections(&agent, 3, "SN").await;
    agent.stop("test").await;
    let mut journal = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            journal.extend(std::fs::read(&path).expect("read"));
        }
    }
    let journal = String::from_utf8_lossy(&journal);
    for secret in LITERAL_SECRETS {
        assert!(!journal.contains(secret), "{secret} in the journal's files");
    }
    let package = dir.path().join("package");
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let exported = export_to(&store, &package).expect("export");
    assert!(exported.configs >= 1, "the package holds the configuration");
    for entry in walk(&package) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).expect("read")).into_owned();
        for secret in LITERAL_SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} in {}:\n{text}",
                entry.display()
            );
        }
    }
    // And the kept text is the one the hash was taken over: the package checks it.
    let report = shopfloor_agent::audit::package::verify_package(&package, None);
    assert!(report.ok(), "{report:?}");
    assert!(report.configs_checked >= 1, "{report:?}");
    let listed: Value = serde_json::from_str(
        &std::fs::read_to_string(package.join("configs.json")).expect("configs.json"),
    )
    .expect("json");
    let entry = listed
        .as_array()
        .and_then(|a| a.iter().find(|c| c["sha256"] == sha.as_str()))
        .unwrap_or_else(|| panic!("{sha} not in {listed}"));
    assert_eq!(entry["secrets_removed"], 0, "{entry}");
    assert!(entry["note"].is_null(), "{entry}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
