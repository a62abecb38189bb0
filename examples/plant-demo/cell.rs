//! The simulated cell: the peers on their fixed ports and the production of parts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use opcua::crypto::{CertificateStore, X509};
use serde_json::json;
use shopfloor_agent::config::Config;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

use crate::support::erp::{Erp, ErpServer};
use crate::support::modbus::Device;
use crate::support::opcua::{self as plc, Options as PlcOptions};
use crate::support::qms::{Inner as QmsState, Qms};
use crate::Options;

const PLC_PORT: u16 = 48410;
const GAUGE: &str = "127.0.0.1:15020";
const BROKER: &str = "127.0.0.1:18830";
const ERP: &str = "127.0.0.1:18040";
const QMS: &str = "127.0.0.1:18050";
/// One part every this often.
const TAKT: Duration = Duration::from_secs(2);

/// Every peer of the cell.
pub(crate) struct Cell {
    plc: plc::Cell,
    gauge: Device,
    erp: ErpServer,
    qms: Mutex<Option<Qms>>,
    qms_state: Arc<QmsState>,
    vision: rumqttc::AsyncClient,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

fn in_use<'a>(what: &'a str, port: &'a str) -> impl FnOnce(std::io::Error) -> anyhow::Error + 'a {
    move |e| {
        anyhow::anyhow!(
            "the {what} cannot listen on {port} ({e}); stop whatever uses the port (ss -ltnp) and start the demo again"
        )
    }
}

impl Cell {
    /// Starts every peer; trusts the PLC's certificate in the agent's PKI at `agent_data`.
    pub(crate) async fn start(demo_dir: &Path, agent_data: &Path) -> anyhow::Result<Cell> {
        let plc = plc::Cell::start_on(
            demo_dir,
            PLC_PORT,
            PlcOptions {
                anonymous: false,
                shifted: false,
                none_only: false,
            },
        )
        .await
        .map_err(in_use("OPC UA PLC", "127.0.0.1:48410"))?;
        trust_plc(&plc, agent_data)?;
        let gauge = Device::start_on(addr(GAUGE))
            .await
            .map_err(in_use("Modbus gauge", GAUGE))?;
        gauge.set(|m| m.holding.insert((1, 110), 101));
        gauge.set_f32_cdab(1, 100, 25.0);
        start_broker()?;
        let erp = ErpServer::start_on(erp_with_calibrations(), addr(ERP))
            .await
            .map_err(in_use("ERP", ERP))?;
        let qms_state = Arc::new(QmsState::default());
        let qms = Qms::bind(addr(QMS), qms_state.clone())
            .await
            .map_err(in_use("QMS receiver", QMS))?;
        let mut options = rumqttc::MqttOptions::new("demo-vision-station", "127.0.0.1", 18830);
        options.set_keep_alive(Duration::from_secs(5));
        let (vision, mut events) = rumqttc::AsyncClient::new(options, 100);
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Ok(Cell {
            plc,
            gauge,
            erp,
            qms: Mutex::new(Some(qms)),
            qms_state,
            vision,
        })
    }

    /// What the QMS received.
    pub(crate) fn qms_state(&self) -> Arc<QmsState> {
        self.qms_state.clone()
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
            self.part(n).await;
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
        if let Some(q) = self.qms.lock().await.take() {
            q.stop();
        }
        *since = Some(Instant::now());
        println!("\n*** QMS DOWN: records wait in the agent's journal on disk (o + Enter brings it back) ***\n");
    }

    async fn qms_up(&self, since: &mut Option<Instant>) -> anyhow::Result<()> {
        let mut tries = 0;
        let q = loop {
            match Qms::bind(addr(QMS), self.qms_state.clone()).await {
                Ok(q) => break q,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("the QMS cannot listen again"),
            }
        };
        *self.qms.lock().await = Some(q);
        let down = since.take().map_or(0, |s| s.elapsed().as_secs());
        println!("\n*** QMS UP again after {down} s: the backlog drains, in order ***\n");
        Ok(())
    }

    /// One part: the ERP releases its traveler, the gauge measures, the PLC reports the part
    /// complete, the vision station publishes its check, the ERP closes the traveler.
    async fn part(&self, n: u32) {
        let serial = format!("SN-{:05}", 1000 + n);
        let work_order = if n <= 12 { "WO-4711" } else { "WO-4712" };
        // G-102 is overdue for calibration; every fifth part is measured with it.
        let gauge_id: u16 = if n.is_multiple_of(5) { 102 } else { 101 };
        let diameter = if n.is_multiple_of(8) {
            25.031
        } else {
            // 24.990 .. 25.010 mm: inside the ±0.02 tolerance.
            25.0 + (n * 7 % 11) as f32 * 0.002 - 0.010
        };
        let row = self.work_order_row(&serial, work_order, "IN_PROCESS");
        // The ERP is polled every 500 ms: the traveler is journaled before the inspection.
        tokio::time::sleep(Duration::from_millis(700)).await;
        self.gauge.set(|m| m.holding.insert((1, 110), gauge_id));
        self.gauge.set_f32_cdab(1, 100, diameter);
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.plc.set("WorkOrder", work_order);
        self.plc.set("PartSerial", serial.as_str());
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.plc.set("PartComplete", true);
        tokio::time::sleep(Duration::from_millis(400)).await;
        self.plc.set("PartComplete", false);
        let visual = if n.is_multiple_of(9) { "fail" } else { "pass" };
        let _ = self
            .vision
            .publish(
                "plant1/cell1/station10/visual",
                rumqttc::QoS::AtLeastOnce,
                false,
                json!({ "serial": serial, "feature": "VIS-1", "result": visual, "operator": "J. Doe" })
                    .to_string(),
            )
            .await;
        self.update_row(row, "COMPLETE");
    }

    fn work_order_row(&self, serial: &str, work_order: &str, status: &str) -> usize {
        let mut erp = self.erp.erp.lock().expect("lock");
        let rows = erp.sets.entry("WorkOrders".into()).or_default();
        rows.push(json!({
            "ID": rows.len() + 1,
            "workOrder": work_order,
            "partNumber": "P-2040",
            "revision": "C",
            "serial": serial,
            "operation": "OP-30",
            "workCenter": "cell1/station10",
            "status": status,
            "modifiedAt": shopfloor_agent::time::now_rfc3339(),
        }));
        rows.len() - 1
    }

    fn update_row(&self, i: usize, status: &str) {
        let mut erp = self.erp.erp.lock().expect("lock");
        if let Some(row) = erp.sets.get_mut("WorkOrders").and_then(|r| r.get_mut(i)) {
            row["status"] = json!(status);
            row["modifiedAt"] = json!(shopfloor_agent::time::now_rfc3339());
        }
    }
}

/// Puts the PLC's certificate in the agent's `trusted/` folder, as an administrator would once.
fn trust_plc(plc: &plc::Cell, agent_data: &Path) -> anyhow::Result<()> {
    let der = std::fs::read(plc.pki.join("own/cert.der")).context("the PLC's certificate")?;
    let cert = X509::from_der(&der).map_err(|e| anyhow::anyhow!("the PLC's certificate: {e}"))?;
    let trusted = agent_data.join("pki/opcua/trusted");
    std::fs::create_dir_all(&trusted)?;
    std::fs::write(trusted.join(CertificateStore::cert_file_name(&cert)), der)?;
    Ok(())
}

/// The ERP's calibration records: G-101 in calibration, G-102 overdue since 35 days.
fn erp_with_calibrations() -> Erp {
    let now = shopfloor_agent::time::now();
    let day = time::Duration::days(1);
    let at = |t: time::OffsetDateTime| shopfloor_agent::time::format(t);
    let mut erp = Erp::default();
    erp.sets.insert(
        "CalibrationRecords".into(),
        vec![
            json!({ "ID": 1, "instrumentId": "G-101", "instrumentType": "air gauge 25 mm",
                    "calibratedAt": at(now - 60 * day), "dueAt": at(now + 305 * day), "result": "pass",
                    "certificate": "CAL-2026-0101", "modifiedAt": at(now - 60 * day) }),
            json!({ "ID": 2, "instrumentId": "G-102", "instrumentType": "air gauge 25 mm (spare)",
                    "calibratedAt": at(now - 400 * day), "dueAt": at(now - 35 * day), "result": "pass",
                    "certificate": "CAL-2025-0217", "modifiedAt": at(now - 400 * day) }),
        ],
    );
    erp.sets.insert("WorkOrders".into(), Vec::new());
    erp
}

/// The MQTT broker (rumqttd) on its own threads.
fn start_broker() -> anyhow::Result<()> {
    use std::collections::HashMap;
    let listen = addr(BROKER);
    std::net::TcpListener::bind(listen)
        .map(drop)
        .map_err(in_use("MQTT broker", BROKER))?;
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
    anyhow::bail!("the MQTT broker did not start on {BROKER}")
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
