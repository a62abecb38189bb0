//! `fleet verify`: every gateway's chain as the fleet's stream holds it (`audit::fleet`).

use std::process::ExitCode;

use super::args::FleetAction;
use super::CliError;
use crate::audit::fleet::{self, FleetCheck};

/// Runs a `fleet` subcommand.
pub(super) fn fleet(action: &FleetAction) -> Result<ExitCode, CliError> {
    let FleetAction::Verify {
        nats,
        stream,
        json,
        public_keys,
        creds,
        user,
        password,
        token,
        ca_file,
    } = action;
    let keys = match public_keys {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
            fleet::read_keys(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => Default::default(),
    };
    if password.is_some() && user.is_none() {
        return Err(CliError::Usage(
            "NATS_PASSWORD is set but --user is not".into(),
        ));
    }
    let target = fleet::nats::NatsTarget {
        url: nats.clone(),
        stream: stream.clone(),
        credentials_file: creds.clone(),
        user: user
            .as_ref()
            .map(|u| (u.clone(), password.clone().unwrap_or_default())),
        token: token.clone(),
        ca_file: ca_file.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let report = rt
        .block_on(fleet::nats::verify(&target, FleetCheck::new(keys)))
        .map_err(CliError::Unavailable)?;
    if *json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outp!("{}", report.render());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
