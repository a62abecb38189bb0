//! The agent-wide sections of the TOML file as serde structs (stage 1 of loading).
//!
//! Every field's `///` is the user documentation; `config/agent.toml` repeats it with examples.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::journal::store::Synchronous;

/// `[agent]`: who this gateway is and where it keeps its state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Name of this gateway in every record's provenance, e.g. `plant1-cell4-gw01`.
    pub gateway_id: String,
    /// Site (plant) name, available to sink templates.
    #[serde(default)]
    pub site: Option<String>,
    /// Directory of the journal and other state. Relative paths are taken from the directory the
    /// agent is started in.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/shopfloor-agent")
}

/// `[journal]`: durability, size and retention of the local journal.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// `full` (default): every commit survives power loss. `normal`: survives a crash of the agent
    /// but may lose the last commits on power loss. `extra`: `full` plus directory syncs.
    pub synchronous: Synchronous,
    /// Refuse new records once the journal uses this many bytes (0: no limit). Undelivered records
    /// are never deleted to make room; a gap record marks the refusal.
    pub max_disk_bytes: u64,
    /// Records acknowledged by every sink are pruned after this many days.
    pub retention_days: u32,
    /// How often retention runs, in seconds.
    pub prune_interval_s: u64,
    /// Most records committed in one transaction (group commit).
    pub max_batch_records: usize,
    /// Sign each record's hash with the gateway's Ed25519 key (created on first run).
    pub sign: bool,
    /// How often the head seal (`<data_dir>/head.seal`: the newest durable seq and hash, signed with
    /// signing on) is written while records come, in seconds; it is also written at every clean stop.
    pub seal_interval_s: u64,
    /// The size of the journal's database pages, in bytes, when the journal is made (an existing
    /// journal keeps its own). 4096 suits records of a few hundred bytes committed one by one;
    /// 16384 holds four records of about 4 KB (result files' characteristics, each field with
    /// its provenance) per page, where 4096 holds one.
    pub page_size_bytes: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            synchronous: Synchronous::Full,
            max_disk_bytes: 1 << 30,
            retention_days: 30,
            prune_interval_s: 3600,
            max_batch_records: 1000,
            sign: false,
            seal_interval_s: 300,
            page_size_bytes: crate::journal::DEFAULT_PAGE_SIZE,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (journald shows them as they are).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`: the Prometheus and health endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` and `/healthz`.
    pub enabled: bool,
    /// Address and port; loopback unless the plant's monitoring must reach it over the network.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9898".into(),
        }
    }
}

/// `[log]`: how the agent logs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`; `--log-format` overrides it.
    pub format: LogFormat,
    /// `error`, `warn`, `info`, `debug`, `trace` (the agent's own; libraries log below it, see
    /// [`crate::runtime::logging::directives`]), or a tracing filter such as
    /// `info,shopfloor_agent::sinks=debug`; the `RUST_LOG` variable overrides it.
    pub level: String,
    /// A failure that repeats is logged once, then summarised at most this often (seconds).
    pub repeat_summary_s: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            repeat_summary_s: 600,
        }
    }
}
