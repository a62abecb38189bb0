//! `verify`: the journal's chain on the gateway, or an evidence package anywhere.

use std::path::Path;
use std::process::ExitCode;

use super::{load_offline, store_of, Cli, CliError};
use crate::audit;
use crate::journal::signing::{self, Signer};

/// A `--public-key` that is not an Ed25519 key in hex is a usage error.
fn check_public_key(public_key: Option<&str>) -> Result<(), CliError> {
    match public_key.filter(|k| !signing::is_public_key_hex(k)) {
        Some(bad) => Err(CliError::Usage(format!(
            "--public-key takes the 64 hex digits `public-key` prints (got {bad})"
        ))),
        None => Ok(()),
    }
}

/// Checks the package in `dir` against its manifest, chain and configurations.
pub(super) fn package(
    dir: &Path,
    json: bool,
    public_key: Option<&str>,
) -> Result<ExitCode, CliError> {
    check_public_key(public_key)?;
    let report = audit::package::verify_package(dir, public_key);
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outp!("{}", report.render(dir));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Walks the configured journal's chain; signatures are checked with `public_key`, else with the
/// gateway's own key file when there is one.
pub(super) fn journal(
    cli: &Cli,
    json: bool,
    public_key: Option<&str>,
) -> Result<ExitCode, CliError> {
    check_public_key(public_key)?;
    let config = load_offline(cli)?;
    let store = store_of(&config)?;
    let own_key = Signer::load(&config.agent.data_dir)
        .ok()
        .flatten()
        .map(|s| s.public_key_hex());
    let key = public_key.map(str::to_string).or(own_key);
    let report = audit::verify::verify_signed(&store, key.as_deref())?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match &report.problem {
            None => out!(
                "journal {}: chain verified, {} records (seq {}..{}){}, head {}{}",
                store.path().display(),
                report.checked,
                report.first_seq.unwrap_or(0),
                report.last_seq.unwrap_or(0),
                report
                    .checkpoint
                    .as_ref()
                    .map(|(s, _)| format!(", from retention checkpoint at seq {s}"))
                    .unwrap_or_default(),
                report.head_hash,
                match (&report.signatures_checked_with, report.signed) {
                    (_, 0) => String::new(),
                    (Some(k), n) => format!("\n{n} signatures verified with public key {k}"),
                    (None, n) => format!(
                        "\n{n} signed records NOT checked: no public key (give --public-key)"
                    ),
                }
            ),
            Some(p) => out!(
                "journal {}: CHAIN BROKEN at seq {}: {} ({} records before it verified)",
                store.path().display(),
                p.seq,
                p.what,
                report.checked
            ),
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
