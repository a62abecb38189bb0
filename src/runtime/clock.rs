//! The clock watch: a step of the system clock (NTP correction, manual change, RTC reset) is
//! written as an `agent_event`, since timestamps around it cannot be compared naively.

use std::time::Duration;

use super::shutdown;
use crate::journal::Journal;
use crate::records::QualityRecord;

/// Every 10 s, compares the wall clock with the monotonic clock; a step of more than 2 s (NTP
/// correction, manual change, RTC reset) is written as an `agent_event`, since timestamps around it
/// cannot be compared naively.
pub(crate) async fn watch_clock(
    journal: Journal,
    ctx: crate::records::RecordContext,
    mut stop: shutdown::Shutdown,
) {
    const EVERY: Duration = Duration::from_secs(10);
    let mut wall = std::time::SystemTime::now();
    let mut mono = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait() => return,
        }
        let (wall_now, mono_now) = (std::time::SystemTime::now(), std::time::Instant::now());
        if let Some(step) = clock_step(wall, mono, wall_now, mono_now) {
            tracing::warn!("the system clock stepped by {step} ms; recorded as an agent_event");
            let r = QualityRecord::agent_event(
                &ctx,
                "clock_step",
                format!("the system clock stepped by {step} ms"),
                serde_json::json!({ "step_ms": step }),
            );
            if let Err(e) = journal.append_record(r).await {
                tracing::warn!("cannot write the clock step record: {e}");
            }
        }
        wall = wall_now;
        mono = mono_now;
    }
}

/// The wall-clock step between two readings, in ms, if the wall clock moved more than 2 s away from
/// the monotonic clock (which no one can set).
pub fn clock_step(
    wall: std::time::SystemTime,
    mono: std::time::Instant,
    wall_now: std::time::SystemTime,
    mono_now: std::time::Instant,
) -> Option<i64> {
    let wall_ms = match wall_now.duration_since(wall) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    let mono_ms = mono_now.duration_since(mono).as_millis() as i64;
    let step = wall_ms - mono_ms;
    (step.abs() > 2000).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    #[test]
    fn clock_steps_beyond_two_seconds_are_detected_both_ways() {
        let (w, m) = (SystemTime::now(), Instant::now());
        let ten = Duration::from_secs(10);
        assert_eq!(clock_step(w, m, w + ten, m + ten), None, "a normal tick");
        assert_eq!(
            clock_step(w, m, w + ten + Duration::from_millis(1500), m + ten),
            None,
            "drift within tolerance"
        );
        assert_eq!(
            clock_step(w, m, w + Duration::from_secs(70), m + ten),
            Some(60_000),
            "stepped forward"
        );
        assert_eq!(
            clock_step(w, m, w - Duration::from_secs(50), m + ten),
            Some(-60_000),
            "stepped back"
        );
    }
}
