//! What sources and sinks share to talk to their peers: the HTTP client ([`http`]: TLS,
//! authentication, error descriptions) and the MQTT connection ([`mqtt`]).
//!
//! The rule: sources never import sinks and sinks never import sources; both may import
//! `transport`. (`tests/suite/layout.rs` checks it.)

#[cfg(feature = "transport-http")]
pub mod http;
#[cfg(feature = "transport-mqtt")]
pub mod mqtt;
