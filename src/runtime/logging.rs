//! Logging for OT staff: human-readable or JSON lines, and repeated failures summarised, not repeated.

use std::time::{Duration, Instant};

use crate::config::LogFormat;

/// Installs the global tracing subscriber. `RUST_LOG` overrides `level`. Logs go to stderr (journald
/// captures them under systemd).
pub fn init(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
    if s < 120.0 {
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
