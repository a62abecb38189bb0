//! Wires the agent together: journal, sinks (and, as they arrive, sources); supervises and stops them.

use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use super::shutdown::{self, ShutdownTrigger, Signal};
use crate::config::{Config, ConfigErrors};
use crate::journal::signing::Signer;
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::metrics::Metrics;
use crate::records::engine::Engine;
use crate::records::{pipeline, QualityRecord};
use crate::runtime::BuildError;
use crate::sinks::driver::Driver;
use crate::sinks::SinkContext;
use crate::sources::{BuildContext, SourceRuntime};

/// How long a stop waits for sinks to finish the batch in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Another agent runs on the data directory.
    #[error(transparent)]
    Locked(#[from] super::lock::LockError),
    /// The record rules do not compile (validation catches this before).
    #[error("record rules: {0}")]
    Rules(String),
    /// A source could not be built.
    #[error("source {id}: {error}")]
    Source {
        /// Source id.
        id: String,
        /// What went wrong.
        error: BuildError,
    },
    /// A sink could not be built.
    #[error("sink {id}: {error}")]
    Sink {
        /// Sink id.
        id: String,
        /// What went wrong.
        error: BuildError,
    },
}

/// Depth of the observation channel from sources to the records pipeline.
const OBSERVATION_QUEUE: usize = 4096;

/// Why an agent starts: the first start of the process, or a configuration reload (SIGHUP).
#[derive(Debug, Clone)]
enum Start {
    /// Process start.
    Boot,
    /// A reload replaced the configuration `old_sha256`.
    Reload {
        /// Hash of the configuration that was in force.
        old_sha256: String,
    },
    /// A reload's new configuration did not start; the previous one runs again.
    Revert {
        /// Hash of the configuration that failed.
        attempted_sha256: String,
        /// Why it failed.
        reason: String,
    },
}

/// A running agent.
pub struct Agent {
    journal: Journal,
    trigger: ShutdownTrigger,
    tasks: JoinSet<()>,
    sources_trigger: ShutdownTrigger,
    source_tasks: JoinSet<()>,
    pipeline_trigger: ShutdownTrigger,
    pipeline: tokio::task::JoinHandle<()>,
    observations: pipeline::Sender,
    config: Config,
    metrics: Metrics,
    endpoint: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Agent {
    /// Opens the journal, writes the start records and starts every component.
    pub async fn start(config: Config) -> Result<Agent, StartError> {
        Self::start_as(config, Start::Boot, Metrics::new()).await
    }

    async fn start_as(config: Config, why: Start, metrics: Metrics) -> Result<Agent, StartError> {
        let ctx = config.record_context();
        let signer = if config.journal.sign {
            let (signer, created) = Signer::load_or_create(&config.agent.data_dir)?;
            if created {
                tracing::info!(
                    "made the gateway's signing key {} (public key {}); back it up with the journal, and give the public key to whoever checks the records (`shopfloor-agent public-key`)",
                    config.agent.data_dir.join(crate::journal::signing::KEY_FILE).display(),
                    signer.public_key_hex()
                );
            }
            Some((std::sync::Arc::new(signer), created))
        } else {
            None
        };
        let opts = JournalOptions {
            data_dir: config.agent.data_dir.clone(),
            synchronous: config.journal.synchronous,
            max_disk_bytes: config.journal.max_disk_bytes,
            retention_days: config.journal.retention_days,
            max_batch_records: config.journal.max_batch_records,
            page_size: config.journal.page_size_bytes,
            sinks: config.sinks.keys().cloned().collect(),
            max_page_count: None,
            metrics: Some(metrics.clone()),
            config_toml: Some(config.effective_toml()),
            signer: signer.as_ref().map(|(s, _)| s.clone()),
            seal_interval: std::time::Duration::from_secs(config.journal.seal_interval_s),
        };
        metrics.declare(config.sources.keys(), config.sinks.keys());
        let journal = Journal::open(opts, ctx.clone())?;
        let startup = journal.startup().clone();
        let mut first = Vec::new();
        if !startup.previous_clean {
            let from = startup
                .last_appended_ms
                .map(crate::time::from_unix_ms)
                .map(crate::time::format)
                .unwrap_or_else(crate::time::now_rfc3339);
            tracing::warn!("the previous run did not stop cleanly (crash, kill or power loss); recording a gap from {from}");
            first.push(QualityRecord::gap(
                &ctx,
                "agent",
                from,
                crate::time::now_rfc3339(),
                "the agent stopped without a clean shutdown (crash, kill or power loss); nothing was captured until it restarted",
            ));
        }
        if let Some((signer, true)) = &signer {
            first.push(QualityRecord::agent_event(
                &ctx,
                "signing_key_created",
                "the gateway's Ed25519 signing key was created; records from here on are signed",
                json!({ "public_key": signer.public_key_hex(), "algorithm": "Ed25519" }),
            ));
        }
        let files: Vec<String> = config
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        match &why {
            Start::Boot => {
                if let Some(old) = &startup.previous_config_sha256 {
                    if *old != config.sha256 {
                        first.push(QualityRecord::agent_event(
                            &ctx,
                            "config_change",
                            "configuration changed since the last run",
                            json!({ "old_config_sha256": old, "new_config_sha256": config.sha256 }),
                        ));
                    }
                }
                first.push(QualityRecord::agent_event(
                    &ctx,
                    "start",
                    format!("shopfloor-agent {} started", crate::AGENT_VERSION),
                    json!({ "config_files": files }),
                ));
            }
            Start::Reload { old_sha256 } => first.push(QualityRecord::agent_event(
                &ctx,
                "config_reload",
                format!(
                    "configuration reloaded on SIGHUP: {} -> {}",
                    &old_sha256[..12],
                    &config.sha256[..12]
                ),
                json!({
                    "old_config_sha256": old_sha256,
                    "new_config_sha256": config.sha256,
                    "requested_by": "SIGHUP",
                    "config_files": files,
                }),
            )),
            Start::Revert {
                attempted_sha256,
                reason,
            } => first.push(QualityRecord::agent_event(
                &ctx,
                "config_reload_refused",
                format!("the reloaded configuration did not start ({reason}); the previous one runs again"),
                json!({
                    "config_sha256": config.sha256,
                    "refused_config_sha256": attempted_sha256,
                    "requested_by": "SIGHUP",
                    "errors": [reason],
                }),
            )),
        }
        for r in first {
            if let Err(e) = journal.append_record(r).await {
                tracing::error!("cannot write the start record: {e}");
            }
        }

        let mut engine = Engine::new(ctx.clone(), &config.records)
            .map_err(|errors| StartError::Rules(crate::config::ConfigError::join(&errors)))?;
        learn_from_journal(&mut engine, &journal).await;
        let mut sources = Vec::new();
        let state = source_state(&journal).await;
        for (id, c) in &config.sources {
            let mine: Vec<(String, String)> = state
                .iter()
                .filter(|(s, _, _)| s == id)
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect();
            let mut cx = BuildContext {
                engine: &mut engine,
                state: &mine,
                journal: &journal,
                data_dir: &config.agent.data_dir,
                gateway_id: &config.agent.gateway_id,
            };
            let source = c
                .spec()
                .build(id, &mut cx)
                .map_err(|error| StartError::Source {
                    id: id.clone(),
                    error,
                })?;
            sources.push(source);
        }
        for t in engine.tags().iter() {
            if !config.sources.contains_key(&t.source) {
                tracing::warn!(
                    "a record rule uses tag {}, but no source {} is configured: that rule will not see it",
                    t.name,
                    t.source
                );
            }
        }
        let (pipeline_trigger, pipeline_stop) = shutdown::channel();
        let (observations, rx) = pipeline::channel(OBSERVATION_QUEUE);
        let pipeline = tokio::spawn(pipeline::run(
            engine,
            journal.clone(),
            rx,
            pipeline_stop,
            metrics.clone(),
        ));
        let (sources_trigger, _) = shutdown::channel();
        let mut source_tasks = JoinSet::new();
        let repeat = Duration::from_secs(config.log.repeat_summary_s);
        for source in sources {
            source_tasks.spawn(source.run(SourceRuntime {
                tx: observations.clone(),
                shutdown: sources_trigger.subscribe(),
                repeat_summary: repeat,
            }));
        }

        let (trigger, _) = shutdown::channel();
        let mut tasks = JoinSet::new();
        let sink_ctx = SinkContext {
            gateway_id: config.agent.gateway_id.clone(),
            site: config
                .agent
                .site
                .clone()
                .unwrap_or_else(|| config.agent.gateway_id.clone()),
        };
        for (id, sink_config) in &config.sinks {
            let spec = sink_config.spec();
            let sink = spec
                .build(id, &sink_ctx)
                .map_err(|error| StartError::Sink {
                    id: id.clone(),
                    error,
                })?;
            let driver = Driver::new(
                id,
                sink,
                journal.clone(),
                spec.delivery(),
                repeat,
                metrics.clone(),
            )
            .await?;
            tasks.spawn(driver.run(trigger.subscribe()));
        }
        tasks.spawn(super::clock::watch_clock(
            journal.clone(),
            ctx.clone(),
            trigger.subscribe(),
        ));
        {
            let journal = journal.clone();
            let mut stop = trigger.subscribe();
            let every = Duration::from_secs(config.journal.prune_interval_s);
            tasks.spawn(async move {
                loop {
                    if let Err(e) = journal.prune().await {
                        tracing::warn!("journal retention failed: {e}; trying again later");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.wait() => break,
                    }
                }
            });
        }
        let endpoint = crate::metrics::server::start(
            std::sync::Arc::new(config.clone()),
            metrics.clone(),
            trigger.subscribe(),
        )
        .await;
        tracing::info!(
            "shopfloor-agent {} running as {} (journal {}, {} source(s), {} sink(s), config {})",
            crate::AGENT_VERSION,
            config.agent.gateway_id,
            journal.data_dir().display(),
            config.sources.len(),
            config.sinks.len(),
            &config.sha256[..12]
        );
        Ok(Agent {
            journal,
            trigger,
            tasks,
            sources_trigger,
            source_tasks,
            pipeline_trigger,
            pipeline,
            observations,
            config,
            metrics,
            endpoint,
        })
    }

    /// The journal (sources append through it).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Where sources send observations.
    pub fn observations(&self) -> pipeline::Sender {
        self.observations.clone()
    }

    /// Where `/metrics` and `/healthz` are served, if they are.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.endpoint.as_ref().map(|(a, _)| *a)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes an `agent_event` with this agent's provenance; a failure is logged.
    async fn record_event(&self, event: &str, message: String, details: serde_json::Value) {
        let r = QualityRecord::agent_event(&self.config.record_context(), event, message, details);
        if let Err(e) = self.journal.append_record(r).await {
            tracing::error!("cannot write the {event} record: {e}");
        }
    }

    /// Stops sources, writes the stop record, lets sinks deliver what they can within a grace time,
    /// closes the journal. Returns the configuration it ran with.
    pub async fn stop(mut self, reason: &str) -> Config {
        // Sources stop first; the pipeline journals what they queued and closes open outages with
        // gap records.
        self.sources_trigger.trigger();
        join_within(&mut self.source_tasks, "some sources did not stop").await;
        self.pipeline_trigger.trigger();
        if tokio::time::timeout(STOP_GRACE, &mut self.pipeline)
            .await
            .is_err()
        {
            tracing::warn!(
                "the records pipeline did not finish within {} s",
                STOP_GRACE.as_secs()
            );
            self.pipeline.abort();
        }
        let ctx = self.config.record_context();
        let stop = QualityRecord::agent_event(
            &ctx,
            "stop",
            format!("shopfloor-agent stopped ({reason})"),
            serde_json::Value::Null,
        );
        if let Err(e) = self.journal.append_record(stop).await {
            tracing::warn!("cannot write the stop record: {e}");
        }
        self.trigger.trigger();
        join_within(
            &mut self.tasks,
            "sinks did not finish; the rest is delivered after the next start",
        )
        .await;
        if let Some((_, server)) = self.endpoint.take() {
            // Stopped by the trigger; wait so that the port is free for a reload.
            server.abort();
            let _ = server.await;
        }
        self.journal.close().await;
        tracing::info!("stopped ({reason}); journal closed cleanly");
        self.config
    }
}

/// Waits up to [`STOP_GRACE`] for every task of `set`, then aborts the rest and logs `late`.
async fn join_within(set: &mut JoinSet<()>, late: &str) {
    let all = tokio::time::timeout(STOP_GRACE, async {
        while set.join_next().await.is_some() {}
    })
    .await;
    if all.is_err() {
        tracing::warn!("{late} within {} s", STOP_GRACE.as_secs());
        set.abort_all();
    }
}

/// Every source's committed state (watermarks, cursors) as (source, key, value).
async fn source_state(journal: &Journal) -> Vec<(String, String, String)> {
    let dir = journal.data_dir().to_path_buf();
    let rows = tokio::task::spawn_blocking(move || {
        crate::journal::Store::open_ro(&dir).and_then(|s| s.source_state(None))
    })
    .await;
    match rows {
        Ok(Ok(rows)) => rows.into_iter().map(|(s, k, v, _)| (s, k, v)).collect(),
        Ok(Err(e)) => {
            tracing::error!(
                "cannot read the sources' state from the journal ({e}); sources start from scratch"
            );
            Vec::new()
        }
        Err(e) => {
            tracing::error!("cannot read the sources' state ({e})");
            Vec::new()
        }
    }
}

/// Teaches the engine the calibrations and travelers already journaled, for enrichment.
async fn learn_from_journal(engine: &mut Engine, journal: &Journal) {
    let dir = journal.data_dir().to_path_buf();
    let bodies = tokio::task::spawn_blocking(move || -> Result<Vec<String>, JournalError> {
        let store = crate::journal::Store::open_ro(&dir)?;
        let mut out = store.bodies_of_kind("calibration")?;
        // Only the travelers the enricher would keep anyway.
        out.extend(store.recent_bodies_of_kind("traveler", crate::records::enrich::MAX_TRAVELERS)?);
        Ok(out)
    })
    .await;
    match bodies {
        Ok(Ok(bodies)) => {
            for b in &bodies {
                if let Ok(r) = serde_json::from_str::<QualityRecord>(b) {
                    engine.learn(&r);
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(
            "cannot read earlier calibrations and travelers ({e}); enrichment starts empty"
        ),
        Err(e) => tracing::warn!("cannot read earlier calibrations and travelers ({e})"),
    }
}

/// `run`: starts the agent, reloads it on SIGHUP (with the configuration `load` returns) and stops
/// it on SIGTERM or SIGINT.
pub async fn run(
    config: Config,
    load: impl Fn() -> Result<Config, ConfigErrors>,
) -> Result<(), StartError> {
    // Held until `run` returns: one agent per data directory (`lock.rs`).
    let _lock = super::lock::acquire(&config.agent.data_dir)?;
    let notifier = std::sync::Arc::new(super::notify::Notifier::from_env());
    let mut signals = shutdown::Signals::install();
    let mut agent = Agent::start_as(config, Start::Boot, Metrics::new()).await?;
    notifier.notify("READY=1\nSTATUS=running: sources, pipeline and sinks started");
    let watchdog = notifier.watchdog_interval().map(|every| {
        let pinger = notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                pinger.notify("WATCHDOG=1");
            }
        })
    });
    let signal = loop {
        match signals.next().await {
            Signal::Stop(name) => break name,
            Signal::Reload => {
                notifier.notify("RELOADING=1\nSTATUS=reloading the configuration (SIGHUP)");
                agent = reload(agent, &load).await?;
                notifier.notify(&format!(
                    "READY=1\nSTATUS=running with config {}",
                    &agent.config().sha256[..12]
                ));
            }
        }
    };
    tracing::info!("{signal} received: stopping");
    notifier.notify(&format!(
        "STOPPING=1\nSTATUS=stopping ({signal}): sinks deliver for up to 10 s"
    ));
    agent.stop(signal).await;
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// SIGHUP: loads the configuration again. An invalid one, or one that moves the journal, is refused
/// (logged and recorded) and the agent runs on unchanged. A changed one restarts sources, pipeline
/// and sinks in this process (the journal closes and reopens) and writes a `config_reload` event with
/// both hashes; if it cannot start, the previous configuration starts again.
async fn reload(
    agent: Agent,
    load: &impl Fn() -> Result<Config, ConfigErrors>,
) -> Result<Agent, StartError> {
    let old = agent.config().sha256.clone();
    let refuse = |errors: Vec<String>| {
        tracing::error!(
            "SIGHUP: configuration not reloaded; still running with config {}:\n  {}",
            &old[..12],
            errors.join("\n  ")
        );
        json!({ "config_sha256": old, "requested_by": "SIGHUP", "errors": errors })
    };
    let new = match load() {
        Ok(new) => new,
        Err(errors) => {
            let details = refuse(errors.0.iter().map(ToString::to_string).collect());
            agent
                .record_event(
                    "config_reload_refused",
                    "the configuration on disk is invalid; the previous one stays in force".into(),
                    details,
                )
                .await;
            return Ok(agent);
        }
    };
    if new.sha256 == old && new.resolved_sha256 == agent.config().resolved_sha256 {
        tracing::info!(
            "SIGHUP: configuration unchanged (sha256 {}); nothing to reload",
            &old[..12]
        );
        return Ok(agent);
    }
    let (from, to) = (&agent.config().agent.data_dir, &new.agent.data_dir);
    if from != to {
        let details = refuse(vec![format!(
            "agent.data_dir changed from {} to {}: the journal cannot move while the agent runs; restart the service (systemctl restart shopfloor-agent)",
            from.display(),
            to.display()
        )]);
        agent
            .record_event(
                "config_reload_refused",
                "agent.data_dir changed; a reload cannot move the journal".into(),
                details,
            )
            .await;
        return Ok(agent);
    }
    if new.sha256 == old {
        tracing::info!(
            "SIGHUP: reloading configuration {}: a secret changed (the hash leaves secrets out); sources reconnect",
            &old[..12]
        );
    } else {
        tracing::info!(
            "SIGHUP: reloading configuration {} -> {}; sources reconnect",
            &old[..12],
            &new.sha256[..12]
        );
    }
    let attempted = new.sha256.clone();
    let metrics = agent.metrics.clone();
    let previous = agent.stop("configuration reload (SIGHUP)").await;
    match Agent::start_as(new, Start::Reload { old_sha256: old }, metrics.clone()).await {
        Ok(agent) => Ok(agent),
        Err(e) => {
            tracing::error!(
                "the reloaded configuration did not start ({e}); starting the previous one again"
            );
            Agent::start_as(
                previous,
                Start::Revert {
                    attempted_sha256: attempted,
                    reason: e.to_string(),
                },
                metrics,
            )
            .await
        }
    }
}
