//! How a command fails, and the exit code of each failure (sysexits where one fits). The one place
//! outcomes become exit codes: `main` prints the error and exits with [`CliError::exit_code`].

use std::process::ExitCode;

use crate::config::ConfigErrors;

/// sysexits: usage error (a bad `--from`, a bad `--public-key`, an invalid request).
pub const EX_USAGE: u8 = 64;
/// sysexits: I/O error (the journal or a file cannot be opened, read or written).
pub const EX_IOERR: u8 = 74;
/// sysexits `EX_UNAVAILABLE`: a service the command needs cannot be reached.
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits: temporary failure (another agent holds the data directory).
pub const EX_TEMPFAIL: u8 = 75;
/// sysexits: configuration error.
pub const EX_CONFIG: u8 = 78;

/// Why a command did not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration does not load; printed as `<file>: <every problem>`.
    #[error("{file}: {errors}")]
    Config {
        /// The main configuration file.
        file: String,
        /// Every problem found.
        errors: ConfigErrors,
    },
    /// A usage mistake the argument parser cannot see.
    #[error("error: {0}")]
    Usage(String),
    /// The journal, a key or a package cannot be read or written.
    #[error("error: {0}")]
    Io(String),
    /// Another agent holds the data directory.
    #[error("error: {0}")]
    Locked(String),
    /// A peer the command reads from cannot be reached (`fleet verify`'s stream).
    #[error("error: {0}")]
    Unavailable(String),
    /// The configuration loaded but could not be started.
    #[error("error: {0}")]
    Start(String),
    /// The reader of the output went away (`export … | head -1`): nothing more to say.
    #[error("the reader of the output went away")]
    BrokenPipe,
    /// Anything else.
    #[error("error: {0:#}")]
    Other(anyhow::Error),
}

impl CliError {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config { .. } | CliError::Start(_) => ExitCode::from(EX_CONFIG),
            CliError::Usage(_) => ExitCode::from(EX_USAGE),
            CliError::Io(_) => ExitCode::from(EX_IOERR),
            CliError::Locked(_) => ExitCode::from(EX_TEMPFAIL),
            CliError::Unavailable(_) => ExitCode::from(EX_UNAVAILABLE),
            CliError::BrokenPipe => ExitCode::SUCCESS,
            CliError::Other(_) => ExitCode::FAILURE,
        }
    }

    /// Prints the error on stderr (nothing for a reader that went away).
    pub fn report(&self) {
        if !matches!(self, CliError::BrokenPipe) {
            eprintln!("{self}");
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            CliError::BrokenPipe
        } else {
            CliError::Other(e)
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        anyhow::Error::from(e).into()
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> CliError {
        CliError::Other(e.into())
    }
}

impl From<crate::journal::JournalError> for CliError {
    fn from(e: crate::journal::JournalError) -> CliError {
        CliError::Other(e.into())
    }
}
