//! `bench-journal`: synthetic appends from concurrent producers (what `cargo bench --bench journal`
//! runs), with rate and commit latency.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::CliError;
use crate::journal::signing::Signer;
use crate::journal::{loadgen, Journal, JournalOptions};
use crate::records::RecordContext;

/// Appends `load` to a journal in `dir`; prints one line (or `ack <seq> <id>` per record).
pub(super) fn bench_journal(
    dir: &Path,
    load: loadgen::Load,
    (print_acks, sign): (bool, bool),
) -> Result<ExitCode, CliError> {
    let ctx = RecordContext {
        gateway_id: "bench".into(),
        config_sha256: "0".repeat(64),
    };
    let mut opts = JournalOptions::new(dir);
    if sign {
        let (signer, _) = Signer::load_or_create(dir).map_err(anyhow::Error::from)?;
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
    let report = report.map_err(anyhow::Error::from)?;
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
