//! The `shopfloor-agent` binary: parses the command line and runs the command
//! (`shopfloor_agent::cli`, one file per command); every failure is printed and mapped to its exit
//! code in one place ([`shopfloor_agent::cli::CliError::exit_code`]).

use std::process::ExitCode;

use clap::Parser;

use shopfloor_agent::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}
