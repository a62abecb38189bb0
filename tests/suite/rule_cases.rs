//! Walks `tests/cases/rules/*/`: the rules in `rules.toml`, the observations in `observations.jsonl`
//! run through the engine into a real journal; the journaled records must match `expected.json`.
//!
//! `expected.json` is an array with one object per journaled record, in order. Each object is a
//! subset of the record: every key given must be there with that value (objects recursively, arrays
//! element by element); the value `"<absent>"` requires the key to be missing.
//!
//! Observation lines (`at` is the receive time):
//! - `{"origins": {"<source>": {"protocol": "opcua", "endpoint": "…"}}}` — protocol per source;
//! - `{"at": T, "tags": {"src.tag": value | {"value", "raw", "quality", "status", "source_ts"}}}`;
//! - `{"at": T, "message": {"source", "protocol", "endpoint", "topic", "doc"}}`;
//! - `{"at": T, "down": {"source", "reason"}}`, `{"at": T, "up": {"source"}}`, `{"at": T, "shutdown": true}`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use shopfloor_agent::journal::{Journal, JournalOptions, Store};
use shopfloor_agent::records::engine::Engine;
use shopfloor_agent::records::observation::{Message, Observation, Origin, Quality, Sample};

use crate::support::{assert_schema_valid, case_dirs, config, tempdir};

fn ms(v: &Value) -> i64 {
    let text = v.as_str().expect("time is a string");
    shopfloor_agent::time::unix_ms(shopfloor_agent::time::parse(text).expect("RFC 3339 time"))
}

fn origin(origins: &HashMap<String, Origin>, source: &str) -> Origin {
    origins.get(source).cloned().unwrap_or(Origin {
        protocol: "opcua".into(),
        endpoint: None,
        address: None,
    })
}

fn subset(expected: &Value, actual: Option<&Value>, path: &str, errors: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(s), None) if s == "<absent>" => {}
        (Value::String(s), Some(a)) if s == "<absent>" => {
            errors.push(format!("{path}: expected absent, got {a}"))
        }
        (_, None) => errors.push(format!("{path}: missing, expected {expected}")),
        (Value::Object(e), Some(Value::Object(a))) => {
            for (k, v) in e {
                subset(v, a.get(k), &format!("{path}.{k}"), errors);
            }
        }
        (Value::Array(e), Some(Value::Array(a))) => {
            if e.len() != a.len() {
                errors.push(format!(
                    "{path}: {} items, expected {}: {}",
                    a.len(),
                    e.len(),
                    Value::Array(a.clone())
                ));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, Some(av), &format!("{path}[{i}]"), errors);
            }
        }
        (Value::Number(e), Some(Value::Number(a))) => {
            if (e.as_f64().unwrap_or(f64::NAN) - a.as_f64().unwrap_or(f64::NAN)).abs() > 1e-9 {
                errors.push(format!("{path}: {a}, expected {e}"));
            }
        }
        (e, Some(a)) => {
            if e != a {
                errors.push(format!("{path}: {a}, expected {e}"));
            }
        }
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let rules = std::fs::read_to_string(dir.join("rules.toml")).map_err(|e| e.to_string())?;
    let tmp = tempdir();
    let cfg = config(
        tmp.path(),
        &format!("[agent]\ngateway_id = \"gw-rules\"\ndata_dir = \"data\"\n\n{rules}"),
    );
    let ctx = cfg.record_context();
    let mut engine = Engine::new(ctx.clone(), &cfg.records).map_err(|e| format!("{e:?}"))?;
    let journal = Journal::open(JournalOptions::new(tmp.path().join("data")), ctx)
        .map_err(|e| e.to_string())?;
    let mut origins: HashMap<String, Origin> = HashMap::new();
    let text =
        std::fs::read_to_string(dir.join("observations.jsonl")).map_err(|e| e.to_string())?;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("observations line {}: {e}", n + 1))?;
        if let Some(o) = v.get("origins").and_then(Value::as_object) {
            for (source, spec) in o {
                origins.insert(
                    source.clone(),
                    Origin {
                        protocol: spec["protocol"].as_str().unwrap_or("opcua").to_string(),
                        endpoint: spec
                            .get("endpoint")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        address: None,
                    },
                );
            }
            // As sources do at start: every tag the rules name gets its source's origin.
            let named: Vec<(String, String)> = engine
                .tags()
                .iter()
                .filter_map(|t| {
                    t.name
                        .split_once('.')
                        .map(|(s, n)| (s.to_string(), n.to_string()))
                })
                .collect();
            for (source, tag) in named {
                let mut o = origin(&origins, &source);
                o.address = Some(format!("{tag} address"));
                engine.register_tag(&source, &tag, o);
            }
            continue;
        }
        let at = ms(&v["at"]);
        let made = if let Some(tags) = v.get("tags").and_then(Value::as_object) {
            let mut values = Vec::new();
            for (name, tv) in tags {
                let (source, tag) = name.split_once('.').ok_or("tag names are source.tag")?;
                let mut o = origin(&origins, source);
                o.address = Some(format!("{tag} address"));
                let id = engine.register_tag(source, tag, o);
                let sample = match tv {
                    Value::Object(m) if m.contains_key("value") => Sample {
                        value: m["value"].clone(),
                        raw: m.get("raw").cloned().unwrap_or_else(|| m["value"].clone()),
                        source_ms: m.get("source_ts").map(ms),
                        server_ms: m.get("server_ts").map(ms),
                        received_ms: at,
                        quality: match m.get("quality").and_then(Value::as_str) {
                            Some("bad") => Quality::Bad,
                            Some("uncertain") => Quality::Uncertain,
                            _ => Quality::Good,
                        },
                        status: m.get("status").and_then(Value::as_str).map(str::to_string),
                    },
                    other => Sample::good(other.clone(), at),
                };
                values.push((id, sample));
            }
            engine.observe(Observation::Tags(values))
        } else if let Some(m) = v.get("message") {
            let source = m["source"].as_str().ok_or("message.source")?.to_string();
            let mut o = origin(&origins, &source);
            if let Some(p) = m.get("protocol").and_then(Value::as_str) {
                o.protocol = p.to_string();
            }
            engine.observe(Observation::Message(Message {
                source,
                origin: o,
                topic: m["topic"].as_str().unwrap_or("").to_string(),
                doc: m["doc"].clone(),
                source_ms: None,
                received_ms: at,
            }))
        } else if let Some(d) = v.get("down") {
            engine.observe(Observation::SourceDown {
                source: d["source"].as_str().unwrap_or("").to_string(),
                channel: None,
                at_ms: at,
                reason: d["reason"].as_str().unwrap_or("").to_string(),
            })
        } else if let Some(u) = v.get("up") {
            engine.observe(Observation::SourceUp {
                source: u["source"].as_str().unwrap_or("").to_string(),
                channel: None,
                at_ms: at,
            })
        } else if v.get("shutdown").is_some() {
            engine.shutdown(at)
        } else {
            return Err(format!(
                "observations line {}: unknown observation {v}",
                n + 1
            ));
        };
        if !made.is_empty() {
            journal.append_blocking(made).map_err(|e| e.to_string())?;
        }
    }
    journal.close_blocking();
    let store = Store::open_ro(&tmp.path().join("data")).map_err(|e| e.to_string())?;
    let records: Vec<Value> = store
        .read_after(i64::MIN, 10_000)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("json"))
        .collect();
    for r in &records {
        assert_schema_valid(r);
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("expected.json: {e}"))?;
    let mut errors = Vec::new();
    subset(
        &expected,
        Some(&Value::Array(records.clone())),
        "records",
        &mut errors,
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- journaled records:\n{}",
            errors.join("\n"),
            records
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

#[test]
fn every_rule_case_journals_exactly_the_expected_records() {
    let cases = case_dirs("rules", 12);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            run_case(c).err().map(|e| {
                format!(
                    "== {}:\n{e}",
                    c.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
