//! The in-process peers shared with the test suite (`tests/support/`); the end-to-end load run
//! (`benches/e2e.rs`) uses them too, with the suite's Mosquitto broker.

#[path = "../../tests/support/erp.rs"]
pub mod erp;
#[path = "../../tests/support/modbus.rs"]
pub mod modbus;
#[path = "../../tests/support/mosquitto.rs"]
pub mod mosquitto;
#[path = "../../tests/support/opcua.rs"]
pub mod opcua;
#[path = "../../tests/support/plant.rs"]
pub mod plant;
#[path = "../../tests/support/qms.rs"]
pub mod qms;
#[path = "../../tests/support/tls.rs"]
pub mod tls;

/// Polls `cond` until it holds (the Modbus peer's RTU helpers use it).
pub fn eventually_blocking<F: FnMut() -> bool>(
    timeout: std::time::Duration,
    what: &str,
    mut cond: F,
) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A fresh temporary directory (the Mosquitto broker's).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}
