//! The agent's OPC UA certificates: its own application instance certificate (made on first run,
//! expiry watched), and the explicit trust of server certificates.
//!
//! PKI folder layout (async-opcua's): `own/cert.der`, `private/private.pem` (mode 0600),
//! `trusted/` and `rejected/`. A server certificate that is neither trusted nor pinned is refused;
//! the server's certificate lands in `rejected/<thumbprint>.der` and the log names the file and the command that
//! trusts it. `server_thumbprint` pins one certificate instead: it is accepted (and copied to
//! `trusted/`) when its SHA-1 thumbprint matches, and refused whatever the folders say when not.

use std::path::{Path, PathBuf};

use opcua::crypto::{CertificateStore, X509Data, X509};

use super::config::OpcUaSourceConfig;

/// Why a pinned server certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The server sent no certificate, or one that is not X.509 DER.
    #[error("the server's certificate cannot be read: {0}")]
    Unreadable(String),
    /// Another certificate than the pinned one.
    #[error("the server presents certificate {got}, not the pinned {want}; refusing it (if the server's certificate was renewed on purpose, update server_thumbprint)")]
    Mismatch {
        /// The thumbprint presented.
        got: String,
        /// The thumbprint pinned.
        want: String,
    },
    /// The certificate matched but cannot be stored in `trusted/`.
    #[error("cannot write {}: {error}", .path.display())]
    Store {
        /// The file in `trusted/`.
        path: PathBuf,
        /// The error of the file system.
        error: String,
    },
}

/// How long the agent's certificate has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// More than the warning period: whole days left.
    Valid(i64),
    /// Within the warning period: whole days left (warned about).
    Soon(i64),
    /// Expired: servers will refuse it.
    Expired,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expiry::Valid(d) => write!(f, "valid, {d} days left"),
            Expiry::Soon(d) => write!(f, "EXPIRES in {d} days: renew it"),
            Expiry::Expired => write!(f, "EXPIRED: servers refuse it"),
        }
    }
}

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
    /// warning period (an error once it has expired).
    pub fn ensure_own_certificate(
        &self,
        cfg: &OpcUaSourceConfig,
        application_uri: &str,
        source: &str,
    ) -> Result<Expiry, String> {
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
            // The key file exists, private, before the stack writes the key into it (it keeps the
            // mode of a file it overwrites): the key is never readable by others, not even briefly.
            create_private(&key_path)
                .map_err(|e| format!("cannot create {}: {e}", key_path.display()))?;
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
        let left_days = (not_after - crate::time::now_ms()).div_euclid(86_400_000);
        let expiry = if left_days < 0 {
            Expiry::Expired
        } else if left_days < i64::from(cfg.certificate_expiry_warning_days) {
            Expiry::Soon(left_days)
        } else {
            Expiry::Valid(left_days)
        };
        if expiry == Expiry::Expired {
            tracing::error!(
                "opcua source {source}: the agent's certificate {} has expired; servers will refuse it. Move own/cert.der and private/private.pem away to have a new one made, then trust the new one on the server.",
                cert_path.display()
            );
        } else if let Expiry::Soon(left_days) = expiry {
            tracing::warn!(
                "opcua source {source}: the agent's certificate {} expires in {left_days} days ({}); move own/cert.der and private/private.pem away to have a new one made, then trust the new one on the server.",
                cert_path.display(),
                crate::time::format(crate::time::from_unix_ms(not_after))
            );
        }
        Ok(expiry)
    }

    /// Applies a thumbprint pin to the certificate a server presents: `Ok` when there is no pin or it
    /// matches (the certificate is then put in `trusted/`), `Err` naming both thumbprints otherwise.
    pub fn apply_pin(&self, pin: Option<&str>, der: &[u8]) -> Result<(), PinError> {
        let Some(pin) = pin else { return Ok(()) };
        let cert = X509::from_der(der).map_err(|e| PinError::Unreadable(e.to_string()))?;
        let got = cert.thumbprint().as_hex_string();
        let want = pin.replace([':', ' '], "");
        if !got.eq_ignore_ascii_case(&want) {
            return Err(PinError::Mismatch { got, want });
        }
        let name = CertificateStore::cert_file_name(&cert);
        let _ = std::fs::remove_file(self.rejected().join(&name));
        let trusted = self.trusted().join(&name);
        if !trusted.exists() {
            std::fs::write(&trusted, der).map_err(|e| PinError::Store {
                path: trusted.clone(),
                error: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The file in `rejected/` that holds a refused server certificate, and its thumbprint. The
    /// OPC UA stack saves it under a name made from the certificate's common name, which the server
    /// chose (quotes, `$(…)`, control characters): it is renamed `<thumbprint>.der`, so that the
    /// file and the hint that names it hold hex digits only.
    pub fn rejected_file(&self, der: &[u8]) -> Option<(PathBuf, String)> {
        let cert = X509::from_der(der).ok()?;
        let thumb = cert.thumbprint().as_hex_string();
        let safe = self.rejected().join(format!("{thumb}.der"));
        let stack = self
            .rejected()
            .join(CertificateStore::cert_file_name(&cert));
        if stack != safe && std::fs::rename(&stack, &safe).is_err() && !safe.exists() {
            std::fs::write(&safe, der).ok()?;
        }
        Some((safe, thumb))
    }

    /// Certificates trusted under their thumbprint name (`trusted/<thumbprint>.der`, as the refusal
    /// hint moves them) get the name the OPC UA stack looks them up by. A file whose content does
    /// not have the thumbprint its name says is left alone (and so not trusted).
    pub fn adopt_trusted(&self) {
        let Ok(entries) = std::fs::read_dir(self.trusted()) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".der"))
            else {
                continue;
            };
            if stem.len() != 40 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Some(cert) = std::fs::read(&path)
                .ok()
                .and_then(|der| X509::from_der(&der).ok())
            else {
                continue;
            };
            if !cert.thumbprint().as_hex_string().eq_ignore_ascii_case(stem) {
                tracing::warn!(
                    "{}: its certificate has another thumbprint than its name; not trusted",
                    path.display()
                );
                continue;
            }
            let named = self.trusted().join(CertificateStore::cert_file_name(&cert));
            if named != path {
                if let Err(e) = std::fs::rename(&path, &named) {
                    tracing::warn!(
                        "cannot adopt the trusted certificate {}: {e}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// `s` quoted for a POSIX shell: a hint copied into a terminal runs exactly the command it shows.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// An empty file only its owner may read (mode 0600), in a directory only its owner may enter.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(validity: u32, warning: u32) -> OpcUaSourceConfig {
        let text = format!(
            "endpoint = \"opc.tcp://127.0.0.1:4840\"\nsecurity_policy = \"none\"\nsecurity_mode = \"none\"\ncertificate_validity_days = {validity}\ncertificate_expiry_warning_days = {warning}\ntags = []\n"
        );
        toml::from_str(&text).expect("config")
    }

    #[test]
    fn the_certificate_is_made_once_and_its_expiry_is_watched() {
        let dir = std::env::temp_dir().join(format!("sfa-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = Pki { dir: dir.clone() };
        let first = pki
            .ensure_own_certificate(&cfg(10, 30), "urn:test:agent", "plc")
            .expect("made");
        assert!(
            matches!(first, Expiry::Soon(9) | Expiry::Soon(10)),
            "{first:?}"
        );
        let der = std::fs::read(pki.own_cert()).expect("cert");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(pki.own_key())
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second start keeps the same certificate; with a shorter warning period it is just valid.
        let again = pki
            .ensure_own_certificate(&cfg(730, 5), "urn:test:agent", "plc")
            .expect("kept");
        assert!(
            matches!(again, Expiry::Valid(9) | Expiry::Valid(10)),
            "{again:?}"
        );
        assert_eq!(std::fs::read(pki.own_cert()).expect("cert"), der);
        // A pin names both thumbprints when it does not match, and trusts the certificate when it does.
        let thumb = X509::from_der(&der)
            .expect("x509")
            .thumbprint()
            .as_hex_string();
        let wrong = pki
            .apply_pin(Some(&"0".repeat(40)), &der)
            .expect_err("refused");
        assert_eq!(
            wrong,
            PinError::Mismatch {
                got: thumb.clone(),
                want: "0".repeat(40)
            }
        );
        assert!(wrong.to_string().contains(&thumb), "{wrong}");
        pki.apply_pin(Some(&thumb.to_lowercase()), &der)
            .expect("pinned");
        assert_eq!(std::fs::read_dir(pki.trusted()).expect("dir").count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
