//! An in-process QMS receiver (axum on 127.0.0.1, port 0, optionally TLS) that can be told to fail.
//!
//! It stores every accepted CloudEvent, answers with a scripted status when asked, can refuse batches
//! holding a marked record, and can go down and come back on the same port.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the receiver does with the next request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this status (and optional Retry-After) without storing.
    Status(u16, Option<&'static str>),
    /// Store the batch, then wait this long before answering 200: with a client timeout shorter
    /// than this, the QMS has the records but the agent never hears so (a lost acknowledgement).
    StoreThenDelay(Duration),
}

/// One request as seen by the receiver.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub status: u16,
    pub events: usize,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub x_plant: Option<String>,
}

/// Shared state of the receiver.
#[derive(Default)]
pub struct Inner {
    /// Every event accepted, in arrival order (duplicates included).
    pub events: Mutex<Vec<serde_json::Value>>,
    /// Every request.
    pub requests: Mutex<Vec<Seen>>,
    /// Scripted answers, consumed front first.
    pub script: Mutex<VecDeque<Step>>,
    /// Refuse (400) any batch holding a record whose JSON contains this text.
    pub poison: Mutex<Option<String>>,
    /// When set, accepted events go here instead of into `events` (long load runs).
    pub tap: Mutex<Option<Tap>>,
    /// Answer accepted batches with a receipt id per record (`{"receipts": [{"id", "receipt"}]}`).
    pub receipts: std::sync::atomic::AtomicBool,
}

/// Receives each accepted batch instead of the event store.
pub type Tap = Box<dyn FnMut(Vec<serde_json::Value>) + Send>;

pub struct Qms {
    pub addr: SocketAddr,
    pub state: Arc<Inner>,
    stop: watch::Sender<bool>,
}

async fn receive(State(state): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let parsed: Result<Vec<serde_json::Value>, _> = serde_json::from_slice(&body);
    let step = state.script.lock().expect("lock").pop_front();
    let mut seen = Seen {
        at: Instant::now(),
        status: 200,
        events: parsed.as_ref().map_or(0, |v| v.len()),
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        authorization: header("authorization"),
        x_plant: header("x-plant"),
    };
    let response = match (step, parsed) {
        (_, Err(e)) => {
            seen.status = 400;
            (StatusCode::BAD_REQUEST, format!("bad batch: {e}")).into_response()
        }
        (Some(Step::Status(code, retry_after)), _) => {
            seen.status = code;
            let mut r = (StatusCode::from_u16(code).expect("code"), "scripted").into_response();
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert("retry-after", ra.parse().expect("header"));
            }
            r
        }
        (step, Ok(events)) => {
            let poison = state.poison.lock().expect("lock").clone();
            if poison.is_some_and(|p| events.iter().any(|e| e.to_string().contains(&p))) {
                seen.status = 400;
                (StatusCode::BAD_REQUEST, "record refused: poison").into_response()
            } else {
                let answer = if state.receipts.load(std::sync::atomic::Ordering::Relaxed) {
                    let held = state.events.lock().expect("lock").len();
                    let receipts: Vec<serde_json::Value> = events
                        .iter()
                        .enumerate()
                        .map(|(i, e)| serde_json::json!({ "id": e["id"], "receipt": format!("QMS-{}", held + i + 1) }))
                        .collect();
                    serde_json::json!({ "receipts": receipts }).to_string()
                } else {
                    String::new()
                };
                match state.tap.lock().expect("lock").as_mut() {
                    Some(tap) => tap(events),
                    None => state.events.lock().expect("lock").extend(events),
                }
                if let Some(Step::StoreThenDelay(d)) = step {
                    // Logged before the wait: the connection may be dropped during it.
                    state.requests.lock().expect("lock").push(seen.clone());
                    tokio::time::sleep(d).await;
                    return StatusCode::OK.into_response();
                }
                (StatusCode::OK, answer).into_response()
            }
        }
    };
    state.requests.lock().expect("lock").push(seen);
    response
}

fn router(state: Arc<Inner>) -> Router {
    Router::new()
        .route("/events", post(receive))
        .with_state(state)
}

impl Qms {
    /// Starts a plain-HTTP receiver on a free port.
    pub async fn start() -> Qms {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, Arc::new(Inner::default()), None)
    }

    /// Starts a receiver on `addr` (to come back on the same port), sharing `state`.
    pub async fn start_on(addr: SocketAddr, state: Arc<Inner>) -> Qms {
        Self::bind(addr, state).await.expect("bind again")
    }

    /// Starts a receiver on `addr`, sharing `state`; the bind error is the caller's.
    pub async fn bind(addr: SocketAddr, state: Arc<Inner>) -> std::io::Result<Qms> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, state, None))
    }

    /// Starts an HTTPS receiver.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Qms {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, Arc::new(Inner::default()), Some(config))
    }

    fn serve(
        listener: TcpListener,
        state: Arc<Inner>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Qms {
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        crate::tls::serve_router(listener, router(state.clone()), tls, stopped);
        Qms { addr, state, stop }
    }

    /// The URL to configure in the sink.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// The HTTPS URL.
    pub fn https_url(&self) -> String {
        format!("https://{}/events", self.addr)
    }

    /// Stops listening and drops open connections.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Queues scripted answers.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.state.script.lock().expect("lock").extend(steps);
    }

    /// Accepted events (duplicates included).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.state.events.lock().expect("lock").clone()
    }

    /// Ids of accepted events after dedupe, in first-arrival order.
    pub fn unique_ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.events()
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Drop for Qms {
    fn drop(&mut self) {
        self.stop();
    }
}
