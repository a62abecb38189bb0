//! The REST source against an in-process OData-style ERP: paged incremental sync under churn, restart
//! from the committed watermark, bad responses, 429 with Retry-After, authentication.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use shopfloor_agent::journal::Store;
use shopfloor_agent::runtime::topology::Agent;

use plant_sim::config::AgentToml;

use crate::support::erp::{Erp, ErpServer, Fault};
use crate::support::{assert_schema_valid, config, eventually, tempdir};

const WAIT: Duration = Duration::from_secs(30);

fn agent_toml(url: &str, password: &str) -> String {
    format!(
        r#"
[agent]
gateway_id = "gw-rest"
data_dir = "data"

[sources.erp]
type = "rest"
url = "{url}"
poll_interval_ms = 200
retry_initial_ms = 100
retry_max_ms = 1000
auth = {{ type = "basic", username = "erp-reader", password = "{password}" }}

[[sources.erp.endpoints]]
name = "WorkOrders"
path = "WorkOrders"
key = "/ID"
watermark = {{ field = "/modifiedAt", filter = "$filter=modifiedAt ge {{watermark}}&$orderby=modifiedAt,ID&$top=50", overlap_s = 0 }}

[[sources.erp.endpoints]]
name = "Calibrations"
path = "Calibrations"
key = "/ID"

[[records]]
name = "erp_work_orders"
kind = "traveler"
trigger = {{ type = "row", source = "erp", endpoint = "WorkOrders" }}
dedupe_key = "{{/ID}}/{{/modifiedAt}}"
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}
"traveler.status" = {{ pointer = "/status", map = {{ RELEASED = "queued", IN_PROGRESS = "started" }} }}

[[records]]
name = "erp_calibrations"
kind = "calibration"
trigger = {{ type = "row", source = "erp", endpoint = "Calibrations" }}
dedupe_key = "{{/ID}}/{{/modifiedAt}}"
[records.fields]
"calibration.instrument_id" = {{ pointer = "/workOrder" }}
"#
    )
}

/// (work order or instrument, record id) of every record of `kind`.
fn versions_in_journal(dir: &std::path::Path, kind: &str) -> Vec<(String, String)> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.bodies_of_kind(kind))
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).expect("json");
            let name = v["subject"]["work_order"]
                .as_str()
                .or(v["calibration"]["instrument_id"].as_str())
                .unwrap_or("")
                .to_string();
            (name, v["id"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn watermark(dir: &std::path::Path) -> Option<String> {
    crate::support::source_state_value(&dir.join("data"), "erp", "watermark:WorkOrders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_incremental_sync_under_churn_keeps_every_version_once_and_resumes() {
    let mut erp = Erp::default();
    erp.add_rows("WorkOrders", 230);
    erp.add_rows("Calibrations", 120);
    erp.churn_left = 25;
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &agent_toml(&server.url(), "erp123")))
        .await
        .expect("start");
    let expected = || {
        server
            .erp
            .lock()
            .expect("lock")
            .versions
            .iter()
            .filter(|(s, _, _)| s == "WorkOrders")
            .count()
    };
    eventually(WAIT, "every work-order version journaled", || {
        let churn_done = server.erp.lock().expect("lock").churn_left == 0;
        churn_done && versions_in_journal(dir.path(), "traveler").len() == expected()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // a few more polls change nothing
    agent.stop("test").await;

    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    let bodies = store.bodies_of_kind("traveler").expect("travelers");
    // No version twice: each work order changes at most once, so (work order, status) is unique.
    let mut seen = HashSet::new();
    for b in &bodies {
        let v: Value = serde_json::from_str(b).expect("json");
        assert_schema_valid(&v);
        let key = (
            v["subject"]["work_order"].to_string(),
            v["traveler"]["status"].to_string(),
        );
        assert!(seen.insert(key.clone()), "{key:?} journaled twice");
    }
    assert_eq!(
        bodies.len(),
        expected(),
        "each version of each row exactly once (230 rows + 25 changes)"
    );
    assert_eq!(bodies.len(), 255);
    let started = bodies
        .iter()
        .filter(|b| b.contains("\"status\":\"started\""))
        .count();
    assert_eq!(started, 25, "every change was seen as a new version");
    assert_eq!(
        store.bodies_of_kind("calibration").expect("cal").len(),
        120,
        "full reads follow nextLink; dedupe drops repeats"
    );
    let mark = watermark(dir.path()).expect("watermark committed");

    // A restart resumes from the committed watermark: nothing is journaled twice.
    let before = server.erp.lock().expect("lock").requests.len();
    let agent = Agent::start(config(dir.path(), &agent_toml(&server.url(), "erp123")))
        .await
        .expect("restart");
    eventually(WAIT, "a few polls after the restart", || {
        server.erp.lock().expect("lock").requests.len() > before + 4
    })
    .await;
    agent.stop("test").await;
    let requests = server.erp.lock().expect("lock").requests.clone();
    let first_after = requests[before..]
        .iter()
        .find(|(_, s, _)| s == "WorkOrders")
        .expect("a request");
    let encoded: String = url::form_urlencoded::byte_serialize(mark.as_bytes()).collect();
    assert!(
        first_after.2.contains(&encoded),
        "resumes at the watermark {mark}: {}",
        first_after.2
    );
    let store = Store::open_ro(&dir.path().join("data")).expect("journal");
    assert_eq!(store.bodies_of_kind("traveler").expect("t").len(), 255);
    assert_eq!(store.bodies_of_kind("calibration").expect("c").len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_responses_keep_the_watermark_and_other_endpoints_go_on() {
    let mut erp = Erp::default();
    erp.add_rows("WorkOrders", 10);
    erp.add_rows("Calibrations", 5);
    erp.faults.insert(
        "WorkOrders".into(),
        [Fault::Html, Fault::RowWithoutKey, Fault::Status(500, None)]
            .into_iter()
            .collect(),
    );
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &agent_toml(&server.url(), "erp123")))
        .await
        .expect("start");
    eventually(WAIT, "calibrations while work orders fail", || {
        versions_in_journal(dir.path(), "calibration").len() == 5
    })
    .await;
    eventually(WAIT, "work orders once the ERP recovers", || {
        versions_in_journal(dir.path(), "traveler").len() == 10
    })
    .await;
    agent.stop("test").await;
    let n_wo: usize = server
        .erp
        .lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|(_, s, _)| s == "WorkOrders")
        .count();
    assert!(n_wo >= 4, "three failures, then success: {n_wo} requests");
    // Nothing of a bad page was journaled: exactly the 10 rows, none of the malformed ones.
    assert!(versions_in_journal(dir.path(), "traveler")
        .iter()
        .all(|(wo, _)| wo.starts_with("WO-0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let mut erp = Erp::default();
    erp.add_rows("WorkOrders", 3);
    erp.faults.insert(
        "WorkOrders".into(),
        [Fault::Status(429, Some("2"))].into_iter().collect(),
    );
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &agent_toml(&server.url(), "erp123")))
        .await
        .expect("start");
    eventually(WAIT, "work orders after the wait", || {
        versions_in_journal(dir.path(), "traveler").len() == 3
    })
    .await;
    agent.stop("test").await;
    let req: Vec<_> = server
        .erp
        .lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|(_, s, _)| s == "WorkOrders")
        .map(|(t, _, _)| *t)
        .collect();
    let waited = req[1].duration_since(req[0]);
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}; Retry-After was 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_journal_nothing() {
    let mut erp = Erp::default();
    erp.add_rows("WorkOrders", 3);
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &agent_toml(&server.url(), "wrong")))
        .await
        .expect("start");
    eventually(WAIT, "a few refused polls", || {
        server.erp.lock().expect("lock").requests.len() >= 3
    })
    .await;
    agent.stop("test").await;
    assert!(versions_in_journal(dir.path(), "traveler").is_empty());
    assert_eq!(watermark(dir.path()), None, "the watermark does not move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_cached_refreshed_before_expiry_and_after_a_401() {
    let mut erp = Erp::default();
    erp.oauth = true;
    erp.add_rows("WorkOrders", 5);
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let toml = AgentToml::parse(&agent_toml(&server.url(), "unused"))
        .set_toml(
            "sources.erp.auth",
            &format!(
                r#"{{ type = "oauth2", token_url = "http://{}/oauth/token", client_id = "gw", client_secret = "s3cret" }}"#,
                server.addr
            ),
        )
        .to_string();
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "work orders with a token", || {
        versions_in_journal(dir.path(), "traveler").len() == 5
    })
    .await;
    // Tokens live 2 s and are renewed at 80 %: over 3 s of polling every 200 ms, 2 or 3 tokens, not 15.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let issued = server.erp.lock().expect("lock").tokens_issued;
    assert!((2..=4).contains(&issued), "{issued} tokens for ~15 polls");
    // The server forgets every token: the next poll gets a 401, fetches a new token and goes on.
    {
        let mut erp = server.erp.lock().expect("lock");
        erp.valid_tokens.clear();
        erp.add_rows("WorkOrders", 3);
    }
    eventually(WAIT, "the new rows after a revoked token", || {
        versions_in_journal(dir.path(), "traveler").len() == 8
    })
    .await;
    agent.stop("test").await;
    let erp = server.erp.lock().expect("lock");
    assert!(erp.unauthorized >= 1, "the revoked token was refused");
    assert!(erp.tokens_issued > issued, "a fresh token after the 401");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_cursor_and_link_paging_read_every_row() {
    let mut erp = Erp::default();
    erp.add_rows("Items", 100);
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let toml = format!(
        r#"
[agent]
gateway_id = "gw-rest"
data_dir = "data"

[sources.api]
type = "rest"
url = "{}"
poll_interval_ms = 60000

[[sources.api.endpoints]]
name = "items"
path = "api/items"
rows = "/items"
key = "/ID"
paging = "offset"
page_size = 40

[[sources.api.endpoints]]
name = "feed"
path = "api/feed"
rows = "/data"
key = "/ID"
paging = "cursor"

[[sources.api.endpoints]]
name = "linked"
path = "api/linked"
rows = ""
key = "/ID"
paging = "link"

[[records]]
name = "linked"
kind = "inspection"
trigger = {{ type = "row", source = "api", endpoint = "linked" }}
dedupe_key = "linked/{{/ID}}"
required = ["subject.work_order"]
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}

[[records]]
name = "items"
kind = "traveler"
trigger = {{ type = "row", source = "api", endpoint = "items" }}
dedupe_key = "items/{{/ID}}"
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}

[[records]]
name = "feed"
kind = "calibration"
trigger = {{ type = "row", source = "api", endpoint = "feed" }}
dedupe_key = "feed/{{/ID}}"
[records.fields]
"calibration.instrument_id" = {{ pointer = "/workOrder" }}
"#,
        server.url()
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "every row of the three endpoints", || {
        versions_in_journal(dir.path(), "traveler").len() == 100
            && versions_in_journal(dir.path(), "calibration").len() == 100
            && versions_in_journal(dir.path(), "inspection").len() == 100
    })
    .await;
    agent.stop("test").await;
    let requests = server.erp.lock().expect("lock").requests.clone();
    let items: Vec<&String> = requests
        .iter()
        .filter(|(_, k, _)| k == "items")
        .map(|(_, _, q)| q)
        .collect();
    assert_eq!(items.len(), 3, "40 + 40 + 20 rows: {items:?}");
    assert!(
        items[2].contains("offset=80") && items[2].contains("limit=40"),
        "{items:?}"
    );
    let feed: Vec<&String> = requests
        .iter()
        .filter(|(_, k, _)| k == "feed")
        .map(|(_, _, q)| q)
        .collect();
    assert_eq!(feed.len(), 4, "30 + 30 + 30 + 10 rows: {feed:?}");
    assert!(feed[3].contains("cursor=c90"), "{feed:?}");
    let linked: Vec<&String> = requests
        .iter()
        .filter(|(_, k, _)| k == "linked")
        .map(|(_, _, q)| q)
        .collect();
    assert_eq!(
        linked.len(),
        4,
        "4 pages of 25 via Link rel=next: {linked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_size_cap_is_refused_and_nothing_is_journaled() {
    let mut erp = Erp::default();
    erp.add_rows("Items", 100);
    let server = ErpServer::start(erp).await;
    let dir = tempdir();
    let toml = format!(
        r#"
[agent]
gateway_id = "gw-rest"
data_dir = "data"

[sources.api]
type = "rest"
url = "{}"
poll_interval_ms = 100
retry_initial_ms = 50
retry_max_ms = 100
max_response_bytes = 2000

[[sources.api.endpoints]]
name = "items"
path = "api/items"
rows = "/items"
key = "/ID"
paging = "offset"
page_size = 40

[[records]]
name = "items"
kind = "traveler"
trigger = {{ type = "row", source = "api", endpoint = "items" }}
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}
"#,
        server.url()
    );
    let agent = Agent::start(config(dir.path(), &toml))
        .await
        .expect("start");
    eventually(WAIT, "several refused polls", || {
        server.erp.lock().expect("lock").requests.len() >= 3
    })
    .await;
    agent.stop("test").await;
    assert!(
        versions_in_journal(dir.path(), "traveler").is_empty(),
        "an oversized page is not journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let pki_dir = tempdir();
    let pki = crate::support::tls::TestPki::create(pki_dir.path());
    let mut erp = Erp::default();
    erp.add_rows("WorkOrders", 4);
    let server = ErpServer::start_tls(erp, pki.server_config(true)).await;
    let path = |p: &std::path::Path| p.display().to_string();
    let only_ca = AgentToml::parse(&agent_toml(&server.url(), "erp123"))
        .set("sources.erp.ca_file", path(&pki.ca_file));
    let mutual = only_ca
        .clone()
        .set("sources.erp.client_cert_file", path(&pki.client_cert))
        .set("sources.erp.client_key_file", path(&pki.client_key));
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), &mutual.to_string()))
        .await
        .expect("start");
    eventually(WAIT, "work orders over mutual TLS", || {
        versions_in_journal(dir.path(), "traveler").len() == 4
    })
    .await;
    agent.stop("test").await;

    // Without the client certificate the ERP refuses the handshake: nothing is journaled.
    let dir = tempdir();
    let before = server.erp.lock().expect("lock").requests.len();
    let agent = Agent::start(config(dir.path(), &only_ca.to_string()))
        .await
        .expect("start");
    // A refused first handshake writes no state to wait on: a window for it to try.
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.stop("test").await;
    assert!(versions_in_journal(dir.path(), "traveler").is_empty());
    assert_eq!(
        server.erp.lock().expect("lock").requests.len(),
        before,
        "no request got through"
    );
}
