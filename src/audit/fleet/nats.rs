//! Reading a JetStream stream for `fleet verify`: an ordered consumer (ephemeral, no acks, flow
//! controlled) from the first message to the last one the stream held when the check began.

use async_nats::jetstream;
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

/// Reads every message of the stream into `check` and returns the verdict.
pub async fn verify(target: &NatsTarget, mut check: FleetCheck) -> Result<FleetReport, String> {
    let shown = crate::config::redact::url_text(&target.url).into_owned();
    let opts = async_nats::ConnectOptions::new()
        .name("shopfloor-agent fleet verify")
        .connection_timeout(std::time::Duration::from_secs(10));
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
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| format!("cannot read stream {}: {e}", target.stream))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read stream {}: {e}", target.stream))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| format!("reading stream {}: {e}", target.stream))?;
        let (seq, pending) = m
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .unwrap_or((0, 0));
        let headers = m.headers.as_ref();
        check.add_message(
            format_args!("stream seq {seq}"),
            |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()),
            &m.payload,
        );
        // The last message the stream held when the check began, or none left (its last
        // messages were removed meanwhile, by age or by hand).
        if seq >= last || pending == 0 {
            break;
        }
    }
    Ok(check.finish(name))
}
