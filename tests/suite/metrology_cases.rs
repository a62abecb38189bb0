//! Result files as data: each `tests/cases/metrology/<NN-name>/` is one case, run through the real
//! agent. See `tests/cases/metrology/README.md` for the layout of a case.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::metrology_source::{drop_file, inspections, start, stop, write_config};
use crate::support::{case_dirs, eventually_blocking, tempdir};

/// What of a record a case's `expected.jsonl` can name.
fn projection(r: &Value) -> Value {
    let i = &r["inspection"];
    let value = &r["provenance"]["fields"]["inspection.value"];
    json!({
        "serial": r["subject"]["serial"],
        "part_number": r["subject"]["part_number"],
        "characteristic": i["characteristic"],
        "value": i["value"],
        "nominal": i["nominal"],
        "lower_limit": i["lower_limit"],
        "upper_limit": i["upper_limit"],
        "unit": i["unit"],
        "result": i["result"],
        "gauge_id": i["gauge_id"],
        "inspector": i["inspector"],
        "flags": r["flags"],
        "incomplete": r["incomplete"],
        "protocol": value["protocol"],
        "address": value["address"],
        "raw": value["raw"],
        "source_timestamp": value["source_timestamp"],
        "measured_at": r["provenance"]["trigger"]["value"]["measured_at"],
        "other": r["provenance"]["trigger"]["value"]["other"],
    })
}

fn text(case: &Path, name: &str) -> String {
    std::fs::read_to_string(case.join(name))
        .unwrap_or_default()
        .replace("{case}", &case.display().to_string())
}

#[test]
fn every_metrology_case_gives_its_expected_records() {
    let cases: Vec<_> = case_dirs("metrology", 6)
        .into_iter()
        .filter(|c| {
            c.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.as_bytes().first().is_some_and(u8::is_ascii_digit))
        })
        .collect();
    assert!(cases.len() >= 6, "{cases:?}");
    for case in cases {
        let name = case.display().to_string();
        let dir = tempdir();
        let dir = dir.path();
        write_config(
            dir,
            "",
            &format!("poll_ms = 100\n{}", text(&case, "source.toml")),
            &text(&case, "folder.toml"),
        );
        let agent = start(dir);
        let mut inputs: Vec<_> = std::fs::read_dir(case.join("input"))
            .expect("input/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        inputs.sort();
        for input in &inputs {
            let file = input.file_name().and_then(|n| n.to_str()).expect("name");
            drop_file(dir, file, &std::fs::read(input).expect("input"));
        }
        let spool = dir.join("spool");
        let gone =
            |sub: &str, f: &Path| spool.join(sub).join(f.file_name().expect("name")).exists();
        eventually_blocking(Duration::from_secs(60), &name, || {
            inputs
                .iter()
                .all(|f| gone("processed", f) || gone("failed", f))
        });
        stop(agent);
        let records = inspections(dir);
        if case.join("expected.failed").exists() {
            assert!(records.is_empty(), "{name}: {records:?}");
            for f in &inputs {
                let mut reason_name = f.file_name().expect("name").to_owned();
                reason_name.push(".reason.txt");
                let reason = std::fs::read_to_string(spool.join("failed").join(reason_name))
                    .unwrap_or_else(|e| panic!("{name}: {} not refused: {e}", f.display()));
                for line in text(&case, "expected.failed").lines() {
                    assert!(reason.contains(line), "{name}: {reason:?} lacks {line:?}");
                }
            }
            continue;
        }
        let expected: Vec<Value> = text(&case, "expected.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        assert_eq!(records.len(), expected.len(), "{name}: {records:#?}");
        for (i, (r, want)) in records.iter().zip(&expected).enumerate() {
            crate::support::assert_schema_valid(r);
            let got = projection(r);
            for (key, value) in want.as_object().expect("an object per line") {
                assert_eq!(&got[key], value, "{name}, record {i}, {key}: {got:#}");
            }
        }
    }
}
