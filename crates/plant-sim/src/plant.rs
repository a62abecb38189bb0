//! A simulated machining cell, shared by the demo (`examples/plant-demo`) and the end-to-end suite:
//! an OPC UA PLC ([`super::opcua::Cell`]), a Modbus gauge ([`super::modbus::Device`]), an OData ERP
//! ([`super::erp`]) with work orders and calibration records (G-101 valid, G-102 overdue), a QMS
//! receiver ([`super::qms::Qms`]) that can go down and come back on its port, and a vision station
//! publishing to an MQTT broker the caller runs. [`Plant::part`] makes one part through all of them.
//! `config/demo.toml` is the agent's configuration for it; [`Plant::agent_config`] points it at the
//! ports actually used.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opcua::crypto::{CertificateStore, X509};
use serde_json::json;
use tokio::sync::Mutex;

use super::config::AgentToml;
use super::erp::{Erp, ErpServer};
use super::modbus::Device;
use super::opcua::{Cell, Options as PlcOptions};
use super::qms::{Inner as QmsState, Qms};

/// Where the peers listen (port 0: any free port).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// OPC UA PLC.
    pub plc: u16,
    /// Modbus gauge.
    pub gauge: u16,
    /// The MQTT broker the caller runs.
    pub mqtt: u16,
    /// ERP.
    pub erp: u16,
    /// QMS receiver.
    pub qms: u16,
}

impl Ports {
    /// The demo's fixed ports (those in `config/demo.toml`), below the ephemeral range.
    pub const DEMO: Ports = Ports {
        plc: 14840,
        gauge: 15020,
        mqtt: 18830,
        erp: 18040,
        qms: 18050,
    };

    /// Any free ports (each peer binds port 0 and keeps the listener) for everything but the
    /// broker.
    pub fn any(mqtt: u16) -> Ports {
        Ports {
            plc: 0,
            gauge: 0,
            mqtt,
            erp: 0,
            qms: 0,
        }
    }
}

/// Every peer of the cell.
pub struct Plant {
    plc: Option<Cell>,
    pub plc_port: u16,
    pub gauge: Device,
    pub erp: ErpServer,
    pub qms_state: Arc<QmsState>,
    pub qms_addr: SocketAddr,
    pub mqtt_port: u16,
    qms: Mutex<Option<Qms>>,
    vision: rumqttc::AsyncClient,
    /// Where the CMM drops its result files.
    pub spool: PathBuf,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Names the peer whose port is taken.
fn in_use<'a>(what: &'a str, port: u16) -> impl FnOnce(std::io::Error) -> std::io::Error + 'a {
    move |e| {
        std::io::Error::new(
            e.kind(),
            format!("the {what} cannot listen on 127.0.0.1:{port} ({e}); stop whatever uses the port (ss -ltnp) and try again"),
        )
    }
}

impl Plant {
    /// Starts the peers (PKI under `dir`) and trusts the PLC's certificate in the agent's PKI
    /// under `agent_data`. The MQTT broker on `ports.mqtt` is the caller's.
    pub async fn start(dir: &Path, agent_data: &Path, ports: Ports) -> std::io::Result<Plant> {
        let options = PlcOptions {
            anonymous: false,
            ..PlcOptions::default()
        };
        let plc = Cell::start_on(dir, ports.plc, options)
            .await
            .map_err(in_use("OPC UA PLC", ports.plc))?;
        trust(&plc, agent_data)?;
        let gauge = Device::start_on(local(ports.gauge))
            .await
            .map_err(in_use("Modbus gauge", ports.gauge))?;
        gauge.set(|m| m.holding.insert((1, 110), 101));
        gauge.set_f32_cdab(1, 100, 25.0);
        let erp = ErpServer::start_on(erp_with_calibrations(), local(ports.erp))
            .await
            .map_err(in_use("ERP", ports.erp))?;
        let spool = dir.join("spool");
        std::fs::create_dir_all(&spool)?;
        let qms_state = Arc::new(QmsState::default());
        let qms = Qms::bind(local(ports.qms), qms_state.clone())
            .await
            .map_err(in_use("QMS receiver", ports.qms))?;
        let qms_addr = qms.addr;
        let mut options = rumqttc::MqttOptions::new("vision-station", "127.0.0.1", ports.mqtt);
        options.set_keep_alive(Duration::from_secs(5));
        let (vision, mut events) = rumqttc::AsyncClient::new(options, 1000);
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Ok(Plant {
            plc_port: plc.port,
            plc: Some(plc),
            gauge,
            erp,
            qms_state,
            qms_addr,
            mqtt_port: ports.mqtt,
            qms: Mutex::new(Some(qms)),
            vision,
            spool,
        })
    }

    /// `demo` (the text of `config/demo.toml`) pointed at these peers, with `data_dir` and the
    /// metrics `listen` address given. Keys are set by path: a key renamed in the demo
    /// configuration fails here instead of leaving the demo's port in place.
    pub fn agent_config(&self, demo: &str, data_dir: &Path, metrics: &str) -> String {
        let cfg = AgentToml::parse(demo);
        let d = Ports::DEMO;
        let moved = |path: &str, from: String, to: String| -> String {
            let written = cfg
                .get(path)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("the demo configuration has no {path}"));
            assert!(
                written.contains(&from),
                "{path} = {written:?} does not name {from}"
            );
            written.replace(&from, &to)
        };
        let plc = moved(
            "sources.plc.endpoint",
            format!("127.0.0.1:{}", d.plc),
            format!("127.0.0.1:{}", self.plc_port),
        );
        let gauge = moved(
            "sources.gauge.address",
            format!("127.0.0.1:{}", d.gauge),
            self.gauge.addr.to_string(),
        );
        let erp = moved(
            "sources.erp.url",
            format!("127.0.0.1:{}", d.erp),
            self.erp.addr.to_string(),
        );
        let qms = moved(
            "sinks.qms.url",
            format!("127.0.0.1:{}", d.qms),
            self.qms_addr.to_string(),
        );
        cfg.set("sources.plc.endpoint", plc)
            .set("sources.gauge.address", gauge)
            .set("sources.vision.port", i64::from(self.mqtt_port))
            .set("sources.erp.url", erp)
            .set("sinks.qms.url", qms)
            .set_toml(
                "sources.cmm.folders",
                &format!(
                    "[{{ path = {:?}, completion = \"rename\" }}]",
                    self.spool.display().to_string()
                ),
            )
            .set("agent.data_dir", data_dir.display().to_string())
            .set("metrics.listen", metrics)
            .to_string()
    }

    /// The PLC.
    pub fn plc(&self) -> &Cell {
        self.plc.as_ref().expect("the PLC runs")
    }

    /// Stops the PLC (its connections drop); parts made meanwhile never reach it.
    pub async fn stop_plc(&mut self) {
        if let Some(plc) = self.plc.take() {
            plc.stop().await;
        }
    }

    /// Starts the PLC again on its port with its certificate.
    pub async fn start_plc(&mut self, dir: &Path) {
        let options = PlcOptions {
            anonymous: false,
            ..PlcOptions::default()
        };
        let mut tries = 0;
        let again = loop {
            match Cell::start_on(dir, self.plc_port, options.clone()).await {
                Ok(c) => break c,
                Err(e) if tries > 100 => {
                    panic!("the PLC cannot listen again on {}: {e}", self.plc_port)
                }
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.plc = Some(again);
    }

    /// Stops the QMS (connections refused).
    pub async fn qms_down(&self) {
        if let Some(q) = self.qms.lock().await.take() {
            q.stop();
        }
    }

    /// Starts the QMS again on its port, with what it received so far.
    pub async fn qms_up(&self) -> std::io::Result<()> {
        let mut tries = 0;
        let q = loop {
            match Qms::bind(self.qms_addr, self.qms_state.clone()).await {
                Ok(q) => break q,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        *self.qms.lock().await = Some(q);
        Ok(())
    }

    /// Serial of part `n`.
    pub fn serial(n: u32) -> String {
        format!("SN-{:05}", 1000 + n)
    }

    /// One part (about 1.5 s): the ERP releases its traveler, the gauge measures (every fifth part
    /// with the overdue G-102, every eighth out of tolerance), the PLC reports the part complete, the
    /// vision station publishes its check (every ninth fails), the ERP closes the traveler.
    pub async fn part(&self, n: u32) {
        let serial = Self::serial(n);
        let work_order = if n <= 12 { "WO-4711" } else { "WO-4712" };
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
        // A PLC that is down sees nothing of this part.
        if let Some(plc) = &self.plc {
            plc.set("WorkOrder", work_order);
            plc.set("PartSerial", serial.as_str());
            tokio::time::sleep(Duration::from_millis(100)).await;
            plc.set("PartComplete", true);
            tokio::time::sleep(Duration::from_millis(400)).await;
            plc.set("PartComplete", false);
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let visual = if n.is_multiple_of(9) { "fail" } else { "pass" };
        self.publish_check(&serial, "VIS-1", visual).await;
        if n.is_multiple_of(3) {
            self.cmm_measures(&serial, n);
        }
        self.update_row(row, "COMPLETE");
    }

    /// The CMM measures part `n` (every third part goes there) and drops its QIF results file into
    /// the spool folder: written under a temporary name, then renamed in. Every seventh part it
    /// measures has a bore out of tolerance.
    pub fn cmm_measures(&self, serial: &str, n: u32) {
        let bore = if n.is_multiple_of(7) {
            12.041
        } else {
            12.0 + f64::from(n * 5 % 9) * 0.002 - 0.008
        };
        let length = 80.0 + f64::from(n * 3 % 7) * 0.01 - 0.03;
        let at = crate::clock::format(crate::clock::now());
        let text = crate::cmm::qif_part(
            serial,
            &at,
            &[("BORE-2", 12.0, 0.02, bore), ("LEN-1", 80.0, 0.1, length)],
        );
        let tmp = self.spool.join(format!(".{serial}.qif.tmp"));
        let to = self.spool.join(format!("{serial}.qif"));
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &to)) {
            eprintln!("the CMM cannot write {}: {e}", to.display());
        }
    }

    /// One part in about half a second, for load: the ERP releases its traveler, the gauge and the
    /// PLC are set, the part-complete pulse lasts 250 ms, the vision check is published, the ERP
    /// closes the traveler. Returns when the pulse rose.
    pub async fn quick_part(&self, n: u32) -> std::time::SystemTime {
        let serial = Self::serial(n);
        let row = self.work_order_row(&serial, "WO-4713", "IN_PROCESS");
        self.gauge
            .set_f32_cdab(1, 100, 25.0 + (n % 5) as f32 * 0.001);
        let plc = self.plc();
        plc.set("WorkOrder", "WO-4713");
        plc.set("PartSerial", serial.as_str());
        // Two publishing intervals: the serial is in the agent before the pulse.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rose = std::time::SystemTime::now();
        plc.set("PartComplete", true);
        tokio::time::sleep(Duration::from_millis(250)).await;
        plc.set("PartComplete", false);
        self.publish_check(&serial, "VIS-1", "pass").await;
        self.update_row(row, "COMPLETE");
        rose
    }

    /// The vision station publishes one check (QoS 1). False if the client refused it.
    pub async fn publish_check(&self, serial: &str, feature: &str, result: &str) -> bool {
        self.vision
            .publish(
                "plant1/cell1/station10/visual",
                rumqttc::QoS::AtLeastOnce,
                false,
                json!({ "serial": serial, "feature": feature, "result": result, "operator": "J. Doe" })
                    .to_string(),
            )
            .await
            .is_ok()
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
            "modifiedAt": crate::clock::now_rfc3339(),
        }));
        rows.len() - 1
    }

    fn update_row(&self, i: usize, status: &str) {
        let mut erp = self.erp.erp.lock().expect("lock");
        if let Some(row) = erp.sets.get_mut("WorkOrders").and_then(|r| r.get_mut(i)) {
            row["status"] = json!(status);
            row["modifiedAt"] = json!(crate::clock::now_rfc3339());
        }
    }
}

/// Puts the PLC's certificate in the agent's `trusted/` folder, as an administrator would once.
fn trust(plc: &Cell, agent_data: &Path) -> std::io::Result<()> {
    let der = std::fs::read(plc.pki.join("own/cert.der"))?;
    let cert = X509::from_der(&der)
        .map_err(|e| std::io::Error::other(format!("the PLC's certificate: {e}")))?;
    let trusted = agent_data.join("pki/opcua/trusted");
    std::fs::create_dir_all(&trusted)?;
    std::fs::write(trusted.join(CertificateStore::cert_file_name(&cert)), der)
}

/// The ERP's calibration records: G-101 and the CMM in calibration, G-102 overdue since 35 days.
fn erp_with_calibrations() -> Erp {
    let now = crate::clock::now();
    let day = time::Duration::days(1);
    let at = crate::clock::format;
    let mut erp = Erp::default();
    erp.sets.insert(
        "CalibrationRecords".into(),
        vec![
            json!({ "ID": 1, "instrumentId": "G-101", "instrumentType": "air gauge 25 mm",
                    "calibratedAt": at(now - 60 * day), "dueAt": at(now + 305 * day), "result": "pass",
                    "certificate": "CAL-2026-0101", "modifiedAt": at(now - 60 * day) }),
            json!({ "ID": 3, "instrumentId": "CMM-01", "instrumentType": "coordinate measuring machine",
                    "calibratedAt": at(now - 20 * day), "dueAt": at(now + 345 * day), "result": "pass",
                    "certificate": "CAL-2026-0311", "modifiedAt": at(now - 20 * day) }),
            json!({ "ID": 2, "instrumentId": "G-102", "instrumentType": "air gauge 25 mm (spare)",
                    "calibratedAt": at(now - 400 * day), "dueAt": at(now - 35 * day), "result": "pass",
                    "certificate": "CAL-2025-0217", "modifiedAt": at(now - 400 * day) }),
        ],
    );
    erp.sets.insert("WorkOrders".into(), Vec::new());
    erp
}
