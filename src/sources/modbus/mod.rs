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

use crate::config::ConfigError;
use crate::runtime::{BoxFuture, BuildError};
use crate::sources::{BuildContext, Source, SourceRuntime, SourceSpec};

impl SourceSpec for ModbusSourceConfig {
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn tag_names(&self) -> Vec<String> {
        self.tags.iter().map(|t| t.name.clone()).collect()
    }

    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(ModbusSource::new(id, self, cx.engine)?))
    }
}

impl Source for ModbusSource {
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()> {
        Box::pin((*self).run(rt))
    }
}
