//! The command line: the arguments ([`args`]), one file per command, each returning
//! `Result<ExitCode, CliError>`, and the exit code of every failure, mapped once ([`error`]).
//!
//! | command | file |
//! |---|---|
//! | `run` | `run.rs` |
//! | `validate`, `generate-config` | `validate.rs` |
//! | `status` (and `status --by`) | `status.rs` |
//! | `trace` | `trace.rs` |
//! | `export` | `export.rs` |
//! | `verify` (journal and `--package`) | `verify.rs` |
//! | `fleet verify` (the fleet's stream) | `fleet.rs` |
//! | `replay`, `dead-letters` | `resend.rs` |
//! | `public-key` | `keys.rs` |
//! | `bench-journal` | `bench.rs` |

/// `println!` that returns the write error instead of panicking: a reader that goes away (`| head`)
/// ends the command quietly ([`CliError::BrokenPipe`]). What is printed goes through
/// [`crate::audit::terminal_safe`]: text from devices and peers (serials, error bodies) cannot
/// drive the terminal.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}\n", $crate::audit::terminal_safe(&format!($($arg)*))),
        )?
    };
}

/// `print!` the same way.
macro_rules! outp {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}", $crate::audit::terminal_safe(&format!($($arg)*))),
        )?
    };
}

mod args;
mod bench;
pub mod error;
mod export;
mod fleet;
mod keys;
mod resend;
mod run;
mod status;
mod trace;
mod validate;
mod verify;

use std::process::ExitCode;

pub use args::*;
pub use error::CliError;

use crate::config::{Config, LoadOptions};
use crate::journal::Store;

/// Runs the command `cli` names.
pub fn dispatch(cli: &Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::GenerateConfig => validate::generate_config(),
        Command::Validate { no_environment } => validate::validate(cli, !no_environment),
        Command::Run => run::run(cli),
        Command::Status { json, by: Some(by) } => status::reconcile(cli, *json, *by),
        Command::Status { json, by: None } => status::status(cli, *json),
        Command::Trace {
            serial,
            lot,
            work_order,
            gauge,
            json,
        } => trace::trace(
            cli,
            (serial.as_deref(), lot.as_deref(), work_order.as_deref()),
            gauge.as_deref(),
            *json,
        ),
        Command::Export {
            from,
            to,
            work_order,
            out,
        } => export::export(
            cli,
            (from.as_str(), to.as_str()),
            work_order.as_deref(),
            out,
        ),
        Command::Verify {
            json,
            package: Some(dir),
            public_key,
        } => verify::package(dir, *json, public_key.as_deref()),
        Command::Verify {
            json,
            package: None,
            public_key,
        } => verify::journal(cli, *json, public_key.as_deref()),
        Command::Replay {
            sink,
            from,
            to,
            reason,
        } => resend::replay(cli, sink, (*from, *to), reason.as_deref()),
        Command::DeadLetters { action } => resend::dead_letters(cli, action),
        Command::PublicKey => keys::public_key(cli),
        Command::Fleet { action } => fleet::fleet(action),
        Command::BenchJournal {
            dir,
            records,
            producers,
            batch,
            record_bytes,
            print_acks,
            sign,
        } => bench::bench_journal(
            dir,
            crate::journal::loadgen::Load {
                records: *records,
                producers: *producers,
                batch: *batch,
                record_bytes: *record_bytes,
            },
            (*print_acks, *sign),
        ),
    }
}

/// The configuration `--config` names.
fn load(cli: &Cli, opts: LoadOptions) -> Result<Config, CliError> {
    Config::load(&cli.config, opts).map_err(|errors| CliError::Config {
        file: cli.config.display().to_string(),
        errors,
    })
}

/// The configuration without resolving secrets: what the read-only commands need.
fn load_offline(cli: &Cli) -> Result<Config, CliError> {
    load(cli, LoadOptions { environment: false })
}

/// The journal of `config`, read-only.
fn store_of(config: &Config) -> Result<Store, CliError> {
    Store::open_ro(&config.agent.data_dir).map_err(|e| CliError::Io(e.to_string()))
}
