//! Secret values of the configuration, marked by type.
//!
//! A field that holds a secret (a password, a token, a client secret, an HTTP header value) has the
//! type [`Secret`]: its `Debug` and `Serialize` never show the value, and only
//! [`Secret::expose`] hands it to the one place that sends it to a peer. A field that holds a URL is
//! a [`ConfigUrl`], whose query values count as secret (`?code=`, `?sig=`, an API key: the
//! names vary by service, so every value counts).
//!
//! While the sections of a configuration are read, the values of those fields are noted
//! ([`collecting`]); [`redacted`] then replaces them in the configuration as written, which is what
//! the config hash is taken over and what the journal's `configs` table keeps. So the type decides
//! what is secret, not the name of a key, and a literal secret is never stored, hashed or exported.
//! References stay as written (`${credential:qms_token}`, `${env:QMS_TOKEN}`, `${file:…}`): they
//! name where the secret lives, so a configuration that keeps its secrets outside is verifiable from
//! its text. A default in a reference (`${env:X:-default}`) is a literal, so it is replaced.

use std::cell::RefCell;
use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What replaces a secret in the stored and hashed configuration, and in `Debug` output.
pub const MASK: &str = "REDACTED";

/// The first line of a configuration text kept this way (a TOML comment: the hash is unchanged).
/// Texts without it were kept before secrets were marked by type, and an export redacts them by
/// key name instead.
pub const KEPT_MARK: &str = "# secrets replaced by type (REDACTED); references as written\n";

/// A secret value from the configuration (resolved: the password itself, not its reference).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the request or handshake that sends it. Never for a log, a record or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let value = String::deserialize(d)?;
        if !value.is_empty() {
            note(|seen| {
                seen.secrets.insert(value.clone());
            });
        }
        Ok(Secret(value))
    }
}

/// A URL from the configuration, whose query values may be secrets (`?code=`, `?sig=`, an API
/// key): `Debug` shows it without them and without user info; it reads as `&str` (`Deref`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConfigUrl(String);

impl ConfigUrl {
    /// A URL from its text.
    pub fn new(value: impl Into<String>) -> ConfigUrl {
        ConfigUrl(value.into())
    }

    /// The URL as configured, for the request that uses it. Shown anywhere, it goes through
    /// [`crate::config::redact::url_text`].
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ConfigUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConfigUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", url_as_written(&self.0))
    }
}

impl Serialize for ConfigUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&url_as_written(&self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConfigUrl, D::Error> {
        let value = String::deserialize(d)?;
        note(|seen| {
            seen.urls.insert(value.clone());
        });
        Ok(ConfigUrl(value))
    }
}

/// The values of secret fields and URL fields seen while reading a configuration.
#[derive(Debug, Default)]
pub struct Seen {
    secrets: HashSet<String>,
    urls: HashSet<String>,
}

impl Seen {
    /// Takes the secrets out of configuration errors, which are printed, logged and journaled (a
    /// refused reload): URLs lose their query values and user info, secret values of four
    /// characters or more become [`MASK`] (shorter ones would garble the message, and are no
    /// secret worth the name).
    pub fn scrub(&self, errors: &mut [super::ConfigError]) {
        let mut secrets: Vec<&String> = self.secrets.iter().filter(|s| s.len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let clean = |text: &mut String| {
            for u in &self.urls {
                if text.contains(u.as_str()) {
                    *text = text.replace(u.as_str(), &url_as_written(u));
                }
            }
            for s in &secrets {
                if text.contains(s.as_str()) {
                    *text = text.replace(s.as_str(), MASK);
                }
            }
        };
        super::ConfigError::rewrite_all(errors, clean);
    }
}

thread_local! {
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

fn note(f: impl FnOnce(&mut Seen)) {
    SEEN.with(|s| {
        if let Some(seen) = s.borrow_mut().as_mut() {
            f(seen);
        }
    });
}

/// Notes the secret and URL values read on this thread from [`Collector::start`] to
/// [`Collector::finish`] (or its drop).
#[derive(Debug)]
pub struct Collector {
    outer: Option<Option<Seen>>,
}

impl Collector {
    /// Starts noting.
    pub fn start() -> Collector {
        let outer = SEEN.with(|s| s.borrow_mut().replace(Seen::default()));
        Collector { outer: Some(outer) }
    }

    /// Stops noting; what was read meanwhile.
    pub fn finish(mut self) -> Seen {
        let outer = self.outer.take().flatten();
        SEEN.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer))
            .unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            SEEN.with(|s| *s.borrow_mut() = outer);
        }
    }
}

/// Runs `f` (which reads configuration sections) and returns what it returned with the secret
/// and URL values read meanwhile on this thread.
#[cfg(test)]
fn collecting<R>(f: impl FnOnce() -> R) -> (R, Seen) {
    let collector = Collector::start();
    let r = f();
    (r, collector.finish())
}

/// The configuration as written (references unresolved) with every secret replaced. `seen` is
/// what the typed sections noted when they read this same text: a string read as a [`Secret`]
/// keeps only its references, without defaults, or becomes [`MASK`] if it holds literal text; one
/// read as a [`ConfigUrl`] loses its user info and its query values. Matching on the text as
/// written (not on resolved values) keeps the result the same with or without the environment:
/// `validate --no-environment` prints the hash the running agent records.
pub fn redacted(written: &toml::Value, seen: &Seen) -> toml::Value {
    match written {
        toml::Value::String(w) if seen.secrets.contains(w) => {
            toml::Value::String(secret_as_written(w))
        }
        toml::Value::String(w) if seen.urls.contains(w) => toml::Value::String(url_as_written(w)),
        toml::Value::Array(items) => {
            toml::Value::Array(items.iter().map(|v| redacted(v, seen)).collect())
        }
        toml::Value::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.clone(), redacted(v, seen)))
                .collect(),
        ),
        _ => written.clone(),
    }
}

/// A secret as it may be kept: its references without their defaults, or [`MASK`] if any literal
/// text is in it.
pub(crate) fn secret_as_written(w: &str) -> String {
    let mut kept = String::new();
    let mut rest = w;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            return MASK.to_string();
        }
        let Some(end) = rest.find('}') else {
            return MASK.to_string();
        };
        let reference = &rest[2..end];
        let reference = match reference.split_once(":-") {
            Some((name, _default)) if reference.starts_with("env:") => format!("{name}:-{MASK}"),
            _ => reference.to_string(),
        };
        kept.push_str(&format!("${{{reference}}}"));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() || kept.is_empty() {
        return MASK.to_string();
    }
    kept
}

/// A URL as it may be kept: no user info, every query value masked. Text that is not a URL is
/// kept up to its query.
pub(crate) fn url_as_written(w: &str) -> String {
    let Ok(mut u) = url::Url::parse(w) else {
        return super::redact::url_text(w).into_owned();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|k| (k.as_str(), MASK)));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Conf {
        url: ConfigUrl,
        password: Secret,
        token: Secret,
        default: Secret,
        mixed: Secret,
        headers: std::collections::BTreeMap<String, Secret>,
        user: String,
        label: String,
    }

    #[test]
    fn secrets_are_found_by_type_and_replaced_where_written() {
        let written: toml::Value = toml::from_str(
            r#"
            url = "https://qms.example/api?code=abc&plant=4"
            password = "hunter2"
            token = "${credential:qms_token}"
            default = "${env:PW:-operator123}"
            mixed = "Bearer ${env:T}"
            headers = { "Ocp-Apim-Subscription-Key" = "k1", "X-Plant" = "4" }
            user = "hunter2-is-not-this"
            label = "tok-value"
            "#,
        )
        .expect("toml");
        // Read as resolved (references replaced by their values): Debug shows no secret.
        let mut resolved = written.clone();
        resolved["token"] = toml::Value::String("tok-value".into());
        resolved["default"] = toml::Value::String("operator123".into());
        resolved["mixed"] = toml::Value::String("Bearer t".into());
        let (conf, _) = collecting(|| resolved.clone().try_into::<Conf>());
        let conf = conf.expect("conf");
        assert_eq!(conf.password.expose(), "hunter2");
        let debug = format!("{conf:?}");
        assert!(!debug.contains("hunter2\""), "{debug}");
        assert!(format!("{:?}", conf.token) == "Secret(REDACTED)", "{debug}");
        assert!(!debug.contains("k1"), "{debug}");

        // Read as written: the positions of the secrets, replaced there.
        let (_, seen) = collecting(|| written.clone().try_into::<Conf>());
        let r = redacted(&written, &seen);
        assert_eq!(r["password"].as_str(), Some(MASK));
        assert_eq!(r["token"].as_str(), Some("${credential:qms_token}"));
        assert_eq!(r["default"].as_str(), Some("${env:PW:-REDACTED}"));
        assert_eq!(r["mixed"].as_str(), Some(MASK));
        assert_eq!(
            r["url"].as_str(),
            Some("https://qms.example/api?code=REDACTED&plant=REDACTED")
        );
        assert_eq!(
            r["headers"]["Ocp-Apim-Subscription-Key"].as_str(),
            Some(MASK)
        );
        assert_eq!(r["headers"]["X-Plant"].as_str(), Some(MASK));
        assert_eq!(r["user"].as_str(), Some("hunter2-is-not-this"));
        // A plain value equal to what a reference resolves to is not a secret's position: the
        // kept text (and its hash) is the same whatever the environment holds.
        assert_eq!(r["label"].as_str(), Some("tok-value"));
        // Outside `collecting`, nothing is noted.
        let (_, empty) = collecting(|| ());
        assert!(empty.secrets.is_empty() && empty.urls.is_empty());
    }
}
