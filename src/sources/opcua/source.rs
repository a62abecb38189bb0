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

use futures_util::StreamExt;
use opcua::client::{
    Client, ClientBuilder, IdentityToken, MonitoredItemMap, OnSubscriptionNotificationCore,
    Password, Session, SessionPollResult, SubscriptionActivity,
};
use opcua::crypto::CertificateStore;
use opcua::types::{
    DataChangeFilter, DataChangeNotification, DataChangeTrigger, DataValue, DeadbandType,
    EndpointDescription, ExtensionObject, MessageSecurityMode, MonitoredItemCreateRequest,
    MonitoringMode, MonitoringParameters, NodeId, NotificationMessage, ReadValueId,
    StatusChangeNotification, StatusCode, TimestampsToReturn, UserTokenType, VariableId, Variant,
};
use tokio::sync::mpsc;

use super::config::{OpcUaSourceConfig, ReadMode, SecurityMode, TagTarget};
use super::pki::Pki;
use super::value::sample;
use crate::records::engine::Engine;
use crate::records::observation::{Observation, Origin, Quality, Sample, TagId};
use crate::records::pipeline::{Input, Sender};
use crate::runtime::logging::human_duration;
use crate::runtime::Shutdown;
use crate::sources::{SourceRuntime, Stopped, Supervisor};

/// The shortest session timeout the agent asks for (ms): see `client()`.
const SESSION_TIMEOUT_MS: u128 = 30_000;

/// A running OPC UA source.
pub struct OpcUaSource {
    id: String,
    cfg: OpcUaSourceConfig,
    targets: Vec<TagTarget>,
    ids: Vec<TagId>,
    pki: Pki,
    application_uri: String,
}

/// Items per call the server accepts (its `OperationLimits`), capped by `items_per_request`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    monitored_items: usize,
    read: usize,
    translate: usize,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// What the subscription callback hands to the session loop.
enum Note {
    Data(Vec<(u32, DataValue)>),
    Status(StatusCode),
}

/// Notifications waiting for the session loop at most: a journal that cannot keep up does not make
/// the agent's memory grow. A notification that finds the queue full is dropped and counted; the
/// session loop then ends the session as an outage, so the loss is a gap record, never silent.
const NOTES_QUEUED: usize = 1024;

/// The subscription callback's end of the queue, and what it had to drop.
#[derive(Clone)]
struct Notes {
    tx: mpsc::Sender<Note>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Notes {
    fn send(&self, note: Note) {
        if self.tx.try_send(note).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

struct Notifier(Notes);

impl OnSubscriptionNotificationCore for Notifier {
    fn on_subscription_notification(&mut self, n: NotificationMessage, _: MonitoredItemMap<'_>) {
        let mut data = Vec::new();
        for obj in n.notification_data.into_iter().flatten() {
            if let Some(dc) = obj.inner_as::<DataChangeNotification>() {
                for item in dc.monitored_items.iter().flatten() {
                    data.push((item.client_handle, item.value.clone()));
                }
            } else if let Some(sc) = obj.inner_as::<StatusChangeNotification>() {
                self.0.send(Note::Status(sc.status));
            }
        }
        if !data.is_empty() {
            self.0.send(Note::Data(data));
        }
    }
}

/// A session that is up: the session, its event loop task and the resolved tags.
struct Live {
    session: Arc<Session>,
    events: mpsc::UnboundedReceiver<Result<SessionPollResult, StatusCode>>,
    event_task: tokio::task::JoinHandle<()>,
    /// Per tag: the node id of today's session, or why it could not be resolved.
    nodes: Vec<Result<NodeId, String>>,
    /// Batch sizes: the configured `items_per_request`, lowered to the server's operation limits.
    limits: Limits,
    endpoint: EndpointDescription,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.event_task.abort();
    }
}

impl OpcUaSource {
    /// Checks the tags and registers them (with their origin) in the engine.
    pub fn new(
        id: &str,
        cfg: &OpcUaSourceConfig,
        engine: &mut Engine,
        data_dir: &std::path::Path,
        gateway_id: &str,
    ) -> Result<OpcUaSource, String> {
        let mut errors = Vec::new();
        let targets = cfg.targets(&format!("sources.{id}"), &mut errors);
        if !errors.is_empty() {
            return Err(crate::config::ConfigError::join(&errors));
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

    fn client(&self) -> Result<Client, String> {
        ClientBuilder::new()
            .application_name("shopfloor-agent")
            .application_uri(self.application_uri.clone())
            .product_uri("urn:shopfloor-agent")
            .pki_dir(self.pki.dir.clone())
            .create_sample_keypair(false)
            .trust_server_certs(false)
            .verify_server_certs(true)
            .session_retry_limit(0)
            .keep_alive_interval(Duration::from_millis(self.cfg.keep_alive_ms))
            .max_failed_keep_alive_count(2)
            .request_timeout(Duration::from_millis(self.cfg.request_timeout_ms))
            // A session left behind by a crash or kill -9 is freed by the server after this: a
            // gateway restarting in a loop must not use up a PLC's few session slots (an HMI or
            // SCADA would be locked out), so it is short: 30 s, or the watchdog if longer.
            .session_timeout(
                u32::try_from(self.cfg.watchdog().as_millis().max(SESSION_TIMEOUT_MS))
                    .unwrap_or(u32::MAX),
            )
            .recreate_subscriptions(false)
            // A publish of thousands of items is one message with one array of notifications;
            // the library's defaults (1,000 elements, 320 KiB) would refuse it.
            .max_array_length(1_000_000)
            .max_message_size(64 << 20)
            .max_chunk_count(1024)
            .session_name(format!("shopfloor-agent {}", self.id))
            .client()
            .map_err(|e| e.join("; "))
    }

    fn identity(&self) -> Result<IdentityToken, String> {
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            return Ok(IdentityToken::UserName(
                u.clone(),
                Password::new(p.expose().to_string()),
            ));
        }
        if let (Some(c), Some(k)) = (&self.cfg.user_certificate_file, &self.cfg.user_key_file) {
            let cert = CertificateStore::read_cert(c)?;
            let key = CertificateStore::read_pkey(k)?;
            return Ok(IdentityToken::X509(Box::new(cert), Box::new(key)));
        }
        Ok(IdentityToken::Anonymous)
    }

    fn mode(&self) -> MessageSecurityMode {
        match self.cfg.security_mode {
            SecurityMode::None => MessageSecurityMode::None,
            SecurityMode::Sign => MessageSecurityMode::Sign,
            SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        }
    }

    /// Picks the endpoint with exactly the configured policy and mode.
    fn pick(
        &self,
        endpoints: &[EndpointDescription],
        identity: &IdentityToken,
    ) -> Result<EndpointDescription, String> {
        let policy: opcua::crypto::SecurityPolicy =
            self.cfg
                .security_policy
                .opcua_name()
                .parse()
                .map_err(|_| "unknown security policy".to_string())?;
        let mut ep = Client::find_matching_endpoint(endpoints, &self.cfg.endpoint, policy, self.mode())
            .ok_or_else(|| {
                let offered: Vec<String> = endpoints
                    .iter()
                    .map(|e| {
                        format!(
                            "{}/{:?}",
                            e.security_policy_uri.as_ref().rsplit('#').next().unwrap_or(""),
                            e.security_mode
                        )
                    })
                    .collect();
                format!(
                    "the server offers no endpoint {} with {}/{:?} (it offers {}); the agent does not fall back to another policy",
                    self.cfg.endpoint,
                    self.cfg.security_policy.opcua_name(),
                    self.mode(),
                    offered.join(", ")
                )
            })?;
        let wanted = match identity {
            IdentityToken::Anonymous => UserTokenType::Anonymous,
            IdentityToken::UserName(..) => UserTokenType::UserName,
            IdentityToken::X509(..) => UserTokenType::Certificate,
            IdentityToken::IssuedToken(_) => UserTokenType::IssuedToken,
        };
        // An endpoint that lists no token policies accepts only anonymous sessions.
        let supported = match &ep.user_identity_tokens {
            None => wanted == UserTokenType::Anonymous,
            Some(ts) => ts.iter().any(|t| t.token_type == wanted),
        };
        if !supported {
            return Err(format!(
                "the endpoint does not accept a {wanted:?} identity; check username/password or user_certificate_file"
            ));
        }
        if wanted == UserTokenType::UserName
            && self.cfg.security_policy == super::config::SecurityPolicy::None
            && !self.cfg.allow_cleartext_password
        {
            // The stack takes the first user-name token policy; on a None channel the password is
            // encrypted only when that policy names a security policy of its own.
            let encrypted = ep.find_policy(UserTokenType::UserName).is_some_and(|t| {
                !t.security_policy_uri.is_empty()
                    && !matches!(
                        opcua::crypto::SecurityPolicy::from_uri(t.security_policy_uri.as_ref()),
                        opcua::crypto::SecurityPolicy::None
                            | opcua::crypto::SecurityPolicy::Unknown
                    )
            });
            if !encrypted {
                return Err("the password would travel in clear text: the endpoint's security policy is None and its user-name token policy does not encrypt it; not sent. Use an encrypted endpoint (security_policy/security_mode), or set allow_cleartext_password = true knowingly (isolated networks only)".to_string());
            }
        }
        // Connect where the configuration says: a server behind NAT or a port forward advertises
        // an address the gateway may not reach.
        ep.endpoint_url = self.cfg.endpoint.as_str().into();
        Ok(ep)
    }

    /// Connects, resolves, and (in subscribe mode) subscribes.
    async fn open(&self, client: &Client, notes: Notes) -> Result<Live, String> {
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let endpoints = tokio::time::timeout(
            timeout,
            client.get_server_endpoints_from_url(self.cfg.endpoint.as_str()),
        )
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {} ms",
                self.cfg.endpoint, self.cfg.request_timeout_ms
            )
        })?
        .map_err(|e| format!("cannot reach {}: {e}", self.cfg.endpoint))?;
        let identity = self.identity()?;
        let endpoint = self.pick(&endpoints, &identity)?;
        if self.cfg.security_policy != super::config::SecurityPolicy::None {
            self.pki.adopt_trusted();
            self.pki.apply_pin(
                self.cfg.server_thumbprint.as_deref(),
                endpoint.server_certificate.as_ref(),
            )?;
        }
        let (session, event_loop) = client
            .session_builder()
            .connect_to_endpoint_directly(endpoint.clone())
            .map_err(|e| e.to_string())?
            .user_identity_token(identity)
            .build(client.certificate_store().clone())
            .map_err(|e| e.to_string())?;
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let event_task = tokio::spawn(async move {
            let stream = event_loop.enter();
            tokio::pin!(stream);
            while let Some(ev) = stream.next().await {
                let end = ev.is_err();
                if ev_tx.send(ev).is_err() || end {
                    break;
                }
            }
        });
        // The first event that settles the connect.
        let first = tokio::time::timeout(timeout * 2, async {
            loop {
                match events.recv().await {
                    Some(Ok(SessionPollResult::Reconnected(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(code)) => return Err(code),
                    None => return Err(StatusCode::BadDisconnect),
                }
            }
        })
        .await;
        match first {
            Err(_) => {
                event_task.abort();
                return Err(format!(
                    "no session within {} ms",
                    2 * self.cfg.request_timeout_ms
                ));
            }
            Ok(Err(code)) => {
                event_task.abort();
                return Err(self.explain(code, &endpoint));
            }
            Ok(Ok(())) => {}
        }
        let limits = self.limits(&session).await;
        let mut live = Live {
            session,
            events,
            event_task,
            nodes: Vec::new(),
            limits,
            endpoint,
        };
        let namespaces = self.namespaces(&live.session).await?;
        live.nodes = self
            .resolve(&live.session, &namespaces, limits.translate)
            .await?;
        if self.cfg.mode == ReadMode::Subscribe {
            self.subscribe(&live, notes).await?;
        }
        Ok(live)
    }

    /// A connect failure in words an operator can act on.
    fn explain(&self, code: StatusCode, endpoint: &EndpointDescription) -> String {
        if code == StatusCode::BadCertificateUntrusted
            || code.sub_code() == StatusCode::BadCertificateUntrusted.sub_code()
        {
            if let Some((file, thumb)) =
                self.pki.rejected_file(endpoint.server_certificate.as_ref())
            {
                return format!(
                    "the server's certificate is not trusted (thumbprint {thumb}); it was saved as {file}. To trust it: mv {} {} (or set server_thumbprint = \"{thumb}\")",
                    super::pki::shell_quote(&file.display().to_string()),
                    super::pki::shell_quote(&format!("{}/", self.pki.trusted().display())),
                    file = file.display(),
                );
            }
        }
        if code.sub_code() == StatusCode::BadUserAccessDenied.sub_code()
            || code.sub_code() == StatusCode::BadIdentityTokenRejected.sub_code()
            || code.sub_code() == StatusCode::BadIdentityTokenInvalid.sub_code()
        {
            return format!("the server refused the identity ({code}); check username/password or the user certificate");
        }
        if code.sub_code() == StatusCode::BadSecurityChecksFailed.sub_code()
            || code.sub_code() == StatusCode::BadCertificateInvalid.sub_code()
        {
            return format!(
                "the secure channel was refused ({code}); the server may not trust the agent's certificate {} yet: trust it on the server",
                self.pki.own_cert().display()
            );
        }
        format!("session not established: {code}")
    }

    /// The server's operation limits (0 or unreadable: none), each capped by `items_per_request`.
    async fn limits(&self, session: &Session) -> Limits {
        let ids = [
            VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
        ];
        let reads: Vec<ReadValueId> = ids
            .iter()
            .map(|id| ReadValueId::from(NodeId::from(*id)))
            .collect();
        let cap = self.cfg.items_per_request;
        let values = session
            .read(&reads, TimestampsToReturn::Neither, 0.0)
            .await
            .unwrap_or_default();
        let limit = |i: usize| -> usize {
            let n = values
                .get(i)
                .and_then(|dv| dv.value.as_ref())
                .and_then(|v| match v {
                    Variant::UInt32(n) => Some(*n as usize),
                    Variant::UInt16(n) => Some(usize::from(*n)),
                    Variant::Int32(n) => usize::try_from(*n).ok(),
                    _ => None,
                })
                .unwrap_or(0);
            if n == 0 {
                cap
            } else {
                n.min(cap)
            }
        };
        Limits {
            monitored_items: limit(0),
            read: limit(1),
            translate: limit(2),
        }
    }

    async fn namespaces(&self, session: &Session) -> Result<Vec<String>, String> {
        let read = ReadValueId::from(NodeId::from(VariableId::Server_NamespaceArray));
        let dv = session
            .read(&[read], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| format!("cannot read the namespace array: {e}"))?
            .into_iter()
            .next()
            .ok_or("the server returned no namespace array")?;
        match dv.value {
            Some(Variant::Array(a)) => Ok(a
                .values
                .iter()
                .map(|v| match v {
                    Variant::String(s) => s.value().clone().unwrap_or_default(),
                    _ => String::new(),
                })
                .collect()),
            other => Err(format!(
                "the namespace array is not an array of strings: {other:?}"
            )),
        }
    }

    async fn resolve(
        &self,
        session: &Session,
        namespaces: &[String],
        batch: usize,
    ) -> Result<Vec<Result<NodeId, String>>, String> {
        let mut nodes: Vec<Result<NodeId, String>> = self
            .targets
            .iter()
            .map(|t| match t {
                TagTarget::Node(n) => n.resolve(namespaces),
                TagTarget::Path(_) => Err(String::new()),
            })
            .collect();
        let paths: Vec<(usize, opcua::types::BrowsePath)> = self
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t {
                TagTarget::Path(p) => match p.to_request(namespaces) {
                    Ok(r) => Some((i, r)),
                    Err(e) => {
                        nodes[i] = Err(e);
                        None
                    }
                },
                TagTarget::Node(_) => None,
            })
            .collect();
        for chunk in paths.chunks(batch.max(1)) {
            let req: Vec<_> = chunk.iter().map(|(_, p)| p.clone()).collect();
            let results = session
                .translate_browse_paths_to_node_ids(&req)
                .await
                .map_err(|e| format!("cannot translate browse paths: {e}"))?;
            for ((i, _), r) in chunk.iter().zip(results) {
                nodes[*i] = match r.targets.as_ref().and_then(|t| t.first()) {
                    Some(t) if r.status_code.is_good() => Ok(t.target_id.node_id.clone()),
                    _ => Err(format!("browse path not found ({})", r.status_code)),
                };
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            if let Err(e) = n {
                tracing::warn!(
                    "opcua source {}: tag {} ({}) cannot be resolved: {e}",
                    self.id,
                    self.cfg.tags[i].name,
                    match &self.targets[i] {
                        TagTarget::Node(n) => n.to_string(),
                        TagTarget::Path(p) => p.to_string(),
                    }
                );
            }
        }
        Ok(nodes)
    }

    async fn subscribe(&self, live: &Live, notes: Notes) -> Result<(), String> {
        let keep_alive = self.cfg.keep_alive_count();
        let sub = live
            .session
            .create_subscription(
                Duration::from_millis(self.cfg.publishing_interval_ms),
                keep_alive.saturating_mul(4),
                keep_alive,
                // Notifications per publish response: without a limit a server must fit every
                // changed item of a cycle into one message, and large ones refuse with
                // BadResponseTooLarge; with it they send several responses per cycle.
                u32::try_from(self.cfg.items_per_request).unwrap_or(u32::MAX),
                0,
                true,
                Notifier(notes),
            )
            .await
            .map_err(|e| format!("cannot create the subscription: {e}"))?;
        let items: Vec<(usize, MonitoredItemCreateRequest)> = live
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().ok().map(|n| (i, n)))
            .map(|(i, node)| {
                let t = &self.cfg.tags[i];
                let filter = match t.deadband {
                    Some(d) if d > 0.0 => ExtensionObject::from_message(DataChangeFilter {
                        trigger: DataChangeTrigger::StatusValue,
                        deadband_type: DeadbandType::Absolute as u32,
                        deadband_value: d,
                    }),
                    _ => ExtensionObject::null(),
                };
                (
                    i,
                    MonitoredItemCreateRequest {
                        item_to_monitor: ReadValueId::from(node),
                        monitoring_mode: MonitoringMode::Reporting,
                        requested_parameters: MonitoringParameters {
                            client_handle: handle(i),
                            sampling_interval: t
                                .sampling_interval_ms
                                .unwrap_or(self.cfg.sampling_interval_ms),
                            filter,
                            queue_size: t.queue_size.unwrap_or(self.cfg.queue_size),
                            discard_oldest: true,
                        },
                    },
                )
            })
            .collect();
        let mut failed = 0usize;
        for chunk in items.chunks(live.limits.monitored_items.max(1)) {
            let req: Vec<_> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let results = live
                .session
                .create_monitored_items(sub, TimestampsToReturn::Both, req)
                .await
                .map_err(|e| format!("cannot create monitored items: {e}"))?;
            for ((i, _), r) in chunk.iter().zip(results) {
                if !r.result.status_code.is_good() {
                    failed += 1;
                    tracing::warn!(
                        "opcua source {}: tag {} not monitored: {}",
                        self.id,
                        self.cfg.tags[*i].name,
                        r.result.status_code
                    );
                }
            }
        }
        tracing::debug!(
            "opcua source {}: subscription {sub} with {} monitored items ({failed} refused)",
            self.id,
            items.len()
        );
        Ok(())
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

    async fn poll(&self, live: &Live) -> Result<Vec<(u32, DataValue)>, String> {
        let reads: Vec<(usize, ReadValueId)> = live
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().ok().map(|n| (i, ReadValueId::from(n))))
            .collect();
        let mut out = Vec::with_capacity(reads.len());
        for chunk in reads.chunks(live.limits.read.max(1)) {
            let req: Vec<_> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let values = live
                .session
                .read(&req, TimestampsToReturn::Both, 0.0)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            for ((i, _), dv) in chunk.iter().zip(values) {
                out.push((handle(*i), dv));
            }
        }
        Ok(out)
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

/// Client handle of tag `i` (0 is reserved by the library).
fn handle(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
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
