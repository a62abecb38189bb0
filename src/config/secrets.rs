//! Secret references in string values: `${env:NAME}`, `${file:/path/to/secret}` and
//! `${credential:NAME}`, the file NAME in the directory systemd passes as `$CREDENTIALS_DIRECTORY`
//! for the unit's `LoadCredential=NAME:/root-only/path` (readable by the service alone, never on
//! disk under its own user). `${env:NAME:-default}` falls back to `default` when NAME is unset (for examples and labs; a
//! production secret should have no default, so a missing one stops the agent with a clear error).
//!
//! References are resolved after the TOML is parsed, so a secret can never change the file's syntax,
//! and the config hash is taken before resolution, so rotating a secret does not change it. A `${`
//! not followed by `env:`, `file:` or `credential:` is an error rather than literal text, so a typo cannot send
//! `${evn:X}` to a peer as a password.

use std::collections::BTreeMap;

use super::ConfigError;

/// Where `${env:NAME}` and `$CREDENTIALS_DIRECTORY` are looked up: the process environment, or a
/// given set of variables (tests resolve in parallel without changing the process's environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Environment {
    /// The process environment.
    #[default]
    Process,
    /// Exactly these variables.
    Given(BTreeMap<String, String>),
}

impl Environment {
    /// The variables `pairs`, and no other.
    pub fn given<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Environment::Given(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `name`, if set (and valid Unicode).
    pub fn var(&self, name: &str) -> Option<String> {
        match self {
            Environment::Process => std::env::var(name).ok(),
            Environment::Given(vars) => vars.get(name).cloned(),
        }
    }
}

const HINT: &str = "write ${env:NAME}, ${file:/path/to/secret} or ${credential:NAME}";

/// Replaces every reference in `text`. `at` is the key path used in errors.
pub fn resolve(text: &str, at: &str, env: &Environment, errors: &mut Vec<ConfigError>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(
                ConfigError::new(at, format!("unterminated secret reference in {text:?}"))
                    .hint(HINT),
            );
            return out;
        };
        let reference = &after[..end];
        if let Some(name) = reference.strip_prefix("env:") {
            let (name, default) = match name.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (name, None),
            };
            match (env.var(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => errors.push(
                    ConfigError::new(at, format!("environment variable {name} is not set (${{env:{name}}})"))
                        .hint(format!(
                            "set {name} in the service environment (Environment=/EnvironmentFile=), or pass it with LoadCredential=<name>:<path> and write ${{credential:<name>}}"
                        )),
                ),
            }
        } else if let Some(path) = reference.strip_prefix("file:") {
            match std::fs::read_to_string(path) {
                Ok(v) => out.push_str(v.trim_end_matches(['\n', '\r'])),
                Err(e) => errors.push(
                    ConfigError::new(at, format!("cannot read secret file {path}: {e}"))
                        .hint("check the path and that the agent's user may read it "),
                ),
            }
        } else if let Some(name) = reference.strip_prefix("credential:") {
            match credential(name, at, env) {
                Ok(v) => out.push_str(&v),
                Err(e) => errors.push(e),
            }
        } else {
            errors.push(
                ConfigError::new(at, format!("unknown secret reference ${{{reference}}}"))
                    .hint(HINT),
            );
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Reads the systemd credential `name` from `$CREDENTIALS_DIRECTORY`.
fn credential(name: &str, at: &str, env: &Environment) -> Result<String, ConfigError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(
            ConfigError::new(at, format!("invalid credential name {name:?}"))
                .hint("a credential name is the part before the colon in LoadCredential=NAME:PATH"),
        );
    }
    let Some(dir) = env.var("CREDENTIALS_DIRECTORY") else {
        return Err(ConfigError::new(
            at,
            format!("${{credential:{name}}} needs CREDENTIALS_DIRECTORY, which is set only when systemd starts the agent with LoadCredential="),
        )
        .hint(format!(
            "add LoadCredential={name}:/etc/shopfloor-agent/credentials/{name} to the unit (systemctl edit shopfloor-agent), or check this config with `validate --no-environment`"
        )));
    };
    let path = std::path::Path::new(&dir).join(name);
    std::fs::read_to_string(&path)
        .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| {
            ConfigError::new(at, format!("cannot read credential {name} ({}): {e}", path.display()))
                .hint(format!(
                    "the unit needs LoadCredential={name}:<file readable by root>; see `systemctl cat shopfloor-agent`"
                ))
        })
}

/// Resolves every string in a TOML value tree in place; returns each (reference as written, value
/// it resolved to), so that errors can show the reference instead of the secret ([`scrub`]).
pub fn resolve_tree(
    value: &mut toml::Value,
    at: &str,
    env: &Environment,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, String)> {
    let mut substituted = Vec::new();
    walk(value, at, env, errors, &mut substituted);
    substituted
}

fn walk(
    value: &mut toml::Value,
    at: &str,
    env: &Environment,
    errors: &mut Vec<ConfigError>,
    substituted: &mut Vec<(String, String)>,
) {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let written = std::mem::take(s);
            *s = resolve(&written, at, env, errors);
            if !s.is_empty() && *s != written {
                substituted.push((written, s.clone()));
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &format!("{at}[{i}]"), env, errors, substituted);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                walk(v, &p, env, errors, substituted);
            }
        }
        _ => {}
    }
}

/// Puts the references back where an error quotes a value a secret reference resolved to: an
/// error is printed, logged and journaled (a refused reload), a secret never.
pub fn scrub(errors: &mut [ConfigError], substituted: &[(String, String)]) {
    if substituted.is_empty() {
        return;
    }
    let mut pairs: Vec<&(String, String)> = substituted.iter().collect();
    // Longest values first: a value that holds another is replaced whole.
    pairs.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let clean = |text: &mut String| {
        for (written, value) in &pairs {
            if text.contains(value.as_str()) {
                *text = text.replace(value.as_str(), written);
            }
        }
    };
    ConfigError::rewrite_all(errors, clean);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_file_and_env_from_the_given_environment_and_reports_what_is_missing() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").expect("write");
        let env = Environment::given([("SFA_TOKEN", "t0k3n")]);
        let mut errors = Vec::new();
        let out = resolve(
            &format!("a-${{file:{}}}-b", f.display()),
            "x",
            &env,
            &mut errors,
        );
        assert_eq!(out, "a-s3cret-b");
        assert_eq!(resolve("${env:SFA_TOKEN}", "t", &env, &mut errors), "t0k3n");
        assert!(errors.is_empty());
        resolve(
            "${env:SFA_SURELY_UNSET_VAR}",
            "sinks.qms.auth.password",
            &env,
            &mut errors,
        );
        resolve("${evn:X}", "y", &env, &mut errors);
        let defaulted = resolve(
            "${env:SFA_SURELY_UNSET_VAR:-lab-pw}",
            "z",
            &env,
            &mut errors,
        );
        assert_eq!(defaulted, "lab-pw");
        resolve("${credential:qms}", "c", &env, &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0]
            .message
            .contains("SFA_SURELY_UNSET_VAR is not set"));
        assert!(errors[1].message.contains("unknown secret reference"));
        assert!(errors[2].message.contains("needs CREDENTIALS_DIRECTORY"));
        // The credential directory comes from the same environment.
        std::fs::write(dir.path().join("qms"), "from-systemd\n").expect("write");
        let env =
            Environment::given([("CREDENTIALS_DIRECTORY", dir.path().to_str().expect("utf-8"))]);
        let mut errors = Vec::new();
        assert_eq!(
            resolve("${credential:qms}", "c", &env, &mut errors),
            "from-systemd"
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
