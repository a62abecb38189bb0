//! The HTTP client shared by the HTTP sink and the REST source: TLS (a CA file or the system's
//! trust store, mutual TLS), authentication (basic, bearer, OAuth 2.0 client credentials in
//! [`oauth`]), configured headers (every value a secret), redirects (none unless asked, then same
//! origin only), capped bodies, and transport errors in words.

pub mod oauth;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

pub use oauth::TokenSource;

use super::{install_crypto_provider, read_pem};

use crate::config::Secret;

/// Authentication to an HTTP peer (`auth = { type = … }` of the HTTP sink and the REST source).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password; use `${env:NAME}` or `${file:PATH}`.
        password: crate::config::Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token; use `${env:NAME}` or `${file:PATH}`.
        token: crate::config::Secret,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): a token from `token_url`, cached, refreshed
    /// before it expires and whenever the peer answers 401.
    Oauth2 {
        /// Token endpoint.
        token_url: crate::config::ConfigUrl,
        /// Client id.
        client_id: String,
        /// Client secret; use `${env:NAME}` or `${file:PATH}`.
        client_secret: crate::config::Secret,
        /// Requested scope, if the server wants one.
        #[serde(default)]
        scope: Option<String>,
    },
}

/// How to build a client: the connection options of an HTTP sink or a REST source.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions<'a> {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// PEM file of the CA(s) to trust instead of the system's store.
    pub ca_file: Option<&'a Path>,
    /// PEM client certificate (chain) for mutual TLS, with `client_key_file`.
    pub client_cert_file: Option<&'a Path>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<&'a Path>,
    /// Basic or bearer authentication become a default header; OAuth 2.0 is per request.
    pub auth: Option<&'a HttpAuth>,
    /// Headers sent with every request.
    pub headers: &'a BTreeMap<String, Secret>,
    /// Follow redirects within the same origin.
    pub follow_redirects: bool,
}

/// Why an HTTP client could not be made (a certificate or key that does not load, a header that is
/// not valid in HTTP): the message names the file or header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// An HTTP client with the TLS, authentication and header options of `config`.
pub fn build_client(config: &ClientOptions<'_>) -> Result<reqwest::Client, ClientError> {
    build(config).map_err(ClientError)
}

fn build(config: &ClientOptions<'_>) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let mut headers = HeaderMap::new();
    for (k, v) in config.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
        // Every configured header value is a secret (API keys travel in headers of any name).
        let mut value =
            HeaderValue::from_str(v.expose()).map_err(|e| format!("header {k}: {e}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    match config.auth {
        Some(HttpAuth::Basic { username, password }) => {
            let token = base64(format!("{username}:{}", password.expose()).as_bytes());
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|e| format!("basic auth: {e}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Some(HttpAuth::Bearer { token }) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|e| format!("bearer token: {e}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        // The token is added per request (see `oauth.rs`).
        Some(HttpAuth::Oauth2 { .. }) | None => {}
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("shopfloor-agent/", env!("CARGO_PKG_VERSION")))
        .timeout(config.timeout)
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(redirect_policy(config.follow_redirects));
    if let Some(ca) = config.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read_pem(ca)?)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate found in CA file {}", ca.display()));
        }
        builder = builder.tls_certs_only(certs);
    }
    if let (Some(cert), Some(key)) = (config.client_cert_file, config.client_key_file) {
        let mut pem = read_pem(cert)?;
        pem.extend_from_slice(b"\n");
        pem.extend(read_pem(key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// No redirects, or (with `follow_redirects`) at most 5 within the first request's origin and never
/// from https to http. A redirect not followed comes back as the 3xx answer, a named error
/// ([`redirect_error`]).
fn redirect_policy(follow: bool) -> reqwest::redirect::Policy {
    if !follow {
        return reqwest::redirect::Policy::none();
    }
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        if attempt.previous().len() > 5 || attempt.url().origin() != first.origin() {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The words for a 3xx answer that was not followed.
pub fn redirect_error(status: StatusCode, location: Option<&str>) -> String {
    let to = location
        .map(|l| format!(" to {}", crate::config::redact::url_text(l)))
        .unwrap_or_default();
    format!(
        "HTTP {status}: redirect{to} not followed (redirects are followed only with follow_redirects = true, and then only within the same origin): point the url at the final address"
    )
}

/// Reads at most `max` bytes of a body, and whether there was more (left unread: the connection is
/// dropped with the response). A transport error ends the body where it broke.
pub async fn read_capped(resp: &mut reqwest::Response, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = max.saturating_sub(out.len());
                if chunk.len() > room {
                    out.extend_from_slice(&chunk[..room]);
                    return (out, true);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (out, false),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A transport error in words, with its causes: `cannot connect: …`, `timed out: …`.
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
