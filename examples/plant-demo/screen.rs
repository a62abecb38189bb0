//! What the QMS receives, one line per record (each id once), and the summary at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shopfloor_agent::config::Config;

use crate::cell::Cell;
use plant_sim::qms::Inner as QmsState;

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("-")
}

/// One line for a record as the QMS received it.
pub(crate) fn line(r: &Value) -> String {
    let kind = s(r, "/kind");
    match kind {
        "inspection" => {
            let i = &r["inspection"];
            let value = match i.get("value").and_then(Value::as_f64) {
                Some(v) => format!("{v:.3} {}", s(r, "/inspection/unit")),
                None => String::new(),
            };
            let gauge = match i.get("gauge_id").and_then(Value::as_str) {
                Some(g) => format!(
                    "  gauge {g}: calibration {}",
                    s(r, "/inspection/gauge_calibration/status")
                ),
                None => format!("  by {}", s(r, "/inspection/inspector")),
            };
            let flags = r["flags"]
                .as_array()
                .filter(|f| !f.is_empty())
                .map(|f| {
                    let names: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
                    format!("  FLAGGED: {}", names.join(", "))
                })
                .unwrap_or_default();
            format!(
                "QMS <- inspection   {}  {} {}  {:<6} {:<11} {:<4}{gauge}{flags}",
                s(r, "/subject/serial"),
                s(r, "/subject/work_order"),
                s(r, "/subject/operation"),
                s(r, "/inspection/characteristic"),
                value,
                s(r, "/inspection/result").to_uppercase(),
            )
        }
        "traveler" => format!(
            "QMS <- traveler     {}  {} {}  {}",
            s(r, "/subject/serial"),
            s(r, "/subject/work_order"),
            s(r, "/subject/operation"),
            s(r, "/traveler/status"),
        ),
        "calibration" => format!(
            "QMS <- calibration  {}  due {}  {}",
            s(r, "/calibration/instrument_id"),
            s(r, "/calibration/due_at"),
            s(r, "/calibration/result"),
        ),
        "gap" => format!(
            "QMS <- GAP          {}  {} .. {}: {}",
            s(r, "/gap/source"),
            s(r, "/gap/from"),
            s(r, "/gap/to"),
            s(r, "/gap/reason"),
        ),
        _ => format!("QMS <- {kind:<12} {}", s(r, "/agent_event/message")),
    }
}

/// Prints every record the first time the QMS receives it, in arrival order.
pub(crate) async fn show(state: Arc<QmsState>) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut next = 0;
    loop {
        let fresh: Vec<Value> = {
            let events = state.events.lock().expect("lock");
            let out = events[next.min(events.len())..].to_vec();
            next = events.len();
            out
        };
        for e in fresh {
            let id = e["id"].as_str().unwrap_or_default().to_string();
            if seen.insert(id) {
                println!("{}", line(&e["data"]));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The end: what arrived, what was flagged, and the journal's chain.
pub(crate) fn summary(cell: &Cell, config: &Config, parts: u32) -> anyhow::Result<()> {
    let events = cell.qms_state().events.lock().expect("lock").clone();
    let mut seen = HashSet::new();
    let unique: Vec<&Value> = events
        .iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_string()))
        .map(|e| &e["data"])
        .collect();
    let count = |f: &dyn Fn(&Value) -> bool| unique.iter().filter(|r| f(r)).count();
    let inspections = count(&|r| r["kind"] == "inspection");
    let failed = count(&|r| r["kind"] == "inspection" && r["inspection"]["result"] == "fail");
    let overdue = count(&|r| r["inspection"]["gauge_calibration"]["status"] == "overdue");
    println!(
        "\n{parts} parts made; the QMS holds {} records ({} deliveries, duplicates dropped by id): {inspections} inspections, {failed} failed, {overdue} made with an overdue gauge",
        unique.len(),
        events.len()
    );
    let store = shopfloor_agent::journal::Store::open_ro(&config.agent.data_dir)?;
    let report = shopfloor_agent::audit::verify::verify(&store)?;
    match &report.problem {
        None => println!(
            "journal {}: chain verified, {} records, head {}",
            store.path().display(),
            report.checked,
            report.head_hash
        ),
        Some(p) => anyhow::bail!("journal: CHAIN BROKEN at seq {}: {}", p.seq, p.what),
    }
    println!(
        "look closer: target/release/shopfloor-agent --config config/demo.toml status | verify"
    );
    // Everything journaled reached the QMS (the stop record is written last and may miss it).
    let journaled = report.checked as usize;
    if unique.len() + 1 < journaled || parts > 0 && inspections < 2 * parts as usize {
        anyhow::bail!(
            "the QMS holds {} of {journaled} journaled records and {inspections} inspections for {parts} parts",
            unique.len()
        );
    }
    Ok(())
}
