//! `validate` and `generate-config`.

use std::process::ExitCode;

use super::{load, Cli, CliError};
use crate::config::LoadOptions;

/// Prints the fully commented reference configuration.
pub(super) fn generate_config() -> Result<ExitCode, CliError> {
    outp!("{}", crate::config::REFERENCE);
    Ok(ExitCode::SUCCESS)
}

/// Checks the configuration (with its secrets when `environment`) and prints every problem.
pub(super) fn validate(cli: &Cli, environment: bool) -> Result<ExitCode, CliError> {
    let c = load(cli, LoadOptions { environment })?;
    out!(
        "{}: configuration is valid ({} file(s), {} source(s), {} rule(s), {} sink(s), config sha256 {})",
        cli.config.display(),
        c.files.len(),
        c.sources.len(),
        c.records.len(),
        c.sinks.len(),
        c.sha256
    );
    Ok(ExitCode::SUCCESS)
}
