//! NATS JetStream sink: publishes each record to the fleet's stream and moves the cursor only once
//! the stream acknowledged every record of the batch (PubAck), in journal order.
//!
//! - **Exactly once in the stream**: the record id is the `Nats-Msg-Id`; a batch sent again after
//!   a lost PubAck, a leader change or a restart is dropped by the server's duplicate window
//!   (`duplicate: true` in the PubAck) as long as the resend comes within the window (default two
//!   minutes; `create_stream.duplicate_window_s`). A record resent later is stored again, and the
//!   fleet verifier counts it as a duplicate of the same id, not a gap.
//! - **Which stream**: every publish carries `Nats-Expected-Stream`, so a subject that belongs to
//!   another stream is refused, not stored elsewhere. The stream is looked up before the first
//!   publish: a missing one is a named error (or created, with `create_stream`).
//! - **The chain travels with each record**: CloudEvents binary mode (default): the payload is the
//!   record as journaled, and `ce-id`, `ce-source` (`urn:shopfloor-agent:<gateway_id>`),
//!   `ce-sequence`, `ce-prevhash`, `ce-hash`, `ce-signature` are headers; structured mode puts the
//!   same attributes and the record (`data`) into a JSON payload. `fleet verify` reads either.
//! - **Refusals**: a full stream with `discard = new`, a stream without quorum, an unreachable
//!   server: the batch is not delivered and is sent again with backoff; the reason is in the log and
//!   `status`. A record larger than the server's `max_payload` or the stream's `max_msg_size` is a
//!   dead letter and does not hold up the records behind it.
//! - **Pipelining**: a batch (`batch_max_records`, default 256) is published without waiting, then
//!   its PubAcks are awaited in order; the connection reconnects by itself (async-nats).
//!
//! Order in the stream: records are published in journal order on one connection. When a record of
//! a batch is refused and a later one accepted (a leader change in the middle of a batch), the
//! resend stores the refused one after it; `ce-sequence` orders them and `fleet verify` checks
//! continuity by it.

pub mod config;
pub mod sink;

pub use config::NatsSinkConfig;
pub use sink::NatsSink;

use std::path::Path;

use crate::config::{ConfigError, LoadOptions};
use crate::journal::JournalRow;
use crate::runtime::{BoxFuture, BuildError};
use crate::sinks::driver::DeliveryOptions;
use crate::sinks::{Receipts, SendError, Sink, SinkContext, SinkSpec};

impl SinkSpec for NatsSinkConfig {
    fn validate(&self, at: &str, _opts: LoadOptions, errors: &mut Vec<ConfigError>) {
        self.check(at, errors)
    }

    fn resolve_paths(&mut self, base: &Path) {
        NatsSinkConfig::resolve_paths(self, base)
    }

    fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions::records(self.batch_max_records)
    }

    fn build(&self, id: &str, cx: &SinkContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(NatsSink::new(id, self, cx)?))
    }
}

impl Sink for NatsSink {
    fn send<'a>(
        &'a mut self,
        rows: &'a [JournalRow],
    ) -> BoxFuture<'a, Result<Receipts, SendError>> {
        Box::pin(async move { NatsSink::send(self, rows).await.map(|()| Vec::new()) })
    }

    fn target(&self) -> String {
        NatsSink::target(self)
    }
}
