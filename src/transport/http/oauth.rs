//! OAuth 2.0 client credentials: one cached token per peer, refreshed before it expires (at 80 % of
//! its lifetime) and on demand after a 401.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::HttpAuth;
use crate::config::redact;

/// Most bytes of a token answer read: a token answer is small, anything larger is refused.
const MAX_TOKEN_ANSWER_BYTES: usize = 64 << 10;

/// Where tokens come from.
pub struct TokenSource {
    client: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: crate::config::Secret,
    scope: Option<String>,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    /// A token source for `auth`, if it is OAuth 2.0; tokens are fetched with `client`.
    pub fn for_auth(auth: Option<&HttpAuth>, client: &reqwest::Client) -> Option<TokenSource> {
        match auth {
            Some(HttpAuth::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            }) => Some(TokenSource {
                client: client.clone(),
                token_url: token_url.expose().to_string(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                scope: scope.clone(),
                cached: Mutex::new(None),
            }),
            _ => None,
        }
    }

    /// `Bearer <token>`, from the cache while it is fresh.
    pub async fn header(&self) -> Result<String, TokenError> {
        self.fetch().await.map_err(TokenError)
    }

    async fn fetch(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, refresh_at)) = cached.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(format!("Bearer {token}"));
            }
        }
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(s) = &self.scope {
                form.append_pair("scope", s);
            }
            form.finish()
        };
        let mut resp = self
            .client
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "token request to {} failed: {}",
                    redact::url_text(&self.token_url),
                    super::describe_reqwest_error(&e)
                )
            })?;
        let status = resp.status();
        let (body, cut) = super::read_capped(&mut resp, MAX_TOKEN_ANSWER_BYTES).await;
        let text = String::from_utf8_lossy(&body);
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            return Err(format!(
                "token endpoint {}: {}",
                redact::url_text(&self.token_url),
                super::redirect_error(status, location)
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "token endpoint {} answered HTTP {status}: {} (check client_id and client_secret)",
                redact::url_text(&self.token_url),
                text.chars().take(160).collect::<String>()
            ));
        }
        if cut {
            return Err(format!(
                "token endpoint {} answered with more than {} KiB: not a token answer",
                redact::url_text(&self.token_url),
                MAX_TOKEN_ANSWER_BYTES >> 10
            ));
        }
        let t: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            format!(
                "token endpoint {} sent no usable token ({e})",
                redact::url_text(&self.token_url)
            )
        })?;
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(300));
        let refresh_at = Instant::now() + lifetime.mul_f64(0.8);
        let header = format!("Bearer {}", t.access_token);
        *cached = Some((t.access_token, refresh_at));
        Ok(header)
    }

    /// Forgets the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// Why no token could be had: the token endpoint's answer or the way to it, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);
