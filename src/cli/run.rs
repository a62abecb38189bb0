//! `run`: the agent itself.

use std::process::ExitCode;

use anyhow::Context;

use super::{load, Cli, CliError, LogFormatArg};
use crate::config::{Config, LoadOptions, LogFormat};
use crate::runtime::{lock::LockError, logging, topology};

/// Runs the agent until SIGTERM or SIGINT; reloads on SIGHUP.
pub(super) fn run(cli: &Cli) -> Result<ExitCode, CliError> {
    let config = load(cli, LoadOptions::default())?;
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    logging::init(format, &config.log.level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reload = || Config::load(&cli.config, LoadOptions::default());
    let failed = match rt.block_on(topology::run(config, reload)) {
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(topology::StartError::Journal(e)) => CliError::Io(e.to_string()),
        Err(topology::StartError::Locked(e)) => match e {
            LockError::Held { .. } => CliError::Locked(e.to_string()),
            LockError::Io { .. } => CliError::Io(e.to_string()),
        },
        Err(e) => CliError::Start(e.to_string()),
    };
    // In the log too: under systemd, stderr before the log is set up may be all anyone reads.
    if let CliError::Io(m) | CliError::Locked(m) | CliError::Start(m) = &failed {
        tracing::error!("{m}");
    }
    Err(failed)
}
