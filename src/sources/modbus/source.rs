//! The Modbus source at run time: connect, poll the plan every cycle, decode, report.
//!
//! - A Modbus **exception** is the device's answer: the tags of that request get a bad-quality sample
//!   whose status names the exception; the connection stays.
//! - An **I/O error** or (TCP) a **timeout** loses the connection: after `retries` immediate
//!   reconnects the source reports an outage (a gap record follows when it is back) and reconnects
//!   with backoff. On RTU a timeout is one silent unit on a working bus: its tags go bad, the bus
//!   stays.
//! - Each source is its own task, so a slow or dead device never delays another.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use super::config::{ModbusSourceConfig, ResolvedTag, Transport};
use super::decode::{decode, scale};
use super::plan::{plan, Read, RegisterKind};
use crate::records::engine::Engine;
use crate::records::observation::{Observation, Origin, Quality, Sample, TagId};
use crate::records::pipeline::Input;
use crate::sources::{Stopped, Supervisor};

/// A running Modbus source.
pub struct ModbusSource {
    id: String,
    cfg: ModbusSourceConfig,
    tags: Vec<ResolvedTag>,
    ids: Vec<TagId>,
    reads: Vec<Read>,
    endpoint: String,
}

enum Outcome {
    Words(Vec<u16>),
    Bits(Vec<bool>),
    Exception(ExceptionCode),
    Timeout,
    Io(String),
}

impl ModbusSource {
    /// Resolves the tags, plans the requests and registers the tags (with their origin) in the engine.
    pub fn new(
        id: &str,
        cfg: &ModbusSourceConfig,
        engine: &mut Engine,
    ) -> Result<ModbusSource, crate::runtime::BuildError> {
        let mut errors = Vec::new();
        let tags = cfg.resolve(&format!("sources.{id}"), &mut errors);
        if !errors.is_empty() {
            return Err(crate::config::ConfigError::join(&errors).into());
        }
        let endpoint = match cfg.transport {
            Transport::Tcp => cfg.address.clone().unwrap_or_default(),
            Transport::Rtu => cfg
                .device
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        };
        let ids = tags
            .iter()
            .map(|t| {
                engine.register_tag(
                    id,
                    &t.name,
                    Origin {
                        protocol: "modbus".into(),
                        endpoint: Some(endpoint.clone()),
                        address: Some(t.describe()),
                    },
                )
            })
            .collect();
        let spans: Vec<_> = tags.iter().map(|t| t.span).collect();
        let reads = plan(&spans, cfg.max_gap);
        tracing::debug!(
            "modbus source {id}: {} tags in {} requests per cycle",
            tags.len(),
            reads.len()
        );
        Ok(ModbusSource {
            id: id.to_string(),
            cfg: cfg.clone(),
            tags,
            ids,
            reads,
            endpoint,
        })
    }

    /// Requests per poll cycle (the plan's size).
    pub fn requests_per_cycle(&self) -> usize {
        self.reads.len()
    }

    async fn connect(&self) -> Result<Context, String> {
        let unit = Slave(self.cfg.unit);
        let timeout = Duration::from_millis(self.cfg.timeout_ms.max(1000));
        match self.cfg.transport {
            Transport::Tcp => {
                let addr: SocketAddr = tokio::net::lookup_host(&self.endpoint)
                    .await
                    .map_err(|e| format!("cannot resolve {}: {e}", self.endpoint))?
                    .next()
                    .ok_or_else(|| format!("{} resolves to no address", self.endpoint))?;
                match tokio::time::timeout(
                    timeout,
                    tokio_modbus::client::tcp::connect_slave(addr, unit),
                )
                .await
                {
                    Ok(Ok(ctx)) => Ok(ctx),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connect timed out".into()),
                }
            }
            Transport::Rtu => {
                use tokio_serial::SerialPortBuilderExt;
                let path = self.endpoint.clone();
                let builder = tokio_serial::new(&path, self.cfg.baud_rate)
                    .parity(match self.cfg.parity {
                        super::config::Parity::None => tokio_serial::Parity::None,
                        super::config::Parity::Even => tokio_serial::Parity::Even,
                        super::config::Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .stop_bits(if self.cfg.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    })
                    .data_bits(if self.cfg.data_bits == 7 {
                        tokio_serial::DataBits::Seven
                    } else {
                        tokio_serial::DataBits::Eight
                    });
                let port = builder
                    .open_native_async()
                    .map_err(|e| format!("cannot open {path}: {e}"))?;
                Ok(tokio_modbus::client::rtu::attach_slave(port, unit))
            }
        }
    }

    async fn read(&self, ctx: &mut Context, r: &Read) -> Outcome {
        ctx.set_slave(Slave(r.unit));
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let call = async {
            match r.kind {
                RegisterKind::Holding => ctx
                    .read_holding_registers(r.start, r.count)
                    .await
                    .map(|x| x.map(Outcome::Words)),
                RegisterKind::Input => ctx
                    .read_input_registers(r.start, r.count)
                    .await
                    .map(|x| x.map(Outcome::Words)),
                RegisterKind::Coil => ctx
                    .read_coils(r.start, r.count)
                    .await
                    .map(|x| x.map(Outcome::Bits)),
                RegisterKind::Discrete => ctx
                    .read_discrete_inputs(r.start, r.count)
                    .await
                    .map(|x| x.map(Outcome::Bits)),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Outcome::Timeout,
            Ok(Err(e)) => Outcome::Io(e.to_string()),
            Ok(Ok(Err(exc))) => Outcome::Exception(exc),
            Ok(Ok(Ok(o))) => o,
        }
    }

    /// Samples of the tags of one request.
    fn samples(&self, r: &Read, outcome: &Outcome, out: &mut Vec<(TagId, Sample)>) {
        let received_ms = crate::time::now_ms();
        for &ti in &r.tags {
            let t = &self.tags[ti];
            let offset = usize::from(t.span.start - r.start);
            let count = usize::from(t.span.count);
            let (raw, decoded) = match outcome {
                Outcome::Words(w) => match w.get(offset..offset + count) {
                    Some(regs) => (
                        Value::from(regs.to_vec()),
                        decode(regs, t.data_type, t.order, t.bit)
                            .and_then(|v| scale(v, t.scale, t.offset))
                            .map_err(|e| e.to_string()),
                    ),
                    None => (
                        Value::Null,
                        Err(format!("short answer: {} registers", w.len())),
                    ),
                },
                Outcome::Bits(b) => match b.get(offset) {
                    Some(&bit) => (Value::Bool(bit), Ok(Value::Bool(bit))),
                    None => (Value::Null, Err(format!("short answer: {} bits", b.len()))),
                },
                Outcome::Exception(e) => (
                    serde_json::json!({ "exception": u8::from(*e) }),
                    Err(format!("exception {:02} ({e})", u8::from(*e))),
                ),
                Outcome::Timeout => (
                    Value::Null,
                    Err(format!("no response within {} ms", self.cfg.timeout_ms)),
                ),
                Outcome::Io(e) => (Value::Null, Err(e.clone())),
            };
            let sample = match decoded {
                Ok(value) => Sample {
                    value,
                    raw,
                    source_ms: None,
                    server_ms: None,
                    received_ms,
                    quality: Quality::Good,
                    status: None,
                },
                Err(status) => Sample {
                    value: Value::Null,
                    raw,
                    source_ms: None,
                    server_ms: None,
                    received_ms,
                    quality: Quality::Bad,
                    status: Some(status),
                },
            };
            out.push((self.ids[ti], sample));
        }
    }

    /// One poll cycle. `Err` means the connection is lost.
    async fn cycle(&self, ctx: &mut Context) -> Result<Vec<(TagId, Sample)>, String> {
        let mut samples = Vec::with_capacity(self.tags.len());
        let rtu = self.cfg.transport == Transport::Rtu;
        for (i, r) in self.reads.iter().enumerate() {
            if rtu && i > 0 {
                tokio::time::sleep(self.cfg.inter_frame_delay()).await;
            }
            let outcome = self.read(ctx, r).await;
            match &outcome {
                Outcome::Io(e) => return Err(e.clone()),
                Outcome::Timeout if !rtu => {
                    return Err(format!("no response within {} ms", self.cfg.timeout_ms))
                }
                _ => {}
            }
            self.samples(r, &outcome, &mut samples);
        }
        Ok(samples)
    }

    /// Polls until shutdown.
    pub(crate) async fn run(self, rt: crate::sources::SourceRuntime) {
        let mut sup = rt.supervisor(
            &self.id,
            format!("Modbus device {} at {}", self.id, self.endpoint),
            (
                Duration::from_millis(self.cfg.reconnect_initial_ms),
                Duration::from_millis(self.cfg.reconnect_max_ms),
            ),
        );
        let _ = self.poll(&rt, &mut sup).await;
        tracing::debug!("modbus source {} stopped", self.id);
    }

    async fn poll(
        &self,
        rt: &crate::sources::SourceRuntime,
        sup: &mut Supervisor,
    ) -> Result<(), Stopped> {
        let mut shutdown = rt.shutdown.clone();
        let why = |e: &str| format!("Modbus device at {} unreachable: {e}", self.endpoint);
        let mut attempts_left = self.cfg.retries;
        'outer: while !shutdown.is_triggered() {
            let mut ctx = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    sup.lost(&e, why(&e), &mut shutdown).await?;
                    continue;
                }
            };
            let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.poll_interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => break 'outer,
                }
                match self.cycle(&mut ctx).await {
                    Ok(samples) => {
                        attempts_left = self.cfg.retries;
                        // The last poll that answered: where a gap starts (not when the timeout
                        // noticed the loss).
                        sup.alive();
                        sup.up().await?;
                        rt.tx
                            .send(Input::new(Observation::Tags(samples)))
                            .await
                            .map_err(|_| Stopped)?;
                    }
                    Err(e) if attempts_left > 0 => {
                        attempts_left -= 1;
                        tracing::debug!("modbus source {}: {e}; reconnecting at once ({attempts_left} retries left)", self.id);
                        continue 'outer;
                    }
                    Err(e) => {
                        attempts_left = self.cfg.retries;
                        sup.lost(&e, why(&e), &mut shutdown).await?;
                        continue 'outer;
                    }
                }
            }
        }
        Ok(())
    }
}
