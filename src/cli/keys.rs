//! `public-key`: the gateway's Ed25519 public key, for `verify --public-key` elsewhere.

use std::process::ExitCode;

use super::{load_offline, Cli, CliError};
use crate::journal::signing::{self, Signer};

/// Prints the key, or says where it would be and when it is made.
pub(super) fn public_key(cli: &Cli) -> Result<ExitCode, CliError> {
    let config = load_offline(cli)?;
    match Signer::load(&config.agent.data_dir) {
        Ok(Some(signer)) => {
            out!("{}", signer.public_key_hex());
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => Err(CliError::Io(format!(
            "no signing key in {}: it is made on the first run with journal.sign = true",
            config.agent.data_dir.join(signing::KEY_FILE).display()
        ))),
        Err(e) => Err(CliError::Io(e.to_string())),
    }
}
