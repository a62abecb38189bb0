//! ERP/MES REST (OData) source: polled endpoints, paging, incremental sync by watermark, every row a
//! message for the record rules.
//!
//! - `config.rs`: `[sources.<id>] type = "rest"` and its endpoints.
//! - `paging.rs`: next page (OData `@odata.nextLink`, RFC 8288 `Link`) and watermark arithmetic (pure).
//! - `source.rs`: the poll loop per endpoint, bad responses, commits with the watermark.

pub mod config;
pub mod paging;
pub mod source;

pub use config::RestSourceConfig;
pub use source::RestSource;

use crate::config::ConfigError;
use crate::runtime::{BoxFuture, BuildError};
use crate::sources::{BuildContext, Source, SourceRuntime, SourceSpec};

impl SourceSpec for RestSourceConfig {
    fn validate(&self, at: &str, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn build(&self, id: &str, cx: &mut BuildContext<'_>) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(RestSource::new(id, self, cx.state)?))
    }
}

impl Source for RestSource {
    fn run(self: Box<Self>, rt: SourceRuntime) -> BoxFuture<'static, ()> {
        Box::pin((*self).run(rt))
    }
}
