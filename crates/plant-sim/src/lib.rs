//! A simulated plant cell for shopfloor-agent's tests, benches and demo. Every peer runs in process
//! on 127.0.0.1 and speaks the real protocol:
//!
//! | module | peer |
//! |---|---|
//! | [`opcua`] | an OPC UA server (async-opcua) holding a cell's PLC tags, with its own PKI |
//! | [`modbus`] | a Modbus TCP or RTU device (tokio-modbus server): a gauge's registers |
//! | [`erp`] | an OData ERP (axum): work orders and calibrations, paging, `$filter` on `modifiedAt` |
//! | [`qms`] | a QMS receiver (axum): batches of records, scripted answers (503, 429, 400) |
//! | [`mosquitto`] | a Mosquitto broker started as a child process, and a publisher |
//! | [`nats`] | NATS servers with JetStream (one, or a three-node cluster) as child processes |
//! | [`tls`] | a throw-away CA with server and client certificates |
//! | [`plant`] | the demo cell: all of the above driven together, part after part |
//! | [`config`] | agent configurations built as TOML tables, not edited as strings |
//! | [`cmm`] | a coordinate measuring machine's result files (QIF 3.0 results) |
//!
//! Peers take a listener already bound (port 0) where they can, so no other process can take the
//! port between choosing it and serving on it.

#![allow(clippy::new_without_default)]

pub mod clock;
pub mod cmm;
pub mod config;
pub mod erp;
pub mod modbus;
pub mod mosquitto;
pub mod nats;
pub mod opcua;
pub mod plant;
pub mod qms;
pub mod tls;

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub fn eventually_blocking<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
