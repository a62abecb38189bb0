//! What the NATS sink and `fleet verify` share to reach a NATS server: authentication and TLS on
//! async-nats's connect options.

use std::path::Path;

use async_nats::ConnectOptions;

/// One way to authenticate, and TLS (all optional; at most one authentication is set).
#[derive(Debug, Default, Clone, Copy)]
pub struct NatsAuth<'a> {
    /// User name and password.
    pub user: Option<(&'a str, &'a str)>,
    /// Token.
    pub token: Option<&'a str>,
    /// A user NKey seed (`SU…`).
    pub nkey_seed: Option<&'a str>,
    /// A `.creds` file (user JWT and seed).
    pub credentials_file: Option<&'a Path>,
    /// CA file of the servers' certificates (TLS required when set), and a client certificate
    /// and key for mutual TLS.
    pub tls: Option<(&'a Path, Option<(&'a Path, &'a Path)>)>,
}

/// `opts` with `auth` applied; `Err` names a `.creds` file that cannot be used.
pub async fn with_auth(
    mut opts: ConnectOptions,
    auth: NatsAuth<'_>,
) -> Result<ConnectOptions, String> {
    if let Some((user, password)) = auth.user {
        opts = opts.user_and_password(user.to_string(), password.to_string());
    }
    if let Some(token) = auth.token {
        opts = opts.token(token.to_string());
    }
    if let Some(seed) = auth.nkey_seed {
        opts = opts.nkey(seed.trim().to_string());
    }
    if let Some(path) = auth.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot use the .creds file {}: {e}", path.display()))?;
    }
    if let Some((ca, client)) = auth.tls {
        super::install_crypto_provider();
        opts = opts
            .require_tls(true)
            .add_root_certificates(ca.to_path_buf());
        if let Some((cert, key)) = client {
            opts = opts.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
        }
    }
    Ok(opts)
}
