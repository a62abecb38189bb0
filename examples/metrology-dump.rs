//! Prints what the metrology parsers read from result files, one JSON line per measured
//! characteristic (each field with the place in the file it was read from):
//!
//! ```sh
//! cargo run --example metrology-dump -- results.qif part.dfq
//! cargo run --example metrology-dump -- --plans plans/ results.qif   # QIF plans in another file
//! ```
//!
//! QIF by the `.qif` extension, AQDEF by `.dfq`, or `.dfd` followed by its `.dfx`. Used by
//! `tests/interop/metrology.sh` to compare with an independent AQDEF reader.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};
use shopfloor_agent::sources::metrology::aqdef::{Aqdef, AqdefError, Encoding};
use shopfloor_agent::sources::metrology::qif::{Index, Plans, QifError};
use shopfloor_agent::sources::metrology::{Located, Measured};

fn located<T: serde::Serialize>(l: &Option<Located<T>>) -> Value {
    match l {
        Some(l) => json!({ "value": l.value, "at": l.at, "raw": l.raw }),
        None => Value::Null,
    }
}

fn print(file: &Path, m: &Measured) {
    let line = json!({
        "file": file.display().to_string(),
        "at": m.at,
        "characteristic": located(&m.characteristic),
        "value": located(&m.value),
        "unit": located(&m.unit),
        "nominal": located(&m.nominal),
        "lower_limit": located(&m.lower_limit),
        "upper_limit": located(&m.upper_limit),
        "status": located(&m.status),
        "serial": located(&m.serial),
        "part_number": located(&m.part_number),
        "device": located(&m.device),
        "operator": located(&m.operator),
        "measured_at": located(&m.measured_at),
        "other": m.other.iter().map(|(k, l)| json!({ "field": k, "value": l.value, "at": l.at })).collect::<Vec<_>>(),
        "incomplete": m.incomplete,
    });
    println!("{line}");
}

fn open(path: &Path) -> std::io::Result<BufReader<std::fs::File>> {
    Ok(BufReader::new(std::fs::File::open(path)?))
}

fn qif(path: &Path, plans: &Plans) -> Result<(), String> {
    let index = Index::read(open(path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    index
        .measurements(open(path).map_err(|e| e.to_string())?, plans, |m| {
            print(path, &m);
            Ok::<(), QifError>(())
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn aqdef(paths: &[PathBuf]) -> Result<(), String> {
    let mut reader = Aqdef::new(Encoding::Detect);
    let shown = paths[0].clone();
    let mut emit = |m: Measured| {
        print(&shown, &m);
        Ok::<(), AqdefError>(())
    };
    for p in paths {
        let label = p.display().to_string();
        reader
            .read(open(p).map_err(|e| e.to_string())?, &label, &mut emit)
            .map_err(|e| e.to_string())?;
    }
    reader.finish(&mut emit).map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let mut plans = Plans::new();
    if args.first().is_some_and(|a| a.as_os_str() == "--plans") && args.len() >= 2 {
        let dir = args.remove(1);
        args.remove(0);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if let Ok(index) = open(&path).map_err(QifError::from).and_then(Index::read) {
                if let Some(q) = index.qpid().map(str::to_string) {
                    plans.insert(q, index);
                }
            }
        }
    }
    let extension = |p: &Path| {
        p.extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let mut failed = false;
    let mut i = 0;
    while i < args.len() {
        let p = &args[i];
        let result = match extension(p).as_str() {
            "qif" => qif(p, &plans),
            "dfd" if args.get(i + 1).is_some_and(|n| extension(n) == "dfx") => {
                i += 1;
                aqdef(&args[i - 1..=i])
            }
            "dfq" | "dfx" | "dfd" => aqdef(std::slice::from_ref(p)),
            other => Err(format!("unknown extension {other:?} (qif, dfq, dfd + dfx)")),
        };
        if let Err(e) = result {
            eprintln!("{}: {e}", p.display());
            failed = true;
        }
        i += 1;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
