//! The OPC UA source at run time: one session at a time, rebuilt from scratch after any loss.
//!
//! Each connect: list the server's endpoints, take the one with exactly the configured policy and
//! mode (never a weaker one), check the server certificate (trust list or pin), open the session,
//! read the `NamespaceArray`, resolve every tag (`nsu=` node ids and browse paths) against it, then
//! create the subscription and its monitored items in batches of `items_per_request` (or, in poll
//! mode, read the tags every cycle).
//!
//! Recovery never goes silent:
//! - a lost connection, a failed keep-alive, a subscription the server ended, or a connected
//!   session that sends no publish response (data or keep-alive) for `watchdog_ms` all end the
//!   session; the source reports the outage (a gap record follows when data flows again) and
//!   reconnects with backoff;
//! - the new session resolves namespaces again, so a server that restarted with a reordered
//!   namespace array maps each tag to the same variable as before.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opcua::client::{Client, SessionPollResult, SubscriptionActivity};
use opcua::types::DataValue;
use tokio::sync::mpsc;

use super::config::{OpcUaSourceConfig, ReadMode, TagTarget};
use super::connect::Live;
use super::pki::Pki;
use super::subscription::{Note, Notes, NOTES_QUEUED};
use super::value::sample;
use crate::records::engine::Engine;
use crate::records::observation::{Observation, Origin, Quality, Sample, TagId};
use crate::records::pipeline::{Input, Sender};
use crate::runtime::logging::human_duration;
use crate::runtime::Shutdown;
use crate::sources::{SourceRuntime, Stopped, Supervisor};

/// A running OPC UA source.
pub struct OpcUaSource {
    pub(super) id: String,
    pub(super) cfg: OpcUaSourceConfig,
    pub(super) targets: Vec<TagTarget>,
    pub(super) ids: Vec<TagId>,
    pub(super) pki: Pki,
    pub(super) application_uri: String,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl OpcUaSource {
    /// Checks the tags and registers them (with their origin) in the engine.
    pub fn new(
        id: &str,
        cfg: &OpcUaSourceConfig,
        engine: &mut Engine,
        data_dir: &std::path::Path,
        gateway_id: &str,
    ) -> Result<OpcUaSource, crate::runtime::BuildError> {
        let mut errors = Vec::new();
        let targets = cfg.targets(&format!("sources.{id}"), &mut errors);
        if !errors.is_empty() {
            return Err(crate::config::ConfigError::join(&errors).into());
        }
        let ids = cfg
            .tags
            .iter()
            .zip(&targets)
            .map(|(t, target)| {
                engine.register_tag(
                    id,
                    &t.name,
                    Origin {
                        protocol: "opcua".into(),
                        endpoint: Some(cfg.endpoint.clone()),
                        address: Some(match target {
                            TagTarget::Node(n) => n.to_string(),
                            TagTarget::Path(p) => p.to_string(),
                        }),
                    },
                )
            })
            .collect();
        let pki = Pki {
            dir: cfg
                .pki_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("pki").join("opcua")),
        };
        Ok(OpcUaSource {
            id: id.to_string(),
            application_uri: cfg
                .application_uri
                .clone()
                .unwrap_or_else(|| format!("urn:shopfloor-agent:{gateway_id}")),
            cfg: cfg.clone(),
            targets,
            ids,
            pki,
        })
    }

    /// Bad-quality samples for tags that could not be resolved or monitored on this session.
    fn unresolved(&self, live: &Live) -> Vec<(TagId, Sample)> {
        let now = crate::time::now_ms();
        live.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().err().map(|e| (i, e)))
            .map(|(i, e)| {
                (
                    self.ids[i],
                    Sample {
                        value: serde_json::Value::Null,
                        raw: serde_json::Value::Null,
                        source_ms: None,
                        server_ms: None,
                        received_ms: now,
                        quality: Quality::Bad,
                        status: Some(format!("BadNodeIdUnknown: {e}")),
                    },
                )
            })
            .collect()
    }

    /// Turns one publish's values into observations: ordered by time, split wherever a tag repeats
    /// so a trigger never sees a later value of another tag than the one the server sent with it.
    fn observations(&self, data: Vec<(u32, DataValue)>) -> Vec<Observation> {
        let now = crate::time::now_ms();
        let mut samples: Vec<(usize, Sample)> = data
            .into_iter()
            .filter_map(|(h, dv)| {
                let i = (h as usize).checked_sub(1)?;
                (i < self.ids.len()).then(|| (i, sample(&dv, now)))
            })
            .collect();
        samples.sort_by_key(|(_, s)| s.source_ms.or(s.server_ms).unwrap_or(s.received_ms));
        let mut out = Vec::new();
        let mut run: Vec<(TagId, Sample)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, s) in samples {
            if !seen.insert(i) {
                out.push(Observation::Tags(std::mem::take(&mut run)));
                seen.clear();
                seen.insert(i);
            }
            run.push((self.ids[i], s));
        }
        if !run.is_empty() {
            out.push(Observation::Tags(run));
        }
        out
    }

    /// Sends values to the pipeline, the first of a session after an outage closing it.
    async fn deliver(
        &self,
        tx: &Sender,
        data: Vec<(u32, DataValue)>,
        first: &mut bool,
        sup: &mut Supervisor,
    ) -> Result<(), Stopped> {
        if std::mem::take(first) {
            sup.flowing().await?;
        }
        for o in self.observations(data) {
            tx.send(Input::new(o)).await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Runs one session until it is lost or the agent stops.
    async fn session(
        &self,
        client: &Client,
        tx: &Sender,
        shutdown: &mut Shutdown,
        sup: &mut Supervisor,
        sessions: &mut u64,
    ) -> Ended {
        let (queue, mut notes) = mpsc::channel(NOTES_QUEUED);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let notes_tx = Notes {
            tx: queue,
            dropped: dropped.clone(),
        };
        let opened = tokio::select! {
            r = self.open(client, notes_tx) => r,
            _ = shutdown.wait() => return Ended::Shutdown,
        };
        let mut live = match opened {
            Ok(l) => l,
            Err(e) => return Ended::Lost(e),
        };
        *sessions += 1;
        sup.connected();
        let resolved = live.nodes.iter().filter(|n| n.is_ok()).count();
        tracing::info!(
            "opcua source {}: {} session to {} ({}/{:?}); {resolved} of {} tags resolved{}",
            self.id,
            if *sessions == 1 {
                "opened a"
            } else {
                "rebuilt the"
            },
            self.cfg.endpoint,
            live.endpoint
                .security_policy_uri
                .as_ref()
                .rsplit('#')
                .next()
                .unwrap_or(""),
            live.endpoint.security_mode,
            self.ids.len(),
            match self.cfg.mode {
                ReadMode::Subscribe if *sessions > 1 => ", subscription re-created",
                ReadMode::Subscribe => ", subscribed",
                ReadMode::Poll => ", polling",
            }
        );
        let bad = self.unresolved(&live);
        if !bad.is_empty() && tx.send(Input::new(Observation::Tags(bad))).await.is_err() {
            return Ended::Shutdown;
        }
        let mut last_alive = Instant::now();
        // Connected and subscribed: data is known good from here.
        sup.alive();
        let mut first = true;
        let watchdog = self.cfg.watchdog();
        let mut check = tokio::time::interval(Duration::from_millis(match self.cfg.mode {
            ReadMode::Subscribe => (watchdog.as_millis() as u64 / 4).max(50),
            ReadMode::Poll => self.cfg.poll_interval_ms,
        }));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                _ = shutdown.wait() => break Ended::Shutdown,
                n = notes.recv() => match n {
                    Some(Note::Data(data)) => {
                        last_alive = Instant::now();
                        sup.alive();
                        if self.deliver(tx, data, &mut first, sup).await.is_err() {
                            break Ended::Shutdown;
                        }
                    }
                    Some(Note::Status(code)) => break Ended::Lost(format!("the server ended the subscription ({code})")),
                    None => {}
                },
                ev = live.events.recv() => match ev {
                    Some(Ok(SessionPollResult::Subscription(SubscriptionActivity::Publish))) => {
                        last_alive = Instant::now();
                        sup.alive();
                    }
                    Some(Ok(SessionPollResult::ConnectionLost(code))) => break Ended::Lost(format!("connection lost ({code})")),
                    Some(Ok(SessionPollResult::Subscription(SubscriptionActivity::FatalFailure(code)))) => break Ended::Lost(format!("publishing failed ({code})")),
                    Some(Ok(SessionPollResult::SessionActivity(opcua::client::SessionActivity::KeepAliveFailed(code)))) => {
                        tracing::debug!("opcua source {}: keep-alive failed ({code})", self.id);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(code)) => break Ended::Lost(format!("session ended ({code})")),
                    None => break Ended::Lost("the session's event loop ended".into()),
                },
                _ = check.tick() => {
                    let lost = dropped.load(std::sync::atomic::Ordering::Relaxed);
                    if lost > 0 {
                        break Ended::Lost(format!(
                            "{lost} notifications were dropped because the journal did not take them as fast as they came (more than {NOTES_QUEUED} waiting); the session starts again"
                        ));
                    }
                    if self.cfg.mode == ReadMode::Poll {
                        match self.poll(&live).await {
                            Ok(data) => {
                                last_alive = Instant::now();
                                sup.alive();
                                if self.deliver(tx, data, &mut first, sup).await.is_err() {
                                    break Ended::Shutdown;
                                }
                            }
                            Err(e) => break Ended::Lost(e),
                        }
                    } else if last_alive.elapsed() > watchdog {
                        break Ended::Lost(format!(
                            "connected but silent: no data or keep-alive for {} (watchdog)",
                            human_duration(last_alive.elapsed())
                        ));
                    }
                }
            }
        };
        // Close politely, but never wait long for a server that is gone.
        live.session.disable_reconnects();
        let _ = tokio::time::timeout(Duration::from_secs(2), live.session.disconnect()).await;
        live.event_task.abort();
        ended
    }

    /// Runs until shutdown.
    pub(crate) async fn run(self, rt: SourceRuntime) {
        let SourceRuntime {
            tx, mut shutdown, ..
        } = rt.clone();
        match self
            .pki
            .ensure_own_certificate(&self.cfg, &self.application_uri, &self.id)
        {
            // `status` shows it beside the source's other state.
            Ok(expiry) => {
                let state = crate::journal::StateUpdate {
                    source: self.id.clone(),
                    key: "certificate".into(),
                    value: format!("{} ({})", self.pki.own_cert().display(), expiry),
                };
                if tx.send(Input::state(vec![state])).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(
                "opcua source {}: cannot set up the certificate folder {}: {e}; secure endpoints will fail",
                self.id,
                self.pki.dir.display()
            ),
        }
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("opcua source {}: cannot create the client: {e}", self.id);
                return;
            }
        };
        // A session that lasted a minute starts the backoff over; one dropped at once does not.
        let mut sup = rt
            .supervisor(
                &self.id,
                format!("OPC UA source {} at {}", self.id, self.cfg.endpoint),
                (
                    Duration::from_millis(self.cfg.reconnect_initial_ms),
                    Duration::from_millis(self.cfg.reconnect_max_ms),
                ),
            )
            .steady(Duration::from_secs(60));
        let mut sessions = 0u64;
        loop {
            match self
                .session(&client, &tx, &mut shutdown, &mut sup, &mut sessions)
                .await
            {
                Ended::Shutdown => break,
                Ended::Lost(reason) => {
                    let why = format!("OPC UA server {}: {reason}", self.cfg.endpoint);
                    if sup.lost(&reason, why, &mut shutdown).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::debug!("opcua source {} stopped", self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_queue_is_bounded_and_counts_what_it_drops() {
        let (tx, mut rx) = mpsc::channel(2);
        let notes = Notes {
            tx,
            dropped: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        for _ in 0..5 {
            notes.send(Note::Data(vec![(1, DataValue::null())]));
        }
        assert_eq!(notes.dropped.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "two queued, no more");
    }
}
