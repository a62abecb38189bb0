//! Reading a JetStream stream for `fleet verify`: an ephemeral pull consumer without acks, from
//! the first message to the last one the stream held when the check began, in pulls of
//! [`BATCH`] messages.
//!
//! Why not the client's ordered consumer: it pulls 500 messages at a time, and each pull is a
//! round trip in which neither side works; with pulls of 5,000 the read is faster by a fifth or
//! more (`cargo bench --bench nats_verify`). What the ordered consumer gave is kept differently:
//! messages lost on the way are never sent again to a consumer without acks, so a dropped
//! connection (the client's `Disconnected` event), messages the client dropped (`SlowConsumer`)
//! or a gap in the consumer's own delivery sequence stop the check with an error, instead of a
//! report naming records missing from a clean gateway's chain; so does a read with no message
//! for [`WAIT`] (after a reconnect the pull does not resume).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{jetstream, Event};
use futures_util::StreamExt;

use super::{FleetCheck, FleetReport};
use crate::transport::nats::{with_auth, NatsAuth};

/// How to reach the stream.
#[derive(Debug, Clone, Default)]
pub struct NatsTarget {
    /// Server URL.
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// A `.creds` file.
    pub credentials_file: Option<std::path::PathBuf>,
    /// User and password.
    pub user: Option<(String, String)>,
    /// Token.
    pub token: Option<String>,
    /// CA of the servers' certificates (TLS required when set).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Messages asked for per pull (about 5 MB of inspection records in the client at most; the
/// client's subscription holds 65,536 before it would drop one).
const BATCH: usize = 5_000;

/// How long the read waits for the next message before it gives up with an error.
const WAIT: Duration = Duration::from_secs(15);

/// Reads every message of the stream into `check` and returns the verdict.
pub async fn verify(target: &NatsTarget, mut check: FleetCheck) -> Result<FleetReport, String> {
    let shown = crate::config::redact::url_text(&target.url).into_owned();
    // A dropped connection (or the client dropping messages it could not take) loses the
    // messages in flight: nothing sends them again. Noted here, checked while reading.
    let lost = Arc::new(AtomicBool::new(false));
    let noted = lost.clone();
    let opts = async_nats::ConnectOptions::new()
        .name("shopfloor-agent fleet verify")
        .connection_timeout(Duration::from_secs(10))
        .event_callback(move |event| {
            if matches!(event, Event::Disconnected | Event::SlowConsumer(_)) {
                noted.store(true, Ordering::SeqCst);
            }
            async {}
        });
    let auth = NatsAuth {
        user: target.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        token: target.token.as_deref(),
        credentials_file: target.credentials_file.as_deref(),
        tls: target.ca_file.as_deref().map(|ca| (ca, None)),
        ..NatsAuth::default()
    };
    let opts = with_auth(opts, auth).await?;
    let client = opts
        .connect(target.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(&target.stream)
        .await
        .map_err(|e| format!("cannot open stream {} on {shown}: {e}", target.stream))?;
    let last = stream
        .info()
        .await
        .map_err(|e| format!("cannot read stream {}'s state: {e}", target.stream))?
        .state
        .last_sequence;
    let name = format!("{shown} stream {}", target.stream);
    if last == 0 {
        return Ok(check.finish(name));
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            // Removed by the server soon after this check ends or dies.
            inactive_threshold: Duration::from_secs(30),
            description: Some("shopfloor-agent fleet verify".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read stream {}: {e}", target.stream))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .map_err(|e| format!("cannot read stream {}: {e}", target.stream))?;
    let mut delivered = 0;
    let mut seq = 0;
    let mut last_message = Instant::now();
    let lost_error = |seq: u64| {
        format!(
            "reading stream {}: messages on the way were lost after stream seq {seq} (the \
             connection dropped, or the client fell behind): run the check again",
            target.stream
        )
    };
    // A timer per message would cost more than the check; a tick a second looks at the rest.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            biased;
            m = messages.next() => m,
            _ = tick.tick() => {
                if lost.load(Ordering::SeqCst) {
                    return Err(lost_error(seq));
                }
                if last_message.elapsed() > WAIT {
                    return Err(format!(
                        "reading stream {}: no message for {} s after stream seq {seq} of {last}",
                        target.stream,
                        WAIT.as_secs()
                    ));
                }
                continue;
            }
        };
        if lost.load(Ordering::SeqCst) {
            return Err(lost_error(seq));
        }
        let Some(m) = next else {
            return Err(format!(
                "reading stream {}: the read ended after stream seq {seq} of {last}: run the \
                 check again",
                target.stream
            ));
        };
        last_message = Instant::now();
        let m = m.map_err(|e| format!("reading stream {}: {e}", target.stream))?;
        let info = m.info().map_err(|e| {
            format!(
                "reading stream {}: a message without its position: {e}",
                target.stream
            )
        })?;
        seq = info.stream_sequence;
        let pending = info.pending;
        if info.consumer_sequence != delivered + 1 {
            return Err(lost_error(seq));
        }
        delivered = info.consumer_sequence;
        let headers = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| values.first().map(|v| (name.as_ref(), v.as_str())));
        check.add_message(format_args!("stream seq {seq}"), headers, &m.payload);
        // The last message the stream held when the check began, or none left (its last
        // messages were removed meanwhile, by age or by hand).
        if seq >= last || pending == 0 {
            break;
        }
    }
    Ok(check.finish(name))
}
