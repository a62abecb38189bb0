//! The demo cell: real protocol servers on loopback and the real agent pipeline between them.
//!
//! ```text
//! cargo run --release --features demo --example plant-demo [-- --outage-at 20 --outage-for 15] [-- --parts 30]
//! ```
//!
//! Starts, in this process: an OPC UA PLC (async-opcua server), a Modbus gauge (tokio-modbus
//! server), an MQTT broker (rumqttd) with a vision station publishing results, an OData ERP (work
//! orders; calibration records with gauge G-102 overdue) and a QMS receiver that dedupes by record id
//! and prints what arrives. Then it starts the agent with `config/demo.toml` and makes a part every
//! two seconds. Type `o` + Enter to take the QMS down (the backlog grows on disk) and again to bring
//! it back (the backlog drains); `q` + Enter (or Ctrl-C) stops.
//!
//! The peers are the ones the test suite uses (the `plant-sim` crate, `crates/plant-sim/`); the
//! production binary carries none of this.

mod cell;
mod screen;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use shopfloor_agent::config::{Config, LoadOptions};
use shopfloor_agent::runtime::topology::Agent;

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    /// Stop after this many parts (0: run until `q`).
    parts: u32,
    /// Take the QMS down this many seconds after the start.
    outage_at: Option<u64>,
    /// ... for this long.
    outage_for: u64,
    /// Keep the journal of an earlier run.
    keep: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        parts: 0,
        outage_at: None,
        outage_for: 15,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            args.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--parts" => o.parts = value("--parts")? as u32,
            "--outage-at" => o.outage_at = Some(value("--outage-at")?),
            "--outage-for" => o.outage_for = value("--outage-for")?,
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                println!(
                    "plant-demo [--parts N] [--outage-at S] [--outage-for S] [--keep]\n\
                     while it runs: o + Enter takes the QMS down or up, q + Enter stops"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown option {other} (try --help)"),
        }
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let opts = options()?;
    // Relative paths in config/demo.toml are taken from the repository root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(&root).context("cannot enter the repository")?;
    let filter = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| "warn,opcua=error,async_opcua=error,rumqttd=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = rt.block_on(run(opts));
    // The stdin reader sits in a blocking read; do not wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let demo_dir = PathBuf::from("target/plant-demo");
    if !opts.keep && demo_dir.exists() {
        std::fs::remove_dir_all(&demo_dir)
            .with_context(|| format!("cannot clear {}", demo_dir.display()))?;
    }
    std::fs::create_dir_all(&demo_dir)?;
    let config_path = PathBuf::from("config/demo.toml");
    let config = Config::load(&config_path, LoadOptions::default())
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;

    let p = plant_sim::plant::Ports::DEMO;
    println!(
        "starting the cell on 127.0.0.1: OPC UA PLC :{}, Modbus gauge :{}, MQTT broker :{}, ERP :{}, QMS :{}",
        p.plc, p.gauge, p.mqtt, p.erp, p.qms
    );
    let cell = cell::Cell::start(&demo_dir, &config.agent.data_dir).await?;
    let agent = Agent::start(config.clone())
        .await
        .context("the agent did not start")?;
    println!(
        "agent {} running with {} (journal {}); metrics on http://127.0.0.1:19898/metrics",
        config.agent.gateway_id,
        config_path.display(),
        config.agent.data_dir.display()
    );
    println!(
        "in a second terminal: target/release/shopfloor-agent --config config/demo.toml status"
    );
    println!("o + Enter: QMS down/up   q + Enter: stop\n");

    let screen = tokio::spawn(screen::show(cell.qms_state()));
    let outcome = cell.produce(&opts, &config).await;
    println!("\nstopping: the agent delivers what it holds, then closes its journal");
    agent.stop("demo finished").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    screen.abort();
    let parts = outcome?;
    screen::summary(&cell, &config, parts)
}
