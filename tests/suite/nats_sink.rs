//! The NATS JetStream sink against a real `nats-server` (Debian's 2.9): every record once in the
//! stream with its chain, the cursor after the PubAcks, a resend dropped by `Nats-Msg-Id`, a missing
//! stream and a full stream named and waited out, SIGKILLs of the agent while it publishes.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use shopfloor_agent::journal::{NewRecord, Store};
use shopfloor_agent::runtime::topology::Agent;

use super::journal::inspection;
use crate::support::nats::NatsServer;
use crate::support::{config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(30);

/// An agent with one NATS sink `fleet` to `url`, stream `QUALITY`; `extra` adds sink keys.
pub(crate) fn sink_toml(gateway: &str, urls: &[String], extra: &str) -> String {
    let servers: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"
[agent]
gateway_id = "{gateway}"
site = "plant1"
data_dir = "data"

[log]
repeat_summary_s = 1

[metrics]
enabled = false

[sinks.fleet]
type = "nats"
servers = [{}]
stream = "QUALITY"
subject = "quality.{{site}}.{{gateway_id}}.{{kind}}"
batch_max_records = 50
timeout_ms = 3000
{extra}
"#,
        servers.join(", ")
    )
}

/// One message of the stream: its subject, headers and payload.
pub(crate) struct Stored {
    pub subject: String,
    pub header: std::collections::HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// Every message of `stream`, in stream order.
pub(crate) async fn stream_messages(url: &str, stream: &str) -> Vec<Stored> {
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("stream");
    let state = s.info().await.expect("info").state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let m = s.get_raw_message(seq).await.expect("message");
        let header = m
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.first().map(|v| v.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        out.push(Stored {
            subject: m.subject.to_string(),
            header,
            payload: m.payload.to_vec(),
        });
    }
    out
}

async fn messages_in(url: &str, stream: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = jetstream::new(client);
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

fn store(dir: &Path) -> Store {
    Store::open_ro(&dir.join("data")).expect("journal")
}

fn cursor(dir: &Path) -> (i64, Option<String>) {
    let c = &store(dir).sink_cursors().expect("cursors")[0];
    (c.acked_seq, c.last_error.clone())
}

fn head(dir: &Path) -> i64 {
    store(dir).head().expect("head").seq
}

async fn append(agent: &Agent, from: usize, n: usize) {
    let records = (from..from + n)
        .map(|i| NewRecord::new(inspection(&format!("SN-{i:05}"), 10.0 + i as f64 / 1000.0)))
        .collect();
    agent.journal().append(records).await.expect("append");
}

/// `{station}` in the subject template is the record's station, made a single token, or
/// `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_template_takes_the_records_station() {
    let server = NatsServer::start();
    let dir = tempdir();
    let toml = sink_toml("gw-a", &[server.url()], "create_stream = {}").replace(
        "quality.{site}.{gateway_id}.{kind}",
        "quality.{station}.{kind}",
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("agent starts");
    let records = ["cell.4", "", "press 2"]
        .iter()
        .map(|station| {
            let mut r = inspection(&format!("SN-{station}"), 1.0);
            r.subject.station = Some(station.to_string()).filter(|s| !s.is_empty());
            NewRecord::new(r)
        })
        .collect();
    agent.journal().append(records).await.expect("append");
    eventually(WAIT, "the cursor at the head", || {
        cursor(dir.path()).0 == head(dir.path())
    })
    .await;
    agent.stop("test").await;
    let subjects: Vec<String> = stream_messages(&server.url(), "QUALITY")
        .await
        .into_iter()
        .filter(|m| m.subject.ends_with(".inspection"))
        .map(|m| m.subject)
        .collect();
    assert_eq!(
        subjects,
        [
            "quality.cell_4.inspection",
            "quality.unknown.inspection",
            "quality.press_2.inspection"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_stream_once_with_its_chain_and_a_resend_is_dropped() {
    let server = NatsServer::start();
    let dir = tempdir();
    let toml = sink_toml(
        "gw-a",
        &[server.url()],
        "create_stream = { duplicate_window_s = 600 }",
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("agent starts");
    append(&agent, 0, 300).await;
    eventually(WAIT, "the cursor at the head", || {
        let h = head(dir.path());
        cursor(dir.path()).0 == h
    })
    .await;
    let rows = store(dir.path()).read_after(0, 10_000).expect("rows");
    let stored = stream_messages(&server.url(), "QUALITY").await;
    assert_eq!(stored.len(), rows.len(), "one message per journaled record");
    for (m, r) in stored.iter().zip(&rows) {
        assert_eq!(m.subject, format!("quality.plant1.gw-a.{}", r.kind));
        assert_eq!(m.header["Nats-Msg-Id"], r.id);
        assert_eq!(m.header["ce-id"], r.id);
        assert_eq!(m.header["ce-source"], "urn:shopfloor-agent:gw-a");
        assert_eq!(m.header["ce-sequence"], r.seq.to_string(), "journal order");
        assert_eq!(m.header["ce-prevhash"], r.prev_hash);
        assert_eq!(m.header["ce-hash"], r.hash);
        assert_eq!(
            m.header["ce-type"],
            format!("org.shopfloor.quality.{}.v1", r.kind)
        );
        assert_eq!(m.payload, r.body.as_bytes(), "the record as journaled");
    }
    // The whole journal again (as after a lost PubAck or `replay`): the server drops every one.
    let cfg = config(dir.path(), &toml);
    shopfloor_agent::audit::resend::request_replay(&cfg, "fleet", 1, None, Some("test"))
        .expect("replay request");
    let replayed = |d: &Path| {
        store(d)
            .requests(None, false)
            .map(|r| !r.is_empty() && r.iter().all(|q| q.done_at.is_some()))
            .unwrap_or(false)
    };
    eventually(WAIT, "the replay done", || replayed(dir.path())).await;
    let h = head(dir.path());
    let again = stream_messages(&server.url(), "QUALITY").await;
    let ids: HashSet<&str> = again
        .iter()
        .map(|m| m.header["Nats-Msg-Id"].as_str())
        .collect();
    assert_eq!(ids.len(), again.len(), "no record stored twice");
    // The replay's own agent_event is the only new record.
    assert_eq!(
        again.len() as i64,
        h,
        "every record once, the resend dropped"
    );
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_named_and_delivery_starts_once_it_exists() {
    let server = NatsServer::start();
    let dir = tempdir();
    let toml = sink_toml("gw-b", &[server.url()], "");
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("agent starts");
    append(&agent, 0, 20).await;
    eventually(WAIT, "the sink's error names the missing stream", || {
        cursor(dir.path()).1.is_some_and(|e| {
            e.contains("stream QUALITY does not exist") && e.contains("quality.*.*.*")
        })
    })
    .await;
    assert_eq!(
        cursor(dir.path()).0,
        0,
        "nothing acknowledged without a stream"
    );
    // The stream is created by hand (as IT would with `nats stream add`).
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    js.create_stream(jetstream::stream::Config {
        name: "QUALITY".into(),
        subjects: vec!["quality.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    eventually(WAIT, "every record delivered", || {
        let (acked, err) = cursor(dir.path());
        acked == head(dir.path()) && err.is_none()
    })
    .await;
    assert_eq!(
        messages_in(&server.url(), "QUALITY").await as i64,
        head(dir.path())
    );
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_of_another_stream_is_refused_not_stored_there() {
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    for (name, subject) in [
        ("QUALITY", "quality.other.>"),
        ("OTHER", "quality.plant1.>"),
    ] {
        js.create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &sink_toml("gw-c", &[server.url()], "")))
        .await
        .expect("agent starts");
    append(&agent, 0, 5).await;
    eventually(WAIT, "the sink's error names the stream mismatch", || {
        cursor(dir.path())
            .1
            .is_some_and(|e| e.contains("QUALITY") && e.contains("refused"))
    })
    .await;
    assert_eq!(
        messages_in(&server.url(), "OTHER").await,
        0,
        "nothing stored in the other stream"
    );
    assert_eq!(cursor(dir.path()).0, 0);
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_with_discard_new_holds_the_records_and_says_why() {
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.expect("connect"));
    let mut limits = jetstream::stream::Config {
        name: "QUALITY".into(),
        subjects: vec!["quality.>".into()],
        max_bytes: 64 << 10,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.create_stream(limits.clone())
        .await
        .expect("create stream");
    let dir = tempdir();
    // With /metrics, as OT would watch it.
    let toml = sink_toml("gw-d", &[server.url()], "").replace(
        "[metrics]\nenabled = false",
        "[metrics]\nlisten = \"127.0.0.1:0\"",
    );
    let cfg = config(dir.path(), &toml);
    let agent = Agent::start(cfg.clone()).await.expect("agent starts");
    append(&agent, 0, 400).await;
    eventually(WAIT, "the sink says the stream is full", || {
        cursor(dir.path())
            .1
            .is_some_and(|e| e.contains("stream QUALITY is full"))
    })
    .await;
    // `status` and /metrics show the waiting records and why.
    super::metrics::assert_sink_waits(&cfg, &agent, "fleet", "stream QUALITY is full").await;
    let held = messages_in(&server.url(), "QUALITY").await as i64;
    let (acked, _) = cursor(dir.path());
    assert!(acked < head(dir.path()), "the cursor waits");
    assert!(
        held >= acked,
        "acknowledged records are in the stream ({held} < {acked})"
    );
    // Room again: everything arrives, nothing was dropped.
    limits.max_bytes = 16 << 20;
    js.update_stream(limits).await.expect("raise the limit");
    eventually(WAIT, "every record delivered", || {
        let (acked, err) = cursor(dir.path());
        acked == head(dir.path()) && err.is_none()
    })
    .await;
    let stored = stream_messages(&server.url(), "QUALITY").await;
    let seqs: Vec<i64> = stored
        .iter()
        .map(|m| m.header["ce-sequence"].parse().expect("seq"))
        .collect();
    let expected: Vec<i64> = (1..=head(dir.path())).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "every record once");
    agent.stop("test").await;
}

/// The journal of `dir/data` filled with `n` inspections before any agent runs.
async fn prefill(dir: &Path, n: usize) {
    let opts = shopfloor_agent::journal::JournalOptions::new(dir.join("data"));
    let ctx = shopfloor_agent::records::RecordContext {
        gateway_id: "gw-k".into(),
        config_sha256: "0".repeat(64),
    };
    let journal = shopfloor_agent::journal::Journal::open(opts, ctx).expect("journal");
    for chunk in 0..n / 500 {
        let records = (chunk * 500..(chunk + 1) * 500)
            .map(|i| NewRecord::new(inspection(&format!("SN-{i:05}"), 1.0)))
            .collect();
        journal.append(records).await.expect("append");
    }
    journal.close().await;
}

/// Checks that the stream holds each acknowledged record exactly once: one message per seq
/// `1..=cursor`, each with the journal's id and hash (a record the agent wrote as it stopped may
/// follow).
async fn assert_stream_holds_the_journal_once(url: &str, dir: &Path) {
    let acked = cursor(dir).0;
    let rows = store(dir).read_after(0, 1_000_000).expect("rows");
    let stored = stream_messages(url, "QUALITY").await;
    let mut by_seq = std::collections::BTreeMap::new();
    for m in &stored {
        let seq: i64 = m.header["ce-sequence"].parse().expect("seq");
        assert!(
            by_seq
                .insert(
                    seq,
                    (m.header["ce-id"].clone(), m.header["ce-hash"].clone())
                )
                .is_none(),
            "seq {seq} stored twice"
        );
    }
    assert!(
        acked > 0 && by_seq.len() as i64 >= acked,
        "every acknowledged record in the stream"
    );
    assert!(
        by_seq.len() <= rows.len(),
        "no message the journal does not hold"
    );
    for r in rows.iter().filter(|r| r.seq <= acked) {
        assert_eq!(
            by_seq.get(&r.seq),
            Some(&(r.id.clone(), r.hash.clone())),
            "seq {}",
            r.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_ten_times_while_publishing_loses_nothing_and_stores_nothing_twice() {
    let mut rng = crate::support::seeded("nats_sigkill_ten_times");
    let server = NatsServer::start();
    let dir = tempdir();
    prefill(dir.path(), 20_000).await;
    let toml = sink_toml(
        "gw-k",
        &[server.url()],
        "create_stream = { duplicate_window_s = 600 }",
    );
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        toml.replace(
            "data_dir = \"data\"",
            &format!(
                "data_dir = {:?}",
                dir.path().join("data").display().to_string()
            ),
        ),
    )
    .expect("config");
    let run = || {
        let child = std::process::Command::new(crate::support::agent_bin())
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run");
        crate::support::KillOnDrop(child)
    };
    let mut kills_while_publishing = 0;
    for _ in 0..10 {
        let before = messages_in(&server.url(), "QUALITY").await;
        let mut child = run();
        // Killed once it publishes, at a random moment after.
        let deadline = std::time::Instant::now() + WAIT;
        while messages_in(&server.url(), "QUALITY").await <= before
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reap");
        if cursor(dir.path()).0 < head(dir.path()) {
            kills_while_publishing += 1;
        }
    }
    assert!(
        kills_while_publishing >= 5,
        "only {kills_while_publishing} kills came while publishing"
    );
    let mut child = run();
    eventually(Duration::from_secs(60), "the cursor at the head", || {
        cursor(dir.path()).0 == head(dir.path())
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    child.0.wait().expect("wait");
    assert_stream_holds_the_journal_once(&server.url(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_while_publishing_loses_nothing_and_stores_nothing_twice() {
    let mut cluster = crate::support::nats::NatsCluster::start();
    let dir = tempdir();
    let toml = sink_toml(
        "gw-r",
        &cluster.urls(),
        "create_stream = { replicas = 3, duplicate_window_s = 600 }",
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("agent starts");
    append(&agent, 0, 500).await;
    let url = cluster.urls()[0].clone();
    eventually(
        Duration::from_secs(60),
        "the first records in the R3 stream",
        || cursor(dir.path()).0 > 0,
    )
    .await;
    // Records keep coming while the leader goes down.
    let leader = {
        let js = jetstream::new(async_nats::connect(cluster.urls()).await.expect("connect"));
        let mut s = js.get_stream("QUALITY").await.expect("stream");
        let info = s.info().await.expect("info");
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("a leader")
    };
    append(&agent, 500, 500).await;
    cluster.node(&leader).kill();
    append(&agent, 1000, 500).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node(&leader).restart();
    append(&agent, 1500, 500).await;
    eventually(Duration::from_secs(90), "the cursor at the head", || {
        cursor(dir.path()).0 == head(dir.path())
    })
    .await;
    agent.stop("test").await;
    let live = cluster
        .nodes
        .iter()
        .find(|n| n.name != leader)
        .map(|n| n.url())
        .unwrap_or(url);
    assert_stream_holds_the_journal_once(&live, dir.path()).await;
}

/// The sink's last error once it has one, or delivery, whichever comes first.
async fn outcome(dir: &Path) -> Result<(), String> {
    let mut result = Err(String::new());
    eventually(WAIT, "delivery or an error", || {
        let (acked, err) = cursor(dir);
        result = match err {
            Some(e) => Err(e),
            None if acked > 0 && acked == head(dir) => Ok(()),
            None => return false,
        };
        true
    })
    .await;
    result
}

/// An agent with `auth` (sink keys) against `server`: whether it delivers, or its error.
async fn deliver_with(server: &NatsServer, auth: &str) -> Result<(), String> {
    let dir = tempdir();
    let toml = sink_toml(
        "gw-auth",
        &[server.url()],
        &format!("create_stream = {{}}\n{auth}"),
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("agent starts");
    append(&agent, 0, 10).await;
    let r = outcome(dir.path()).await;
    agent.stop("test").await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_token_and_nkey_authenticate_and_a_wrong_one_is_named() {
    let server = NatsServer::start_with(
        "authorization {\n  users = [\n    { user: edge, password: \"s3cret-pw\" }\n  ]\n}\n",
    );
    deliver_with(&server, "username = \"edge\"\npassword = \"s3cret-pw\"")
        .await
        .expect("user and password");
    let err = deliver_with(&server, "username = \"edge\"\npassword = \"wrong\"")
        .await
        .expect_err("a wrong password is refused");
    assert!(err.to_lowercase().contains("authorization"), "{err}");
    assert!(!err.contains("wrong"), "no secret in the error: {err}");

    let server = NatsServer::start_with("authorization {\n  token: \"t0ken-abc\"\n}\n");
    deliver_with(&server, "token = \"t0ken-abc\"")
        .await
        .expect("token");
    assert!(
        deliver_with(&server, "").await.is_err(),
        "refused without the token"
    );

    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("seed");
    let server = NatsServer::start_with(&format!(
        "authorization {{\n  users = [\n    {{ nkey: {} }}\n  ]\n}}\n",
        user.public_key()
    ));
    deliver_with(&server, &format!("nkey_seed = \"{seed}\""))
        .await
        .expect("nkey");
    let other = nkeys::KeyPair::new_user().seed().expect("seed");
    let err = deliver_with(&server, &format!("nkey_seed = \"{other}\""))
        .await
        .expect_err("another nkey is refused");
    assert!(!err.contains(&other), "no seed in the error: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca_and_no_delivery_without_the_client_certificate() {
    let pki_dir = tempdir();
    let pki = crate::support::tls::TestPki::create(pki_dir.path());
    let server = NatsServer::start_with(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca_file.display().to_string()
    ));
    let tls = |client: bool| {
        let mut t = format!("tls = {{ ca_file = {:?}", pki.ca_file.display().to_string());
        if client {
            t += &format!(
                ", client_cert_file = {:?}, client_key_file = {:?}",
                pki.client_cert.display().to_string(),
                pki.client_key.display().to_string()
            );
        }
        t + " }"
    };
    deliver_with(&server, &tls(true)).await.expect("mutual TLS");
    let err = deliver_with(&server, &tls(false))
        .await
        .expect_err("refused without a client certificate");
    assert!(err.contains("cannot connect"), "{err}");
}

/// base64url without padding (JWT).
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A NATS JWT (v2) with `nats` claims for `subject`, signed by `issuer`, as `nsc` writes them.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..)),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = b64url(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = issuer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", b64url(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_authenticates_against_an_operator_mode_server() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    // JetStream needs a system account.
    let system = nkeys::KeyPair::new_account();
    let op_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "O",
        serde_json::json!({ "system_account": system.public_key(), "type": "operator", "version": 2 }),
    );
    let sys_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({ "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1 }, "type": "account", "version": 2 }),
    );
    let acc_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "PLANT",
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2
        }),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "gw01",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    let server = NatsServer::start_with(&format!(
        "operator: {op_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {acc_jwt}\n  {}: {sys_jwt}\n}}\n",
        system.public_key(),
        account.public_key(),
        system.public_key()
    ));
    let dir = tempdir();
    let creds = dir.path().join("gw01.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().expect("seed")
        ),
    )
    .expect("creds");
    let with = |path: &Path| format!("credentials_file = {:?}", path.display().to_string());
    deliver_with(&server, &with(&creds))
        .await
        .expect("the .creds file");
    // Another user's seed with the same JWT: the nonce signature fails.
    let forged = dir.path().join("forged.creds");
    let text = std::fs::read_to_string(&creds).expect("creds");
    let other = nkeys::KeyPair::new_user().seed().expect("seed");
    std::fs::write(&forged, text.replace(&user.seed().expect("seed"), &other)).expect("forged");
    let err = deliver_with(&server, &with(&forged))
        .await
        .expect_err("a wrong seed is refused");
    assert!(!err.contains(&other), "no seed in the error: {err}");
}
