//! Modbus polling cost: 1,000 registers across 10 devices at 10 Hz, the agent's CPU share measured
//! from /proc while it runs as its own process.
//!
//! `cargo bench --bench modbus` (set `MODBUS_BENCH_SECONDS`, default 20). The devices are
//! tokio-modbus servers in this process on 127.0.0.1; the agent is the real binary with one source
//! per device, 100 u16 tags each, polled every 100 ms. Reports the agent's CPU as a percentage of
//! one core, its resident memory, and the requests per poll cycle the devices saw (the plan's
//! minimum is 1 per device: 100 consecutive registers fit one request).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_modbus::server::tcp::{accept_tcp_connection, Server};

mod common;
use common::{cpu_ticks, rss_kib, TICKS_PER_SECOND};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

#[derive(Clone)]
struct Device(Arc<AtomicUsize>);

impl tokio_modbus::server::Service for Device {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        std::future::ready(match req.request {
            Request::ReadHoldingRegisters(a, c) => Ok(Response::ReadHoldingRegisters(
                (a..a + c)
                    .map(|i| i.wrapping_add((n / 50) as u16))
                    .collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

fn main() {
    let seconds: u64 = common::env_or("MODBUS_BENCH_SECONDS", 20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let counters: Vec<Arc<AtomicUsize>> = (0..10).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut addrs = Vec::new();
    for c in &counters {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        addrs.push(listener.local_addr().expect("addr"));
        let c = c.clone();
        rt.spawn(async move {
            let server = Server::new(listener);
            let on_connected = move |stream, addr| {
                let svc = Device(c.clone());
                async move { accept_tcp_connection(stream, addr, move |_| Ok(Some(svc.clone()))) }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut toml = format!(
        "[agent]\ngateway_id = \"bench\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    for (d, addr) in addrs.iter().enumerate() {
        toml.push_str(&format!(
            "\n[sources.dev{d}]\ntype = \"modbus\"\ntransport = \"tcp\"\naddress = \"{addr}\"\naddressing = \"pdu\"\npoll_interval_ms = 100\n"
        ));
        for r in 0..100 {
            toml.push_str(&format!("[[sources.dev{d}.tags]]\nname = \"r{r}\"\nkind = \"holding\"\naddress = {r}\ntype = \"u16\"\n"));
        }
    }
    let cfg = dir.path().join("agent.toml");
    std::fs::File::create(&cfg)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .expect("config");
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_shopfloor-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent");
    let pid = agent.id();
    std::thread::sleep(Duration::from_secs(3)); // connect and settle
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    let r0: Vec<usize> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    std::thread::sleep(Duration::from_secs(seconds));
    let (elapsed, c1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid));
    let r1: Vec<usize> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let rss = rss_kib(pid);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    let cpu = (c1 - c0) as f64 / TICKS_PER_SECOND / elapsed * 100.0;
    let requests: usize = r1.iter().zip(&r0).map(|(a, b)| a - b).sum();
    let cycles = elapsed * 10.0 * 10.0; // 10 devices at 10 Hz
    let per: HashMap<usize, usize> = r1
        .iter()
        .zip(&r0)
        .enumerate()
        .map(|(i, (a, b))| (i, a - b))
        .collect();
    println!(
        "modbus bench: 10 devices x 100 registers at 10 Hz for {elapsed:.0} s: agent CPU {cpu:.2}% of one core, RSS {:.1} MiB, {:.2} requests per device cycle (plan minimum 1); per device {:?}",
        rss as f64 / 1024.0,
        requests as f64 / cycles,
        { let mut v: Vec<usize> = per.values().copied().collect(); v.sort(); v }
    );
}
