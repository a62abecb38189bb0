//! Configuration: `agent.toml` plus drop-ins in `agent.d/*.toml`, loaded in two stages.
//!
//! 1. **Raw**: the TOML files are parsed and merged, secret references resolved, and each section
//!    deserialized on its own with `deny_unknown_fields`, so one bad section does not hide the
//!    problems of the next.
//! 2. **Validate**: every component checks its values and reports all problems with their key path
//!    and a hint ([`ConfigError`]).
//!
//! Drop-ins are read in file-name order. They may override single settings of `[agent]`, `[journal]`,
//! `[log]` and `[metrics]`; a component (`[sinks.<id>]`) belongs to exactly one file.
//!
//! The config hash ([`Config::sha256`]) is the SHA-256 of the canonical JSON of the merged files
//! *before* secret references are resolved and with every literal secret replaced by `REDACTED`
//! (the fields typed [`Secret`], header values, URL query values, `${env:X:-default}` defaults: see
//! [`secret`]). It identifies the configuration in every record without depending on, or
//! revealing, secret values: a password written into the file cannot be confirmed by guessing
//! against the hash. References (`${credential:qms_token}`) stay as written, so a configuration
//! that keeps its secrets outside hashes to the same value from its text, and
//! [`Config::effective_toml`] (kept in the journal's `configs` table) is exactly that text.

pub mod component;
pub mod error;
pub mod raw;
pub mod redact;
pub mod secret;
pub mod secrets;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use component::{components, section};
pub use component::{Component, Parsed};
pub use error::{ConfigError, ConfigErrors};
pub use raw::{AgentConfig, JournalConfig, LogConfig, LogFormat, MetricsConfig};
pub use secret::{ConfigUrl, Secret};
pub use secrets::Environment;

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// Default location of the main config file.
pub const DEFAULT_PATH: &str = "/etc/shopfloor-agent/agent.toml";

/// The fully commented reference configuration (`generate-config` prints it).
pub const REFERENCE: &str = include_str!("../../config/agent.toml");

/// Sections a drop-in may override setting by setting.
const SETTINGS_SECTIONS: &[&str] = &["agent", "journal", "log", "metrics"];
/// Sections whose entries are components owned by one file.
const COMPONENT_SECTIONS: &[&str] = &["sources", "sinks"];
/// Sections that are arrays, concatenated across files.
const LIST_SECTIONS: &[&str] = &["records"];

/// How to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Resolve `${env:…}` / `${file:…}` and check that referenced files exist. `validate
    /// --no-environment` turns it off to check a config on another machine than the gateway.
    pub environment: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { environment: true }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[agent]`.
    pub agent: AgentConfig,
    /// `[journal]`.
    pub journal: JournalConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[sources.<id>]`, by id.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[sinks.<id>]`, by id.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// `[[records]]`: the record rules.
    pub records: Vec<crate::records::rules::RuleConfig>,
    /// SHA-256 (hex) of the effective configuration, secrets unresolved.
    pub sha256: String,
    /// The files read, main file first.
    pub files: Vec<PathBuf>,
    /// The merged configuration as TOML text, secret references unresolved and literal secrets
    /// replaced by type (safe to show and to export; it hashes to [`Config::sha256`]). Kept as
    /// text: a parsed tree of a 10,000-tag configuration costs megabytes.
    pub effective: String,
    /// SHA-256 of the configuration with its secrets resolved: in memory only (its `Debug` is
    /// redacted), so that a reload notices a rotated credential or a changed header value, which
    /// the published [`Config::sha256`] leaves out by design.
    pub resolved_sha256: Secret,
}

impl Config {
    /// Loads `path` and the drop-ins in `agent.d/` beside it.
    pub fn load(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
        let absolute = std::path::absolute(path);
        let path = absolute.as_deref().unwrap_or(path);
        let mut files = vec![path.to_path_buf()];
        let dropin_dir = path.parent().unwrap_or(Path::new(".")).join("agent.d");
        if let Ok(entries) = std::fs::read_dir(&dropin_dir) {
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
        let mut texts = Vec::new();
        let mut errors = Vec::new();
        for f in &files {
            match std::fs::read_to_string(f) {
                Ok(t) => texts.push((f.clone(), t)),
                Err(e) => errors.push(
                    ConfigError::new(f.display().to_string(), format!("cannot read: {e}")).hint(
                        "pass the config with --config PATH (default /etc/shopfloor-agent/agent.toml)",
                    ),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        // Relative paths are taken from the directory the agent is started in, as with most
        // tools; under systemd use absolute paths (the unit's StateDirectory=).
        let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::from_texts(&texts, &base, opts)
    }

    /// Loads from in-memory file contents (main file first); relative paths are taken from `base`
    /// ([`Config::load`] passes the working directory).
    pub fn from_texts(
        texts: &[(PathBuf, String)],
        base: &Path,
        opts: LoadOptions,
    ) -> Result<Config, ConfigErrors> {
        Self::from_texts_in(texts, base, opts, &Environment::Process)
    }

    /// [`Config::from_texts`] with secret references resolved in `env` (tests give their own, so
    /// they never change the process environment that other tests read in parallel).
    pub fn from_texts_in(
        texts: &[(PathBuf, String)],
        base: &Path,
        opts: LoadOptions,
        env: &Environment,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let merged = merge(texts, &mut errors);
        if !errors.is_empty() {
            // Syntax errors or duplicate ids: what follows would only be noise.
            return Err(ConfigErrors(errors));
        }
        let written = toml::Value::Table(merged.clone());
        let mut resolved = toml::Value::Table(merged);
        let substituted = if opts.environment {
            secrets::resolve_tree(&mut resolved, "", env, &mut errors)
        } else {
            Vec::new()
        };
        refuse_user_info(&resolved, "", &mut errors);
        let toml::Value::Table(table) = resolved else {
            unreachable!("resolving references keeps the shape of the tree, a table")
        };
        // In memory only: lets a reload notice a rotated secret the published hash leaves out.
        let resolved_sha256 = Secret::new(hash_of(&table));
        // The typed sections note which values are secrets (see `secret.rs`): as resolved, to take
        // them out of error messages, and as written, to replace them where they are written (the
        // same reading of the text as written, its errors already reported by the first).
        let collector = secret::Collector::start();
        let Sections {
            agent,
            journal,
            log,
            metrics,
            sources,
            sinks,
            records,
        } = read_sections(table, &mut errors);
        let seen = collector.finish();
        let seen_written = {
            let collector = secret::Collector::start();
            let toml::Value::Table(t) = written.clone() else {
                unreachable!("the merged configuration is a table")
            };
            read_sections(t, &mut Vec::new());
            collector.finish()
        };
        // The configuration as written, every secret the types marked replaced: what is hashed
        // (canonical JSON, one pass: toml's maps are sorted) and what the journal keeps.
        let kept = secret::redacted(&written, &seen_written);
        let toml::Value::Table(kept) = kept else {
            unreachable!("secret::redacted keeps the shape of the tree it is given, a table")
        };
        let sha256 = hash_of(&kept);
        // A table parsed from TOML is written back as TOML; should it ever not be, the
        // configuration is refused rather than journaled as an empty text.
        let effective = match toml::to_string(&kept) {
            Ok(text) => format!("{}{text}", secret::KEPT_MARK),
            Err(e) => {
                errors.push(ConfigError::new(
                    "(configuration)",
                    format!("cannot be written back as TOML for the journal: {e}"),
                ));
                String::new()
            }
        };

        let agent_ok = agent.is_some();
        let mut agent = agent.unwrap_or_else(|| AgentConfig {
            gateway_id: String::new(),
            site: None,
            data_dir: PathBuf::new(),
        });
        if agent.data_dir.is_relative() {
            agent.data_dir = base.join(&agent.data_dir);
        }
        let mut config = Config {
            agent,
            journal,
            log,
            metrics,
            sources,
            sinks,
            records,
            sha256,
            files: texts.iter().map(|(p, _)| p.clone()).collect(),
            effective,
            resolved_sha256,
        };
        for sink in config.sinks.values_mut() {
            sink.spec_mut().resolve_paths(base);
        }
        for source in config.sources.values_mut() {
            source.spec_mut().resolve_paths(base);
        }
        config.validate(agent_ok, opts, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            secrets::scrub(&mut errors, &substituted);
            seen.scrub(&mut errors);
            Err(ConfigErrors(errors))
        }
    }

    /// Stage 2: checks values of every section that parsed (`agent_ok`: `[agent]` did).
    fn validate(&self, agent_ok: bool, opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(
                ConfigError::new(
                    "metrics.listen",
                    format!("{:?} is not an address and port", self.metrics.listen),
                )
                .hint("write an IP address and a port, such as \"127.0.0.1:9898\" (or enabled = false)"),
            );
        }
        let g = &self.agent.gateway_id;
        if agent_ok
            && (g.is_empty()
                || !g
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            errors.push(
                ConfigError::new(
                    "agent.gateway_id",
                    format!("{g:?} is not a valid gateway id"),
                )
                .hint("use letters, digits, '-', '_' or '.', e.g. \"plant1-cell4-gw01\""),
            );
        }
        let j = &self.journal;
        if j.max_disk_bytes != 0 && j.max_disk_bytes < 1 << 20 {
            errors.push(
                ConfigError::new(
                    "journal.max_disk_bytes",
                    format!(
                        "{} is below the minimum of 1048576 (1 MiB)",
                        j.max_disk_bytes
                    ),
                )
                .hint("set at least 1048576, or 0 for no limit"),
            );
        }
        if j.retention_days == 0 {
            errors.push(
                ConfigError::new("journal.retention_days", "must be at least 1")
                    .hint("records stay at least this long after every sink acknowledged them"),
            );
        }
        if j.max_batch_records == 0 || j.max_batch_records > 100_000 {
            errors.push(ConfigError::new(
                "journal.max_batch_records",
                format!("{} is out of range 1..=100000", j.max_batch_records),
            ));
        }
        if !crate::journal::page_size_ok(j.page_size_bytes) {
            errors.push(
                ConfigError::new(
                    "journal.page_size_bytes",
                    format!("{} is not a page size SQLite can use", j.page_size_bytes),
                )
                .hint("use a power of two from 1024 to 65536: 4096 (the default), or 16384 for records of several KB"),
            );
        }
        if j.prune_interval_s == 0 {
            errors.push(ConfigError::new(
                "journal.prune_interval_s",
                "must be at least 1",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(
                ConfigError::new(
                    "log.level",
                    format!("{:?} is not a log filter: {e}", self.log.level),
                )
                .hint("use error, warn, info, debug or trace"),
            );
        }
        for (id, sink) in &self.sinks {
            check_id(&format!("sinks.{id}"), id, errors);
            sink.spec().validate(&format!("sinks.{id}"), opts, errors);
        }
        for (id, source) in &self.sources {
            check_id(&format!("sources.{id}"), id, errors);
            if self.sinks.contains_key(id) {
                errors.push(
                    ConfigError::new(
                        format!("sources.{id}"),
                        format!("duplicate id: {id} is also a sink"),
                    )
                    .hint(
                        "sources and sinks share one namespace (status and logs name them by id)",
                    ),
                );
            }
            source.spec().validate(&format!("sources.{id}"), errors);
        }
        let mut tags = crate::records::tags::TagTable::new();
        match crate::records::rules::compile(&self.records, &mut tags) {
            Err(rule_errors) => errors.extend(rule_errors),
            Ok(_) => {
                // A tag of a configured source must exist there. (Rules may also name sources that
                // are not configured: they never fire, and the agent logs it at start.)
                for t in tags.iter() {
                    let tag = t.name.split_once('.').map_or("", |(_, n)| n);
                    if let Some(src) = self.sources.get(&t.source) {
                        if !src.spec().tag_names().iter().any(|n| n == tag) {
                            errors.push(
                                ConfigError::new(
                                    "records",
                                    format!("tag {} is not a tag of source {}", t.name, t.source),
                                )
                                .hint(format!(
                                    "tags of {}: {}",
                                    t.source,
                                    src.spec().tag_names().join(", ")
                                )),
                            );
                        }
                    }
                }
            }
        }
    }

    /// The record context of this configuration.
    pub fn record_context(&self) -> crate::records::RecordContext {
        crate::records::RecordContext {
            gateway_id: self.agent.gateway_id.clone(),
            config_sha256: self.sha256.clone(),
        }
    }

    /// The merged configuration as TOML with secret references unresolved (for `status` and export).
    pub fn effective_toml(&self) -> String {
        self.effective.clone()
    }
}

/// Refuses user info (`user:password@`) in any URL of the configuration (after secrets are
/// resolved): a URL is shown in provenance, logs and `/healthz`, so a password in it would be
/// published in every record. The error names the key, never the value.
fn refuse_user_info(value: &toml::Value, at: &str, errors: &mut Vec<ConfigError>) {
    match value {
        toml::Value::String(s) if s.contains("://") && redact::has_user_info(s) => errors.push(
            ConfigError::new(at, "the URL carries user info (user:password@), which would be shown in records, logs and health")
                .hint("remove it from the URL and give the credentials in `auth` (HTTP, REST), `username`/`password` (MQTT, OPC UA), as ${credential:…} or ${env:…}"),
        ),
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                refuse_user_info(v, &path, errors);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                refuse_user_info(v, &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

/// The configuration hash of merged tables: SHA-256 of their canonical JSON (see the module doc).
pub fn hash_of(merged: &toml::Table) -> String {
    crate::journal::chain::sha256_hex(crate::journal::chain::to_canonical_json(merged).as_bytes())
}

/// Checks that a component id is `[a-z0-9_]+`.
pub fn check_id(path: &str, id: &str, errors: &mut Vec<ConfigError>) {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        errors.push(
            ConfigError::new(path, format!("id {id:?} is not valid"))
                .hint("ids use lowercase letters, digits and '_', e.g. \"qms\" or \"cell4_plc\""),
        );
    }
}

/// The sections of a configuration, each as far as it could be read.
struct Sections {
    agent: Option<AgentConfig>,
    journal: JournalConfig,
    log: LogConfig,
    metrics: MetricsConfig,
    sources: BTreeMap<String, SourceConfig>,
    sinks: BTreeMap<String, SinkConfig>,
    records: Vec<crate::records::rules::RuleConfig>,
}

/// Reads every section of the merged configuration; problems go to `errors`, and a section that
/// cannot be read takes its defaults so the others are still checked.
fn read_sections(mut table: toml::Table, errors: &mut Vec<ConfigError>) -> Sections {
    let agent: Option<AgentConfig> = match table.remove("agent") {
        Some(v) => section(v, "agent", errors),
        None => {
            errors.push(
                ConfigError::new("agent", "missing section [agent]")
                    .hint("add [agent] with at least gateway_id = \"plant1-cell4-gw01\""),
            );
            None
        }
    };
    let journal: JournalConfig = table
        .remove("journal")
        .and_then(|v| section(v, "journal", errors))
        .unwrap_or_default();
    let log: LogConfig = table
        .remove("log")
        .and_then(|v| section(v, "log", errors))
        .unwrap_or_default();
    let metrics: MetricsConfig = table
        .remove("metrics")
        .and_then(|v| section(v, "metrics", errors))
        .unwrap_or_default();
    let sources: BTreeMap<String, SourceConfig> = components(table.remove("sources"), errors);
    let sinks: BTreeMap<String, SinkConfig> = components(table.remove("sinks"), errors);
    let mut records = Vec::new();
    if let Some(v) = table.remove("records") {
        match v {
            toml::Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(r) = section(item, &format!("records[{i}]"), errors) {
                        records.push(r);
                    }
                }
            }
            _ => errors.push(
                ConfigError::new("records", "must be an array of tables")
                    .hint("write each rule as [[records]]"),
            ),
        }
    }
    for (key, _) in table {
        errors.push(
            ConfigError::new(key.as_str(), format!("unknown section [{key}]"))
                .hint("known sections: agent, journal, log, metrics, sources, sinks, records"),
        );
    }
    Sections {
        agent,
        journal,
        log,
        metrics,
        sources,
        sinks,
        records,
    }
}

fn merge(texts: &[(PathBuf, String)], errors: &mut Vec<ConfigError>) -> toml::Table {
    let mut merged = toml::Table::new();
    let mut owner: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, text) in texts {
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                let at = match e.span() {
                    Some(span) => {
                        let line = text[..span.start].matches('\n').count() + 1;
                        let col =
                            span.start - text[..span.start].rfind('\n').map_or(0, |i| i + 1) + 1;
                        format!("{}:{line}:{col}", file.display())
                    }
                    None => file.display().to_string(),
                };
                errors.push(
                    ConfigError::new(at, format!("invalid TOML: {}", e.message().trim()))
                        .hint("fix the syntax; `shopfloor-agent generate-config` prints a valid reference"),
                );
                continue;
            }
        };
        for (key, value) in table {
            if COMPONENT_SECTIONS.contains(&key.as_str()) {
                let toml::Value::Table(components) = value else {
                    merged.insert(key, value);
                    continue;
                };
                let slot = merged
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(slot) = slot.as_table_mut() else {
                    continue;
                };
                for (id, c) in components {
                    let full = format!("{key}.{id}");
                    if let Some(first) = owner.get(&full) {
                        errors.push(
                            ConfigError::new(
                                full.clone(),
                                format!(
                                    "duplicate id: defined in {} and again in {}",
                                    first.display(),
                                    file.display()
                                ),
                            )
                            .hint("give each component its own id; a drop-in adds components, it does not change them"),
                        );
                        continue;
                    }
                    owner.insert(full, file.clone());
                    slot.insert(id, c);
                }
            } else if LIST_SECTIONS.contains(&key.as_str()) {
                match (merged.get_mut(&key), value) {
                    (Some(toml::Value::Array(existing)), toml::Value::Array(new)) => {
                        existing.extend(new)
                    }
                    (_, value) => {
                        merged.insert(key, value);
                    }
                }
            } else if SETTINGS_SECTIONS.contains(&key.as_str()) {
                match (merged.get_mut(&key), value) {
                    (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => {
                        for (k, v) in new {
                            existing.insert(k, v);
                        }
                    }
                    (_, value) => {
                        merged.insert(key, value);
                    }
                }
            } else {
                merged.insert(key, value);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_component_type_has_a_variant_and_no_other_does() {
        fn check<T: Component>() {
            for kind in T::TYPES {
                assert!(
                    T::from_type(kind, toml::Value::Table(Default::default())).is_some(),
                    "{} lists type {kind} but has no variant for it",
                    T::TABLE
                );
            }
            assert!(T::from_type("no_such_type", toml::Value::Table(Default::default())).is_none());
        }
        check::<SourceConfig>();
        check::<SinkConfig>();
    }

    #[test]
    fn reference_config_is_valid_and_hash_ignores_secret_values() {
        let env = |token| {
            Environment::given([
                ("OPCUA_PASSWORD", "secret"),
                ("ERP_PASSWORD", "secret"),
                ("MQTT_PASSWORD", "secret"),
                ("QMS_TOKEN", token),
            ])
        };
        let texts = vec![(PathBuf::from("agent.toml"), REFERENCE.to_string())];
        let a = Config::from_texts_in(
            &texts,
            Path::new("/etc/shopfloor-agent"),
            LoadOptions::default(),
            &env("one"),
        )
        .unwrap_or_else(|e| panic!("reference config must be valid:\n{e}"));
        let b = Config::from_texts_in(
            &texts,
            Path::new("/etc/shopfloor-agent"),
            LoadOptions::default(),
            &env("two"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn the_config_hash_is_the_canonical_json_of_the_merged_tables() {
        let texts = vec![(PathBuf::from("agent.toml"), REFERENCE.to_string())];
        let merged = merge(&texts, &mut Vec::new());
        let tree = serde_json::to_value(&merged).expect("json");
        assert_eq!(
            crate::journal::chain::to_canonical_json(&merged),
            crate::journal::chain::canonical_json(&tree),
            "the one-pass form must equal RFC 8785 of the tree"
        );
    }

    #[test]
    fn shipped_examples_are_valid() {
        let env = Environment::given([("ERP_PASSWORD", "x")]);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("config/examples") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let texts = vec![(path.clone(), text)];
            let loaded =
                Config::from_texts_in(&texts, Path::new("/tmp"), LoadOptions::default(), &env);
            // Without the Cargo feature the Kafka example is refused, and named as such.
            let kafka_left_out = !cfg!(feature = "sink-kafka")
                && path.file_name().is_some_and(|n| n == "kafka.toml");
            match loaded {
                Err(e) if kafka_left_out => assert!(
                    e.to_string()
                        .contains("is not in this build: it is the Cargo feature `sink-kafka`"),
                    "{e}"
                ),
                Err(e) => panic!("{} is invalid:\n{e}", path.display()),
                Ok(_) if kafka_left_out => panic!("kafka.toml loaded without `sink-kafka`"),
                Ok(_) => {}
            }
            n += 1;
        }
        assert!(n >= 2, "the examples are missing");
    }

    #[test]
    fn dropins_override_settings_and_add_components() {
        let main = "[agent]\ngateway_id = \"gw\"\n[journal]\nretention_days = 7\n";
        let dropin =
            "[journal]\nretention_days = 90\n[sinks.audit]\ntype = \"file\"\npath = \"out\"\n";
        let texts = vec![
            (PathBuf::from("agent.toml"), main.to_string()),
            (PathBuf::from("agent.d/10.toml"), dropin.to_string()),
        ];
        let c = Config::from_texts(&texts, Path::new("/cfg"), LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.journal.retention_days, 90);
        assert!(c.sinks.contains_key("audit"));
        assert_eq!(c.agent.data_dir, PathBuf::from("/var/lib/shopfloor-agent"));
    }
}
