//! An in-process OData-style ERP (axum on 127.0.0.1, port 0): work orders with `modifiedAt`, server
//! pages of 100 with a relative `@odata.nextLink`, `$filter=modifiedAt ge …`, `$top`, basic auth,
//! rows that change while pages are walked, and scripted failures.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with an optional Retry-After.
    Status(u16, Option<&'static str>),
    /// 200 with an HTML body.
    Html,
    /// 200 with rows of which one lacks its key.
    RowWithoutKey,
}

#[derive(Default)]
pub struct Erp {
    /// Rows per entity set, each with `ID` and `modifiedAt` (RFC 3339, ms).
    pub sets: HashMap<String, Vec<Value>>,
    /// Every version ever served or created: (set, ID, modifiedAt).
    pub versions: Vec<(String, i64, String)>,
    /// Change one work order (round robin, never the same twice) each time a page is served, this
    /// many times.
    pub churn_left: usize,
    churn_next: usize,
    clock_ms: i64,
    /// Scripted faults per entity set.
    pub faults: HashMap<String, VecDeque<Fault>>,
    /// (when, set, query) of every request.
    pub requests: Vec<(Instant, String, String)>,
    /// Require OAuth bearer tokens from `/oauth/token` (client `gw` / `s3cret`) instead of basic auth.
    pub oauth: bool,
    /// Tokens issued so far.
    pub tokens_issued: usize,
    /// Valid tokens and when they expire (tokens live 2 s).
    pub valid_tokens: HashMap<String, Instant>,
    /// Requests refused with 401.
    pub unauthorized: usize,
}

impl Erp {
    fn tick(&mut self) -> String {
        self.clock_ms += 1000;
        crate::clock::format(crate::clock::from_unix_ms(
            1_767_225_600_000 + self.clock_ms,
        ))
    }

    /// Adds `n` rows to `set`.
    pub fn add_rows(&mut self, set: &str, n: usize) {
        for _ in 0..n {
            let at = self.tick();
            let rows = self.sets.entry(set.to_string()).or_default();
            let id = rows.len() as i64 + 1;
            rows.push(json!({ "ID": id, "workOrder": format!("WO-{id:05}"), "status": "RELEASED", "modifiedAt": at }));
            self.versions.push((set.to_string(), id, at));
        }
    }

    fn churn(&mut self, set: &str) {
        if self.churn_left == 0 || set != "WorkOrders" {
            return;
        }
        let n = self.sets.get(set).map_or(0, Vec::len);
        if n == 0 {
            return;
        }
        self.churn_left -= 1;
        let at = self.tick();
        let i = self.churn_next % n;
        self.churn_next += 7; // a different row each time
        if let Some(row) = self.sets.get_mut(set).and_then(|r| r.get_mut(i)) {
            row["modifiedAt"] = json!(at);
            row["status"] = json!("IN_PROGRESS");
            let id = row["ID"].as_i64().unwrap_or(0);
            self.versions.push((set.to_string(), id, at));
        }
    }
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        let k: String = url::form_urlencoded::parse(format!("{k}=").as_bytes())
            .next()?
            .0
            .into_owned();
        if k == name {
            Some(
                url::form_urlencoded::parse(format!("x={v}").as_bytes())
                    .next()?
                    .1
                    .into_owned(),
            )
        } else {
            None
        }
    })
}

async fn entity_set(
    State(erp): State<Arc<Mutex<Erp>>>,
    Path(set): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let mut erp = erp.lock().expect("lock");
    erp.requests
        .push((Instant::now(), set.clone(), query.clone()));
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = if erp.oauth {
        auth.strip_prefix("Bearer ")
            .and_then(|t| erp.valid_tokens.get(t))
            .is_some_and(|exp| Instant::now() < *exp)
    } else {
        auth == "Basic ZXJwLXJlYWRlcjplcnAxMjM=" // erp-reader:erp123
    };
    if !allowed {
        erp.unauthorized += 1;
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    if let Some(f) = erp.faults.get_mut(&set).and_then(VecDeque::pop_front) {
        return match f {
            Fault::Status(code, ra) => {
                let mut r = (StatusCode::from_u16(code).expect("code"), "busy").into_response();
                if let Some(ra) = ra {
                    r.headers_mut()
                        .insert("retry-after", ra.parse().expect("header"));
                }
                r
            }
            Fault::Html => (
                StatusCode::OK,
                "<html><body><h1>Gateway error</h1></body></html>",
            )
                .into_response(),
            Fault::RowWithoutKey => {
                axum::Json(json!({ "value": [{ "ID": 1 }, { "workOrder": "WO-X" }] }))
                    .into_response()
            }
        };
    }
    let mut rows: Vec<Value> = erp.sets.get(&set).cloned().unwrap_or_default();
    if let Some(filter) = param(&query, "$filter") {
        if let Some(v) = filter.strip_prefix("modifiedAt ge ") {
            let from = crate::clock::parse(v.trim()).expect("filter value is a time");
            rows.retain(|r| {
                crate::clock::parse(r["modifiedAt"].as_str().unwrap_or(""))
                    .is_some_and(|t| t >= from)
            });
        }
    }
    if param(&query, "$orderby").is_some_and(|o| o.starts_with("modifiedAt")) {
        rows.sort_by(|a, b| {
            a["modifiedAt"]
                .as_str()
                .cmp(&b["modifiedAt"].as_str())
                .then(a["ID"].as_i64().cmp(&b["ID"].as_i64()))
        });
    }
    let skip: usize = param(&query, "$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (limit, with_next) = match param(&query, "$top").and_then(|t| t.parse::<usize>().ok()) {
        Some(top) => (top.min(1000), false),
        None => (100, true),
    };
    let page: Vec<Value> = rows.iter().skip(skip).take(limit).cloned().collect();
    let mut body = json!({ "@odata.context": "$metadata#WorkOrders", "value": page });
    if with_next && rows.len() > skip + limit {
        body["@odata.nextLink"] = json!(format!("{set}?%24skiptoken={}", skip + limit));
    }
    erp.churn(&set);
    axum::Json(body).into_response()
}

async fn token(State(erp): State<Arc<Mutex<Erp>>>, headers: HeaderMap, body: String) -> Response {
    let mut erp = erp.lock().expect("lock");
    // client gw:s3cret
    let client_ok =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic Z3c6czNjcmV0");
    if !client_ok || !body.contains("grant_type=client_credentials") {
        return (StatusCode::UNAUTHORIZED, "invalid_client").into_response();
    }
    erp.tokens_issued += 1;
    let t = format!("tok-{}", erp.tokens_issued);
    erp.valid_tokens.insert(
        t.clone(),
        Instant::now() + std::time::Duration::from_secs(2),
    );
    axum::Json(json!({ "access_token": t, "token_type": "Bearer", "expires_in": 2 }))
        .into_response()
}

/// A plain JSON API: `/api/items?offset=&limit=` → `{"items": [...]}`, `/api/feed?cursor=` →
/// `{"data": [...30 rows], "next_cursor": "…"}` over the rows of set `Items`.
async fn api(
    State(erp): State<Arc<Mutex<Erp>>>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let mut erp = erp.lock().expect("lock");
    erp.requests
        .push((Instant::now(), kind.clone(), query.clone()));
    let rows: Vec<Value> = erp.sets.get("Items").cloned().unwrap_or_default();
    match kind.as_str() {
        "linked" => {
            // RFC 8288: pages of 25, the next one in a Link header (relative).
            let page: usize = param(&query, "page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let rows: Vec<Value> = rows.iter().skip(page * 25).take(25).cloned().collect();
            let mut r = axum::Json(json!(rows)).into_response();
            if (page + 1) * 25 < erp.sets.get("Items").map_or(0, Vec::len) {
                let link = format!(
                    "<linked?page={}>; rel=\"next\", <linked?page=0>; rel=\"first\"",
                    page + 1
                );
                r.headers_mut()
                    .insert("link", link.parse().expect("header"));
            }
            r
        }
        "items" => {
            let offset: usize = param(&query, "offset")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let limit: usize = param(&query, "limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            let page: Vec<Value> = rows.iter().skip(offset).take(limit).cloned().collect();
            axum::Json(json!({ "items": page })).into_response()
        }
        _ => {
            let from: usize = param(&query, "cursor")
                .and_then(|v| v.strip_prefix('c').and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            let page: Vec<Value> = rows.iter().skip(from).take(30).cloned().collect();
            let mut body = json!({ "data": page });
            if from + 30 < rows.len() {
                body["next_cursor"] = json!(format!("c{}", from + 30));
            }
            axum::Json(body).into_response()
        }
    }
}

pub struct ErpServer {
    pub addr: SocketAddr,
    pub erp: Arc<Mutex<Erp>>,
    scheme: &'static str,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl ErpServer {
    pub async fn start(erp: Erp) -> ErpServer {
        Self::start_with(erp, None, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind")
    }

    /// The ERP on `addr` (the demo's fixed address).
    pub async fn start_on(erp: Erp, addr: SocketAddr) -> std::io::Result<ErpServer> {
        Self::start_with(erp, None, addr).await
    }

    /// The ERP over HTTPS.
    pub async fn start_tls(erp: Erp, tls: Arc<rustls::ServerConfig>) -> ErpServer {
        Self::start_with(erp, Some(tls), "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind")
    }

    async fn start_with(
        erp: Erp,
        tls: Option<Arc<rustls::ServerConfig>>,
        addr: SocketAddr,
    ) -> std::io::Result<ErpServer> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let erp = Arc::new(Mutex::new(erp));
        let app = Router::new()
            .route("/odata/v4/erp/{set}", get(entity_set))
            .route("/oauth/token", axum::routing::post(token))
            .route("/odata/v4/erp/api/{kind}", get(api))
            .with_state(erp.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        crate::tls::serve_router(listener, app, tls, stopped);
        Ok(ErpServer {
            addr,
            erp,
            scheme,
            _stop: stop,
        })
    }

    pub fn url(&self) -> String {
        format!("{}://{}/odata/v4/erp/", self.scheme, self.addr)
    }
}
