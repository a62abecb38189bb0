//! OPC UA source (async-opcua client): secure sessions, tags by namespace URI, subscriptions or
//! polling, and recovery that never goes silent. See `README.md` beside this file for the trust
//! workflow and the namespace rules.

pub mod config;
mod connect;
pub mod node;
pub mod pki;
pub mod source;
mod subscription;
pub mod value;

pub use config::OpcUaSourceConfig;
pub use source::OpcUaSource;

use crate::config::ConfigError;
use crate::runtime::{BoxFuture, BuildError};
use crate::sources::{BuildContext, Source, SourceRuntime, SourceSpec};

impl SourceSpec for OpcUaSourceConfig {
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn tag_names(&self) -> Vec<String> {
        self.tags.iter().map(|t| t.name.clone()).collect()
    }

    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        let source = OpcUaSource::new(id, self, cx.engine, cx.data_dir, cx.gateway_id)?;
        Ok(Box::new(source))
    }
}

impl Source for OpcUaSource {
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()> {
        Box::pin((*self).run(rt))
    }
}
