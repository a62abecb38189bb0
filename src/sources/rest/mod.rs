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
