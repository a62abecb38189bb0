//! Agent configurations for tests and benches, built as TOML tables: a test changes a key by its
//! path (`sources.vision.password`) instead of replacing text, so a change that misses its key fails
//! loudly instead of leaving the configuration as it was.

use std::path::Path;

use toml::{Table, Value};

/// An agent configuration being built.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentToml(Table);

impl AgentToml {
    /// `[agent]` with `gateway_id` and `data_dir`, `[metrics]` off (tests run many agents at once).
    pub fn new(gateway_id: &str, data_dir: &Path) -> Self {
        AgentToml(Table::new())
            .set("agent.gateway_id", gateway_id)
            .set("agent.data_dir", data_dir.display().to_string())
            .set("metrics.enabled", false)
    }

    /// A configuration written as text (a test's template).
    pub fn parse(text: &str) -> Self {
        AgentToml(
            text.parse()
                .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}")),
        )
    }

    /// Sets the key at the dotted `path`, making the tables on the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        let (table, key) = self.parent(path, true);
        table.insert(key.to_string(), value.into());
        self
    }

    /// Sets the key at `path` to a TOML value written as text (`["a/#", "b/+"]`, `{ ca_file = "x" }`).
    pub fn set_toml(self, path: &str, value: &str) -> Self {
        let parsed: Table = format!("v = {value}")
            .parse()
            .unwrap_or_else(|e| panic!("{value} is not a TOML value: {e}"));
        let v = parsed.get("v").cloned().expect("parsed");
        self.set(path, v)
    }

    /// Removes the key at `path`; panics if there is none (the test would not test what it says).
    pub fn remove(mut self, path: &str) -> Self {
        let (table, key) = self.parent(path, false);
        assert!(table.remove(key).is_some(), "no key {path} to remove");
        self
    }

    /// The value at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut cur = &self.0;
        let mut parts = path.split('.').peekable();
        while let Some(p) = parts.next() {
            let v = cur.get(p)?;
            if parts.peek().is_none() {
                return Some(v);
            }
            cur = v.as_table()?;
        }
        None
    }

    /// Writes the configuration to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    fn parent<'a>(&mut self, path: &'a str, create: bool) -> (&mut Table, &'a str) {
        let (head, key) = match path.rsplit_once('.') {
            Some((h, k)) => (Some(h), k),
            None => (None, path),
        };
        let mut cur = &mut self.0;
        for part in head.into_iter().flat_map(|h| h.split('.')) {
            if create && !cur.contains_key(part) {
                cur.insert(part.to_string(), Value::Table(Table::new()));
            }
            cur = match cur.get_mut(part) {
                Some(Value::Table(t)) => t,
                _ => panic!("{path}: {part} is not a table"),
            };
        }
        (cur, key)
    }
}

impl std::fmt::Display for AgentToml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&toml::to_string(&self.0).expect("a table serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_set_and_removed_by_path_and_a_missing_key_is_loud() {
        let cfg = AgentToml::new("gw", Path::new("/tmp/d"))
            .set("sinks.qms.type", "http")
            .set("sinks.qms.url", "http://127.0.0.1:1/e")
            .set_toml("sources.v.topics", r#"["a/#"]"#);
        let text = cfg.to_string();
        let back = AgentToml::parse(&text);
        assert_eq!(back, cfg);
        assert_eq!(
            back.get("sinks.qms.url").and_then(Value::as_str),
            Some("http://127.0.0.1:1/e")
        );
        let cfg = cfg.remove("sinks.qms.url");
        assert!(cfg.get("sinks.qms.url").is_none());
        let missing = std::panic::catch_unwind(|| cfg.clone().remove("sinks.qms.nothing"));
        assert!(missing.is_err());
    }
}
