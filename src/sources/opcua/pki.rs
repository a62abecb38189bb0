//! The agent's OPC UA certificates: its own application instance certificate (made on first run,
//! expiry watched), and the explicit trust of server certificates.
//!
//! PKI folder layout (async-opcua's): `own/cert.der`, `private/private.pem` (mode 0600),
//! `trusted/` and `rejected/`. A server certificate that is neither trusted nor pinned is refused;
//! the server's certificate lands in `rejected/` and the log names the file and the command that
//! trusts it. `server_thumbprint` pins one certificate instead: it is accepted (and copied to
//! `trusted/`) when its SHA-1 thumbprint matches, and refused whatever the folders say when not.

use std::path::{Path, PathBuf};

use opcua::crypto::{CertificateStore, X509Data, X509};

use super::config::OpcUaSourceConfig;

/// Paths of the PKI folder.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The folder.
    pub dir: PathBuf,
}

impl Pki {
    /// The agent's certificate.
    pub fn own_cert(&self) -> PathBuf {
        self.dir.join("own/cert.der")
    }
    /// Its private key.
    pub fn own_key(&self) -> PathBuf {
        self.dir.join("private/private.pem")
    }
    /// Trusted server certificates.
    pub fn trusted(&self) -> PathBuf {
        self.dir.join("trusted")
    }
    /// Refused server certificates, waiting for an administrator.
    pub fn rejected(&self) -> PathBuf {
        self.dir.join("rejected")
    }

    /// Makes the agent's certificate if there is none; warns when it expires within the configured
    /// warning period. Returns the certificate's expiry (Unix ms).
    pub fn ensure_own_certificate(
        &self,
        cfg: &OpcUaSourceConfig,
        application_uri: &str,
        source: &str,
    ) -> Result<i64, String> {
        for d in [self.trusted(), self.rejected()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let (cert_path, key_path) = (self.own_cert(), self.own_key());
        let cert = if cert_path.exists() && key_path.exists() {
            CertificateStore::read_cert(&cert_path)?
        } else {
            let mut alt = vec!["127.0.0.1".to_string()];
            alt.extend(X509Data::computer_hostnames());
            let data = X509Data {
                key_size: 2048,
                common_name: cfg.certificate_subject.clone(),
                organization: cfg.certificate_organization.clone().unwrap_or_default(),
                organizational_unit: String::new(),
                country: String::new(),
                state: String::new(),
                alt_host_names: X509Data::alt_host_names(
                    application_uri,
                    Some(alt),
                    false,
                    false,
                    false,
                ),
                certificate_duration_days: cfg.certificate_validity_days,
            };
            let (cert, _) =
                CertificateStore::create_certificate_and_key(&data, true, &cert_path, &key_path)?;
            restrict(&key_path);
            tracing::info!(
                "opcua source {source}: created the agent's application certificate {} (application URI {application_uri}, valid {} days, thumbprint {}); servers must trust it",
                cert_path.display(),
                cfg.certificate_validity_days,
                cert.thumbprint().as_hex_string()
            );
            cert
        };
        let not_after = cert
            .not_after()
            .map_err(|e| format!("{}: cannot read its expiry: {e}", cert_path.display()))?
            .timestamp_millis();
        let left_days = (not_after - crate::time::now_ms()) / 86_400_000;
        if left_days < 0 {
            tracing::error!(
                "opcua source {source}: the agent's certificate {} has expired; servers will refuse it. Move own/cert.der and private/private.pem away to have a new one made, then trust the new one on the server.",
                cert_path.display()
            );
        } else if left_days < i64::from(cfg.certificate_expiry_warning_days) {
            tracing::warn!(
                "opcua source {source}: the agent's certificate {} expires in {left_days} days ({}); move own/cert.der and private/private.pem away to have a new one made, then trust the new one on the server.",
                cert_path.display(),
                crate::time::format(crate::time::from_unix_ms(not_after))
            );
        }
        Ok(not_after)
    }

    /// Applies a thumbprint pin to the certificate a server presents: `Ok` when there is no pin or it
    /// matches (the certificate is then put in `trusted/`), `Err` naming both thumbprints otherwise.
    pub fn apply_pin(&self, pin: Option<&str>, der: &[u8]) -> Result<(), String> {
        let Some(pin) = pin else { return Ok(()) };
        let cert = X509::from_der(der)
            .map_err(|e| format!("the server's certificate cannot be read: {e}"))?;
        let got = cert.thumbprint().as_hex_string();
        let want = pin.replace([':', ' '], "");
        if !got.eq_ignore_ascii_case(&want) {
            return Err(format!(
                "the server presents certificate {got}, not the pinned {want}; refusing it (if the server's certificate was renewed on purpose, update server_thumbprint)"
            ));
        }
        let name = CertificateStore::cert_file_name(&cert);
        let _ = std::fs::remove_file(self.rejected().join(&name));
        let trusted = self.trusted().join(&name);
        if !trusted.exists() {
            std::fs::write(&trusted, der)
                .map_err(|e| format!("cannot write {}: {e}", trusted.display()))?;
        }
        Ok(())
    }

    /// The file in `rejected/` that a refused server certificate was written to, and its thumbprint.
    pub fn rejected_file(&self, der: &[u8]) -> Option<(PathBuf, String)> {
        let cert = X509::from_der(der).ok()?;
        Some((
            self.rejected()
                .join(CertificateStore::cert_file_name(&cert)),
            cert.thumbprint().as_hex_string(),
        ))
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(
            "cannot make {} readable by its owner only: {e}",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn restrict(_: &Path) {}
