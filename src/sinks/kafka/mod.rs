//! Kafka sink: produces each record to the fleet's topic and moves the cursor only once the brokers
//! acknowledged every record of the batch, in journal order. Feature `sink-kafka` (librdkafka
//! through `rdkafka`; not in the gateway builds: see `docs/kafka.md` for why and how to build it).
//!
//! - **Acknowledged by every in-sync replica**: `acks=all` and librdkafka's idempotent producer
//!   (producer id and per-partition sequence numbers): a retry after a lost acknowledgement, a
//!   broker error or a leader change is written once and in order, never twice.
//! - **Nothing given up**: librdkafka retries a record until the brokers take it
//!   (`message.timeout.ms = 0`). A batch not acknowledged within `timeout_ms` is reported as a
//!   wait (the log, `status`), its records stay in flight, and the next send of the same seqs
//!   awaits them instead of producing them again.
//! - **What can still be stored twice**: the records in flight when the agent stops without
//!   a clean shutdown, or when the producer fails for good (its idempotence state lost), are produced
//!   again by the next producer. Kafka has no server-side deduplication by id: the copies carry
//!   the same record id (the key by default, and `ce-id`), a consumer drops them by it, and
//!   `fleet verify --kafka` counts them as resends, not as gaps.
//! - **The chain travels with each record**: CloudEvents Kafka binding, binary mode (default):
//!   the value is the record as journaled and `ce-id`, `ce-source`, `ce-sequence`, `ce-prevhash`,
//!   `ce-hash`, `ce-signature` are headers; structured mode puts the event into the value.
//! - **Key**: the record id (default; records spread over the partitions), the serial (a part's
//!   records in one partition, in order), or the gateway id (the gateway's records in one
//!   partition, in journal order).
//! - **Refusals**: a missing topic is named before anything is produced (the sink never creates
//!   topics); an unreachable cluster, a refused login or missing ACLs are retried with backoff and
//!   named; a record larger than the topic takes is a dead letter.
//! - **Security**: TLS (OpenSSL inside librdkafka; the broker's name is checked), mutual TLS,
//!   SASL PLAIN (only with TLS), SCRAM-SHA-256 and SCRAM-SHA-512.

pub mod config;
pub mod sink;

pub use config::KafkaSinkConfig;
pub use sink::KafkaSink;

use std::path::Path;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};
use crate::sinks::driver::DeliveryOptions;
use crate::sinks::{Receipts, SendError, Sink, SinkContext, SinkSpec};

impl SinkSpec for KafkaSinkConfig {
    fn validate(&self, at: &str, _opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        KafkaSinkConfig::resolve_paths(self, base)
    }

    fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions::records(self.batch_max_records)
    }

    fn build(&self, id: &str, cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(KafkaSink::new(id, self, cx)?))
    }
}

impl Sink for KafkaSink {
    fn send<'a>(
        &'a mut self,
        rows: &'a [JournalRow],
    ) -> BoxFuture<'a, Result<Receipts, SendError>> {
        Box::pin(KafkaSink::send(self, rows))
    }

    fn target(&self) -> String {
        KafkaSink::target(self)
    }
}
