//! `[sinks.<id>] type = "http"`: where and how to POST records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, LoadOptions};

/// Body format of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// CloudEvents 1.0 batch (`application/cloudevents-batch+json`), the record as `data`, the chain as
    /// extension attributes.
    #[default]
    Cloudevents,
    /// A plain JSON array of records (`application/json`).
    JsonArray,
}

/// Options of the HTTP sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Endpoint that receives POSTed batches, `https://…` (or `http://` on a trusted network).
    pub url: crate::config::ConfigUrl,
    /// `cloudevents` (default) or `json_array`.
    #[serde(default)]
    pub format: WireFormat,
    /// CloudEvents `type` is `<event_type_prefix>.<kind>.v1`.
    #[serde(default = "default_prefix")]
    pub event_type_prefix: String,
    /// Most records per request.
    #[serde(default = "default_batch_records")]
    pub batch_max_records: usize,
    /// Most bytes of records per request (a larger single record is still sent alone).
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: usize,
    /// Whole-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// TCP + TLS connect timeout.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// First retry delay; doubles per failure (with jitter) up to `retry_max_ms`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// PEM file of the CA(s) that signed the QMS certificate. When set, only these CAs are trusted;
    /// otherwise the operating system's trust store is used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Authentication.
    #[serde(default)]
    pub auth: Option<crate::transport::http::HttpAuth>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, crate::config::Secret>,
    /// Where a 2xx answer holds the QMS's receipt ids (kept for reconciliation).
    #[serde(default)]
    pub receipts: ReceiptsConfig,
    /// Follow redirects (3xx) to the same origin, never from https to http. Off by default: a 3xx
    /// is a named error and the batch is sent again later, so the records and the credentials go
    /// only to the configured URL.
    #[serde(default)]
    pub follow_redirects: bool,
}

/// JSON pointers into the QMS's answer: `list` is the array of receipts, `record_id` and
/// `receipt_id` point inside each element. The default reads
/// `{"receipts": [{"id": "<record id>", "receipt": "<QMS id>"}, ...]}`; an answer without that
/// shape (or no body) simply gives no receipts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptsConfig {
    /// The array of receipts ("" for an answer that is the array itself).
    pub list: String,
    /// The record's id inside an element.
    pub record_id: String,
    /// The QMS's receipt id inside an element.
    pub receipt_id: String,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            list: "/receipts".into(),
            record_id: "/id".into(),
            receipt_id: "/receipt".into(),
        }
    }
}

fn default_prefix() -> String {
    "org.shopfloor.quality".into()
}
fn default_batch_records() -> usize {
    500
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_retry_initial() -> u64 {
    500
}
fn default_retry_max() -> u64 {
    60_000
}

impl HttpSinkConfig {
    /// A config for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        HttpSinkConfig {
            url: crate::config::ConfigUrl::new(url),
            format: WireFormat::default(),
            event_type_prefix: default_prefix(),
            batch_max_records: default_batch_records(),
            batch_max_bytes: default_batch_bytes(),
            timeout_ms: default_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            retry_initial_ms: default_retry_initial(),
            retry_max_ms: default_retry_max(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            auth: None,
            headers: BTreeMap::new(),
            receipts: ReceiptsConfig::default(),
            follow_redirects: false,
        }
    }

    /// The client's connection options.
    pub fn client_options(&self) -> crate::transport::http::ClientOptions<'_> {
        crate::transport::http::ClientOptions {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
            auth: self.auth.as_ref(),
            headers: &self.headers,
            follow_redirects: self.follow_redirects,
        }
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert_file,
            &mut self.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub(crate) fn check(&self, at: &str, opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        match url::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => errors.push(
                ConfigError::new(
                    format!("{at}.url"),
                    format!("unsupported scheme {:?}", u.scheme()),
                )
                .hint("use https://host/path (or http:// on a trusted network)"),
            ),
            Err(e) => errors.push(
                ConfigError::new(
                    format!("{at}.url"),
                    format!("{:?} is not a URL: {e}", self.url),
                )
                .hint("write it like https://qms.example.com/api/quality-events"),
            ),
        }
        if self.batch_max_records == 0 || self.batch_max_records > 10_000 {
            errors.push(ConfigError::new(
                format!("{at}.batch_max_records"),
                format!("{} is out of range 1..=10000", self.batch_max_records),
            ));
        }
        if self.batch_max_bytes < 1024 {
            errors.push(ConfigError::new(
                format!("{at}.batch_max_bytes"),
                format!("{} is below the minimum of 1024", self.batch_max_bytes),
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            errors.push(
                ConfigError::new(format!("{at}.timeout_ms"), "timeouts must be above 0")
                    .hint("10000 (10 s) suits most QMS endpoints"),
            );
        }
        if self.retry_initial_ms == 0 || self.retry_initial_ms > self.retry_max_ms {
            errors.push(
                ConfigError::new(
                    format!("{at}.retry_initial_ms"),
                    format!(
                        "{} must be above 0 and at most retry_max_ms ({})",
                        self.retry_initial_ms, self.retry_max_ms
                    ),
                )
                .hint("e.g. retry_initial_ms = 500, retry_max_ms = 60000"),
            );
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            errors.push(
                ConfigError::new(
                    format!("{at}.client_cert_file"),
                    "client_cert_file and client_key_file go together",
                )
                .hint("set both for mutual TLS, or neither"),
            );
        }
        if opts.environment {
            for (name, p) in [
                ("ca_file", &self.ca_file),
                ("client_cert_file", &self.client_cert_file),
                ("client_key_file", &self.client_key_file),
            ] {
                if let Some(p) = p {
                    if let Err(e) = std::fs::metadata(p) {
                        errors.push(
                            ConfigError::new(
                                format!("{at}.{name}"),
                                format!("cannot read {}: {e}", p.display()),
                            )
                            .hint("check the path and that the agent's user may read it"),
                        );
                    }
                }
            }
        }
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(ConfigError::new(
                    format!("{at}.headers.{name}"),
                    format!("{name:?} is not a valid header name"),
                ));
            }
        }
    }
}
