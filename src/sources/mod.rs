//! Sources: where observations come from. Each `[sources.<id>]` picks its type; a source registers its
//! tags in the rule engine, then runs as its own task and sends observations into the records
//! pipeline.

#[cfg(feature = "source-modbus")]
pub mod modbus;
#[cfg(feature = "source-mqtt")]
pub mod mqtt;
#[cfg(feature = "source-opcua")]
pub mod opcua;
#[cfg(feature = "source-rest")]
pub mod rest;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::records::engine::Engine;
use crate::records::pipeline::Sender;
use crate::runtime::Shutdown;

/// The `type` names of the sources built in (by Cargo feature): the one list hints and errors use.
pub const SOURCE_TYPES: &[&str] = &[
    #[cfg(feature = "source-modbus")]
    "modbus",
    #[cfg(feature = "source-rest")]
    "rest",
    #[cfg(feature = "source-mqtt")]
    "mqtt",
    #[cfg(feature = "source-opcua")]
    "opcua",
];

impl crate::config::Component for SourceConfig {
    const TABLE: &'static str = "sources";
    const TYPES: &'static [&'static str] = SOURCE_TYPES;

    fn from_type(kind: &str, v: toml::Value) -> Option<crate::config::Parsed<Self>> {
        Some(match kind {
            #[cfg(feature = "source-modbus")]
            "modbus" => serde_path_to_error::deserialize(v).map(Self::Modbus),
            #[cfg(feature = "source-rest")]
            "rest" => serde_path_to_error::deserialize(v).map(Self::Rest),
            #[cfg(feature = "source-mqtt")]
            "mqtt" => serde_path_to_error::deserialize(v).map(Self::Mqtt),
            #[cfg(feature = "source-opcua")]
            "opcua" => serde_path_to_error::deserialize(v).map(Self::Opcua),
            _ => return None,
        })
    }
}

/// `[sources.<id>]`: one source, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// A Modbus TCP device or RTU bus.
    #[cfg(feature = "source-modbus")]
    Modbus(modbus::ModbusSourceConfig),
    /// An ERP/MES REST (OData) service.
    #[cfg(feature = "source-rest")]
    Rest(rest::RestSourceConfig),
    /// Subscriptions on an MQTT broker.
    #[cfg(feature = "source-mqtt")]
    Mqtt(mqtt::MqttSourceConfig),
    /// An OPC UA server.
    #[cfg(feature = "source-opcua")]
    Opcua(opcua::OpcUaSourceConfig),
}

impl SourceConfig {
    /// Checks the values; `at` is the key path (`sources.gauge1`).
    pub fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        match self {
            #[cfg(feature = "source-modbus")]
            SourceConfig::Modbus(c) => c.validate(at, errors),
            #[cfg(feature = "source-rest")]
            SourceConfig::Rest(c) => c.validate(at, errors),
            #[cfg(feature = "source-mqtt")]
            SourceConfig::Mqtt(c) => c.validate(at, errors),
            #[cfg(feature = "source-opcua")]
            SourceConfig::Opcua(c) => c.validate(at, errors),
        }
    }

    /// Names of the tags this source provides (rules may refer to `<id>.<name>`).
    pub fn tag_names(&self) -> Vec<String> {
        match self {
            #[cfg(feature = "source-modbus")]
            SourceConfig::Modbus(c) => c.tags.iter().map(|t| t.name.clone()).collect(),
            #[cfg(feature = "source-rest")]
            SourceConfig::Rest(_) => Vec::new(),
            #[cfg(feature = "source-mqtt")]
            SourceConfig::Mqtt(_) => Vec::new(),
            #[cfg(feature = "source-opcua")]
            SourceConfig::Opcua(c) => c.tags.iter().map(|t| t.name.clone()).collect(),
        }
    }
}

/// A built source, ready to run.
#[allow(clippy::large_enum_variant)] // built once at start; boxing would only add noise
pub enum Source {
    /// Modbus.
    #[cfg(feature = "source-modbus")]
    Modbus(modbus::ModbusSource),
    /// REST.
    #[cfg(feature = "source-rest")]
    Rest(rest::RestSource),
    /// MQTT.
    #[cfg(feature = "source-mqtt")]
    Mqtt(mqtt::MqttSource),
    /// OPC UA.
    #[cfg(feature = "source-opcua")]
    Opcua(opcua::OpcUaSource),
}

impl Source {
    /// Builds the source and registers its tags in the engine; `state` is what the journal holds
    /// for it (watermarks, cursors) as (key, value).
    pub fn build(
        id: &str,
        config: &SourceConfig,
        engine: &mut Engine,
        state: &[(String, String)],
        journal: &crate::journal::Journal,
        agent: &crate::config::AgentConfig,
    ) -> Result<Source, String> {
        let _ = (state, journal, agent);
        match config {
            #[cfg(feature = "source-modbus")]
            SourceConfig::Modbus(c) => modbus::ModbusSource::new(id, c, engine).map(Source::Modbus),
            #[cfg(feature = "source-rest")]
            SourceConfig::Rest(c) => rest::RestSource::new(id, c, state).map(Source::Rest),
            #[cfg(feature = "source-mqtt")]
            SourceConfig::Mqtt(c) => mqtt::MqttSource::new(id, c, journal).map(Source::Mqtt),
            #[cfg(feature = "source-opcua")]
            SourceConfig::Opcua(c) => {
                opcua::OpcUaSource::new(id, c, engine, &agent.data_dir, &agent.gateway_id)
                    .map(Source::Opcua)
            }
        }
    }

    /// Runs until shutdown. `repeat_summary` is `log.repeat_summary_s`: how often a continuing
    /// outage is summarised in the log.
    pub async fn run(self, tx: Sender, shutdown: Shutdown, repeat_summary: std::time::Duration) {
        match self {
            #[cfg(feature = "source-modbus")]
            Source::Modbus(s) => s.run(tx, shutdown, repeat_summary).await,
            #[cfg(feature = "source-rest")]
            Source::Rest(s) => s.run(tx, shutdown, repeat_summary).await,
            #[cfg(feature = "source-mqtt")]
            Source::Mqtt(s) => s.run(tx, shutdown, repeat_summary).await,
            #[cfg(feature = "source-opcua")]
            Source::Opcua(s) => s.run(tx, shutdown, repeat_summary).await,
        }
    }
}
