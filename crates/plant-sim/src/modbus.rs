//! An in-process Modbus TCP device (tokio-modbus server on 127.0.0.1, port 0) whose registers the
//! test sets, which can refuse addresses (exception 02), fail a unit (exception 04), count requests,
//! and go away and come back on the same port.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// The device's memory and behaviour.
#[derive(Default)]
pub struct Memory {
    pub holding: HashMap<(u8, u16), u16>,
    pub input: HashMap<(u8, u16), u16>,
    pub coils: HashMap<(u8, u16), bool>,
    pub discrete: HashMap<(u8, u16), bool>,
    /// Holding addresses answered with exception 02.
    pub illegal: HashSet<u16>,
    /// Units answered with exception 04.
    pub failing_units: HashSet<u8>,
}

pub struct DeviceState {
    pub memory: Mutex<Memory>,
    pub requests: AtomicUsize,
    pub connections: AtomicUsize,
}

#[derive(Clone)]
struct Svc(Arc<DeviceState>);

impl tokio_modbus::server::Service for Svc {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        let m = self.0.memory.lock().expect("lock");
        let unit = req.slave;
        if m.failing_units.contains(&unit) {
            return std::future::ready(Err(ExceptionCode::ServerDeviceFailure));
        }
        let words = |map: &HashMap<(u8, u16), u16>, a: u16, n: u16| -> Vec<u16> {
            (a..a + n)
                .map(|i| map.get(&(unit, i)).copied().unwrap_or(0))
                .collect()
        };
        let bits = |map: &HashMap<(u8, u16), bool>, a: u16, n: u16| -> Vec<bool> {
            (a..a + n)
                .map(|i| map.get(&(unit, i)).copied().unwrap_or(false))
                .collect()
        };
        let r = match req.request {
            Request::ReadHoldingRegisters(a, n) => {
                if (a..a + n).any(|i| m.illegal.contains(&i)) {
                    Err(ExceptionCode::IllegalDataAddress)
                } else {
                    Ok(Response::ReadHoldingRegisters(words(&m.holding, a, n)))
                }
            }
            Request::ReadInputRegisters(a, n) => {
                Ok(Response::ReadInputRegisters(words(&m.input, a, n)))
            }
            Request::ReadCoils(a, n) => Ok(Response::ReadCoils(bits(&m.coils, a, n))),
            Request::ReadDiscreteInputs(a, n) => {
                Ok(Response::ReadDiscreteInputs(bits(&m.discrete, a, n)))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(r)
    }
}

pub struct Device {
    pub addr: SocketAddr,
    pub state: Arc<DeviceState>,
    stop: watch::Sender<bool>,
}

impl Device {
    /// A device on a free port.
    pub async fn start() -> Device {
        let state = Arc::new(DeviceState {
            memory: Mutex::new(Memory::default()),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        Self::serve(TcpListener::bind("127.0.0.1:0").await.expect("bind"), state)
    }

    /// A device on `addr` (the demo's fixed address).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Device> {
        let state = Arc::new(DeviceState {
            memory: Mutex::new(Memory::default()),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        Ok(Self::serve(TcpListener::bind(addr).await?, state))
    }

    /// The same device back on its port (after [`Device::stop`]).
    pub async fn restart(&self) -> Device {
        Self::serve(
            TcpListener::bind(self.addr).await.expect("bind again"),
            self.state.clone(),
        )
    }

    fn serve(listener: TcpListener, state: Arc<DeviceState>) -> Device {
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        let svc_state = state.clone();
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream, socket_addr| {
                let svc = Svc(svc_state.clone());
                svc_state.connections.fetch_add(1, Ordering::Relaxed);
                async move { accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(svc.clone()))) }
            };
            let mut stopped = stopped;
            let abort = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let _ = server.serve_until(&on_connected, |_| {}, abort).await;
        });
        Device { addr, state, stop }
    }

    /// Stops listening and drops every connection.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Sets coil `addr` of `unit`, then clears it, holding each level 250 ms: several cycles of a
    /// 50 ms poll, so the agent sees the rising edge.
    pub async fn pulse_coil(&self, unit: u8, addr: u16) {
        self.set(|m| m.coils.insert((unit, addr), true));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        self.set(|m| m.coils.insert((unit, addr), false));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    /// Edits the memory.
    pub fn set<R>(&self, f: impl FnOnce(&mut Memory) -> R) -> R {
        f(&mut self.state.memory.lock().expect("lock"))
    }

    /// Writes an f32 into two holding registers in CDAB order.
    pub fn set_f32_cdab(&self, unit: u8, addr: u16, v: f32) {
        let b = v.to_be_bytes();
        self.set(|m| {
            m.holding
                .insert((unit, addr), u16::from_be_bytes([b[2], b[3]]));
            m.holding
                .insert((unit, addr + 1), u16::from_be_bytes([b[0], b[1]]));
        });
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An RTU device on a serial port: several units sharing `memory`, some silent (no answer at all).
#[derive(Clone)]
pub struct RtuSvc {
    pub state: Arc<DeviceState>,
    pub silent_units: HashSet<u8>,
}

impl tokio_modbus::server::Service for RtuSvc {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        if self.silent_units.contains(&req.slave) {
            return std::future::ready(Ok(None));
        }
        let answer = Svc(self.state.clone()).call(req).into_inner();
        std::future::ready(answer.map(Some))
    }
}

/// A `socat` pseudo-terminal pair, stopped (by PID) on drop.
pub struct PtyPair {
    pub a: std::path::PathBuf,
    pub b: std::path::PathBuf,
    child: std::process::Child,
}

impl PtyPair {
    /// Starts `socat` with two linked pseudo-terminals in `dir`. Fails (never skips) without socat.
    pub fn start(dir: &std::path::Path) -> PtyPair {
        let (a, b) = (dir.join("tty-a"), dir.join("tty-b"));
        let child = std::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start socat ({e}): the RTU test needs it; install it with `apt-get install socat`")
            });
        crate::eventually_blocking(std::time::Duration::from_secs(10), "socat's ptys", || {
            a.exists() && b.exists()
        });
        PtyPair { a, b, child }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `svc` as Modbus RTU on the serial device `path` until the runtime ends.
pub fn serve_rtu(path: &std::path::Path, baud: u32, svc: RtuSvc) {
    let server = tokio_modbus::server::rtu::Server::new_from_path(path, baud)
        .expect("open pty for the RTU server");
    tokio::spawn(async move {
        let _ = server.serve_forever(svc).await;
    });
}

/// A fresh device memory.
pub fn new_state() -> Arc<DeviceState> {
    Arc::new(DeviceState {
        memory: Mutex::new(Memory::default()),
        requests: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
    })
}
