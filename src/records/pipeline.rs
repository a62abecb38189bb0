//! The records pipeline: a task that takes observations from sources (bounded channel), runs the
//! engine and appends the records to the journal, then acknowledges each source.
//!
//! Inputs already waiting are processed together and their records appended in one journal call, so
//! under load many observations share one commit. A source that must not acknowledge upstream before
//! its data is durable (MQTT, REST watermarks) passes an `ack` and waits for it. The records of the
//! next batch are made while the writer commits the one before (one append in its hands at most).

use tokio::sync::{mpsc, oneshot};

use super::engine::Engine;
use super::observation::{Observation, Quality};
use crate::journal::{Appended, Journal, JournalError, NewRecord, Queued, StateUpdate};
use crate::metrics::Metrics;
use crate::runtime::Shutdown;

/// Most inputs processed per journal append.
const MAX_INPUTS_PER_APPEND: usize = 256;

/// The answer to a source: the outcome of each record its observation made.
pub type Ack = oneshot::Sender<Result<Vec<Appended>, JournalError>>;

/// One observation from a source, with state to commit alongside and an optional acknowledgement.
#[derive(Debug)]
pub struct Input {
    /// The observation.
    pub observation: Observation,
    /// Source state (watermarks) committed in the same transaction as the records.
    pub state: Vec<StateUpdate>,
    /// Told after the records are committed.
    pub ack: Option<Ack>,
}

impl Input {
    /// An observation without state or acknowledgement.
    pub fn new(observation: Observation) -> Self {
        Input {
            observation,
            state: Vec::new(),
            ack: None,
        }
    }

    /// Nothing observed: only source state to keep (a certificate's expiry, for `status`).
    pub fn state(state: Vec<StateUpdate>) -> Self {
        Input {
            observation: Observation::Nothing,
            state,
            ack: None,
        }
    }
}

/// The sending side, one clone per source.
pub type Sender = mpsc::Sender<Input>;

/// A bounded channel for inputs (backpressure: sources wait when the pipeline is behind).
pub fn channel(depth: usize) -> (Sender, mpsc::Receiver<Input>) {
    mpsc::channel(depth)
}

/// Runs until shutdown; then drains what is queued and writes gap records for open outages.
///
/// The records of one batch are made while the writer commits the batch before (at most one
/// append is in the writer's hands): the two cores work at once. Sources are told in order, each
/// after its own commit.
pub async fn run(
    mut engine: Engine,
    journal: Journal,
    mut rx: mpsc::Receiver<Input>,
    mut shutdown: Shutdown,
    metrics: Metrics,
) {
    let mut batch: Vec<Input> = Vec::with_capacity(MAX_INPUTS_PER_APPEND);
    let mut pending: Option<Pending> = None;
    loop {
        let first = tokio::select! {
            biased;
            // A source waiting for its acknowledgement sends nothing more until it has it.
            outcome = committed(&mut pending), if pending.is_some() => {
                if let Some(p) = pending.take() {
                    tell(p.acks, outcome);
                }
                continue;
            }
            i = rx.recv() => i,
            _ = shutdown.wait() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_INPUTS_PER_APPEND {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let next = process(&mut engine, &journal, &mut batch, &metrics).await;
        if let Some(p) = pending.take() {
            p.settle().await;
        }
        pending = next;
    }
    if let Some(p) = pending.take() {
        p.settle().await;
    }
    // Whatever sources queued before they stopped is still journaled.
    while let Ok(i) = rx.try_recv() {
        batch.push(i);
    }
    if !batch.is_empty() {
        if let Some(p) = process(&mut engine, &journal, &mut batch, &metrics).await {
            p.settle().await;
        }
    }
    let gaps = engine.shutdown(crate::time::now_ms());
    if !gaps.is_empty() {
        if let Err(e) = journal.append(gaps).await {
            tracing::error!("cannot write the gap records of open outages at shutdown: {e}");
        }
    }
}

/// A source's connection state, kept in `source_state` (key `connection`) so that `status`, run
/// from another process, shows which sources are down and why. Written on changes only.
fn health_of(obs: &Observation) -> Option<StateUpdate> {
    let (source, channel, value) = match obs {
        Observation::SourceDown {
            source,
            channel,
            at_ms,
            reason,
        } => (
            source,
            channel,
            format!(
                "DOWN since {}: {reason}",
                crate::time::format(crate::time::from_unix_ms(*at_ms))
            ),
        ),
        Observation::SourceUp {
            source,
            channel,
            at_ms,
        } => (
            source,
            channel,
            format!(
                "up since {}",
                crate::time::format(crate::time::from_unix_ms(*at_ms))
            ),
        ),
        _ => return None,
    };
    Some(StateUpdate {
        source: source.clone(),
        key: connection_key(channel.as_deref()),
        value,
    })
}

/// The `source_state` key of a source's (or one of its channels') connection state: `connection`,
/// or `connection:<channel>` (a REST endpoint). `status` shows every key that starts so.
pub fn connection_key(channel: Option<&str>) -> String {
    match channel {
        Some(c) => format!("connection:{c}"),
        None => "connection".into(),
    }
}

/// Observations and bad values per source within one batch, counted into `/metrics` once per
/// batch (a subscription of thousands of items must not pay a counter update per value).
#[derive(Default)]
struct Tally(Vec<(String, u64, u64)>);

impl Tally {
    fn add(&mut self, source: &str, bad: bool) {
        let i = match self.0.iter().position(|(s, _, _)| s == source) {
            Some(i) => i,
            None => {
                self.0.push((source.to_string(), 0, 0));
                self.0.len() - 1
            }
        };
        self.0[i].1 += 1;
        self.0[i].2 += u64::from(bad);
    }

    /// Counts an observation; outages and recoveries go to `metrics` at once.
    fn count(&mut self, obs: &Observation, engine: &Engine, metrics: &Metrics) {
        match obs {
            Observation::Tags(samples) => {
                for (id, sample) in samples {
                    if let Some(tag) = engine.tags().get(*id) {
                        self.add(&tag.source, sample.quality != Quality::Good);
                    }
                }
            }
            Observation::Message(m) => self.add(&m.source, false),
            Observation::Messages(ms) => {
                for m in ms {
                    self.add(&m.source, false);
                }
            }
            Observation::Measurements(doc) => {
                for _ in &doc.items {
                    self.add(&doc.source, false);
                }
            }
            Observation::SourceDown {
                source, channel, ..
            } => metrics.source_down(source, channel.as_deref()),
            Observation::SourceUp {
                source, channel, ..
            } => metrics.source_up(source, channel.as_deref()),
            Observation::Nothing => {}
        }
    }

    fn flush(self, metrics: &Metrics) {
        for (source, n, bad) in self.0 {
            metrics.observed(&source, n);
            metrics.bad_values(&source, bad);
        }
    }
}

/// An append in the writer's hands and the sources to tell, each with its number of records.
struct Pending {
    queued: Queued,
    acks: Vec<(Option<Ack>, usize)>,
}

impl Pending {
    /// Waits for the commit and tells each source its records' outcome.
    async fn settle(self) {
        tell(self.acks, self.queued.await);
    }
}

/// The outcome of the append in the writer's hands (never resolves without one).
async fn committed(pending: &mut Option<Pending>) -> Result<Vec<Appended>, JournalError> {
    match pending {
        Some(p) => (&mut p.queued).await,
        None => std::future::pending().await,
    }
}

/// Tells each source its records' outcome.
fn tell(acks: Vec<(Option<Ack>, usize)>, outcome: Result<Vec<Appended>, JournalError>) {
    match outcome {
        Ok(outcomes) => {
            let mut rest = outcomes.into_iter();
            for (ack, n) in acks {
                let mine: Vec<Appended> = rest.by_ref().take(n).collect();
                if let Some(a) = ack {
                    let _ = a.send(Ok(mine));
                }
            }
        }
        Err(e) => {
            tracing::error!(
                "records could not be journaled ({e}); sources will not acknowledge them"
            );
            let message = e.to_string();
            for (ack, _) in acks {
                if let Some(a) = ack {
                    let _ = a.send(Err(JournalError::Failed(message.clone())));
                }
            }
        }
    }
}

/// Makes the batch's records and hands them to the writer; `None` when there was nothing to
/// write (the sources are told at once).
async fn process(
    engine: &mut Engine,
    journal: &Journal,
    batch: &mut Vec<Input>,
    metrics: &Metrics,
) -> Option<Pending> {
    let mut records: Vec<NewRecord> = Vec::new();
    let mut state = Vec::new();
    let mut acks: Vec<(Option<Ack>, usize)> = Vec::with_capacity(batch.len());
    let mut tally = Tally::default();
    for input in batch.drain(..) {
        if let Some(health) = health_of(&input.observation) {
            state.push(health);
        }
        tally.count(&input.observation, engine, metrics);
        let mut made = engine.observe(input.observation);
        if input.ack.is_some() {
            // The source acknowledges upstream only after the commit: refused, it sends again.
            for r in &mut made {
                r.resent_if_refused = true;
            }
        }
        acks.push((input.ack, made.len()));
        records.extend(made);
        state.extend(input.state);
    }
    tally.flush(metrics);
    if records.is_empty() && state.is_empty() {
        tell(acks, Ok(Vec::new()));
        return None;
    }
    match journal.append_queued(records, state).await {
        Ok(queued) => Some(Pending { queued, acks }),
        Err(e) => {
            tell(acks, Err(e));
            None
        }
    }
}
