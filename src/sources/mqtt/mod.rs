//! MQTT source: QoS 1 subscriptions on a persistent session, acknowledged only after the records a
//! message made are committed (or the payload is quarantined).
//!
//! - `config.rs`: `[sources.<id>] type = "mqtt"`.
//! - `payload.rs`: payload formats (pure; one arm per format).
//! - `source.rs`: the event loop, commit-before-PUBACK, reconnects (with a gap record when QoS 0
//!   messages may have been lost while the connection was down).

pub mod config;
pub mod payload;
pub mod source;

pub use config::MqttSourceConfig;
pub use source::MqttSource;

use crate::config::ConfigError;
use crate::runtime::{BoxFuture, BuildError};
use crate::sources::{BuildContext, Source, SourceRuntime, SourceSpec};

impl SourceSpec for MqttSourceConfig {
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(MqttSource::new(id, self, cx.journal)?))
    }
}

impl Source for MqttSource {
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()> {
        Box::pin((*self).run(rt))
    }
}
