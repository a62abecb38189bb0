//! The `shopfloor-agent` binary: parses the command line, dispatches, maps outcomes to exit codes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use shopfloor_agent::config::{Config, LoadOptions, LogFormat};
use shopfloor_agent::journal::signing::{self, Signer};
use shopfloor_agent::journal::{loadgen, Journal, JournalOptions, Store};
use shopfloor_agent::records::RecordContext;
use shopfloor_agent::runtime::{self, logging, topology};
use shopfloor_agent::{audit, cli};

/// `println!` that returns the write error instead of panicking: a reader that goes away (`| head`)
/// ends the command quietly (see `main`).
/// What is printed goes through `audit::terminal_safe`: text from devices and peers (serials,
/// error bodies) cannot drive the terminal.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), "{}", audit::terminal_safe(&format!($($arg)*)))?
    };
}

/// `print!` the same way.
macro_rules! outp {
    ($($arg:tt)*) => {
        write!(std::io::stdout(), "{}", audit::terminal_safe(&format!($($arg)*)))?
    };
}

/// sysexits: configuration error.
const EX_CONFIG: u8 = 78;
/// sysexits: I/O error (journal cannot be opened).
const EX_IOERR: u8 = 74;
/// Another agent holds the data directory (sysexits EX_TEMPFAIL).
const EX_TEMPFAIL: u8 = 75;
const EX_USAGE: u8 = 64;

fn load(cli: &cli::Cli, opts: LoadOptions) -> Result<Config, ExitCode> {
    Config::load(&cli.config, opts).map_err(|e| {
        eprintln!("{}: {e}", cli.config.display());
        ExitCode::from(EX_CONFIG)
    })
}

/// The journal of the configured data directory, read-only.
fn open_journal(cli: &cli::Cli) -> Result<Store, ExitCode> {
    let config = load(cli, LoadOptions { environment: false })?;
    store_of(&config)
}

/// The journal of `config`, read-only.
fn store_of(config: &Config) -> Result<Store, ExitCode> {
    Store::open_ro(&config.agent.data_dir).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EX_IOERR)
    })
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match dispatch(&cli) {
        Ok(code) => code,
        // The reader of the output went away (`export … | head -1`): nothing more to say.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &cli::Cli) -> anyhow::Result<ExitCode> {
    use cli::Command;
    match &cli.command {
        Command::GenerateConfig => {
            outp!("{}", shopfloor_agent::config::REFERENCE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { no_environment } => {
            let opts = LoadOptions {
                environment: !no_environment,
            };
            match load(cli, opts) {
                Ok(c) => {
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
                Err(code) => Ok(code),
            }
        }
        Command::Run => {
            let config = match load(cli, LoadOptions::default()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let format = match cli.log_format {
                Some(cli::LogFormatArg::Json) => LogFormat::Json,
                Some(cli::LogFormatArg::Text) => LogFormat::Text,
                None => config.log.format,
            };
            logging::init(format, &config.log.level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let reload = || Config::load(&cli.config, LoadOptions::default());
            match rt.block_on(topology::run(config, reload)) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(topology::StartError::Journal(e)) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EX_IOERR))
                }
                Err(topology::StartError::Locked(e)) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(match e {
                        runtime::lock::LockError::Held { .. } => EX_TEMPFAIL,
                        runtime::lock::LockError::Io { .. } => EX_IOERR,
                    }))
                }
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EX_CONFIG))
                }
            }
        }
        Command::Status { json, by: Some(by) } => {
            let store = match open_journal(cli) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let by = match by {
                cli::ReconcileBy::WorkOrder => audit::reconcile::By::WorkOrder,
                cli::ReconcileBy::Day => audit::reconcile::By::Day,
            };
            let all = audit::reconcile::reconcile(&store, by)?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                outp!("{}", audit::reconcile::render(&all, by));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, by: None } => {
            let config = match load(cli, LoadOptions { environment: false }) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match audit::status::collect(&config) {
                Ok(s) if *json => out!("{}", serde_json::to_string_pretty(&s)?),
                Ok(s) => outp!("{}", s.render()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EX_IOERR));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            serial,
            lot,
            work_order,
            gauge,
            json,
        } => {
            use audit::trace::Query;
            // clap requires exactly one of them.
            let query = match (serial, lot, work_order) {
                (Some(s), ..) => Query::Serial(s.clone()),
                (_, Some(l), _) => Query::Lot(l.clone()),
                (_, _, Some(w)) => Query::WorkOrder(w.clone()),
                _ => Query::Gauge(gauge.clone().unwrap_or_default()),
            };
            let store = match open_journal(cli) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let trace = audit::trace::trace(&store, &query)?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                outp!("{}", trace.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            from,
            to,
            work_order,
            out,
        } => {
            let (Some(from_t), Some(to_t)) = (
                shopfloor_agent::time::parse(from),
                shopfloor_agent::time::parse(to),
            ) else {
                eprintln!("error: --from and --to take RFC 3339 times, e.g. 2026-06-01T00:00:00Z (got {from} and {to})");
                return Ok(ExitCode::from(EX_USAGE));
            };
            let store = match open_journal(cli) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let query = audit::export::ExportQuery {
                from: from_t,
                to: to_t,
                work_order: work_order.clone(),
            };
            match audit::export::export(&store, &query, out) {
                Ok(e) => {
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
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EX_IOERR))
                }
            }
        }
        Command::Verify {
            json,
            package: Some(dir),
            public_key,
        } => {
            if let Err(code) = check_public_key(public_key.as_deref()) {
                return Ok(code);
            }
            let report = audit::export::verify_package(dir, public_key.as_deref());
            if *json {
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
        Command::Verify {
            json,
            package: None,
            public_key,
        } => verify_journal(cli, *json, public_key.as_deref()),
        Command::Replay {
            sink,
            from,
            to,
            reason,
        } => {
            let config = match load(cli, LoadOptions { environment: false }) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            requested(audit::resend::request_replay(
                &config,
                sink,
                *from,
                *to,
                reason.as_deref(),
            ))
        }
        Command::DeadLetters { action } => {
            let config = match load(cli, LoadOptions { environment: false }) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            use cli::DeadLettersAction;
            match action {
                DeadLettersAction::Retry { sink, seq, reason } => requested(
                    audit::resend::request_retry(&config, sink.as_deref(), *seq, reason.as_deref()),
                ),
                DeadLettersAction::List { sink, json } => {
                    let store = match store_of(&config) {
                        Ok(s) => s,
                        Err(code) => return Ok(code),
                    };
                    let letters = store.dead_letters(sink.as_deref())?;
                    if *json {
                        out!("{}", serde_json::to_string_pretty(&letters)?);
                    } else {
                        outp!("{}", audit::resend::render_dead_letters(&letters));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                DeadLettersAction::Requests => {
                    let store = match store_of(&config) {
                        Ok(s) => s,
                        Err(code) => return Ok(code),
                    };
                    outp!(
                        "{}",
                        audit::resend::render_requests(&store.requests(None, false)?)
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::PublicKey => {
            let config = match load(cli, LoadOptions { environment: false }) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match Signer::load(&config.agent.data_dir) {
                Ok(Some(signer)) => {
                    out!("{}", signer.public_key_hex());
                    Ok(ExitCode::SUCCESS)
                }
                Ok(None) => {
                    eprintln!(
                        "error: no signing key in {}: it is made on the first run with journal.sign = true",
                        config.agent.data_dir.join(signing::KEY_FILE).display()
                    );
                    Ok(ExitCode::from(EX_IOERR))
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EX_IOERR))
                }
            }
        }
        Command::BenchJournal {
            dir,
            records,
            producers,
            batch,
            record_bytes,
            print_acks,
            sign,
        } => bench_journal(
            dir,
            loadgen::Load {
                records: *records,
                producers: *producers,
                batch: *batch,
                record_bytes: *record_bytes,
            },
            (*print_acks, *sign),
        ),
    }
}

/// A request's confirmation, or why it was not made.
fn requested(r: Result<String, audit::resend::RequestError>) -> anyhow::Result<ExitCode> {
    match r {
        Ok(message) => {
            out!("{}", message.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::resend::RequestError::Invalid(why)) => {
            eprintln!("error: {why}");
            Ok(ExitCode::from(EX_USAGE))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EX_IOERR))
        }
    }
}

/// A `--public-key` that is not an Ed25519 key in hex is a usage error.
fn check_public_key(public_key: Option<&str>) -> Result<(), ExitCode> {
    match public_key.filter(|k| !signing::is_public_key_hex(k)) {
        Some(bad) => {
            eprintln!(
                "error: --public-key takes the 64 hex digits `public-key` prints (got {bad})"
            );
            Err(ExitCode::from(EX_USAGE))
        }
        None => Ok(()),
    }
}

/// `verify` of the configured journal; signatures are checked with `public_key`, else with the
/// gateway's own key file when there is one.
fn verify_journal(
    cli: &cli::Cli,
    json: bool,
    public_key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Err(code) = check_public_key(public_key) {
        return Ok(code);
    }
    let config = match load(cli, LoadOptions { environment: false }) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let store = match store_of(&config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
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

/// Appends synthetic records from concurrent producers; reports rate and commit latency.
fn bench_journal(
    dir: &std::path::Path,
    load: loadgen::Load,
    (print_acks, sign): (bool, bool),
) -> anyhow::Result<ExitCode> {
    let ctx = RecordContext {
        gateway_id: "bench".into(),
        config_sha256: "0".repeat(64),
    };
    let mut opts = JournalOptions::new(dir);
    if sign {
        let (signer, _) = Signer::load_or_create(dir)?;
        opts.signer = Some(std::sync::Arc::new(signer));
    }
    let journal = Journal::open(opts, ctx.clone())
        .with_context(|| format!("cannot open a journal in {}", dir.display()))?;
    let on_ack: Option<loadgen::OnAck> = print_acks.then(|| {
        let out = std::sync::Mutex::new(std::io::stdout());
        std::sync::Arc::new(move |seq: i64, id: &str| {
            if let Ok(mut o) = out.lock() {
                let _ = writeln!(o, "ack {seq} {id}");
                let _ = o.flush();
            }
        }) as loadgen::OnAck
    });
    let report = loadgen::run(&journal, &ctx, load, on_ack);
    journal.close_blocking();
    let report = report?;
    if !print_acks {
        out!(
            "{} records of ~{} bytes by {} producers, {} per append, in {:.2} s: {:.0} records/s; commit latency p50 {:?}, p99 {:?}",
            report.records,
            load.record_bytes,
            load.producers,
            load.batch,
            report.elapsed.as_secs_f64(),
            report.rate(),
            report.latency(0.5),
            report.latency(0.99)
        );
    }
    Ok(ExitCode::SUCCESS)
}
