//! Opening a session: the server's endpoints, the one with exactly the configured policy and mode
//! (never a weaker one), the identity, the server certificate (trust list or pin), the session, the
//! `NamespaceArray`, every tag resolved against it (`nsu=` node ids and browse paths), and the
//! server's operation limits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use opcua::client::{Client, ClientBuilder, IdentityToken, Password, Session, SessionPollResult};
use opcua::crypto::CertificateStore;
use opcua::types::{
    EndpointDescription, MessageSecurityMode, NodeId, ReadValueId, StatusCode, TimestampsToReturn,
    UserTokenType, VariableId, Variant,
};
use tokio::sync::mpsc;

use super::config::{ReadMode, SecurityMode, TagTarget};
use super::source::OpcUaSource;
use super::subscription::Notes;

/// The shortest session timeout the agent asks for (ms): see `client()`.
pub(super) const SESSION_TIMEOUT_MS: u128 = 30_000;

/// Items per call the server accepts (its `OperationLimits`), capped by `items_per_request`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) monitored_items: usize,
    pub(super) read: usize,
    pub(super) translate: usize,
}

/// A session that is up: the session, its event loop task and the resolved tags.
pub(super) struct Live {
    pub(super) session: Arc<Session>,
    pub(super) events: mpsc::UnboundedReceiver<Result<SessionPollResult, StatusCode>>,
    pub(super) event_task: tokio::task::JoinHandle<()>,
    /// Per tag: the node id of today's session, or why it could not be resolved.
    pub(super) nodes: Vec<Result<NodeId, String>>,
    /// Batch sizes: the configured `items_per_request`, lowered to the server's operation limits.
    pub(super) limits: Limits,
    pub(super) endpoint: EndpointDescription,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.event_task.abort();
    }
}

impl OpcUaSource {
    pub(super) fn client(&self) -> Result<Client, String> {
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

    pub(super) fn identity(&self) -> Result<IdentityToken, String> {
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

    pub(super) fn mode(&self) -> MessageSecurityMode {
        match self.cfg.security_mode {
            SecurityMode::None => MessageSecurityMode::None,
            SecurityMode::Sign => MessageSecurityMode::Sign,
            SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        }
    }

    /// Picks the endpoint with exactly the configured policy and mode.
    pub(super) fn pick(
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
    pub(super) async fn open(&self, client: &Client, notes: Notes) -> Result<Live, String> {
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
            self.pki
                .apply_pin(
                    self.cfg.server_thumbprint.as_deref(),
                    endpoint.server_certificate.as_ref(),
                )
                .map_err(|e| e.to_string())?;
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
    pub(super) fn explain(&self, code: StatusCode, endpoint: &EndpointDescription) -> String {
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
    pub(super) async fn limits(&self, session: &Session) -> Limits {
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

    pub(super) async fn namespaces(&self, session: &Session) -> Result<Vec<String>, String> {
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

    pub(super) async fn resolve(
        &self,
        session: &Session,
        namespaces: &[String],
        batch: usize,
    ) -> Result<Vec<Result<NodeId, String>>, String> {
        let mut nodes: Vec<Result<NodeId, String>> = self
            .targets
            .iter()
            .map(|t| match t {
                TagTarget::Node(n) => n.resolve(namespaces).map_err(|e| e.to_string()),
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
                        nodes[i] = Err(e.to_string());
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
}
