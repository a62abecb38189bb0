//! Running the agent: wiring components together, shutdown, retry policy and logging.

pub mod lock;
pub mod logging;
pub mod notify;
pub mod retry;
pub mod shutdown;
pub mod topology;

pub use shutdown::{Shutdown, ShutdownTrigger};
