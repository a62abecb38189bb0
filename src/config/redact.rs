//! Endpoints as they may be shown: in provenance, gap reasons, logs, `status` and `/healthz`.
//!
//! A URL shown anywhere loses its user info (`user:password@`) and the values of query parameters
//! that carry secrets (`?code=…`, `?sig=…`, an API key). `validate` already refuses user info in a
//! configured URL; this is the second line for URLs that come from peers (a next link) and for
//! parameters a service requires in its query.

use std::borrow::Cow;

/// Query parameters whose values are secrets in common services (compared without case; `-` and `_`
/// are the same). `agent.secret_query_params` adds more.
pub const SECRET_PARAMS: &[&str] = &[
    "code",
    "key",
    "token",
    "sig",
    "signature",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "x_api_key",
    "ocp_apim_subscription_key",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "secret",
    "subscription_key",
    "x_amz_signature",
    "x_amz_credential",
    "x_amz_security_token",
];

/// What replaces a secret value.
pub const MASK: &str = "REDACTED";

fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Whether query parameter `name` holds a secret.
pub fn is_secret_param(name: &str) -> bool {
    let n = normalized(name);
    SECRET_PARAMS.contains(&n.as_str()) || extra().iter().any(|extra| normalized(extra) == n)
}

static EXTRA: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn extra() -> &'static [String] {
    EXTRA.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Adds names to the secret parameters (from `agent.secret_query_params`); the first call wins.
pub fn add_secret_params(names: &[String]) {
    let _ = EXTRA.set(names.to_vec());
}

/// `url` without user info and with secret query values masked.
pub fn url(url: &url::Url) -> String {
    let mut out = url.clone();
    if !out.username().is_empty() || out.password().is_some() {
        let _ = out.set_username("");
        let _ = out.set_password(None);
    }
    if out.query().is_some() && out.query_pairs().any(|(k, _)| is_secret_param(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out.to_string()
}

/// Like [`url`] for text that may not parse as a URL: an unparsable text loses everything from its
/// first `@` back to the scheme and every query.
pub fn url_text(text: &str) -> Cow<'_, str> {
    match url::Url::parse(text) {
        Ok(u) => {
            let shown = url(&u);
            if shown == text {
                Cow::Borrowed(text)
            } else {
                Cow::Owned(shown)
            }
        }
        Err(_) => {
            let mut s = text.split(['?', '#']).next().unwrap_or("").to_string();
            if let Some(at) = s.rfind('@') {
                let start = s.find("://").map(|i| i + 3).unwrap_or(0);
                if at >= start {
                    s.replace_range(start..=at, "");
                }
            }
            Cow::Owned(s)
        }
    }
}

/// Whether `text` (a configured URL) carries user info: refused by `validate`.
pub fn has_user_info(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_secret_parameters_never_show() {
        let u =
            url::Url::parse("https://user:pw@qms.example/api?code=abc&plant=4&X-Api-Key=k&sig=s")
                .expect("url");
        let shown = url(&u);
        assert_eq!(
            shown,
            "https://qms.example/api?code=REDACTED&plant=4&X-Api-Key=REDACTED&sig=REDACTED"
        );
        assert_eq!(
            url_text("http://a:b@host:1/x?token=t"),
            "http://host:1/x?token=REDACTED"
        );
        assert_eq!(url_text("no url a:b@host?token=t"), "host");
        assert_eq!(url_text("http://host/x"), "http://host/x");
        assert!(has_user_info("http://user@host/"));
        assert!(has_user_info("http://:pw@host/"));
        assert!(!has_user_info("http://host/"));
    }
}
