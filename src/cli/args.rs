//! The command line (clap derive): global options and one subcommand per operator task.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Collects quality evidence from shop-floor sources, journals it with a hash chain and delivers it.
#[derive(Debug, Parser)]
#[command(name = "shopfloor-agent", version, about)]
pub struct Cli {
    /// Main configuration file; drop-ins are read from `agent.d/` beside it.
    #[arg(long, short, global = true, env = "SHOPFLOOR_AGENT_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log format (overrides `[log] format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run,
    /// Check the configuration; prints every problem and exits 78 if there is one.
    Validate {
        /// Do not resolve secrets or check files (check a config away from the gateway).
        #[arg(long)]
        no_environment: bool,
    },
    /// Show sources, sinks, backlog, lag, dead letters and disk use.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Reconcile instead: per work order or per day, records captured vs acknowledged by
        /// each sink (and receipt ids from the QMS).
        #[arg(long, value_enum)]
        by: Option<ReconcileBy>,
    },
    /// Every record of a part, lot or work order in time order with the gaps overlapping it; or
    /// every inspection made with a gauge and how it stood against the gauge's calibrations.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["serial", "lot", "work_order", "gauge"])))]
    Trace {
        /// A part's serial number.
        #[arg(long)]
        serial: Option<String>,
        /// A lot.
        #[arg(long)]
        lot: Option<String>,
        /// A work order.
        #[arg(long)]
        work_order: Option<String>,
        /// A gauge (instrument id): its inspections, the overdue ones, and those since its last
        /// passing calibration.
        #[arg(long)]
        gauge: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence package: the records journaled in a time range, their chain segment,
    /// gaps, the configurations and agent versions in force, and a manifest of SHA-256 sums.
    Export {
        /// Start of the range (RFC 3339, e.g. 2026-06-01T00:00:00Z).
        #[arg(long)]
        from: String,
        /// End of the range (RFC 3339).
        #[arg(long)]
        to: String,
        /// Only this work order's records (gaps and agent events are always included).
        #[arg(long)]
        work_order: Option<String>,
        /// The package directory to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-walk the journal's hash chain; exits 1 and names the first bad seq if it is broken.
    /// With --package, check an evidence package instead (no configuration or journal needed).
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// An evidence package directory written by `export`.
        #[arg(long)]
        package: Option<PathBuf>,
        /// Check signatures with this Ed25519 public key (hex, from `public-key`); by default the
        /// gateway's own key file, or for a package the key its manifest names.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Send records to a sink again (after the QMS was fixed or lost data); the running agent
    /// does it and records who asked in an agent_event.
    Replay {
        /// The sink (as in [sinks.<id>]).
        #[arg(long)]
        sink: String,
        /// First seq to send again.
        #[arg(long)]
        from: i64,
        /// Last seq (default: the journal's last).
        #[arg(long)]
        to: Option<i64>,
        /// Why, for the record (a ticket number, say).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Records a sink refused for good: list them, or re-send them once the peer is fixed.
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        action: DeadLettersAction,
    },
    /// Print the gateway's Ed25519 public key (made on the first run with journal.sign = true).
    PublicKey,
    /// Checks on the fleet's central stream, where every gateway's records arrive.
    Fleet {
        /// What to do.
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Print the fully commented reference configuration.
    GenerateConfig,
    /// Measure journal append throughput and commit latency on this machine's storage.
    BenchJournal {
        /// Scratch directory for the test journal (use one on the gateway's data disk).
        #[arg(long)]
        dir: PathBuf,
        /// Records to append.
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        /// Concurrent producers, each waiting for its append's commit before the next.
        #[arg(long, default_value_t = 64)]
        producers: u64,
        /// Records per append (a REST page, a poll cycle); 1 for one record at a time.
        #[arg(long, default_value_t = 1)]
        batch: u64,
        /// Approximate size of one record in bytes.
        #[arg(long, default_value_t = 600)]
        record_bytes: usize,
        /// Print `ack <seq> <id>` for every acknowledged append (for crash tests).
        #[arg(long)]
        print_acks: bool,
        /// Sign every record (journal.sign), with a key made in the scratch directory.
        #[arg(long)]
        sign: bool,
    },
}

/// `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLettersAction {
    /// The open dead letters with the peer's reason.
    List {
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running agent to send them again (all, one sink's, or one seq).
    Retry {
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// Only the dead letter of this seq.
        #[arg(long)]
        seq: Option<i64>,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The replay and retry requests, pending and done, with their outcome.
    Requests,
}

/// `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// Read a stream (NATS JetStream or a Kafka topic) and check every gateway's chain in it: seq
    /// continuity, prev_hash links, one hash per seq, signatures; prints each gateway's last seq
    /// and hash.
    Verify {
        /// The NATS server (`nats://host:4222`), with --stream.
        #[arg(
            long,
            required_unless_present = "kafka",
            conflicts_with = "kafka",
            requires = "stream"
        )]
        nats: Option<String>,
        /// The JetStream stream.
        #[arg(long, conflicts_with = "kafka")]
        stream: Option<String>,
        /// Kafka bootstrap brokers (`host:9092[,host:9092]`), with --topic (built with the
        /// sink-kafka feature).
        #[arg(long, requires = "topic")]
        kafka: Option<String>,
        /// The Kafka topic.
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
        /// Kafka SASL mechanism for --user: SCRAM-SHA-512 (default), SCRAM-SHA-256, PLAIN (with
        /// --ca-file only).
        #[arg(long, requires = "kafka")]
        sasl_mechanism: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A file of `<gateway_id> <public key hex>` lines: those gateways' signatures are checked
        /// with these keys; others with the key they announced in the stream.
        #[arg(long)]
        public_keys: Option<PathBuf>,
        /// A `.creds` file for the server.
        #[arg(long)]
        creds: Option<PathBuf>,
        /// User name (the password from NATS_PASSWORD, or KAFKA_PASSWORD with --kafka).
        #[arg(long)]
        user: Option<String>,
        /// Password for --user.
        #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, hide = true)]
        password: Option<String>,
        /// Password for --user with --kafka.
        #[arg(long, env = "KAFKA_PASSWORD", hide_env_values = true, hide = true)]
        kafka_password: Option<String>,
        /// Token (from NATS_TOKEN only, never on the command line).
        #[arg(long, env = "NATS_TOKEN", hide_env_values = true, hide = true)]
        token: Option<String>,
        /// CA of the servers' certificates (TLS required).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// `status --by`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReconcileBy {
    /// Per work order.
    WorkOrder,
    /// Per capture day (UTC).
    Day,
}
