//! An in-process OPC UA server (async-opcua) shaped like a machining cell: namespace
//! `urn:example:cell1`, folder `Cell1/Station10` with PartSerial, PartComplete, MeasuredDiameter,
//! GaugeId and WorkOrder. Endpoints None and Basic256Sha256/Aes128/Aes256 with Sign and
//! SignAndEncrypt; identities anonymous (optional) and `operator`/`operator123`. Its own PKI folder
//! per test; it can stop and start again on the same port with the same certificate, optionally
//! with another namespace registered first (so `urn:example:cell1` gets another index).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opcua::crypto::{CertificateStore, SecurityPolicy, X509Data};
use opcua::server::address_space::Variable;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{DataValue, MessageSecurityMode, NodeId, QualifiedName, StatusCode, Variant};

/// The cell's namespace URI.
pub const NS: &str = "urn:example:cell1";
/// A namespace the server can register before [`NS`] to shift its index.
pub const OTHER_NS: &str = "urn:example:other";
/// The password of user `operator`.
pub const PASSWORD: &str = "operator123";

/// The variables of Station10 and their initial values.
fn variables() -> Vec<(&'static str, Variant)> {
    vec![
        ("PartSerial", Variant::from("SN-000000")),
        ("PartComplete", Variant::Boolean(false)),
        ("MeasuredDiameter", Variant::Double(25.0)),
        ("GaugeId", Variant::from("G-17")),
        ("WorkOrder", Variant::from("WO-1001")),
    ]
}

/// How the server starts.
#[derive(Clone)]
pub struct Options {
    /// Accept anonymous sessions.
    pub anonymous: bool,
    /// Register [`OTHER_NS`] before [`NS`].
    pub shifted: bool,
    /// Offer only the None endpoint.
    pub none_only: bool,
    /// The common name of the server's certificate (made on the first start).
    pub common_name: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            anonymous: true,
            shifted: false,
            none_only: false,
            common_name: "cell1 test server".into(),
        }
    }
}

/// A running server.
pub struct Cell {
    /// `opc.tcp://127.0.0.1:<port>/cell1`
    pub url: String,
    /// Its port (kept across restarts).
    pub port: u16,
    /// Its PKI folder.
    pub pki: PathBuf,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<()>,
}

fn ensure_server_cert(pki: &Path, common_name: &str) {
    let cert = pki.join("own/cert.der");
    if cert.exists() {
        return;
    }
    let data = X509Data {
        key_size: 2048,
        common_name: common_name.into(),
        organization: "test".into(),
        organizational_unit: String::new(),
        country: String::new(),
        state: String::new(),
        alt_host_names: X509Data::alt_host_names(
            "urn:example:cell1:test-server",
            Some(vec!["127.0.0.1".into(), "localhost".into()]),
            false,
            false,
            false,
        ),
        certificate_duration_days: 30,
    };
    CertificateStore::create_certificate_and_key(
        &data,
        true,
        &cert,
        &pki.join("private/private.pem"),
    )
    .expect("server certificate");
}

/// The X.509 user the server accepts: (certificate, key), made on first use beside the server's PKI.
pub fn user_certificate(pki: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        pki.join("users/inspector.der"),
        pki.join("users/inspector.pem"),
    );
    if !cert.exists() {
        let data = X509Data {
            key_size: 2048,
            common_name: "inspector".into(),
            organization: "test".into(),
            organizational_unit: String::new(),
            country: String::new(),
            state: String::new(),
            alt_host_names: X509Data::alt_host_names(
                "urn:test:inspector",
                None,
                false,
                false,
                false,
            ),
            certificate_duration_days: 30,
        };
        CertificateStore::create_certificate_and_key(&data, true, &cert, &key)
            .expect("user certificate");
    }
    (cert, key)
}

impl Cell {
    /// Starts on a free port with a new PKI folder under `dir`.
    pub async fn start(dir: &Path, options: Options) -> Cell {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        Cell::run(dir.join("server-pki"), port, listener, options)
    }

    /// Starts on `port` (the demo's fixed address; 0: any free port, taken by the bound listener
    /// itself, so no other process can take it first) with its PKI folder under `dir`.
    pub async fn start_on(dir: &Path, port: u16, options: Options) -> std::io::Result<Cell> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        Ok(Cell::run(dir.join("server-pki"), port, listener, options))
    }

    /// SHA-1 thumbprint (hex) of the server's certificate, for `server_thumbprint`.
    pub fn thumbprint(&self) -> String {
        CertificateStore::read_cert(&self.pki.join("own/cert.der"))
            .expect("server certificate")
            .thumbprint()
            .as_hex_string()
    }

    /// Stops the server (connections drop) and waits until its task ended.
    pub async fn stop(self) -> (PathBuf, u16) {
        self.handle.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
        (self.pki, self.port)
    }

    /// Starts again on the same port with the same certificate.
    pub async fn restart(self, options: Options) -> Cell {
        let (pki, port) = self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {port}: {e}"),
            }
        };
        Cell::run(pki, port, listener, options)
    }

    fn run(pki: PathBuf, port: u16, listener: tokio::net::TcpListener, options: Options) -> Cell {
        ensure_server_cert(&pki, &options.common_name);
        let mut tokens: Vec<&str> = vec!["operator", "inspector-x509"];
        if options.anonymous {
            tokens.push(ANONYMOUS_USER_TOKEN_ID);
        }
        let mut builder = ServerBuilder::new()
            .application_name("cell1 test server")
            .application_uri("urn:example:cell1:test-server")
            .product_uri("urn:example:cell1:test-server")
            .create_sample_keypair(false)
            .pki_dir(&pki)
            .certificate_path("own/cert.der")
            .private_key_path("private/private.pem")
            .trust_client_certs(true)
            .host("127.0.0.1")
            .port(port)
            .discovery_urls(vec!["/cell1".to_owned()])
            .add_user_token("operator", ServerUserToken::user_pass("operator", PASSWORD))
            .add_user_token(
                "inspector-x509",
                ServerUserToken::x509("inspector", &user_certificate(&pki).0),
            );
        for (id, policy, mode) in [
            ("none", SecurityPolicy::None, MessageSecurityMode::None),
            (
                "b256_sign",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::Sign,
            ),
            (
                "b256_se",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
            ),
            (
                "aes128_se",
                SecurityPolicy::Aes128Sha256RsaOaep,
                MessageSecurityMode::SignAndEncrypt,
            ),
            (
                "aes256_se",
                SecurityPolicy::Aes256Sha256RsaPss,
                MessageSecurityMode::SignAndEncrypt,
            ),
        ] {
            if options.none_only && id != "none" {
                continue;
            }
            builder = builder.add_endpoint(id, ("/cell1", policy, mode, &tokens as &[&str]));
        }
        if options.shifted {
            builder = builder.with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: OTHER_NS.to_string(),
                    ..Default::default()
                },
                "other",
            ));
        }
        builder = builder.with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NS.to_string(),
                ..Default::default()
            },
            "cell1",
        ));
        let (server, handle) = builder.build().expect("server");
        let task = tokio::spawn(async move {
            if let Err(e) = server.run_with(listener).await {
                eprintln!("test OPC UA server: {e}");
            }
        });
        let cell = Cell {
            url: format!("opc.tcp://127.0.0.1:{port}/cell1"),
            port,
            pki,
            handle,
            task,
        };
        cell.populate();
        cell
    }

    fn manager(&self) -> Arc<SimpleNodeManager> {
        self.handle
            .node_managers()
            .get_by_name::<SimpleNodeManager>("cell1")
            .expect("cell1 node manager")
    }

    fn ns(&self) -> u16 {
        self.handle
            .get_namespace_index(NS)
            .expect("namespace index")
    }

    /// The node id of a Station10 variable today.
    pub fn node(&self, name: &str) -> NodeId {
        NodeId::new(self.ns(), format!("Cell1.Station10.{name}"))
    }

    fn populate(&self) {
        let ns = self.ns();
        let nm = self.manager();
        let mut space = nm.address_space().write();
        let cell = NodeId::new(ns, "Cell1");
        let station = NodeId::new(ns, "Cell1.Station10");
        space.add_folder(
            &cell,
            QualifiedName::new(ns, "Cell1"),
            "Cell1",
            &NodeId::objects_folder_id(),
        );
        space.add_folder(
            &station,
            QualifiedName::new(ns, "Station10"),
            "Station10",
            &cell,
        );
        let vars = variables()
            .into_iter()
            .map(|(name, v)| {
                Variable::new(
                    &NodeId::new(ns, format!("Cell1.Station10.{name}")),
                    QualifiedName::new(ns, name),
                    name,
                    v,
                )
            })
            .collect();
        space.add_variables(vars, &station);
    }

    /// Sets a variable (subscribers are notified).
    pub fn set(&self, name: &str, value: impl Into<Variant>) {
        let nm = self.manager();
        nm.set_value(
            self.handle.subscriptions(),
            &self.node(name),
            None,
            DataValue::new_now(value.into()),
        )
        .expect("set value");
    }

    /// Sets a variable to a bad status.
    pub fn set_bad(&self, name: &str, status: StatusCode) {
        let nm = self.manager();
        let mut dv = DataValue::new_now(Variant::Empty);
        dv.status = Some(status);
        nm.set_value(self.handle.subscriptions(), &self.node(name), None, dv)
            .expect("set status");
    }

    /// Makes one part: measurements first, then the PartComplete pulse.
    pub async fn part(&self, serial: &str, diameter: f64) {
        self.set("PartSerial", serial);
        self.set("MeasuredDiameter", diameter);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        self.set("PartComplete", true);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.set("PartComplete", false);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
}
