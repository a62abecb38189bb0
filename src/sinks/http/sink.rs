//! The HTTP sink at run time: the batch body, the request, and how answers are classified (the
//! client, with TLS and authentication, is `crate::transport::http`).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::config::{HttpSinkConfig, WireFormat};
use crate::journal::JournalRow;
use crate::sinks::{SendError, SinkContext};
use crate::transport::http::{
    build_client, describe_reqwest_error, parse_retry_after, read_capped, redirect_error,
    TokenSource,
};

/// Posts batches to one URL.
pub struct HttpSink {
    client: reqwest::Client,
    tokens: Option<TokenSource>,
    url: String,
    format: WireFormat,
    event_source: String,
    type_prefix: String,
    receipts: super::config::ReceiptsConfig,
}

impl HttpSink {
    /// Builds the client for sink `id`.
    pub fn new(
        id: &str,
        config: &HttpSinkConfig,
        ctx: &SinkContext,
    ) -> Result<HttpSink, crate::runtime::BuildError> {
        let client =
            build_client(&config.client_options()).map_err(|e| format!("sink {id}: {e}"))?;
        let tokens = TokenSource::for_auth(config.auth.as_ref(), &client);
        Ok(HttpSink {
            client,
            tokens,
            url: config.url.expose().to_string(),
            format: config.format,
            event_source: crate::sinks::cloudevents::event_source(&ctx.gateway_id),
            type_prefix: config.event_type_prefix.clone(),
            receipts: config.receipts.clone(),
        })
    }

    /// The URL.
    pub fn target(&self) -> String {
        self.url.clone()
    }

    /// The request body for `rows`; `Err` when a record's body is not JSON (in the cloudevents
    /// format, which embeds it).
    pub fn body(&self, rows: &[JournalRow]) -> Result<Vec<u8>, serde_json::Error> {
        match self.format {
            WireFormat::JsonArray => {
                let mut out =
                    Vec::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum::<usize>() + 2);
                out.push(b'[');
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(r.body.as_bytes());
                }
                out.push(b']');
                Ok(out)
            }
            WireFormat::Cloudevents => {
                let mut events = Vec::with_capacity(rows.len());
                for r in rows {
                    events.push(crate::sinks::cloudevents::cloud_event(
                        r,
                        &self.event_source,
                        &self.type_prefix,
                    )?);
                }
                serde_json::to_vec(&events)
            }
        }
    }

    /// POSTs one batch and classifies the answer (see the policy table in the module doc).
    pub async fn send(&mut self, rows: &[JournalRow]) -> Result<super::super::Receipts, SendError> {
        let body = self.body(rows).map_err(|reason| SendError::Reject {
            reason: format!("record cannot be encoded: {reason}"),
        })?;
        let content_type = match self.format {
            WireFormat::Cloudevents => "application/cloudevents-batch+json",
            WireFormat::JsonArray => "application/json",
        };
        let key = match rows {
            [one] => one.id.clone(),
            [first, .., last] => format!("{}..{}", first.id, last.id),
            [] => return Ok(Vec::new()),
        };
        let mut request = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, content_type)
            .header("Idempotency-Key", key)
            .body(body);
        if let Some(t) = &self.tokens {
            let header = t.header().await.map_err(|e| SendError::Retry {
                reason: e.0,
                retry_after: None,
            })?;
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        let response = request.send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Err(SendError::Retry {
                    reason: describe_reqwest_error(&e),
                    retry_after: None,
                })
            }
        };
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            return Err(SendError::Retry {
                reason: redirect_error(status, location),
                retry_after: None,
            });
        }
        let mut response = response;
        if status.is_success() {
            // Receipts are a bonus: an answer that cannot be read is still a delivery.
            let (body, cut) = read_capped(&mut response, MAX_ANSWER_BYTES).await;
            if cut {
                tracing::warn!(
                    "the QMS at {} answered {status} with more than {} KiB: the rest was not read, and receipts in it are not kept",
                    crate::config::redact::url_text(&self.url),
                    MAX_ANSWER_BYTES >> 10
                );
            }
            return Ok(receipts_in(
                &String::from_utf8_lossy(&body),
                &self.receipts,
                rows,
            ));
        }
        if status == StatusCode::UNAUTHORIZED {
            if let Some(t) = &self.tokens {
                t.invalidate().await; // the retry fetches a fresh token
            }
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Only the start of an error answer is read: it is shown, not kept.
        let (body, _) = read_capped(&mut response, MAX_ERROR_BYTES).await;
        let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        Err(classify(status, retry_after, snippet.trim()))
    }
}

/// Most bytes of a 2xx answer read (receipts); beyond it the answer is cut and a warning logged.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Most bytes of an error answer read (its start is shown in the error).
pub const MAX_ERROR_BYTES: usize = 16 << 10;

/// The (record id, receipt id) pairs of a 2xx answer, for records of this batch only.
pub fn receipts_in(
    body: &str,
    cfg: &super::config::ReceiptsConfig,
    rows: &[JournalRow],
) -> super::super::Receipts {
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(list) = answer.pointer(&cfg.list).and_then(|l| l.as_array()) else {
        return Vec::new();
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    list.iter()
        .filter_map(|e| {
            let id = e.pointer(&cfg.record_id).and_then(text)?;
            let receipt = e.pointer(&cfg.receipt_id).and_then(text)?;
            rows.iter().any(|r| r.id == id).then_some((id, receipt))
        })
        .collect()
}

/// Maps an HTTP answer that is not 2xx to what the driver does (module doc of `sinks::http`).
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let code = status.as_u16();
    let answer = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match code {
        408 | 425 | 429 | 500..=599 => SendError::Retry {
            reason: answer,
            retry_after: if code == 429 || code == 503 {
                retry_after
            } else {
                None
            },
        },
        401 | 403 | 407 => SendError::Retry {
            reason: format!("{answer} (check the sink's credentials)"),
            retry_after: None,
        },
        404 | 405 => SendError::Retry {
            reason: format!("{answer} (check the sink's url)"),
            retry_after: None,
        },
        409 => SendError::Retry {
            reason: answer,
            retry_after: None,
        },
        _ => SendError::Reject { reason: answer },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_read_where_the_configuration_points_and_only_for_the_batch() {
        let row = |id: &str| JournalRow {
            seq: 1,
            id: id.into(),
            kind: "inspection".into(),
            captured_at: String::new(),
            body: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
            signature: None,
        };
        let rows = [row("a"), row("b")];
        let default = super::super::config::ReceiptsConfig::default();
        let body = r#"{"receipts":[{"id":"a","receipt":"QMS-1"},{"id":"zz","receipt":"QMS-9"},{"id":"b","receipt":7}]}"#;
        assert_eq!(
            receipts_in(body, &default, &rows),
            [("a".into(), "QMS-1".into()), ("b".into(), "7".into())]
        );
        assert!(receipts_in("", &default, &rows).is_empty());
        assert!(receipts_in("<html>ok</html>", &default, &rows).is_empty());
        let custom = super::super::config::ReceiptsConfig {
            list: String::new(),
            record_id: "/eventId".into(),
            receipt_id: "/ack/number".into(),
        };
        let body = r#"[{"eventId":"b","ack":{"number":"N-2"}}]"#;
        assert_eq!(
            receipts_in(body, &custom, &rows),
            [("b".into(), "N-2".into())]
        );
    }

    #[test]
    fn classifies_answers_per_policy() {
        let retry = |c: u16| {
            matches!(
                classify(StatusCode::from_u16(c).expect("code"), None, ""),
                SendError::Retry { .. }
            )
        };
        for c in [408, 425, 429, 500, 502, 503, 504, 401, 403, 404, 409] {
            assert!(retry(c), "{c} should be retried");
        }
        for c in [400, 413, 415, 422] {
            assert!(!retry(c), "{c} should be dead-lettered");
        }
        let d = Some(Duration::from_secs(7));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, d, "slow down"),
            SendError::Retry {
                reason: "HTTP 429 Too Many Requests: slow down".into(),
                retry_after: d
            }
        );
        // Retry-After is only honoured where HTTP defines it for this purpose.
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, d, ""),
            SendError::Retry {
                retry_after: None,
                ..
            }
        ));
    }
}
