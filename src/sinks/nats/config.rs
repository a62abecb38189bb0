//! `[sinks.<id>] type = "nats"`: which servers, which stream, how records are published.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::tls::TlsFiles;
use crate::config::{ConfigError, Secret};

pub use crate::sinks::cloudevents::Mode;

/// What the sink discards when the stream is full (JetStream's `discard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Refuse new messages: the sink waits and says why (nothing is lost). The default here.
    #[default]
    New,
    /// Drop the stream's oldest messages to make room (the gateways keep their journals).
    Old,
}

/// The stream the sink creates when it does not exist (`create_stream`). An existing stream is
/// used as it is, never changed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Subjects the stream takes (default: the subject template with each `{…}` as `*`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Copies kept by a cluster (1 to 5).
    #[serde(default = "one")]
    pub replicas: usize,
    /// Largest stream in bytes (0: no limit).
    #[serde(default)]
    pub max_bytes: i64,
    /// Oldest message kept, in days (0: no limit).
    #[serde(default)]
    pub max_age_days: u64,
    /// How long the server remembers a `Nats-Msg-Id` to drop a resend (default 2 minutes, the
    /// server's default).
    #[serde(default = "default_window")]
    pub duplicate_window_s: u64,
    /// `new` (default) or `old`.
    #[serde(default)]
    pub discard: Discard,
}

fn one() -> usize {
    1
}
fn default_window() -> u64 {
    120
}

/// Options of the NATS JetStream sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URLs, `nats://host:4222` (or `tls://`); a cluster's other members are learnt from
    /// the server.
    pub servers: Vec<String>,
    /// The JetStream stream the records go to; checked (or created, with `create_stream`) before
    /// the first publish.
    pub stream: String,
    /// Subject of each record; `{site}`, `{gateway_id}`, `{station}` (the record's, or `unknown`)
    /// and `{kind}` are replaced (a `.`, `*`, `>` or white space in a value becomes `_`).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// `binary` (default) or `structured` CloudEvents.
    #[serde(default)]
    pub mode: Mode,
    /// CloudEvents `type` is `<event_type_prefix>.<kind>.v1`.
    #[serde(default = "default_prefix")]
    pub event_type_prefix: String,
    /// User name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password; use `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token authentication.
    #[serde(default)]
    pub token: Option<Secret>,
    /// NKey seed (`SU…`) authentication; use `${file:PATH}`.
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (user JWT and NKey seed), as `nsc` writes it.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// TLS (required when set).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Most records per batch: each batch is published pipelined, then every PubAck awaited.
    #[serde(default = "default_batch")]
    pub batch_max_records: usize,
    /// How long to wait for a connection and for the PubAcks of a batch.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Create the stream with these settings when it does not exist.
    #[serde(default)]
    pub create_stream: Option<StreamSettings>,
}

fn default_subject() -> String {
    "quality.{site}.{gateway_id}.{kind}".into()
}
fn default_prefix() -> String {
    "org.shopfloor.quality".into()
}
fn default_batch() -> usize {
    256
}
fn default_timeout() -> u64 {
    10_000
}

/// The placeholders a subject template may hold.
const PLACEHOLDERS: [&str; 4] = ["{site}", "{gateway_id}", "{station}", "{kind}"];

impl NatsSinkConfig {
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if let Some(t) = &self.tls {
            t.check(at, errors);
        }
        crate::sinks::check_batch_and_timeout(at, self.batch_max_records, self.timeout_ms, errors);
        let mut err = |key: &str, msg: String, hint: &str| {
            let e = ConfigError::new(format!("{at}.{key}"), msg);
            errors.push(if hint.is_empty() { e } else { e.hint(hint) });
        };
        if self.servers.is_empty() {
            err(
                "servers",
                "names no server".into(),
                "e.g. [\"nats://127.0.0.1:4222\"]",
            );
        }
        for s in &self.servers {
            let scheme_ok = url::Url::parse(s)
                .map(|u| matches!(u.scheme(), "nats" | "tls") && u.host_str().is_some())
                .unwrap_or(false);
            if !scheme_ok {
                err(
                    "servers",
                    format!(
                        "{:?} is not a NATS server URL",
                        crate::config::redact::url_text(s)
                    ),
                    "nats://host:4222 or tls://host:4222",
                );
            }
            if url::Url::parse(s).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
            {
                err(
                    "servers",
                    "holds a user or password: put them in username and password (a URL is logged)"
                        .into(),
                    "password = \"${env:NATS_PASSWORD}\"",
                );
            }
        }
        if !valid_stream_name(&self.stream) {
            err(
                "stream",
                format!("{:?} is not a JetStream stream name", self.stream),
                "letters, digits, - and _, e.g. \"QUALITY\"",
            );
        }
        if let Err(why) = check_template(&self.subject) {
            err(
                "subject",
                why,
                "e.g. \"quality.{site}.{gateway_id}.{kind}\"",
            );
        }
        let methods = [
            self.username.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.credentials_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            err(
                "username",
                "username, token, nkey_seed and credentials_file are four ways to authenticate: choose one".into(),
                "",
            );
        }
        if self.password.is_some() && self.username.is_none() {
            err("password", "needs username".into(), "");
        }
        if let Some(seed) = &self.nkey_seed {
            if !seed.expose().starts_with("SU") {
                err(
                    "nkey_seed",
                    "is not a user NKey seed (it starts with SU)".into(),
                    "nsc or `nk -gen user` make one; give it as ${file:PATH}",
                );
            }
        }
        if let Some(c) = &self.create_stream {
            if !(1..=5).contains(&c.replicas) {
                err("create_stream.replicas", "must be 1 to 5".into(), "");
            }
            if c.max_bytes < 0 {
                err(
                    "create_stream.max_bytes",
                    "must not be negative".into(),
                    "0: no limit",
                );
            }
            for s in &c.subjects {
                if s.is_empty()
                    || s.split('.').any(str::is_empty)
                    || s.contains(char::is_whitespace)
                {
                    err(
                        "create_stream.subjects",
                        format!("{s:?} is not a NATS subject"),
                        "e.g. \"quality.>\"",
                    );
                }
            }
        }
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = &mut self.credentials_file {
            abs(p);
        }
        if let Some(t) = &mut self.tls {
            t.resolve_paths(base);
        }
    }

    /// The subjects a created stream takes: as configured, else the template with `*` for each
    /// placeholder.
    pub(crate) fn stream_subjects(&self) -> Vec<String> {
        match &self.create_stream {
            Some(c) if !c.subjects.is_empty() => c.subjects.clone(),
            _ => {
                let mut s = self.subject.clone();
                for p in PLACEHOLDERS {
                    s = s.replace(p, "*");
                }
                vec![s]
            }
        }
    }
}

/// A stream name JetStream takes (no `.`, `*`, `>`, white space or path characters).
fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks a subject template: non-empty tokens, no wildcards, no white space, known placeholders.
fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t.to_string();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "x");
    }
    if let Some(open) = rest.find('{') {
        let name: String = rest[open..].chars().take_while(|c| *c != '}').collect();
        return Err(format!(
            "{name}}} is not a placeholder: {{site}}, {{gateway_id}}, {{station}} and {{kind}} are"
        ));
    }
    if rest.is_empty()
        || rest.split('.').any(str::is_empty)
        || rest.contains(['*', '>'])
        || rest.contains(char::is_whitespace)
    {
        return Err(format!(
            "{t:?} is not a subject to publish to (empty tokens, wildcards or white space)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_with_wildcards_unknown_placeholders_or_empty_tokens_are_refused() {
        assert!(check_template("quality.{site}.{gateway_id}.{kind}").is_ok());
        assert!(check_template("q.{station}").is_ok());
        assert!(check_template("quality.>").is_err());
        assert!(check_template("quality.*.x").is_err());
        assert!(check_template("quality..x").is_err());
        assert!(check_template("quality.{gateway}").is_err_and(|e| e.contains("{gateway}")));
        assert!(check_template("a b").is_err());
        assert!(valid_stream_name("QUALITY_1-a"));
        assert!(!valid_stream_name("QUALITY.1"));
        assert!(!valid_stream_name(""));
    }
}
