//! A throw-away CA with a server certificate for 127.0.0.1 and a client certificate, as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

/// PEM files of a test PKI.
pub struct TestPki {
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Creates the CA and both leaf certificates under `dir`.
    pub fn create(dir: &Path) -> TestPki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "shopfloor test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");

        let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("key");
        let server_cert = server.signed_by(&server_key, &ca).expect("server cert");

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, "gw-test");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("key");
        let client_cert = client.signed_by(&client_key, &ca).expect("client cert");

        let pki = TestPki {
            ca_file: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&pki.ca_file, ca.pem()).expect("write");
        std::fs::write(&pki.server_cert, server_cert.pem()).expect("write");
        std::fs::write(&pki.server_key, server_key.serialize_pem()).expect("write");
        std::fs::write(&pki.client_cert, client_cert.pem()).expect("write");
        std::fs::write(&pki.client_key, client_key.serialize_pem()).expect("write");
        pki
    }

    /// A rustls server config; with `require_client_cert`, clients must present a cert of this CA.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(&self.server_key).expect("key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&self.ca_file).expect("ca") {
                roots.add(c.expect("ca cert")).expect("add");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(certs, key).expect("server config"))
    }
}

/// Serves `app` on `listener` (TLS when `tls` is given) until `stopped` turns true, dropping open
/// connections then.
pub fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = stopped.wait_for(|s| *s) => break,
            };
            let app = app.clone();
            let acceptor = acceptor.clone();
            let mut stop_conn = stopped.clone();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        let Ok(tls) = a.accept(tcp).await else { return };
                        let conn =
                            http.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                        tokio::select! { _ = conn => {}, _ = stop_conn.wait_for(|s| *s) => {} }
                    }
                    None => {
                        let conn =
                            http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                        tokio::select! { _ = conn => {}, _ = stop_conn.wait_for(|s| *s) => {} }
                    }
                }
            });
        }
    });
}
