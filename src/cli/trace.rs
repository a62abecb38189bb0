//! `trace`: one part's, lot's, work order's or gauge's thread through the journal.

use std::process::ExitCode;

use super::{load_offline, store_of, Cli, CliError};
use crate::audit::trace::Query;

/// `(serial, lot, work_order)` and `gauge`: clap requires exactly one of the four.
pub(super) fn trace(
    cli: &Cli,
    (serial, lot, work_order): (Option<&str>, Option<&str>, Option<&str>),
    gauge: Option<&str>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let query = match (serial, lot, work_order, gauge) {
        (Some(s), ..) => Query::Serial(s.to_string()),
        (_, Some(l), ..) => Query::Lot(l.to_string()),
        (_, _, Some(w), _) => Query::WorkOrder(w.to_string()),
        (.., Some(g)) => Query::Gauge(g.to_string()),
        _ => {
            return Err(CliError::Usage(
                "give one of --serial, --lot, --work-order or --gauge".into(),
            ))
        }
    };
    let store = store_of(&load_offline(cli)?)?;
    let trace = crate::audit::trace::trace(&store, &query)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        outp!("{}", trace.render());
    }
    Ok(ExitCode::SUCCESS)
}
