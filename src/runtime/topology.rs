//! Wires the agent together: journal, sinks (and, as they arrive, sources); supervises and stops them.

use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use super::shutdown::{self, ShutdownTrigger};
use crate::config::Config;
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::records::QualityRecord;
use crate::sinks::driver::Driver;
use crate::sinks::{Sink, SinkContext};

/// How long a stop waits for sinks to finish the batch in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A sink could not be built.
    #[error("sink {id}: {message}")]
    Sink {
        /// Sink id.
        id: String,
        /// What went wrong.
        message: String,
    },
}

/// A running agent.
pub struct Agent {
    journal: Journal,
    trigger: ShutdownTrigger,
    tasks: JoinSet<()>,
    config: Config,
}

impl Agent {
    /// Opens the journal, writes the start records and starts every component.
    pub async fn start(config: Config) -> Result<Agent, StartError> {
        let ctx = config.record_context();
        let opts = JournalOptions {
            data_dir: config.agent.data_dir.clone(),
            synchronous: config.journal.synchronous,
            max_disk_bytes: config.journal.max_disk_bytes,
            retention_days: config.journal.retention_days,
            max_batch_records: config.journal.max_batch_records,
            sinks: config.sinks.keys().cloned().collect(),
            max_page_count: None,
        };
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
            json!({ "config_files": config.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>() }),
        ));
        for r in first {
            if let Err(e) = journal.append_record(r).await {
                tracing::error!("cannot write the start record: {e}");
            }
        }

        let (trigger, _) = shutdown::channel();
        let mut tasks = JoinSet::new();
        let sink_ctx = SinkContext {
            gateway_id: config.agent.gateway_id.clone(),
        };
        let repeat = Duration::from_secs(config.log.repeat_summary_s);
        for (id, sink_config) in &config.sinks {
            let sink =
                Sink::build(id, sink_config, &sink_ctx).map_err(|message| StartError::Sink {
                    id: id.clone(),
                    message,
                })?;
            let driver =
                Driver::new(id, sink, journal.clone(), sink_config.delivery(), repeat).await?;
            tasks.spawn(driver.run(trigger.subscribe()));
        }
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
        tracing::info!(
            "shopfloor-agent {} running as {} (journal {}, {} sink(s), config {})",
            crate::AGENT_VERSION,
            config.agent.gateway_id,
            journal.data_dir().display(),
            config.sinks.len(),
            &config.sha256[..12]
        );
        Ok(Agent {
            journal,
            trigger,
            tasks,
            config,
        })
    }

    /// The journal (sources append through it).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops sources, writes the stop record, lets sinks deliver what they can within a grace time,
    /// closes the journal.
    pub async fn stop(mut self, reason: &str) {
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
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "sinks did not finish within {} s; the rest is delivered after the next start",
                STOP_GRACE.as_secs()
            );
            self.tasks.abort_all();
        }
        self.journal.close().await;
        tracing::info!("stopped ({reason}); journal closed cleanly");
    }
}

/// `run`: starts the agent and stops it on SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    let agent = Agent::start(config).await?;
    let signal = shutdown::wait_for_signal().await;
    tracing::info!("{signal} received: stopping");
    agent.stop(signal).await;
    Ok(())
}
