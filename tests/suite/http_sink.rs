//! HTTP delivery to an in-process QMS receiver: success, retries, Retry-After, dead letters, outage, TLS.

use std::path::Path;
use std::time::Duration;

use shopfloor_agent::journal::{NewRecord, Store};
use shopfloor_agent::runtime::topology::Agent;

use super::journal::inspection;
use crate::support::qms::{Qms, Step};
use crate::support::tls::TestPki;
use crate::support::{assert_schema_valid, config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(20);

async fn start_agent(dir: &Path, url: &str, extra: &str) -> Agent {
    let toml = format!(
        r#"
[agent]
gateway_id = "gw-test"
data_dir = "data"

[log]
repeat_summary_s = 1

[sinks.qms]
type = "http"
url = "{url}"
retry_initial_ms = 50
retry_max_ms = 500
timeout_ms = 1000
batch_max_records = 40
{extra}
"#
    );
    Agent::start(config(dir, &toml))
        .await
        .expect("agent starts")
}

async fn append(agent: &Agent, serials: impl IntoIterator<Item = String>) -> Vec<String> {
    let records: Vec<NewRecord> = serials
        .into_iter()
        .map(|s| NewRecord::new(inspection(&s, 25.003)))
        .collect();
    let ids = records.iter().map(|r| r.id.to_string()).collect();
    agent.journal().append(records).await.expect("append");
    ids
}

fn serials(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Ids of delivered inspection events after dedupe, in first-arrival order.
fn delivered_inspections(qms: &Qms) -> Vec<String> {
    let kinds: std::collections::HashMap<String, String> = qms
        .events()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or("").to_string(),
                e["data"]["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    qms.unique_ids()
        .into_iter()
        .filter(|id| kinds.get(id).map(String::as_str) == Some("inspection"))
        .collect()
}

fn assert_in_journal_order(qms: &Qms) {
    let mut last = 0i64;
    let mut seen = std::collections::HashSet::new();
    for e in qms.events() {
        let id = e["id"].as_str().expect("id").to_string();
        if !seen.insert(id) {
            continue; // a re-delivery after a timeout
        }
        let seq: i64 = e["sequence"]
            .as_str()
            .expect("sequence")
            .parse()
            .expect("number");
        assert!(
            seq > last,
            "first deliveries must follow journal order: {seq} after {last}"
        );
        last = seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_as_cloudevents_in_order_and_the_cursor_moves() {
    let dir = tempdir();
    let qms = Qms::start().await;
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").expect("token");
    let extra = format!(
        "auth = {{ type = \"bearer\", token = \"${{file:{}}}\" }}\nheaders = {{ \"X-Plant\" = \"plant1\" }}",
        token.display()
    );
    let agent = start_agent(dir.path(), &qms.url(), &extra).await;
    let ids = append(&agent, serials("SN", 300)).await;
    eventually(WAIT, "300 inspections at the QMS", || {
        delivered_inspections(&qms).len() == 300
    })
    .await;
    assert_eq!(delivered_inspections(&qms), ids);
    assert_in_journal_order(&qms);

    for e in qms.events() {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "urn:shopfloor-agent:gw-test");
        assert_eq!(e["id"], e["data"]["id"]);
        assert_eq!(e["time"], e["data"]["captured_at"]);
        let kind = e["data"]["kind"].as_str().expect("kind");
        assert_eq!(e["type"], format!("org.shopfloor.quality.{kind}.v1"));
        if kind == "inspection" {
            assert_eq!(e["subject"], e["data"]["subject"]["serial"]);
        }
        assert_eq!(e["hash"].as_str().map(str::len), Some(64));
        assert_schema_valid(&e["data"]);
    }
    for r in qms.requests() {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents-batch+json")
        );
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0ken"));
        assert_eq!(
            r.x_plant.as_deref(),
            Some("plant1"),
            "extra headers are sent"
        );
        assert!(r.idempotency_key.is_some());
        assert!(r.events <= 40, "batch_max_records is respected");
    }
    agent.stop("test").await;
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let head = store.head().expect("head").seq;
    let cursor = store.sink_cursors().expect("cursors");
    assert_eq!(
        cursor[0].acked_seq, head,
        "everything, the stop record included, was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_timeouts_are_retried_until_everything_arrives_once() {
    let dir = tempdir();
    let qms = Qms::start().await;
    qms.script([
        Step::Status(500, None),
        Step::Status(503, None),
        Step::StoreThenDelay(Duration::from_millis(1500)), // stored, but the answer comes after timeout_ms
        Step::Status(502, None),
    ]);
    let agent = start_agent(dir.path(), &qms.url(), "").await;
    let ids = append(&agent, serials("SN", 120)).await;
    eventually(WAIT, "120 inspections after retries", || {
        delivered_inspections(&qms).len() == 120
    })
    .await;
    assert_eq!(
        delivered_inspections(&qms),
        ids,
        "each id once after dedupe, in order"
    );
    assert_in_journal_order(&qms);
    let statuses: Vec<u16> = qms.requests().iter().take(4).map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 200, 502]);
    // The timed-out batch was stored by the receiver and sent again: duplicates on the wire, each id
    // once after dedupe (checked above).
    assert!(
        qms.events().len() > qms.unique_ids().len(),
        "the timed-out batch was re-sent"
    );
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_sent_again_as_it_was_under_the_same_key() {
    // While the QMS refuses the first batch, more records arrive: each retry is the same batch
    // under the same idempotency key (not a new, larger one read again from the journal), and
    // the new records follow in later batches.
    let dir = tempdir();
    let qms = Qms::start().await;
    qms.script([
        Step::Status(503, None),
        Step::Status(503, None),
        Step::Status(503, None),
        Step::Status(503, None),
    ]);
    let agent = start_agent(dir.path(), &qms.url(), "").await;
    eventually(WAIT, "the first batch refused", || {
        !qms.requests().is_empty()
    })
    .await;
    let ids = append(&agent, serials("SN", 30)).await;
    eventually(WAIT, "30 inspections after the refusals", || {
        delivered_inspections(&qms).len() == 30
    })
    .await;
    agent.stop("test").await;
    assert_eq!(delivered_inspections(&qms), ids);
    let requests = qms.requests();
    let first: Vec<_> = requests
        .iter()
        .take(5)
        .map(|r| (r.idempotency_key.clone(), r.events))
        .collect();
    assert_eq!(
        requests
            .iter()
            .take(5)
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [503, 503, 503, 503, 200]
    );
    assert!(
        first.iter().all(|k| *k == first[0]),
        "the same batch each time: {first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let dir = tempdir();
    let qms = Qms::start().await;
    qms.script([Step::Status(429, Some("2"))]);
    let agent = start_agent(dir.path(), &qms.url(), "").await;
    eventually(WAIT, "the start record delivered", || {
        !qms.unique_ids().is_empty()
    })
    .await;
    let r = qms.requests();
    assert_eq!(r[0].status, 429);
    let waited = r[1].at.duration_since(r[0].at);
    // Backoff alone would retry within retry_max_ms = 500 ms.
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}, Retry-After was 2 s"
    );
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_goes_to_dead_letters_and_delivery_goes_on() {
    let dir = tempdir();
    let qms = Qms::start().await;
    *qms.state.poison.lock().expect("lock") = Some("SN-POISON".into());
    let agent = start_agent(dir.path(), &qms.url(), "").await;
    let mut ids = append(&agent, serials("A", 15)).await;
    let poison = append(&agent, ["SN-POISON".to_string()]).await;
    ids.extend(append(&agent, serials("B", 15)).await);
    eventually(WAIT, "30 good inspections", || {
        delivered_inspections(&qms).len() == 30
    })
    .await;
    assert_eq!(delivered_inspections(&qms), ids);
    agent.stop("test").await;

    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let dead = store.dead_letters(None).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].record_id, poison[0]);
    assert!(dead[0].reason.contains("400"), "{}", dead[0].reason);
    let head = store.head().expect("head").seq;
    assert_eq!(store.sink_cursors().expect("cursor")[0].acked_seq, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_for_30_s_then_up_gets_everything_in_order_once() {
    let dir = tempdir();
    // Reserve a port, then leave it closed: the QMS is down.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{addr}/events");
    let agent = start_agent(dir.path(), &url, "").await;
    let ids = append(&agent, serials("SN", 200)).await;
    tokio::time::sleep(Duration::from_secs(30)).await; // the outage itself
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let cursor = &store.sink_cursors().expect("cursors")[0];
    assert_eq!(
        cursor.acked_seq, 0,
        "nothing can be acknowledged while the QMS is down"
    );
    let err = cursor.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("cannot connect"),
        "status names the failure: {err:?}"
    );

    let qms = Qms::start_on(addr, Default::default()).await;
    eventually(WAIT, "200 inspections after the outage", || {
        delivered_inspections(&qms).len() == 200
    })
    .await;
    assert_eq!(delivered_inspections(&qms), ids);
    assert_in_journal_order(&qms);
    agent.stop("test").await;
    let cursor = &store.sink_cursors().expect("cursors")[0];
    assert!(cursor.last_error.is_none(), "recovery clears the error");
}

fn last_error(dir: &Path) -> Option<String> {
    Store::open_ro(&dir.join("data"))
        .ok()?
        .sink_cursors()
        .ok()?
        .first()?
        .last_error
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_configured_ca_and_refused_without_it() {
    let pki_dir = tempdir();
    let pki = TestPki::create(pki_dir.path());
    let qms = Qms::start_tls(pki.server_config(false)).await;

    let dir = tempdir();
    let extra = format!("ca_file = \"{}\"", pki.ca_file.display());
    let agent = start_agent(dir.path(), &qms.https_url(), &extra).await;
    let ids = append(&agent, serials("SN", 20)).await;
    eventually(WAIT, "delivery over TLS", || {
        delivered_inspections(&qms).len() == 20
    })
    .await;
    assert_eq!(delivered_inspections(&qms), ids);
    agent.stop("test").await;

    // Without the CA, the system trust store does not know the test CA: nothing is sent.
    let dir = tempdir();
    let before = qms.events().len();
    let agent = start_agent(dir.path(), &qms.https_url(), "").await;
    append(&agent, serials("X", 5)).await;
    eventually(WAIT, "a TLS failure in status", || {
        last_error(dir.path()).is_some()
    })
    .await;
    let err = last_error(dir.path()).unwrap_or_default();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(qms.events().len(), before);
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_sends_the_client_certificate() {
    let pki_dir = tempdir();
    let pki = TestPki::create(pki_dir.path());
    let qms = Qms::start_tls(pki.server_config(true)).await;

    let dir = tempdir();
    let extra = format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        pki.ca_file.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let agent = start_agent(dir.path(), &qms.https_url(), &extra).await;
    let ids = append(&agent, serials("SN", 10)).await;
    eventually(WAIT, "delivery over mTLS", || {
        delivered_inspections(&qms).len() == 10
    })
    .await;
    assert_eq!(delivered_inspections(&qms), ids);
    agent.stop("test").await;

    // The same server refuses a client without a certificate.
    let dir = tempdir();
    let extra = format!("ca_file = \"{}\"", pki.ca_file.display());
    let agent = start_agent(dir.path(), &qms.https_url(), &extra).await;
    append(&agent, serials("X", 3)).await;
    eventually(WAIT, "a refused handshake in status", || {
        last_error(dir.path()).is_some()
    })
    .await;
    assert_eq!(delivered_inspections(&qms).len(), 10);
    agent.stop("test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_format_with_basic_auth() {
    let dir = tempdir();
    let qms = Qms::start().await;
    let extra = "format = \"json_array\"\nauth = { type = \"basic\", username = \"gw1\", password = \"s3cret\" }";
    let agent = start_agent(dir.path(), &qms.url(), extra).await;
    let ids = append(&agent, serials("SN", 12)).await;
    let delivered = || {
        qms.events()
            .iter()
            .filter(|r| r["kind"] == "inspection")
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    eventually(WAIT, "12 plain records", || delivered().len() == 12).await;
    assert_eq!(delivered(), ids);
    for r in qms.events() {
        assert!(
            r.get("specversion").is_none(),
            "plain records, not CloudEvents"
        );
        assert_schema_valid(&r);
    }
    let req = &qms.requests()[0];
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    // base64("gw1:s3cret")
    assert_eq!(req.authorization.as_deref(), Some("Basic Z3cxOnMzY3JldA=="));
    agent.stop("test").await;
}
