//! What every component shares, whichever its kind: the error of building one, and the boxed
//! future its trait methods return (the traits are object-safe, so a component is a
//! `Box<dyn Source>` or `Box<dyn Sink>` and the runtime needs no list of them).

use std::future::Future;
use std::pin::Pin;

/// A future a component's trait method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a component could not be built from a configuration that validated (a certificate that
/// does not load, a file that cannot be opened): the message names the place and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl From<String> for BuildError {
    fn from(message: String) -> Self {
        BuildError(message)
    }
}
