//! The HTTP endpoint (hyper, HTTP/1.1): `GET /metrics` (OpenMetrics text) and `GET /healthz`
//! (200 `{"status":"ok","reasons":[]}` or 503 `{"status":"degraded","reasons":[…]}`).
//!
//! Each request reads the journal read-only (the same [`status::collect_live`] as `status`), off the
//! async threads. A port that cannot be bound is logged and the agent runs on without the endpoint:
//! evidence collection matters more than its monitoring.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Metrics;
use crate::audit::status;
use crate::config::Config;
use crate::runtime::Shutdown;

/// A client has this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `[metrics] listen` and serves until `stop`. Returns the bound address, or `None` (logged)
/// if the endpoint is disabled or the port cannot be bound.
pub async fn start(
    config: Arc<Config>,
    metrics: Metrics,
    mut stop: Shutdown,
) -> Option<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if !config.metrics.enabled {
        return None;
    }
    let listener = match TcpListener::bind(&config.metrics.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "metrics: cannot listen on {} ({e}); running without /metrics and /healthz. Free the port or set [metrics] listen",
                config.metrics.listen
            );
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait() => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (config, metrics) = (config.clone(), metrics.clone());
            let service = hyper::service::service_fn(move |req| {
                let (config, metrics) = (config.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(answer(req, &config, &metrics).await) }
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!("metrics: connection ended: {e}");
                }
            });
        }
    });
    Some((addr, task))
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn answer(
    req: Request<Incoming>,
    config: &Arc<Config>,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics or /healthz\n".into(),
        );
    }
    let path = req.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /metrics or /healthz\n".into(),
        );
    }
    let c = config.clone();
    let collected = tokio::task::spawn_blocking(move || status::collect_live(&c))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match (path, collected) {
        ("/metrics", Ok(s)) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(&s, &config.sha256),
        ),
        ("/metrics", Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("cannot read the journal: {e}\n"),
        ),
        (_, Ok(s)) => {
            let code = if s.health.ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_string(&s.health).unwrap_or_default();
            reply(code, "application/json", body)
        }
        (_, Err(e)) => {
            let health = status::Health::degraded(vec![format!("cannot read the journal: {e}")]);
            let body = serde_json::to_string(&health).unwrap_or_default();
            reply(StatusCode::SERVICE_UNAVAILABLE, "application/json", body)
        }
    }
}
