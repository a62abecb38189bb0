//! Integration test modules (index in `tests/integration.rs`).

mod audit;
mod bad_input;
mod cli;
mod config_cases;
mod disk_full;
mod e2e;
mod file_sink;
#[cfg(feature = "sink-nats")]
pub(crate) mod fleet;
mod http_sink;
pub(crate) mod journal;
// It shares the fleet tests' helpers (tests/run.sh builds with both).
#[cfg(all(feature = "sink-kafka", feature = "sink-nats"))]
mod kafka_sink;
mod kill9;
mod layout;
pub(crate) mod metrics;
mod metrology;
mod metrology_cases;
pub(crate) mod metrology_source;
mod modbus;
pub(crate) mod mqtt;
#[cfg(feature = "sink-nats")]
pub(crate) mod nats_sink;
mod opcua;
mod pipeline;
mod rest;
mod rule_cases;
mod security;
mod service;
