//! `[sources.<id>] type = "rest"`: an ERP/MES REST (OData) service polled endpoint by endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::transport::http::HttpAuth;

/// How the next page is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// OData v4: follow `@odata.nextLink` (relative links resolved against the request URL).
    #[default]
    Odata,
    /// RFC 8288: follow the `Link: <…>; rel="next"` header.
    Link,
    /// `offset_param` / `limit_param` query parameters, `page_size` rows at a time, until a short page.
    Offset,
    /// A cursor from the body (`cursor_pointer`) sent back as `cursor_param`, until there is none.
    Cursor,
    /// One request per poll.
    None,
}

/// Incremental sync on a field that grows with every change of a row.
///
/// Pages are walked by the watermark itself (keyset paging): each request asks for rows from the last
/// row's value on (`ge`), ordered by the field, so rows that change while pages are walked move
/// forward and are read later in the same walk instead of shifting an offset and being skipped. Rows
/// at a page boundary are read twice; the rule's dedupe key (`"{/ID}/{/modifiedAt}"`) keeps one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// JSON pointer of the field in a row, e.g. `/modifiedAt`.
    pub field: String,
    /// Query parameters that select rows from the watermark on, ordered by it, one page at a time;
    /// `{watermark}` is replaced (URL-encoded), e.g.
    /// `$filter=modifiedAt ge {watermark}&$orderby=modifiedAt,ID&$top=1000`.
    pub filter: String,
    /// Start value when the journal holds none.
    #[serde(default = "default_initial")]
    pub initial: String,
    /// Ask again for rows up to this many seconds before the watermark (clock skew, late commits in the
    /// ERP); the dedupe key keeps them from becoming second records.
    #[serde(default = "default_overlap")]
    pub overlap_s: u64,
}

fn default_initial() -> String {
    "1970-01-01T00:00:00Z".into()
}
fn default_overlap() -> u64 {
    60
}

/// One endpoint (entity set) of the service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Name; `row` triggers select it with `endpoint = "<name>"`.
    pub name: String,
    /// Path relative to `url` (`WorkOrders`).
    pub path: String,
    /// Extra query parameters (`$orderby=ID`).
    #[serde(default)]
    pub query: Option<String>,
    /// JSON pointer to the rows in the body: `/value` (OData, the default); `""` for a plain array.
    #[serde(default = "default_rows")]
    pub rows: String,
    /// JSON pointer of the row's key; a row without it is a bad response.
    pub key: String,
    /// Paging of full reads (endpoints without a watermark): `odata`, `link`, `offset`, `cursor`, `none`.
    #[serde(default)]
    pub paging: Paging,
    /// `offset` paging: rows per request.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// `offset` paging: the offset parameter.
    #[serde(default = "default_offset_param")]
    pub offset_param: String,
    /// `offset` paging: the limit parameter.
    #[serde(default = "default_limit_param")]
    pub limit_param: String,
    /// `cursor` paging: the query parameter that carries the cursor.
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
    /// `cursor` paging: JSON pointer to the next cursor in the body.
    #[serde(default = "default_cursor_pointer")]
    pub cursor_pointer: String,
    /// Incremental sync; without it every poll reads every page (the dedupe key drops repeats).
    #[serde(default)]
    pub watermark: Option<Watermark>,
    /// Origins (`https://erp2.plant.local:8443`) besides the source's `url` that next links may lead
    /// to. A next link to any other origin stops the poll: the source's credentials and headers are
    /// sent only where they were configured for.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Most pages one poll reads; a service that offers more stops the poll with an error (a paging
    /// bug, or a hostile service keeping the agent busy).
    #[serde(default = "default_max_pages")]
    pub max_pages: u64,
}

fn default_max_pages() -> u64 {
    10_000
}

fn default_rows() -> String {
    "/value".into()
}
fn default_page_size() -> u64 {
    1000
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_cursor_pointer() -> String {
    "/next_cursor".into()
}

/// Options of a REST source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestSourceConfig {
    /// Service root, ending in `/` (`http://erp:4004/odata/v4/erp/`).
    pub url: crate::config::ConfigUrl,
    /// Poll cycle per endpoint.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Largest accepted response body.
    #[serde(default = "default_max_bytes")]
    pub max_response_bytes: usize,
    /// First retry delay after an error; doubles up to `retry_max_ms` (a `Retry-After` wins).
    #[serde(default = "default_retry_initial")]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// Authentication (basic or bearer).
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, crate::config::Secret>,
    /// PEM CA file to trust instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Follow redirects (3xx) to the same origin, never from https to http. Off by default: a 3xx
    /// is a named error and the endpoint is polled again later.
    #[serde(default)]
    pub follow_redirects: bool,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

fn default_poll() -> u64 {
    30_000
}
fn default_timeout() -> u64 {
    30_000
}
fn default_max_bytes() -> usize {
    32 << 20
}
fn default_retry_initial() -> u64 {
    1_000
}
fn default_retry_max() -> u64 {
    300_000
}

impl RestSourceConfig {
    /// Checks the values; `at` is the key path (`sources.erp`).
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        match url::Url::parse(&self.url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && self.url.ends_with('/') => {}
            Ok(_) => errors.push(
                ConfigError::new(format!("{at}.url"), format!("{:?} must be an http(s) URL ending in '/'", self.url))
                    .hint("e.g. \"http://127.0.0.1:4004/odata/v4/erp/\": endpoint paths are resolved against it"),
            ),
            Err(e) => errors.push(ConfigError::new(format!("{at}.url"), format!("{:?} is not a URL: {e}", self.url))),
        }
        if self.endpoints.is_empty() {
            errors.push(
                ConfigError::new(format!("{at}.endpoints"), "no endpoints")
                    .hint("add [[sources.<id>.endpoints]]"),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let eat = format!("{at}.endpoints[{i}]");
            if !names.insert(&e.name) {
                errors.push(ConfigError::new(
                    format!("{eat}.name"),
                    format!("duplicate endpoint name {:?}", e.name),
                ));
            }
            for (what, p) in [("rows", &e.rows), ("key", &e.key)] {
                if !(p.is_empty() || p.starts_with('/')) {
                    errors.push(
                        ConfigError::new(
                            format!("{eat}.{what}"),
                            format!("{p:?} is not a JSON pointer"),
                        )
                        .hint("JSON pointers start with '/', e.g. \"/ID\""),
                    );
                }
            }
            for (j, o) in e.allowed_origins.iter().enumerate() {
                let ok = url::Url::parse(o).is_ok_and(|u| {
                    (u.scheme() == "http" || u.scheme() == "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.path() == "/"
                        && u.query().is_none()
                });
                if !ok {
                    errors.push(
                        ConfigError::new(
                            format!("{eat}.allowed_origins[{j}]"),
                            format!("{o:?} is not an origin"),
                        )
                        .hint("an origin is scheme, host and port only, e.g. \"https://erp2.plant.local:8443\""),
                    );
                }
            }
            if e.max_pages == 0 {
                errors.push(ConfigError::new(
                    format!("{eat}.max_pages"),
                    "must be at least 1",
                ));
            }
            if let Some(w) = &e.watermark {
                if !w.filter.contains("{watermark}") {
                    errors.push(
                        ConfigError::new(format!("{eat}.watermark.filter"), "does not use {watermark}")
                            .hint("e.g. \"$filter=modifiedAt ge {watermark}&$orderby=modifiedAt,ID&$top=1000\""),
                    );
                }
                if !w.field.starts_with('/') {
                    errors.push(ConfigError::new(
                        format!("{eat}.watermark.field"),
                        format!("{:?} is not a JSON pointer", w.field),
                    ));
                }
            }
        }
        if self.poll_interval_ms == 0 || self.timeout_ms == 0 {
            errors.push(ConfigError::new(
                format!("{at}.poll_interval_ms"),
                "poll_interval_ms and timeout_ms must be above 0",
            ));
        }
    }

    /// The client's connection options (connect timeout as the HTTP sink's default, 5 s).
    pub fn client_options(&self) -> crate::transport::http::ClientOptions<'_> {
        crate::transport::http::ClientOptions {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            connect_timeout: std::time::Duration::from_secs(5),
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
            auth: self.auth.as_ref(),
            headers: &self.headers,
            follow_redirects: self.follow_redirects,
        }
    }
}
