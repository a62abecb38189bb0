//! MQTT sink: publishes each record (QoS 1) to a topic made from a template; the cursor moves only
//! after the broker acknowledged every record of the batch (PUBACK).
//!
//! rumqttc does not return packet ids from `publish`, so the sink pairs them itself: it watches the
//! outgoing PUBLISH packet ids of the batch and waits until each has its PUBACK. A reconnect during a
//! batch fails the batch; the driver sends it again (at-least-once; receivers dedupe on the record id).

pub mod config;
pub mod sink;

pub use config::MqttSinkConfig;
pub use sink::MqttSink;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};
use crate::sinks::driver::DeliveryOptions;
use crate::sinks::{Receipts, SendError, Sink, SinkContext, SinkSpec};

impl SinkSpec for MqttSinkConfig {
    fn validate(&self, at: &str, _opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions::records(self.batch_max_records)
    }

    fn build(&self, id: &str, cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(MqttSink::new(id, self, cx)?))
    }
}

impl Sink for MqttSink {
    fn send<'a>(
        &'a mut self,
        rows: &'a [JournalRow],
    ) -> BoxFuture<'a, Result<Receipts, SendError>> {
        Box::pin(async move { MqttSink::send(self, rows).await.map(|()| Vec::new()) })
    }

    fn target(&self) -> String {
        crate::config::redact::url_text(&MqttSink::target(self)).into_owned()
    }
}
