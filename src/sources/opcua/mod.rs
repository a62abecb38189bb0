//! OPC UA source (async-opcua client): secure sessions, tags by namespace URI, subscriptions or
//! polling, and recovery that never goes silent. See `README.md` beside this file for the trust
//! workflow and the namespace rules.

pub mod config;
pub mod node;
pub mod pki;
pub mod source;
pub mod value;

pub use config::OpcUaSourceConfig;
pub use source::OpcUaSource;
