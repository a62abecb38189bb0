//! `export`: an evidence package of the records journaled in a time range.

use std::path::Path;
use std::process::ExitCode;

use super::{load_offline, store_of, Cli, CliError};
use crate::audit::export::{export as write_package, ExportQuery};

/// Writes the package to `out` and prints the segment's last hash.
pub(super) fn export(
    cli: &Cli,
    (from, to): (&str, &str),
    work_order: Option<&str>,
    out: &Path,
) -> Result<ExitCode, CliError> {
    let (Some(from_t), Some(to_t)) = (crate::time::parse(from), crate::time::parse(to)) else {
        return Err(CliError::Usage(format!(
            "--from and --to take RFC 3339 times, e.g. 2026-06-01T00:00:00Z (got {from} and {to})"
        )));
    };
    let store = store_of(&load_offline(cli)?)?;
    let query = ExportQuery {
        from: from_t,
        to: to_t,
        work_order: work_order.map(str::to_string),
    };
    let e = write_package(&store, &query, out).map_err(|e| CliError::Io(e.to_string()))?;
    out!(
        "package {}: {} records (seq {}..{}), {} gap(s), {} configuration(s); chain ends at hash {}\ncheck it anywhere with: shopfloor-agent verify --package {}",
        e.dir.display(),
        e.records,
        e.first_seq,
        e.last_seq,
        e.gaps,
        e.configs,
        e.last_hash,
        e.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
