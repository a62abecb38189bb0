//! A scriptable HTTP peer on 127.0.0.1 for the security tests: it answers every request with what
//! its closure says (a next link elsewhere, a redirect, an endless body) and records what it was
//! sent (path, query, credentials), so a test can prove what the agent did *not* send.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One request as the peer saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

type Answer = dyn Fn(&Seen, &Peer) -> Response + Send + Sync;

/// What the closure may read: its own address and counters.
pub struct Peer {
    pub addr: SocketAddr,
    /// Bytes of streamed bodies taken by the transport so far (see [`endless_body`]).
    pub streamed: Arc<AtomicU64>,
}

/// The running peer.
pub struct Hostile {
    pub addr: SocketAddr,
    pub streamed: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: watch::Sender<bool>,
}

impl Hostile {
    /// Starts a peer on a free port that answers with `answer`.
    pub async fn start(
        answer: impl Fn(&Seen, &Peer) -> Response + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let streamed: Arc<AtomicU64> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let peer = Arc::new(Peer {
            addr,
            streamed: streamed.clone(),
        });
        let log = seen.clone();
        let app = Router::new().fallback(move |req: Request| {
            let answer = answer.clone();
            let peer = peer.clone();
            let log = log.clone();
            async move {
                let s = Seen {
                    method: req.method().to_string(),
                    target: req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    headers: req.headers().clone(),
                };
                log.lock().expect("lock").push(s.clone());
                answer(&s, &peer)
            }
        });
        let (stop, stopped) = watch::channel(false);
        crate::support::tls::serve_router(listener, app, None, stopped);
        Hostile {
            addr,
            streamed,
            seen,
            stop,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many requests had a target starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|s| s.target.starts_with(prefix))
            .count()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A JSON answer with `status`.
pub fn json(status: u16, value: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .expect("response")
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Response {
    Response::builder()
        .status(status)
        .header("location", location)
        .body(Body::empty())
        .expect("response")
}

/// An answer with `status` whose body never ends: 64 KiB chunks for as long as the client reads,
/// each counted into `peer.streamed` when the transport takes it.
pub fn endless_body(status: u16, peer: &Peer) -> Response {
    let counter = peer.streamed.clone();
    let chunk = axum::body::Bytes::from(vec![b'x'; 64 << 10]);
    let stream = futures_util::stream::repeat_with(move || {
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    Response::builder()
        .status(status)
        .body(Body::from_stream(stream))
        .expect("response")
}
