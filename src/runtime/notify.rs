//! systemd service notifications (the sd_notify protocol, no libsystemd): `READY=1` once sources,
//! pipeline and sinks run, `STOPPING=1` when a stop begins, `STATUS=` lines, and `WATCHDOG=1` pings
//! at half the `WatchdogSec=` the service manager asked for. A runtime that hangs stops pinging, and
//! systemd restarts the service.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use std::time::Duration;

/// Where notifications go.
pub struct Notifier {
    #[cfg(unix)]
    target: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and `WATCHDOG_USEC`
    /// (honoured only if `WATCHDOG_PID` is unset or this process).
    pub fn from_env() -> Notifier {
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_none_or(|p| p == std::process::id())
            })
            .filter(|&us| us > 0)
            .map(Duration::from_micros);
        Notifier {
            #[cfg(unix)]
            target: std::env::var("NOTIFY_SOCKET").ok().and_then(|s| open(&s)),
            watchdog,
        }
    }

    /// Sends one notification (`READY=1`, `STATUS=…`); errors are logged at debug level only.
    pub fn notify(&self, state: &str) {
        #[cfg(unix)]
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("sd_notify {state:?}: {e}");
            }
        }
        #[cfg(not(unix))]
        let _ = state;
    }

    /// How often to send `WATCHDOG=1`: half the service's watchdog timeout, if it has one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

#[cfg(unix)]
fn open(
    path: &str,
) -> Option<(
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::SocketAddr,
)> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).ok()?
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => return None,
        None => SocketAddr::from_pathname(path).ok()?,
    };
    let socket = UnixDatagram::unbound().ok()?;
    Some((socket, addr))
}
