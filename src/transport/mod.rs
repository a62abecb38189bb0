//! What sources and sinks share to talk to their peers: the HTTP client ([`http`]: TLS,
//! authentication, error descriptions), the MQTT connection ([`mqtt`]) and the NATS connection
//! options ([`nats`], shared by the NATS sink and `fleet verify`) and the Kafka client's security
//! settings ([`kafka`], shared by the Kafka sink and `fleet verify --kafka`).
//!
//! The rule: sources never import sinks and sinks never import sources; both may import
//! `transport`. (`tests/suite/layout.rs` checks it.)

#[cfg(feature = "transport-http")]
pub mod http;

/// Installs ring as the process's rustls crypto provider (idempotent): the HTTP client and the MQTT
/// connection and the NATS sink use it.
#[cfg(any(
    feature = "transport-http",
    feature = "transport-mqtt",
    feature = "sink-nats"
))]
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A PEM file (CA, certificate, key), or an error naming it.
#[cfg(any(feature = "transport-http", feature = "transport-mqtt"))]
fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
#[cfg(feature = "sink-kafka")]
pub mod kafka;
#[cfg(feature = "transport-mqtt")]
pub mod mqtt;
#[cfg(feature = "sink-nats")]
pub mod nats;
