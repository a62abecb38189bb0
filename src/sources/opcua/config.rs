//! `[sources.<id>] type = "opcua"`: one OPC UA server, its security, identity and tags.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::node::{BrowsePath, NodeRef};
use crate::config::ConfigError;

/// Message security policy. The agent connects only to an endpoint with exactly this policy and
/// mode: it never falls back to a weaker one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityPolicy {
    /// No signing or encryption (only on an isolated cell network).
    None,
    /// Basic256Sha256.
    Basic256sha256,
    /// Aes128_Sha256_RsaOaep.
    Aes128Sha256Rsaoaep,
    /// Aes256_Sha256_RsaPss.
    Aes256Sha256Rsapss,
}

impl SecurityPolicy {
    /// The policy URI's short name as async-opcua spells it.
    pub fn opcua_name(self) -> &'static str {
        match self {
            SecurityPolicy::None => "None",
            SecurityPolicy::Basic256sha256 => "Basic256Sha256",
            SecurityPolicy::Aes128Sha256Rsaoaep => "Aes128-Sha256-RsaOaep",
            SecurityPolicy::Aes256Sha256Rsapss => "Aes256-Sha256-RsaPss",
        }
    }
}

/// Message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// Nothing (only with policy `none`).
    None,
    /// Signed messages.
    Sign,
    /// Signed and encrypted messages.
    SignAndEncrypt,
}

/// How values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// A subscription with one monitored item per tag (the normal case).
    #[default]
    Subscribe,
    /// Read every tag each `poll_interval_ms` (servers without subscriptions).
    Poll,
}

/// One tag: a variable on the server, by node id (with namespace URI) or by browse path.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaTag {
    /// Tag name; rules refer to it as `<source>.<name>`.
    pub name: String,
    /// Node id with the namespace URI: `nsu=urn:example:cell1;s=Cell1.Station10.PartSerial`
    /// (`ns=0;i=2258` and `i=2258` for the standard namespace).
    #[serde(default)]
    pub node: Option<String>,
    /// Browse path from the Objects folder: `Cell1/Station10/PartSerial`; each element is in
    /// `browse_namespace` unless written `<uri>|Name`.
    #[serde(default)]
    pub browse_path: Option<String>,
    /// Namespace URI of the browse path's elements (default: the source's `browse_namespace`).
    #[serde(default)]
    pub browse_namespace: Option<String>,
    /// Absolute deadband: changes smaller than this are not reported (numeric tags).
    #[serde(default)]
    pub deadband: Option<f64>,
    /// Sampling interval of this item (default: the source's).
    #[serde(default)]
    pub sampling_interval_ms: Option<f64>,
    /// Server-side queue of this item (default: the source's).
    #[serde(default)]
    pub queue_size: Option<u32>,
}

/// Options of an OPC UA source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaSourceConfig {
    /// Endpoint URL, `opc.tcp://host:port/path` (use 127.0.0.1, not localhost, for local servers).
    pub endpoint: String,
    /// `none`, `basic256sha256`, `aes128_sha256_rsaoaep` or `aes256_sha256_rsapss`.
    pub security_policy: SecurityPolicy,
    /// `none`, `sign` or `sign_and_encrypt`.
    pub security_mode: SecurityMode,
    /// User name (with `password`); without one the session is anonymous.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; use `${env:NAME}` or `${file:PATH}` (systemd credentials).
    #[serde(default)]
    pub password: Option<crate::config::Secret>,
    /// Send the password although it would travel in clear text: on a `none` endpoint whose
    /// user-name token policy does not encrypt it. Off: such a connection is refused with a named
    /// error (use an encrypted endpoint). Only for an isolated network, knowingly.
    #[serde(default)]
    pub allow_cleartext_password: bool,
    /// X.509 user identity: DER or PEM certificate file (with `user_key_file`).
    #[serde(default)]
    pub user_certificate_file: Option<PathBuf>,
    /// PEM private key of `user_certificate_file`.
    #[serde(default)]
    pub user_key_file: Option<PathBuf>,
    /// PKI folder: `own/` (the agent's certificate), `private/`, `trusted/`, `rejected/`.
    /// Default: `<data_dir>/pki/opcua`.
    #[serde(default)]
    pub pki_dir: Option<PathBuf>,
    /// Application URI of the agent (goes into its certificate); default
    /// `urn:shopfloor-agent:<gateway_id>`.
    #[serde(default)]
    pub application_uri: Option<String>,
    /// Common name of the certificate the agent creates on first run.
    #[serde(default = "default_subject")]
    pub certificate_subject: String,
    /// Organisation of that certificate.
    #[serde(default)]
    pub certificate_organization: Option<String>,
    /// Validity of that certificate.
    #[serde(default = "default_validity")]
    pub certificate_validity_days: u32,
    /// Warn this long before the agent's certificate expires.
    #[serde(default = "default_expiry_warning")]
    pub certificate_expiry_warning_days: u32,
    /// Accept exactly this server certificate (SHA-1 thumbprint, hex) instead of the trust list.
    #[serde(default)]
    pub server_thumbprint: Option<String>,
    /// `subscribe` (default) or `poll`.
    #[serde(default)]
    pub mode: ReadMode,
    /// Subscription publishing interval.
    #[serde(default = "default_publishing")]
    pub publishing_interval_ms: u64,
    /// Default sampling interval of monitored items.
    #[serde(default = "default_sampling")]
    pub sampling_interval_ms: f64,
    /// Default server-side queue per item (values kept between publishes).
    #[serde(default = "default_queue")]
    pub queue_size: u32,
    /// Poll mode: read cycle.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Monitored items (or reads) per request, so large tag lists stay under message-size limits.
    #[serde(default = "default_batch")]
    pub items_per_request: usize,
    /// The session's keep-alive read; also sets the subscription's keep-alive period.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_ms: u64,
    /// Data watchdog: a connected session with no publish response (data or keep-alive) for this
    /// long is treated as dead and rebuilt. Default: three keep-alive periods.
    #[serde(default)]
    pub watchdog_ms: Option<u64>,
    /// Timeout of one request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// First reconnect delay.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Namespace URI of browse-path elements, for tags that do not name their own.
    #[serde(default)]
    pub browse_namespace: Option<String>,
    /// The tags.
    pub tags: Vec<OpcUaTag>,
}

fn default_subject() -> String {
    "shopfloor-agent".into()
}
fn default_validity() -> u32 {
    730
}
fn default_expiry_warning() -> u32 {
    30
}
fn default_publishing() -> u64 {
    500
}
fn default_sampling() -> f64 {
    250.0
}
fn default_queue() -> u32 {
    10
}
fn default_poll() -> u64 {
    1000
}
fn default_batch() -> usize {
    1000
}
fn default_keep_alive() -> u64 {
    5000
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_reconnect_initial() -> u64 {
    1000
}
fn default_reconnect_max() -> u64 {
    60_000
}

/// Where a tag points, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum TagTarget {
    /// A node id (namespace by URI).
    Node(NodeRef),
    /// A browse path from Objects.
    Path(BrowsePath),
}

impl OpcUaSourceConfig {
    /// The data watchdog in effect.
    pub fn watchdog(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.watchdog_ms
                .unwrap_or(3 * self.keep_alive_ms.max(self.publishing_interval_ms)),
        )
    }

    /// Subscription keep-alive count: publishes without data before the server sends a keep-alive.
    pub fn keep_alive_count(&self) -> u32 {
        let n = self.keep_alive_ms / self.publishing_interval_ms.max(1);
        u32::try_from(n).unwrap_or(u32::MAX).max(1)
    }

    /// Parses every tag's target; problems go to `errors`.
    pub fn targets(&self, at: &str, errors: &mut Vec<ConfigError>) -> Vec<TagTarget> {
        let mut out = Vec::with_capacity(self.tags.len());
        for (i, t) in self.tags.iter().enumerate() {
            let here = format!("{at}.tags[{i}]");
            match (&t.node, &t.browse_path) {
                (Some(n), None) => match NodeRef::parse(n) {
                    Ok(r) => out.push(TagTarget::Node(r)),
                    Err(e) => errors.push(
                        ConfigError::new(format!("{here}.node"), e.to_string()).hint(
                            "write the namespace by URI: node = \"nsu=urn:example:cell1;s=Cell1.Station10.PartSerial\"",
                        ),
                    ),
                },
                (None, Some(p)) => {
                    let ns = t.browse_namespace.as_ref().or(self.browse_namespace.as_ref());
                    match BrowsePath::parse(p, ns.map(String::as_str)) {
                        Ok(bp) => out.push(TagTarget::Path(bp)),
                        Err(e) => errors.push(
                            ConfigError::new(format!("{here}.browse_path"), e.to_string()).hint(
                                "e.g. browse_path = \"Cell1/Station10/PartSerial\" with browse_namespace = \"urn:example:cell1\"",
                            ),
                        ),
                    }
                }
                (Some(_), Some(_)) => errors.push(ConfigError::new(
                    here,
                    "give either node or browse_path, not both",
                )),
                (None, None) => errors.push(
                    ConfigError::new(here, "no node and no browse_path")
                        .hint("node = \"nsu=<namespace uri>;s=<id>\" or browse_path = \"Folder/Variable\""),
                ),
            }
        }
        out
    }

    /// Checks the values; `at` is the key path (`sources.plc1`).
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if !self.endpoint.starts_with("opc.tcp://") {
            errors.push(
                ConfigError::new(
                    format!("{at}.endpoint"),
                    format!("{:?} is not an opc.tcp:// URL", self.endpoint),
                )
                .hint("e.g. endpoint = \"opc.tcp://10.1.4.20:4840/cell1\""),
            );
        }
        match (self.security_policy, self.security_mode) {
            (SecurityPolicy::None, SecurityMode::None) => {}
            (SecurityPolicy::None, _) => errors.push(
                ConfigError::new(
                    format!("{at}.security_mode"),
                    "policy none only goes with mode none",
                )
                .hint(
                    "choose security_policy = \"basic256sha256\" (or stronger) to sign or encrypt",
                ),
            ),
            (_, SecurityMode::None) => errors.push(
                ConfigError::new(
                    format!("{at}.security_mode"),
                    "a security policy needs mode sign or sign_and_encrypt",
                )
                .hint("security_mode = \"sign_and_encrypt\""),
            ),
            _ => {}
        }
        if self.password.is_some() != self.username.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.username"),
                "username and password go together",
            ));
        }
        if self.user_certificate_file.is_some() != self.user_key_file.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.user_certificate_file"),
                "user_certificate_file and user_key_file go together",
            ));
        }
        if self.username.is_some() && self.user_certificate_file.is_some() {
            errors.push(
                ConfigError::new(
                    format!("{at}.username"),
                    "one identity only: a user name or a user certificate",
                )
                .hint("remove username/password or user_certificate_file/user_key_file"),
            );
        }
        if self.server_thumbprint.is_some() && self.security_policy == SecurityPolicy::None {
            errors.push(
                ConfigError::new(
                    format!("{at}.server_thumbprint"),
                    "has no effect with security_policy = \"none\": no server certificate is checked on a None endpoint",
                )
                .hint("choose a security policy (basic256sha256, aes256_sha256_rsapss, …) to pin the server, or remove server_thumbprint"),
            );
        }
        if let Some(t) = &self.server_thumbprint {
            let hex = t.replace([':', ' '], "");
            if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(
                    ConfigError::new(format!("{at}.server_thumbprint"), "must be the 40 hex digits of a SHA-1 thumbprint")
                        .hint("the log names the thumbprint of a server certificate it refused; so does its file name in rejected/"),
                );
            }
        }
        if self.publishing_interval_ms < 10 {
            errors.push(ConfigError::new(
                format!("{at}.publishing_interval_ms"),
                "must be at least 10",
            ));
        }
        if self.items_per_request == 0 {
            errors.push(ConfigError::new(
                format!("{at}.items_per_request"),
                "must be at least 1",
            ));
        }
        if self.certificate_validity_days == 0 {
            errors.push(ConfigError::new(
                format!("{at}.certificate_validity_days"),
                "must be at least 1",
            ));
        }
        if self.tags.is_empty() {
            errors.push(
                ConfigError::new(format!("{at}.tags"), "no tags")
                    .hint("add [[sources.<id>.tags]] with name and node"),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tags.iter().enumerate() {
            if !seen.insert(t.name.as_str()) {
                errors.push(ConfigError::new(
                    format!("{at}.tags[{i}].name"),
                    format!("tag {:?} appears twice", t.name),
                ));
            }
            if let Some(d) = t.deadband {
                if !(d >= 0.0 && d.is_finite()) {
                    errors.push(ConfigError::new(
                        format!("{at}.tags[{i}].deadband"),
                        "must be a number ≥ 0",
                    ));
                }
            }
        }
        self.targets(at, errors);
    }
}
