//! The REST source at run time: one task per endpoint polls, walks pages, hands every row to the
//! record rules, and commits the watermark with the records of each page.
//!
//! - A page is journaled before the next is fetched; the watermark goes into the same transaction as
//!   the page's records, so a restart resumes exactly (rows read twice are dropped by dedupe keys).
//! - A bad response (not 2xx, not JSON, no row array, a row without its key, too large) is an error
//!   naming the endpoint and a snippet; nothing of that page is journaled, the watermark stays, the
//!   endpoint retries with backoff, and the other endpoints go on.
//! - 429 and 503 wait for `Retry-After`. A peer that cannot be reached is an outage of that
//!   endpoint (each endpoint has its own): a gap record when it is back.
//! - Next links are followed only to the source's own origin (scheme, host, port) or one the
//!   endpoint lists in `allowed_origins`, never to a page already read in the same poll, and for at
//!   most `max_pages` pages: the source's credentials and headers go only where they were configured
//!   for, and a looping service cannot keep the agent busy. Any of these stops the poll, keeps the
//!   watermark and counts as an outage of the endpoint.
//! - No redirect is followed (see `sinks::http::sink::build_client`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::config::{Endpoint, Paging, RestSourceConfig};
use super::paging::{field_text, later, link_next, odata_next, with_overlap};
use crate::config::redact;
use crate::journal::StateUpdate;
use crate::records::observation::{Message, Observation, Origin};
use crate::records::pipeline::{Input, Sender};
use crate::runtime::logging::human_duration;
use crate::sources::SourceRuntime;

/// A built REST source.
pub struct RestSource {
    id: String,
    cfg: RestSourceConfig,
    client: reqwest::Client,
    tokens: Option<crate::transport::http::TokenSource>,
    base: url::Url,
    marks: HashMap<String, String>,
}

/// Why a poll of an endpoint failed.
#[derive(Debug)]
enum PollError {
    /// The peer could not be reached: an outage.
    Unreachable(String),
    /// The peer asked to wait.
    Wait(Duration, String),
    /// The answer is unusable: logged, retried with backoff.
    Bad(String),
    /// The service led the poll where the agent does not follow (a next link to another origin, a
    /// paging cycle, too many pages): the poll stops, the watermark stays, and it counts as an
    /// outage of the endpoint (its data cannot be read) until a poll completes.
    Refused(String),
    /// The pipeline is gone (shutdown).
    Closed,
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `url` with query parameter `name` set to `value` (replacing an earlier value).
fn with_param(url: &url::Url, name: &str, value: &str) -> url::Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    out
}

/// The source-state key of an endpoint's watermark.
pub fn watermark_key(endpoint: &str) -> String {
    format!("watermark:{endpoint}")
}

impl RestSource {
    /// Builds the client; `state` is the source's committed state from the journal (watermarks).
    pub fn new(
        id: &str,
        cfg: &RestSourceConfig,
        state: &[(String, String)],
    ) -> Result<RestSource, crate::runtime::BuildError> {
        let client =
            crate::transport::http::build_client(&cfg.client_options()).map_err(|e| e.0)?;
        let base = url::Url::parse(&cfg.url)
            .map_err(|e| format!("url {}: {e}", crate::config::redact::url_text(&cfg.url)))?;
        let marks = state
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("watermark:")
                    .map(|e| (e.to_string(), v.clone()))
            })
            .collect();
        let tokens = crate::transport::http::TokenSource::for_auth(cfg.auth.as_ref(), &client);
        Ok(RestSource {
            id: id.to_string(),
            cfg: cfg.clone(),
            tokens,
            client,
            base,
            marks,
        })
    }

    /// Polls every endpoint, each in its own task, until shutdown.
    pub(crate) async fn run(self, rt: SourceRuntime) {
        let mut tasks = tokio::task::JoinSet::new();
        let me = std::sync::Arc::new(self);
        for (i, ep) in me.cfg.endpoints.iter().enumerate() {
            let mark = ep.watermark.as_ref().map(|w| {
                me.marks
                    .get(&ep.name)
                    .cloned()
                    .unwrap_or_else(|| w.initial.clone())
            });
            tasks.spawn(me.clone().endpoint_loop(i, mark, rt.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// One endpoint: its own outages (a channel of the source), its own backoff.
    async fn endpoint_loop(
        self: std::sync::Arc<Self>,
        index: usize,
        mut mark: Option<String>,
        rt: SourceRuntime,
    ) {
        let ep = &self.cfg.endpoints[index];
        let mut sup = rt
            .supervisor(
                &self.id,
                format!("REST source {} endpoint {}", self.id, ep.name),
                (
                    Duration::from_millis(self.cfg.retry_initial_ms),
                    Duration::from_millis(self.cfg.retry_max_ms),
                ),
            )
            .channel(ep.name.clone())
            .advice("The watermark stays.");
        let mut shutdown = rt.shutdown.clone();
        let poll = Duration::from_millis(self.cfg.poll_interval_ms);
        while !shutdown.is_triggered() {
            let wait = match self.poll(ep, &mut mark, &rt.tx).await {
                Ok(rows) => {
                    tracing::debug!("rest source {} endpoint {}: {rows} rows", self.id, ep.name);
                    if sup.up().await.is_err() {
                        return;
                    }
                    poll
                }
                Err(PollError::Closed) => return,
                Err(PollError::Wait(delay, why)) => sup.failed_for(&why, delay),
                Err(PollError::Bad(why)) => sup.failed(&why),
                Err(PollError::Unreachable(why) | PollError::Refused(why)) => {
                    let delay = sup.failed(&why);
                    let gap = format!(
                        "endpoint {} of REST service {} cannot be read: {why}",
                        ep.name,
                        redact::url(&self.base)
                    );
                    if sup.down(gap).await.is_err() {
                        return;
                    }
                    delay
                }
            };
            if sup.wait(wait, &mut shutdown).await.is_err() {
                return;
            }
        }
    }

    fn url_for(&self, ep: &Endpoint, mark: Option<&str>) -> Result<url::Url, PollError> {
        let mut url = self
            .base
            .join(&ep.path)
            .map_err(|e| PollError::Bad(format!("path {:?}: {e}", ep.path)))?;
        let mut query: Vec<String> = Vec::new();
        if let Some(q) = &ep.query {
            query.push(q.clone());
        }
        if let (Some(w), Some(m)) = (&ep.watermark, mark) {
            let encoded: String = url::form_urlencoded::byte_serialize(m.as_bytes()).collect();
            query.push(w.filter.replace("{watermark}", &encoded));
        }
        if !query.is_empty() {
            url.set_query(Some(&query.join("&")));
        }
        Ok(url)
    }

    /// One GET: the parsed body and the `Link` header.
    async fn fetch(
        &self,
        ep: &Endpoint,
        url: &url::Url,
    ) -> Result<(Value, Option<String>), PollError> {
        let what = format!("{} ({})", ep.name, redact::url(url));
        let mut resp = self.get(url).await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            if let Some(t) = &self.tokens {
                // The token may have been revoked or expired early: one more try with a fresh one.
                t.invalidate().await;
                resp = self.get(url).await?;
            }
        }
        let status = resp.status();
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::transport::http::parse_retry_after);
        if resp
            .content_length()
            .is_some_and(|n| n as usize > self.cfg.max_response_bytes)
        {
            return Err(PollError::Bad(format!(
                "{what}: response of {} bytes exceeds max_response_bytes ({})",
                resp.content_length().unwrap_or(0),
                self.cfg.max_response_bytes
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| PollError::Unreachable(format!("{what}: reading the response: {e}")))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > self.cfg.max_response_bytes {
                return Err(PollError::Bad(format!(
                    "{what}: response exceeds max_response_bytes ({})",
                    self.cfg.max_response_bytes
                )));
            }
        }
        if status.as_u16() == 429 || status.as_u16() == 503 {
            let d = retry_after
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs(3600));
            return Err(PollError::Wait(
                d,
                format!("{what}: HTTP {status}, waiting {}", human_duration(d)),
            ));
        }
        if status.is_server_error() {
            // The service answers but cannot serve: an outage like an unreachable host (a gap is
            // recorded when it ends: row versions changed twice in that time are not seen).
            return Err(PollError::Unreachable(format!(
                "{what}: HTTP {status}: {}",
                snippet(&body)
            )));
        }
        if status.is_redirection() {
            return Err(PollError::Bad(format!(
                "{what}: {}",
                crate::transport::http::redirect_error(status, location.as_deref())
            )));
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => " (check the source's credentials)",
                404 => " (check the endpoint path)",
                _ => "",
            };
            return Err(PollError::Bad(format!(
                "{what}: HTTP {status}{hint}: {}",
                snippet(&body)
            )));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            PollError::Bad(format!(
                "{what}: response is not JSON ({e}): {}",
                snippet(&body)
            ))
        })?;
        Ok((value, link))
    }

    /// One GET with the current OAuth token, if any.
    async fn get(&self, url: &url::Url) -> Result<reqwest::Response, PollError> {
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.tokens {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                t.header().await.map_err(|e| PollError::Bad(e.0))?,
            );
        }
        req.send()
            .await
            .map_err(|e| PollError::Unreachable(crate::transport::http::describe_reqwest_error(&e)))
    }

    /// One poll of an endpoint: every page, each journaled (with its watermark) before the next.
    async fn poll(
        &self,
        ep: &Endpoint,
        mark: &mut Option<String>,
        tx: &Sender,
    ) -> Result<usize, PollError> {
        let mut total = 0;
        // Keyset walk for watermark endpoints, starting `overlap_s` before the committed watermark.
        let mut query_mark = match (&ep.watermark, mark.as_deref()) {
            (Some(w), Some(m)) => Some(with_overlap(m, w.overlap_s)),
            _ => None,
        };
        let mut url = self.url_for(ep, query_mark.as_deref())?;
        if ep.watermark.is_none() && ep.paging == Paging::Offset {
            url = with_param(&url, &ep.limit_param, &ep.page_size.to_string());
            url = with_param(&url, &ep.offset_param, "0");
        }
        let first = url.clone();
        let mut offset = 0u64;
        let mut seen = HashSet::from([url.clone()]);
        loop {
            let (body, link) = self.fetch(ep, &url).await?;
            let what = format!("{} ({})", ep.name, redact::url(&url));
            let rows = match body.pointer(&ep.rows) {
                Some(Value::Array(rows)) => rows.clone(),
                _ => {
                    return Err(PollError::Bad(format!(
                        "{what}: no array of rows at {:?}: {}",
                        ep.rows,
                        snippet(body.to_string().as_bytes())
                    )))
                }
            };
            for (i, row) in rows.iter().enumerate() {
                if row.pointer(&ep.key).is_none_or(Value::is_null) {
                    return Err(PollError::Bad(format!(
                        "{what}: row {i} has no key {}: {}",
                        ep.key,
                        snippet(row.to_string().as_bytes())
                    )));
                }
            }
            let mut page_mark = mark.clone();
            if let Some(w) = &ep.watermark {
                for row in &rows {
                    if let Some(v) = field_text(row, &w.field) {
                        if page_mark.as_deref().is_none_or(|m| later(&v, m)) {
                            page_mark = Some(v);
                        }
                    }
                }
            }
            let page_len = rows.len();
            total += page_len;
            self.journal_page(
                ep,
                &url,
                rows,
                page_mark.as_deref().filter(|m| Some(*m) != mark.as_deref()),
                tx,
            )
            .await?;
            // The next page.
            let next = match &ep.watermark {
                Some(_) => {
                    // Keyset: go on from the page's highest value while it advances.
                    let advanced = match (&page_mark, &query_mark) {
                        (Some(p), Some(q)) => later(p, q),
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if advanced {
                        query_mark = page_mark.clone();
                        Some(self.url_for(ep, query_mark.as_deref())?)
                    } else {
                        None
                    }
                }
                None => match ep.paging {
                    Paging::Odata => odata_next(&body, &url),
                    Paging::Link => link.as_deref().and_then(|h| link_next(h, &url)),
                    Paging::Offset if (page_len as u64) < ep.page_size || page_len == 0 => None,
                    Paging::Offset => {
                        offset += ep.page_size;
                        Some(with_param(&first, &ep.offset_param, &offset.to_string()))
                    }
                    Paging::Cursor => match body.pointer(&ep.cursor_pointer) {
                        Some(Value::String(c)) if !c.is_empty() => {
                            Some(with_param(&first, &ep.cursor_param, c))
                        }
                        Some(Value::Number(n)) => {
                            Some(with_param(&first, &ep.cursor_param, &n.to_string()))
                        }
                        _ => None,
                    },
                    Paging::None => None,
                },
            };
            if page_mark.is_some() {
                *mark = page_mark;
            }
            match next {
                Some(n) if n != url => {
                    self.may_follow(ep, &n, &mut seen)?;
                    url = n;
                }
                _ => break,
            }
        }
        Ok(total)
    }

    /// Whether a poll may go on to `next`: only to the source's own origin (or one the endpoint
    /// lists), never to a page read before in this poll, and within `max_pages`.
    fn may_follow(
        &self,
        ep: &Endpoint,
        next: &url::Url,
        seen: &mut HashSet<url::Url>,
    ) -> Result<(), PollError> {
        let origin = next.origin();
        let allowed = origin == self.base.origin()
            || ep
                .allowed_origins
                .iter()
                .filter_map(|o| url::Url::parse(o).ok())
                .any(|o| o.origin() == origin);
        if !allowed {
            return Err(PollError::Refused(format!(
                "the next page is on another origin ({}), not followed: the source's credentials are sent only to {}; if that service is meant, list it in allowed_origins",
                origin.ascii_serialization(),
                self.base.origin().ascii_serialization()
            )));
        }
        if seen.len() as u64 >= ep.max_pages {
            return Err(PollError::Refused(format!(
                "more than max_pages ({}) pages in one poll, stopped; raise max_pages if the service really has that many",
                ep.max_pages
            )));
        }
        if !seen.insert(next.clone()) {
            return Err(PollError::Refused(format!(
                "the next page {} was already read in this poll: the service's paging loops, stopped",
                redact::url(next)
            )));
        }
        Ok(())
    }

    /// Hands a page's rows to the pipeline as one observation, with the new watermark: the records
    /// of the page and the watermark commit in one transaction. Waits for the commit.
    async fn journal_page(
        &self,
        ep: &Endpoint,
        url: &url::Url,
        rows: Vec<Value>,
        new_mark: Option<&str>,
        tx: &Sender,
    ) -> Result<(), PollError> {
        let received_ms = crate::time::now_ms();
        let origin = Origin {
            protocol: "rest".into(),
            endpoint: Some(
                redact::url_text(url.as_str().split('?').next().unwrap_or("")).into_owned(),
            ),
            address: None,
        };
        let messages = rows
            .into_iter()
            .map(|row| Message {
                source: self.id.clone(),
                origin: origin.clone(),
                topic: ep.name.clone(),
                doc: row,
                source_ms: None,
                received_ms,
            })
            .collect();
        let mut input = Input::new(Observation::Messages(messages));
        if let Some(m) = new_mark {
            input.state.push(StateUpdate {
                source: self.id.clone(),
                key: watermark_key(&ep.name),
                value: m.to_string(),
            });
        }
        let (ack, rx) = tokio::sync::oneshot::channel();
        input.ack = Some(ack);
        tx.send(input).await.map_err(|_| PollError::Closed)?;
        match rx.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PollError::Bad(format!(
                "{}: the journal refused the page ({e}); the watermark stays",
                ep.name
            ))),
            Err(_) => Err(PollError::Closed),
        }
    }
}
