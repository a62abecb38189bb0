//! Modbus source: TCP devices and RTU serial buses, every common data type and word order, and
//! polling planned into the fewest requests.
//!
//! - `config.rs`: `[sources.<id>] type = "modbus"` and tag validation (addressing, overlaps, types).
//! - `decode.rs`: registers to values (pure; every type × order tested).
//! - `plan.rs`: request planning (pure; minimality tested against an exhaustive search).
//! - `source.rs`: the poll loop, exceptions as bad quality, reconnects and outages.
//! - `README.md`: for users, including the addressing trap.

pub mod config;
pub mod decode;
pub mod plan;
pub mod source;

pub use config::ModbusSourceConfig;
pub use source::ModbusSource;
