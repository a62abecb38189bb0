//! Logging for OT staff: human-readable or JSON lines, and repeated failures summarised, not repeated.

use std::time::{Duration, Instant};

use crate::config::LogFormat;

/// Installs the global tracing subscriber. `RUST_LOG` overrides `level`. Logs go to stderr, as
/// the daemons journald serves well write them:
///
/// - on a terminal: time, level, message, in colour;
/// - to journald (`JOURNAL_STREAM` names stderr's device and inode, as systemd sets it): no time
///   (journald adds its own) and no colour, each line led by its sd-daemon level (`<3>` error,
///   `<4>` warning, `<6>` info, `<7>` debug), so `journalctl -p warning` shows warnings and errors;
/// - to anything else (a file, a pipe): time, level, message, no colour;
/// - `--log-format json`: one JSON object a line, as before.
pub fn init(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(directives(level)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if stderr_is_journal() => builder.event_format(Journald).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The filter for `log.level`. A bare level is the agent's own: the libraries it uses (the OPC UA,
/// MQTT, HTTP and TLS clients) log below it, so that ERROR and WARN lines are the agent's, which
/// say what happens to the evidence. The OPC UA client, for one, logs ERROR lines on every routine
/// reconnect ("Stream unexpectedly closed by peer"); the agent's own line is what staff should read.
/// At `debug` the libraries' info and above show too, at `trace` their debug. A filter with targets
/// (`info,opcua_client=warn`) is taken as written, as is `RUST_LOG`.
pub fn directives(level: &str) -> String {
    match level.trim() {
        l if l.contains('=') || l.contains(',') => l.to_string(),
        "debug" => "info,shopfloor_agent=debug".to_string(),
        "trace" => "debug,shopfloor_agent=trace".to_string(),
        l => format!("off,shopfloor_agent={l}"),
    }
}

/// Whether stderr is the stream `JOURNAL_STREAM` names (`<device>:<inode>`): systemd connected it
/// to journald. A child that inherited the variable but writes elsewhere does not match.
// `st_dev` and `st_ino` are not u64 on every gateway target.
#[allow(clippy::unnecessary_cast)]
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    rustix::fs::fstat(std::io::stderr())
        .is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino)
}

/// One line per event for journald: the sd-daemon level prefix, then the message and its fields.
struct Journald;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Journald
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{level}>")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// What to log about one more failure of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The first failure: log it in full.
    First,
    /// Still failing; time for a summary line.
    Summary {
        /// Failures since the first.
        attempts: u64,
        /// Since the first failure.
        since: Duration,
    },
    /// Stay quiet.
    Quiet,
}

/// Tracks one repeating failure so a 3-day outage gives a line per summary interval, not per attempt.
#[derive(Debug)]
pub struct RepeatLog {
    interval: Duration,
    first: Option<Instant>,
    last_line: Option<Instant>,
    attempts: u64,
}

impl RepeatLog {
    /// Summaries at most every `interval`.
    pub fn new(interval: Duration) -> Self {
        RepeatLog {
            interval,
            first: None,
            last_line: None,
            attempts: 0,
        }
    }

    /// Counts a failure and says what to log.
    pub fn failure(&mut self) -> Repeat {
        self.failure_at(Instant::now())
    }

    fn failure_at(&mut self, now: Instant) -> Repeat {
        self.attempts += 1;
        match (self.first, self.last_line) {
            (None, _) | (_, None) => {
                self.first = Some(now);
                self.last_line = Some(now);
                Repeat::First
            }
            (Some(first), Some(last)) if now.duration_since(last) >= self.interval => {
                self.last_line = Some(now);
                Repeat::Summary {
                    attempts: self.attempts,
                    since: now.duration_since(first),
                }
            }
            _ => Repeat::Quiet,
        }
    }

    /// Ends the failure; returns (attempts, duration) if there was one, for a "recovered" line.
    pub fn success(&mut self) -> Option<(u64, Duration)> {
        let out = self.first.map(|f| (self.attempts, f.elapsed()));
        self.first = None;
        self.last_line = None;
        self.attempts = 0;
        out
    }

    /// Whether a failure is ongoing.
    pub fn failing(&self) -> bool {
        self.first.is_some()
    }
}

/// `95 s`, `12 min`, `3.5 h` — durations as OT staff read them.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        // Below a second the milliseconds are what happens ("0 s" read as "never waits").
        format!("{} ms", d.as_millis())
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_log_below_the_agent() {
        assert_eq!(directives("info"), "off,shopfloor_agent=info");
        assert_eq!(directives("warn"), "off,shopfloor_agent=warn");
        assert_eq!(directives("debug"), "info,shopfloor_agent=debug");
        assert_eq!(directives("trace"), "debug,shopfloor_agent=trace");
        assert_eq!(
            directives("info,opcua_client=warn"),
            "info,opcua_client=warn"
        );
        // What the filter makes of it: an OPC UA client error is off at info, the agent's on.
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        struct Collect(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if let Ok(mut v) = self.0.lock() {
                    v.push(e.metadata().target().to_string());
                }
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(directives("info")))
            .with(Collect(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "opcua_client::transport", "Stream unexpectedly closed by peer");
            tracing::warn!(target: "shopfloor_agent::sources::opcua", "the agent's own line");
        });
        assert_eq!(
            *seen.lock().expect("lock"),
            vec!["shopfloor_agent::sources::opcua".to_string()]
        );
    }

    #[test]
    fn first_failure_logged_then_summaries_only_per_interval() {
        let mut r = RepeatLog::new(Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(r.failure_at(t0), Repeat::First);
        for i in 1..100 {
            assert_eq!(r.failure_at(t0 + Duration::from_secs(i)), Repeat::Quiet);
        }
        assert_eq!(
            r.failure_at(t0 + Duration::from_secs(600)),
            Repeat::Summary {
                attempts: 101,
                since: Duration::from_secs(600)
            }
        );
        assert_eq!(r.success().map(|(n, _)| n), Some(101));
        assert!(!r.failing());
        assert_eq!(r.failure_at(t0 + Duration::from_secs(700)), Repeat::First);
    }
}
