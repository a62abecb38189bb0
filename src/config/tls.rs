//! `tls = { ca_file, client_cert_file, client_key_file }` of the stream sinks (NATS, Kafka): the
//! PEM files, checked, made absolute, and handed to a client as paths.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// TLS to a peer (required when set), with a client certificate for mutual TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file of the CA(s) that signed the peers' certificates.
    pub ca_file: PathBuf,
    /// PEM client certificate for mutual TLS; needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Adds a problem when only one of the client certificate and key is given.
    pub fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            errors.push(ConfigError::new(
                format!("{at}.tls.client_cert_file"),
                "client_cert_file and client_key_file go together",
            ));
        }
    }

    /// Makes the paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let files = [
            Some(&mut self.ca_file),
            self.client_cert_file.as_mut(),
            self.client_key_file.as_mut(),
        ];
        for p in files.into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The CA file, and the client certificate and key when both are given.
    pub fn paths(&self) -> (&Path, Option<(&Path, &Path)>) {
        let client = self
            .client_cert_file
            .as_deref()
            .zip(self.client_key_file.as_deref());
        (&self.ca_file, client)
    }

    /// Fails naming the first file that cannot be read (at build time, not at the first
    /// connection).
    pub fn readable(&self) -> Result<(), String> {
        let files = [
            Some(&self.ca_file),
            self.client_cert_file.as_ref(),
            self.client_key_file.as_ref(),
        ];
        for f in files.into_iter().flatten() {
            std::fs::metadata(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        }
        Ok(())
    }
}
