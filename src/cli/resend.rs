//! `replay` and `dead-letters`: requests the running agent acts on, and what sinks refused.

use std::process::ExitCode;

use super::{load_offline, store_of, Cli, CliError, DeadLettersAction};
use crate::audit::resend::{self, RequestError};

/// Asks the agent to send `sink` the records `from..=to` again.
pub(super) fn replay(
    cli: &Cli,
    sink: &str,
    (from, to): (i64, Option<i64>),
    reason: Option<&str>,
) -> Result<ExitCode, CliError> {
    let config = load_offline(cli)?;
    requested(resend::request_replay(&config, sink, from, to, reason))
}

/// Lists dead letters, asks for them to be sent again, or lists the requests made.
pub(super) fn dead_letters(cli: &Cli, action: &DeadLettersAction) -> Result<ExitCode, CliError> {
    let config = load_offline(cli)?;
    match action {
        DeadLettersAction::Retry { sink, seq, reason } => requested(resend::request_retry(
            &config,
            sink.as_deref(),
            *seq,
            reason.as_deref(),
        )),
        DeadLettersAction::List { sink, json } => {
            let letters = store_of(&config)?.dead_letters(sink.as_deref())?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                outp!("{}", resend::render_dead_letters(&letters));
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLettersAction::Requests => {
            let requests = store_of(&config)?.requests(None, false)?;
            outp!("{}", resend::render_requests(&requests));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A request's confirmation, or why it was not made.
fn requested(r: Result<String, RequestError>) -> Result<ExitCode, CliError> {
    match r {
        Ok(message) => {
            out!("{}", message.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Err(RequestError::Invalid(why)) => Err(CliError::Usage(why)),
        Err(e) => Err(CliError::Io(e.to_string())),
    }
}
