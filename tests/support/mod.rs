//! Test harness: temp dirs, `eventually`, the peers (from `plant-sim`: QMS receiver, ERP, OPC UA PLC,
//! Modbus device, the demo cell, a test CA), hostile peers and forgers, schema validation.

#![allow(dead_code, unreachable_pub)]

pub mod forger;
pub mod hostile;
#[cfg(feature = "sink-kafka")]
pub mod kafka_sasl;
/// CPU time and resident memory of a process (shared with the benches).
#[path = "../../benches/common/mod.rs"]
pub mod process;
pub mod proxy;

/// The peers of the simulated plant (`crates/plant-sim/`), shared with the benches and the demo.
pub use plant_sim::{erp, modbus, mosquitto, nats, opcua, plant, qms, tls};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shopfloor_agent::config::{Config, LoadOptions};

/// The real binary under test.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shopfloor-agent"))
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The case folders of `tests/cases/<area>/`, sorted; at least `min` of them (so a moved folder
/// cannot make a data-driven test pass by walking nothing).
pub fn case_dirs(area: &str, min: usize) -> Vec<PathBuf> {
    let dir = root().join("tests/cases").join(area);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= min,
        "expected at least {min} cases in {}, found {}",
        dir.display(),
        cases.len()
    );
    cases
}

/// A child process that is killed and reaped when dropped, so a failing test leaves none running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh temporary directory, removed on drop.
/// A read-only SQL connection to `store`'s database file: tests look into the tables as an auditor
/// with `sqlite3` would (the store itself offers no raw SQL).
pub fn journal_sql(store: &shopfloor_agent::journal::Store) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the journal read-only")
}

/// The random source of a randomised test (kill timings): seeded from `TEST_SEED` when set, else
/// at random, and the seed is printed so a failure can be run again exactly (`cargo test` shows a
/// failing test's output).
pub fn seeded(test: &str) -> fastrand::Rng {
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: seed {seed} (run again with TEST_SEED={seed})");
    fastrand::Rng::with_seed(seed)
}

/// Whether source `source` of the agent whose journal is in `data` is up (`status`: `up since`):
/// connected, subscribed where it subscribes (every SUBACK in), data flowing. Tests wait for it
/// instead of sleeping after a start.
pub fn source_up(data: &Path, source: &str) -> bool {
    source_connection(data, source).starts_with("up since")
}

/// Every endpoint of source `source` (a REST source's outages are per endpoint) is up, and it
/// has at least one.
pub fn endpoints_up(data: &Path, source: &str) -> bool {
    let endpoints: Vec<String> = source_states(data, source)
        .into_iter()
        .filter(|(k, _)| k.starts_with("connection:"))
        .map(|(_, v)| v)
        .collect();
    !endpoints.is_empty() && endpoints.iter().all(|v| v.starts_with("up since"))
}

/// The connection state of source `source` (`up since T`, `DOWN since T: why`), or "" before it
/// has one.
pub fn source_connection(data: &Path, source: &str) -> String {
    source_state_value(data, source, "connection").unwrap_or_default()
}

/// The value of `key` in the state the journal in `data` keeps for `source` (`connection`,
/// `connection:<endpoint>`, a watermark), if any.
pub fn source_state_value(data: &Path, source: &str, key: &str) -> Option<String> {
    source_states(data, source)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Every (key, value) of the state the journal in `data` keeps for `source`; none while the
/// journal cannot be read yet.
fn source_states(data: &Path, source: &str) -> Vec<(String, String)> {
    shopfloor_agent::journal::Store::open_ro(data)
        .and_then(|s| s.source_state(Some(source)))
        .map(|states| states.into_iter().map(|(_, k, v, _)| (k, v)).collect())
        .unwrap_or_default()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sfa-test-")
        .tempdir()
        .expect("temp dir")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking form of [`eventually`].
pub fn eventually_blocking<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loads a config from TOML text with `dir` as the config file's directory.
pub fn config(dir: &Path, toml: &str) -> Config {
    Config::from_texts(
        &[(dir.join("agent.toml"), toml.to_string())],
        dir,
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"))
}

fn schema() -> &'static (boon::Schemas, boon::SchemaIndex) {
    static SCHEMA: OnceLock<(boon::Schemas, boon::SchemaIndex)> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("config/quality-record.v1.schema.json"))
            .expect("schema file");
        let json: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("quality-record.v1.schema.json", json)
            .expect("add schema");
        let idx = compiler
            .compile("quality-record.v1.schema.json", &mut schemas)
            .expect("schema compiles");
        (schemas, idx)
    })
}

/// Asserts that `record` validates against `config/quality-record.v1.schema.json`.
pub fn assert_schema_valid(record: &serde_json::Value) {
    let (schemas, idx) = schema();
    if let Err(e) = schemas.validate(record, *idx) {
        panic!("record does not match quality-record/1 schema: {e:#}\n{record:#}");
    }
}

/// Asserts the schema on a record's canonical JSON text.
pub fn assert_schema_valid_text(body: &str) {
    let v: serde_json::Value = serde_json::from_str(body).expect("record is JSON");
    assert_schema_valid(&v);
}

/// Waits until the journal clock has left the current millisecond: with `retention_days = 0`
/// retention prunes rows appended *before* now, so a row appended in the same millisecond as the
/// prune is still young and kept.
pub async fn past_this_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}
