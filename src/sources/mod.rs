//! Sources: where observations come from. Each `[sources.<id>]` picks its type; a source registers
//! its tags in the rule engine when it is built, then runs as its own task and sends observations
//! into the records pipeline. Its connection to its peer is watched by a [`supervisor`].
//!
//! A source is one folder here: its configuration implements [`SourceSpec`] (check, declared tags,
//! build), the built source implements [`Source`] (run). It is registered by one line in the
//! `registry!` below, behind its Cargo feature.

#[cfg(feature = "source-metrology")]
pub mod metrology;
#[cfg(feature = "source-modbus")]
pub mod modbus;
#[cfg(feature = "source-mqtt")]
pub mod mqtt;
#[cfg(feature = "source-opcua")]
pub mod opcua;
#[cfg(feature = "source-rest")]
pub mod rest;
pub mod supervisor;

use std::path::Path;
use std::time::Duration;

use crate::config::ConfigError;
use crate::journal::Journal;
use crate::records::engine::Engine;
use crate::records::pipeline::Sender;
use crate::runtime::{BoxFuture, BuildError, Shutdown};

pub use supervisor::{Stopped, Supervisor};

crate::registry! {
    /// `[sources.<id>]`: one source, chosen by `type`.
    pub enum SourceConfig: dyn SourceSpec, types SOURCE_TYPES, table "sources" {
        /// A Modbus TCP device or RTU bus.
        "modbus" => Modbus(modbus::ModbusSourceConfig), feature "source-modbus";
        /// An ERP/MES REST (OData) service.
        "rest" => Rest(rest::RestSourceConfig), feature "source-rest";
        /// Subscriptions on an MQTT broker.
        "mqtt" => Mqtt(mqtt::MqttSourceConfig), feature "source-mqtt";
        /// An OPC UA server.
        "opcua" => Opcua(opcua::OpcUaSourceConfig), feature "source-opcua";
        /// Folders of measuring machines' result files (QIF, AQDEF).
        "metrology" => Metrology(metrology::MetrologySourceConfig), feature "source-metrology";
    }
}

/// A source's configuration (`[sources.<id>]` of its type).
pub trait SourceSpec: std::fmt::Debug + Send + Sync {
    /// Checks the values, adding every problem to `errors`; `at` is the key path
    /// (`sources.gauge1`).
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>);

    /// Makes relative paths absolute against `base` (the working directory).
    fn resolve_paths(&mut self, base: &Path) {
        let _ = base;
    }

    /// Names of the tags this source provides (rules refer to `<id>.<name>`).
    fn tag_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Builds the source (registering its tags in `cx.engine`).
    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError>;
}

/// A built source.
pub trait Source: Send {
    /// Runs until `rt.shutdown` (or until the pipeline is gone).
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()>;
}

/// What building a source may use.
pub struct BuildContext<'a> {
    /// The rule engine, where a source registers its tags.
    pub engine: &'a mut Engine,
    /// What the journal holds for this source (watermarks, cursors) as (key, value).
    pub state: &'a [(String, String)],
    /// The journal (a source that quarantines what it cannot read writes there).
    pub journal: &'a Journal,
    /// `agent.data_dir` (a source's own files: OPC UA certificates).
    pub data_dir: &'a Path,
    /// `agent.gateway_id`.
    pub gateway_id: &'a str,
}

/// What a running source gets.
#[derive(Clone)]
pub struct SourceRuntime {
    /// Where observations go.
    pub tx: Sender,
    /// Triggered when the agent stops.
    pub shutdown: Shutdown,
    /// `log.repeat_summary_s`: how often a continuing outage is summarised in the log.
    pub repeat_summary: Duration,
}

impl SourceRuntime {
    /// A supervisor for `peer` (see [`Supervisor::new`]) of source `id`.
    pub fn supervisor(
        &self,
        id: &str,
        peer: impl Into<String>,
        retry: (Duration, Duration),
    ) -> Supervisor {
        Supervisor::new(id, peer, self.tx.clone(), self.repeat_summary, retry)
    }
}
