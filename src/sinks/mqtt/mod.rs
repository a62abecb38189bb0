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
