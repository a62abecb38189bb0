//! Prometheus metrics (OpenMetrics text, `prometheus-client`) and the health verdict, served on
//! `[metrics] listen` (default `127.0.0.1:9898`) by [`server`].
//!
//! Two kinds of figures:
//! - **Counted as things happen** (counters and the commit histogram): observations and errors per
//!   source, records sent, retries and dead letters per sink, records appended per kind, records
//!   refused, commit latency. They live for the process, across configuration reloads.
//! - **Read from the journal at each scrape** (gauges): backlog and lag per sink, journal size and
//!   head seq, quarantined payloads, health. They come from the same [`crate::audit::status`]
//!   code as the `status` command, so `/healthz`, `/metrics` and `status` cannot disagree.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `shopfloor_source_observations_total` | source | values and messages received |
//! | `shopfloor_source_errors_total` | source, kind (`outage`, `bad_value`) | outages begun; bad or uncertain values |
//! | `shopfloor_source_up` | source | 1 while delivering, 0 during an outage |
//! | `shopfloor_source_last_success_age_seconds` | source | time since the last observation |
//! | `shopfloor_source_quarantined` | source | payloads held in quarantine |
//! | `shopfloor_sink_records_sent_total` | sink | records the sink acknowledged |
//! | `shopfloor_sink_retries_total` | sink | failed attempts that will be retried |
//! | `shopfloor_sink_dead_letters_total` | sink | records refused for good |
//! | `shopfloor_sink_backlog_records` | sink | records waiting |
//! | `shopfloor_sink_lag_seconds` | sink | age (capture time) of the oldest waiting record |
//! | `shopfloor_journal_records_appended_total` | kind | records committed to the journal |
//! | `shopfloor_journal_records_refused_total` | | records refused (size limit, disk full) |
//! | `shopfloor_journal_commit_seconds` | | histogram of group-commit latency |
//! | `shopfloor_journal_bytes`, `shopfloor_journal_max_bytes`, `shopfloor_journal_last_seq` | | journal size, limit (0: none), head |
//! | `shopfloor_healthy` | | 1 if `/healthz` answers 200 |
//! | `shopfloor_agent_info` | version, gateway, config_sha256 | always 1 |

pub mod server;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::audit::status::Status;

/// `source="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

/// `source="…", kind="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceErrorLabel {
    source: String,
    kind: String,
}

/// `sink="…"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// `kind="…"` (record kind).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// `version`, `gateway`, `config_sha256`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabel {
    version: String,
    gateway: String,
    config_sha256: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

struct Inner {
    registry: Registry,
    source_observations: Family<SourceLabel, Counter>,
    source_errors: Family<SourceErrorLabel, Counter>,
    source_up: Family<SourceLabel, Gauge>,
    source_age: Family<SourceLabel, FloatGauge>,
    source_quarantined: Family<SourceLabel, Gauge>,
    last_success: Mutex<HashMap<String, Instant>>,
    /// Channels (REST endpoints; "" for the whole source) down per source.
    down_channels: Mutex<HashMap<String, std::collections::HashSet<String>>>,
    sink_sent: Family<SinkLabel, Counter>,
    sink_retries: Family<SinkLabel, Counter>,
    sink_dead: Family<SinkLabel, Counter>,
    sink_backlog: Family<SinkLabel, Gauge>,
    sink_lag: Family<SinkLabel, FloatGauge>,
    appended: Family<KindLabel, Counter>,
    refused: Counter,
    commit: Histogram,
    journal_bytes: Gauge,
    journal_max_bytes: Gauge,
    journal_last_seq: Gauge,
    healthy: Gauge,
    info: Family<InfoLabel, Gauge>,
}

/// The agent's metrics. Cheap to clone; every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the table above.
    pub fn new() -> Metrics {
        let mut inner = Inner {
            registry: Registry::with_prefix("shopfloor"),
            source_observations: Family::default(),
            source_errors: Family::default(),
            source_up: Family::default(),
            source_age: Family::default(),
            source_quarantined: Family::default(),
            last_success: Mutex::new(HashMap::new()),
            down_channels: Mutex::new(HashMap::new()),
            sink_sent: Family::default(),
            sink_retries: Family::default(),
            sink_dead: Family::default(),
            sink_backlog: Family::default(),
            sink_lag: Family::default(),
            appended: Family::default(),
            refused: Counter::default(),
            // 0.5 ms .. ~4 s.
            commit: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            journal_bytes: Gauge::default(),
            journal_max_bytes: Gauge::default(),
            journal_last_seq: Gauge::default(),
            healthy: Gauge::default(),
            info: Family::default(),
        };
        let r = &mut inner.registry;
        r.register(
            "source_observations",
            "Values and messages received per source",
            inner.source_observations.clone(),
        );
        r.register(
            "source_errors",
            "Outages begun (kind=outage) and bad or uncertain values (kind=bad_value) per source",
            inner.source_errors.clone(),
        );
        r.register(
            "source_up",
            "1 while the source delivers, 0 during an outage",
            inner.source_up.clone(),
        );
        r.register(
            "source_last_success_age_seconds",
            "Seconds since the source's last observation",
            inner.source_age.clone(),
        );
        r.register(
            "source_quarantined",
            "Payloads of the source held in quarantine",
            inner.source_quarantined.clone(),
        );
        r.register(
            "sink_records_sent",
            "Records the sink acknowledged",
            inner.sink_sent.clone(),
        );
        r.register(
            "sink_retries",
            "Failed delivery attempts that will be retried",
            inner.sink_retries.clone(),
        );
        r.register(
            "sink_dead_letters",
            "Records the sink refused for good (moved to dead letters)",
            inner.sink_dead.clone(),
        );
        r.register(
            "sink_backlog_records",
            "Records waiting for the sink",
            inner.sink_backlog.clone(),
        );
        r.register(
            "sink_lag_seconds",
            "Age (since capture) of the oldest record waiting for the sink",
            inner.sink_lag.clone(),
        );
        r.register(
            "journal_records_appended",
            "Records committed to the journal, by kind",
            inner.appended.clone(),
        );
        r.register(
            "journal_records_refused",
            "Records refused by the journal (size limit reached or disk full)",
            inner.refused.clone(),
        );
        r.register(
            "journal_commit_seconds",
            "Latency of one journal group commit",
            inner.commit.clone(),
        );
        r.register(
            "journal_bytes",
            "Bytes used by the journal",
            inner.journal_bytes.clone(),
        );
        r.register(
            "journal_max_bytes",
            "The journal's size limit in bytes (0: none)",
            inner.journal_max_bytes.clone(),
        );
        r.register(
            "journal_last_seq",
            "Seq of the journal's last record",
            inner.journal_last_seq.clone(),
        );
        r.register(
            "healthy",
            "1 if /healthz answers 200, 0 if degraded",
            inner.healthy.clone(),
        );
        r.register(
            "agent_info",
            "The agent's version, gateway id and configuration hash",
            inner.info.clone(),
        );
        Metrics(Arc::new(inner))
    }

    /// `n` observations from `source` (any quality).
    pub fn observed(&self, source: &str, n: u64) {
        let label = SourceLabel {
            source: source.to_string(),
        };
        self.0.source_observations.get_or_create(&label).inc_by(n);
        self.0.source_up.get_or_create(&label).set(1);
        if let Ok(mut last) = self.0.last_success.lock() {
            last.insert(source.to_string(), Instant::now());
        }
    }

    /// `n` bad or uncertain values from `source`.
    pub fn bad_values(&self, source: &str, n: u64) {
        if n > 0 {
            self.source_error(source, "bad_value", n);
        }
    }

    /// `source` lost its peer.
    pub fn source_down(&self, source: &str, channel: Option<&str>) {
        self.source_error(source, "outage", 1);
        if let Ok(mut down) = self.0.down_channels.lock() {
            down.entry(source.to_string())
                .or_default()
                .insert(channel.unwrap_or("").to_string());
        }
        self.0
            .source_up
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(0);
    }

    /// `source` (or one of its channels) delivers again; the source is up once none is down.
    pub fn source_up(&self, source: &str, channel: Option<&str>) {
        let still_down = match self.0.down_channels.lock() {
            Ok(mut down) => {
                let set = down.entry(source.to_string()).or_default();
                set.remove(channel.unwrap_or(""));
                !set.is_empty()
            }
            Err(_) => false,
        };
        self.0
            .source_up
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(i64::from(!still_down));
    }

    fn source_error(&self, source: &str, kind: &str, n: u64) {
        self.0
            .source_errors
            .get_or_create(&SourceErrorLabel {
                source: source.to_string(),
                kind: kind.to_string(),
            })
            .inc_by(n);
    }

    fn sink(&self, family: &Family<SinkLabel, Counter>, sink: &str) -> Counter {
        family
            .get_or_create(&SinkLabel {
                sink: sink.to_string(),
            })
            .clone()
    }

    /// `n` records acknowledged by `sink`.
    pub fn sent(&self, sink: &str, n: u64) {
        self.sink(&self.0.sink_sent, sink).inc_by(n);
    }

    /// A failed attempt of `sink` that will be retried.
    pub fn retry(&self, sink: &str) {
        self.sink(&self.0.sink_retries, sink).inc();
    }

    /// `n` records of `sink` moved to dead letters.
    pub fn dead_lettered(&self, sink: &str, n: u64) {
        self.sink(&self.0.sink_dead, sink).inc_by(n);
    }

    /// `n` records of `kind` committed.
    pub fn appended(&self, kind: &str, n: u64) {
        self.0
            .appended
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc_by(n);
    }

    /// `n` records refused by the journal.
    pub fn refused(&self, n: u64) {
        self.0.refused.inc_by(n);
    }

    /// One group commit took `seconds`.
    pub fn commit(&self, seconds: f64) {
        self.0.commit.observe(seconds);
    }

    /// Declares every configured source and sink, so each shows up (at 0) before its first event.
    pub fn declare<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a String>,
        sinks: impl IntoIterator<Item = &'a String>,
    ) {
        for s in sources {
            let label = SourceLabel { source: s.clone() };
            let _ = self.0.source_observations.get_or_create(&label);
        }
        for s in sinks {
            let _ = self.sink(&self.0.sink_sent, s);
            let _ = self.sink(&self.0.sink_retries, s);
            let _ = self.sink(&self.0.sink_dead, s);
        }
    }

    /// Sets the gauges read from the journal (`status`) and encodes everything as OpenMetrics text.
    pub fn render(&self, status: &Status, config_sha256: &str) -> String {
        let i = &self.0;
        i.journal_bytes.set(status.used_bytes as i64);
        i.journal_max_bytes.set(status.max_disk_bytes as i64);
        i.journal_last_seq.set(status.last_seq);
        i.healthy.set(i64::from(status.health.ok()));
        i.info.clear();
        i.info
            .get_or_create(&InfoLabel {
                version: crate::AGENT_VERSION.to_string(),
                gateway: status.gateway_id.clone(),
                config_sha256: config_sha256.to_string(),
            })
            .set(1);
        let now = crate::time::now();
        for s in status.sinks.iter().filter(|s| s.configured) {
            let label = SinkLabel { sink: s.id.clone() };
            i.sink_backlog.get_or_create(&label).set(s.backlog);
            let lag = s
                .oldest_waiting
                .as_deref()
                .and_then(crate::time::parse)
                .map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
            i.sink_lag.get_or_create(&label).set(lag);
        }
        for (source, n) in &status.quarantined {
            i.source_quarantined
                .get_or_create(&SourceLabel {
                    source: source.clone(),
                })
                .set(*n);
        }
        if let Ok(last) = i.last_success.lock() {
            for (source, at) in last.iter() {
                i.source_age
                    .get_or_create(&SourceLabel {
                        source: source.clone(),
                    })
                    .set(at.elapsed().as_secs_f64());
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &i.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_appear_in_the_text() {
        let m = Metrics::new();
        m.declare(&["plc".to_string()], &["qms".to_string()]);
        m.observed("plc", 3);
        m.source_down("plc", None);
        m.sent("qms", 5);
        m.appended("inspection", 1);
        m.commit(0.002);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.0.registry).expect("encode");
        for line in [
            "shopfloor_source_observations_total{source=\"plc\"} 3",
            "shopfloor_source_errors_total{source=\"plc\",kind=\"outage\"} 1",
            "shopfloor_source_up{source=\"plc\"} 0",
            "shopfloor_sink_records_sent_total{sink=\"qms\"} 5",
            "shopfloor_sink_retries_total{sink=\"qms\"} 0",
            "shopfloor_journal_records_appended_total{kind=\"inspection\"} 1",
            "shopfloor_journal_commit_seconds_count 1",
            "shopfloor_journal_commit_seconds_bucket{le=\"0.004\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }
}
