//! The demo's run: the cell's peers (`crates/plant-sim/src/plant.rs`) on the fixed ports of
//! `config/demo.toml`, an MQTT broker (rumqttd) for them, and the production loop with its keys.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shopfloor_agent::config::Config;
use tokio::io::AsyncBufReadExt;

use crate::Options;
use plant_sim::plant::{Plant, Ports};
use plant_sim::qms::Inner as QmsState;

/// One part every this often.
const TAKT: Duration = Duration::from_secs(2);

/// The cell.
pub(crate) struct Cell {
    plant: Plant,
}

impl Cell {
    /// Starts the broker and every peer; trusts the PLC's certificate in the agent's PKI.
    pub(crate) async fn start(demo_dir: &Path, agent_data: &Path) -> anyhow::Result<Cell> {
        start_broker(Ports::DEMO.mqtt)?;
        let plant = Plant::start(demo_dir, agent_data, Ports::DEMO).await?;
        Ok(Cell { plant })
    }

    /// What the QMS received.
    pub(crate) fn qms_state(&self) -> Arc<QmsState> {
        self.plant.qms_state.clone()
    }

    /// Makes parts until `q`, Ctrl-C or `opts.parts`; takes the QMS down and up on `o` or as the
    /// options say. Returns the number of parts made.
    pub(crate) async fn produce(&self, opts: &Options, config: &Config) -> anyhow::Result<u32> {
        let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<String>(8);
        // Ctrl-C is `q`: one listener for the whole run, so a signal during a part is not lost.
        let quit = keys_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = quit.send("q".into()).await;
            }
        });
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if keys_tx.send(line.trim().to_string()).await.is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut down_since: Option<Instant> = None;
        let mut scripted_done = false;
        let mut n = 0u32;
        loop {
            if opts.parts > 0 && n >= opts.parts {
                break;
            }
            // Scripted outage.
            let elapsed = started.elapsed().as_secs();
            if let Some(at) = opts.outage_at {
                if !scripted_done && down_since.is_none() && elapsed >= at {
                    self.qms_down(&mut down_since).await;
                } else if !scripted_done
                    && down_since.is_some_and(|d| d.elapsed().as_secs() >= opts.outage_for)
                {
                    self.qms_up(&mut down_since).await?;
                    scripted_done = true;
                }
            }
            if let Some(since) = down_since {
                backlog_line(config, since);
            }
            n += 1;
            let tick = Instant::now();
            self.plant.part(n).await;
            let rest = TAKT.saturating_sub(tick.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                key = keys.recv() => match key.as_deref() {
                    Some("q") => break,
                    Some("o") if down_since.is_none() => self.qms_down(&mut down_since).await,
                    Some("o") => self.qms_up(&mut down_since).await?,
                    _ => {}
                },
            }
        }
        if down_since.is_some() {
            self.qms_up(&mut down_since).await?;
        }
        // Let the agent deliver the last parts.
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let waiting = shopfloor_agent::audit::status::collect_live(config)
                .map(|s| s.sinks.iter().map(|k| k.backlog).sum::<i64>())
                .unwrap_or(0);
            if waiting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(n)
    }

    async fn qms_down(&self, since: &mut Option<Instant>) {
        self.plant.qms_down().await;
        *since = Some(Instant::now());
        println!("\n*** QMS DOWN: records wait in the agent's journal on disk (o + Enter brings it back) ***\n");
    }

    async fn qms_up(&self, since: &mut Option<Instant>) -> anyhow::Result<()> {
        self.plant
            .qms_up()
            .await
            .context("the QMS cannot listen again")?;
        let down = since.take().map_or(0, |s| s.elapsed().as_secs());
        println!("\n*** QMS UP again after {down} s: the backlog drains, in order ***\n");
        Ok(())
    }
}

/// The MQTT broker (rumqttd) on its own threads.
fn start_broker(port: u16) -> anyhow::Result<()> {
    use std::collections::HashMap;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpListener::bind(listen).map(drop).map_err(|e| {
        anyhow::anyhow!("the MQTT broker cannot listen on {listen} ({e}); stop whatever uses the port (ss -ltnp) and try again")
    })?;
    let server = rumqttd::ServerSettings {
        name: "demo".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: 65536,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("demo".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                eprintln!("MQTT broker stopped: {e}");
            }
        })?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("the MQTT broker did not start on {listen}")
}

/// While the QMS is down: how much waits on disk.
fn backlog_line(config: &Config, since: Instant) {
    if let Ok(s) = shopfloor_agent::audit::status::collect_live(config) {
        let waiting: i64 = s.sinks.iter().map(|k| k.backlog).sum();
        println!(
            "    QMS down {:>3} s: {waiting} records waiting in the journal ({:.1} MiB on disk)",
            since.elapsed().as_secs(),
            s.used_bytes as f64 / 1_048_576.0
        );
    }
}
