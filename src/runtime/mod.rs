//! Running the agent: wiring components together, shutdown, retry policy and logging.

pub mod clock;
pub mod component;
pub mod lock;
pub mod logging;
pub mod notify;
pub mod retry;
pub mod shutdown;
pub mod topology;

pub use component::{BoxFuture, BuildError};
pub use shutdown::{Shutdown, ShutdownTrigger};
