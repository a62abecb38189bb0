//! One supervisor for every source's connection to its peer: the retry backoff, the log lines of an
//! outage (the first failure, then a summary every `log.repeat_summary_s`, then the recovery), and
//! the outage itself (`SourceDown` once, from the last moment data was known good, and `SourceUp`
//! when data flows again; the records engine turns the pair into a gap record).
//!
//! A source reports what happens and the supervisor decides what it means:
//!
//! | the source saw                         | it calls                         |
//! |----------------------------------------|----------------------------------|
//! | data known good (a value, a keep-alive) | [`Supervisor::alive`]           |
//! | the peer answers again                  | [`Supervisor::connected`]       |
//! | data flows (first, or again)            | [`Supervisor::flowing`] (closes the outage) |
//! | an attempt failed                       | [`Supervisor::failed`] (the delay) |
//! | the failure loses data                  | [`Supervisor::down`] (opens the outage once) |
//! | data was lost while the link was away, found out on reconnect (MQTT) | [`Supervisor::gap`] |
//!
//! One supervisor watches one peer: a source with parts that fail apart (the endpoints of a REST
//! service) has one per part, each its own channel of outages.

use std::time::Duration;

use crate::records::observation::Observation;
use crate::records::pipeline::{Input, Sender};
use crate::runtime::logging::{human_duration, Repeat, RepeatLog};
use crate::runtime::retry::Backoff;
use crate::runtime::Shutdown;

/// The agent stops (shutdown, or the records pipeline is gone): the source returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// The connection state of one source (or one channel of it).
#[derive(Debug)]
pub struct Supervisor {
    source: String,
    channel: Option<String>,
    peer: String,
    advice: &'static str,
    tx: Sender,
    backoff: Backoff,
    repeat: RepeatLog,
    down: bool,
    /// Whether data has flowed since the start: the first time is announced too (`status` shows
    /// `up since`), the later ones only after an outage.
    announced: bool,
    last_good_ms: Option<i64>,
    steady: Duration,
    up_since: Option<std::time::Instant>,
}

impl Supervisor {
    /// Watches `peer` (how the log names it: `Modbus device gauge at 10.0.0.7:502`) for source
    /// `source`; retries wait from `retry.0` up to `retry.1`.
    pub fn new(
        source: &str,
        peer: impl Into<String>,
        tx: Sender,
        repeat_summary: Duration,
        retry: (Duration, Duration),
    ) -> Self {
        Supervisor {
            source: source.to_string(),
            channel: None,
            peer: peer.into(),
            advice: "",
            tx,
            backoff: Backoff::new(retry.0, retry.1),
            repeat: RepeatLog::new(repeat_summary),
            down: false,
            announced: false,
            last_good_ms: None,
            steady: Duration::ZERO,
            up_since: None,
        }
    }

    /// The part of the source this supervisor watches (a REST endpoint): its outages are its own.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// A sentence for the first log line of an outage (what happens to the data meanwhile).
    pub fn advice(mut self, advice: &'static str) -> Self {
        self.advice = advice;
        self
    }

    /// The backoff starts over only once the peer has answered for `steady` (a server that takes a
    /// session and drops it again at once is retried ever more slowly, not hammered).
    pub fn steady(mut self, steady: Duration) -> Self {
        self.steady = steady;
        self
    }

    /// Data was known good now: a later outage starts here, not when its loss is noticed.
    pub fn alive(&mut self) {
        self.last_good_ms = Some(crate::time::now_ms());
    }

    /// The peer answers and data flows: [`Self::connected`] and [`Self::flowing`].
    pub async fn up(&mut self) -> Result<(), Stopped> {
        self.connected();
        self.flowing().await
    }

    /// The peer answers (a session opened, a poll answered): logs the recovery after failed
    /// attempts and starts the backoff over (at once, or after [`Self::steady`]).
    pub fn connected(&mut self) {
        if let Some((n, took)) = self.repeat.success() {
            tracing::info!(
                "{}: answers again after {n} failed attempts over {}.",
                self.peer,
                human_duration(took)
            );
        }
        if self.steady.is_zero() {
            self.backoff.reset();
        } else {
            self.up_since.get_or_insert_with(std::time::Instant::now);
        }
    }

    /// Data flows: closes an open outage, and says so the first time (`status`: `up since`).
    pub async fn flowing(&mut self) -> Result<(), Stopped> {
        let first = !std::mem::replace(&mut self.announced, true);
        if std::mem::take(&mut self.down) || first {
            let up = Observation::SourceUp {
                source: self.source.clone(),
                channel: self.channel.clone(),
                at_ms: crate::time::now_ms(),
            };
            self.send(up).await?;
        }
        Ok(())
    }

    /// An attempt failed: logs it (the first at once, then a summary per interval) and returns
    /// how long to wait before the next one.
    pub fn failed(&mut self, reason: &str) -> Duration {
        if let Some(since) = self.up_since.take() {
            if since.elapsed() >= self.steady {
                self.backoff.reset();
            }
        }
        let delay = self.backoff.next_delay();
        self.log_failure(reason, delay);
        delay
    }

    /// As [`Self::failed`], waiting `delay` (the peer's own `Retry-After`) instead of the backoff.
    pub fn failed_for(&mut self, reason: &str, delay: Duration) -> Duration {
        self.log_failure(reason, delay);
        delay
    }

    fn log_failure(&mut self, reason: &str, delay: Duration) {
        match self.repeat.failure() {
            Repeat::First => tracing::warn!(
                "{}: {reason}; retrying in {}.{}{}",
                self.peer,
                human_duration(delay),
                if self.advice.is_empty() { "" } else { " " },
                self.advice
            ),
            Repeat::Summary { attempts, since } => tracing::warn!(
                "{}: still failing, {attempts} attempts in {} (last: {reason}).",
                self.peer,
                human_duration(since)
            ),
            Repeat::Quiet => {}
        }
    }

    /// The failure loses data: opens the outage (once) from the last moment data was known good,
    /// with `why` for the gap record.
    pub async fn down(&mut self, why: String) -> Result<(), Stopped> {
        let at_ms = self.last_good_ms.unwrap_or_else(crate::time::now_ms);
        self.down_since(at_ms, why).await
    }

    /// As [`Self::down`], from `at_ms`.
    pub async fn down_since(&mut self, at_ms: i64, why: String) -> Result<(), Stopped> {
        if self.down {
            return Ok(());
        }
        self.down = true;
        let down = Observation::SourceDown {
            source: self.source.clone(),
            channel: self.channel.clone(),
            at_ms,
            reason: why,
        };
        self.send(down).await
    }

    /// An outage found only after it ended (a broker that lost the agent's queued messages): the
    /// gap from `from_ms` to now, closed at once.
    pub async fn gap(&mut self, from_ms: i64, why: String) -> Result<(), Stopped> {
        self.down_since(from_ms, why).await?;
        self.up().await
    }

    /// [`Self::failed`], [`Self::down`] and [`Self::wait`] in one: the usual lost connection.
    pub async fn lost(
        &mut self,
        reason: &str,
        why: String,
        shutdown: &mut Shutdown,
    ) -> Result<(), Stopped> {
        let delay = self.failed(reason);
        self.down(why).await?;
        self.wait(delay, shutdown).await
    }

    /// Waits `delay`, or less if the agent stops.
    pub async fn wait(&self, delay: Duration, shutdown: &mut Shutdown) -> Result<(), Stopped> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = shutdown.wait() => Err(Stopped),
        }
    }

    async fn send(&self, obs: Observation) -> Result<(), Stopped> {
        self.tx.send(Input::new(obs)).await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sup(tx: Sender) -> Supervisor {
        Supervisor::new(
            "gauge",
            "Modbus device gauge at 127.0.0.1:502",
            tx,
            Duration::from_secs(600),
            (Duration::from_millis(10), Duration::from_millis(40)),
        )
    }

    #[tokio::test]
    async fn an_outage_opens_once_from_the_last_good_moment_and_closes_once() {
        let (tx, mut rx) = crate::records::pipeline::channel(16);
        let mut s = sup(tx);
        s.up().await.expect("send");
        assert!(
            matches!(
                rx.try_recv().expect("first up").observation,
                Observation::SourceUp { .. }
            ),
            "the first connection is announced"
        );
        s.alive();
        let good = s.last_good_ms.expect("alive");
        for _ in 0..3 {
            let d = s.failed("connection refused");
            assert!(d <= Duration::from_millis(40));
            s.down("device unreachable".into()).await.expect("send");
        }
        assert!(s.down);
        s.up().await.expect("send");
        s.up().await.expect("send");
        let mut seen = Vec::new();
        while let Ok(i) = rx.try_recv() {
            seen.push(i.observation);
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        match &seen[0] {
            Observation::SourceDown {
                source,
                at_ms,
                reason,
                channel: None,
            } => {
                assert_eq!(source, "gauge");
                assert_eq!(*at_ms, good);
                assert_eq!(reason, "device unreachable");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &seen[1],
            Observation::SourceUp { channel: None, .. }
        ));
    }

    #[tokio::test]
    async fn a_failure_that_loses_nothing_opens_no_outage_and_a_closed_pipeline_stops() {
        let (tx, mut rx) = crate::records::pipeline::channel(16);
        let mut s = sup(tx).channel("WorkOrders");
        s.up().await.expect("send");
        assert!(rx.try_recv().is_ok(), "the first connection is announced");
        s.failed("HTTP 429");
        s.up().await.expect("send");
        assert!(
            rx.try_recv().is_err(),
            "no outage for a failure that lost nothing"
        );
        s.gap(1_000, "messages lost".into()).await.expect("send");
        let down = rx.try_recv().expect("down").observation;
        assert!(matches!(
            down,
            Observation::SourceDown { at_ms: 1_000, channel: Some(ref c), .. } if c == "WorkOrders"
        ));
        assert!(matches!(
            rx.try_recv().expect("up").observation,
            Observation::SourceUp { .. }
        ));
        drop(rx);
        assert_eq!(s.down("again".into()).await, Err(Stopped));
    }
}
