//! `status` and `status --by` (reconciliation).

use std::process::ExitCode;

use super::{load_offline, store_of, Cli, CliError, ReconcileBy};
use crate::audit;

/// The agent's state from its journal: running or not, sources, sinks, backlog, health.
pub(super) fn status(cli: &Cli, json: bool) -> Result<ExitCode, CliError> {
    let config = load_offline(cli)?;
    let s = audit::status::collect(&config).map_err(|e| CliError::Io(e.to_string()))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        outp!("{}", s.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// Records made against records delivered, by work order or by day.
pub(super) fn reconcile(cli: &Cli, json: bool, by: ReconcileBy) -> Result<ExitCode, CliError> {
    let store = store_of(&load_offline(cli)?)?;
    let by = match by {
        ReconcileBy::WorkOrder => audit::reconcile::By::WorkOrder,
        ReconcileBy::Day => audit::reconcile::By::Day,
    };
    let all = audit::reconcile::reconcile(&store, by)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        outp!("{}", audit::reconcile::render(&all, by));
    }
    Ok(ExitCode::SUCCESS)
}
