//! Inspection records from result files: no `[[records]]` rule, because the file names each field
//! itself. One record per measured characteristic; every field's provenance is the format
//! (`protocol`), the file (`endpoint`), the place in the file (`address`) and the text as written
//! (`raw`); the trigger names the file with its SHA-256, the measurement's place and what the file
//! says that the record has no field for.
//!
//! The file's own verdict is the record's `result` (normalized, as written in `raw`); the edge
//! still evaluates value against limits and flags a disagreement, like for any source. A verdict
//! the agent does not recognise (`REWORK`) is kept under `other`, and the result is the limits'.

use serde_json::{json, Map, Value};

use super::enrich::{normalize_result, Enricher, Tolerances};
use super::model::{
    FieldProvenance, Inspection, QualityRecord, RecordContext, RecordKind, TriggerProvenance,
};
use super::observation::{Measurement, Measurements};
use crate::journal::NewRecord;
use crate::time::{format as fmt_time, from_unix_ms};

/// The fields an inspection record from a file needs: without them it is kept, marked incomplete.
pub const REQUIRED: [&str; 3] = [
    "subject.serial",
    "inspection.characteristic",
    "inspection.value",
];

/// Where a document's measurement `n` (counted from 0 over the whole document) is kept in the
/// journal's dedupe index: the same content read twice gives the same keys, and is stored once.
pub fn dedupe_key(sha256: &str, n: usize) -> String {
    format!("document:{sha256}:{n}")
}

/// One inspection record per measurement of `doc`, enriched like any inspection (traveler, gauge
/// calibration, the limits' verdict), each with its [`dedupe_key`]. What is incomplete or flagged
/// is logged once per `doc` (a file of thousands of characteristics without a serial is one line,
/// naming the first), not once per record.
pub fn records(ctx: &RecordContext, enricher: &mut Enricher, doc: &Measurements) -> Vec<NewRecord> {
    let mut out = Vec::with_capacity(doc.items.len());
    let (mut incomplete_n, mut first_incomplete) = (0usize, None);
    let (mut warned_n, mut first_warning) = (0usize, None);
    for (i, m) in doc.items.iter().enumerate() {
        let (mut rec, notes) = inspection(ctx, doc, m);
        let warnings = enricher.enrich(&mut rec, Tolerances::default());
        if !warnings.is_empty() {
            warned_n += 1;
            first_warning.get_or_insert_with(|| format!("{}: {}", m.at, warnings.join("; ")));
        }
        let incomplete = incomplete(&rec, notes);
        if !incomplete.is_empty() {
            incomplete_n += 1;
            first_incomplete.get_or_insert_with(|| format!("{}: {}", m.at, incomplete.join("; ")));
            rec.flags.push("incomplete".into());
            rec.incomplete = incomplete;
        }
        enricher.learn(&rec);
        out.push(NewRecord::new(rec).with_dedupe_key(dedupe_key(&doc.sha256, doc.first + i)));
    }
    let file = doc.origin.endpoint.as_deref().unwrap_or("?");
    if let Some(first) = first_warning {
        tracing::warn!(
            "source {}, {file}: {warned_n} of {} records flagged; the first: {first}",
            doc.source,
            doc.items.len()
        );
    }
    if let Some(first) = first_incomplete {
        tracing::warn!(
            "source {}, {file}: {incomplete_n} of {} records are incomplete and written with `incomplete` set; the first: {first}",
            doc.source,
            doc.items.len()
        );
    }
    out
}

/// The inspection record of one measurement (before enrichment), and why fields the file gives
/// could not be used or are missing (the reader's notes first).
pub fn inspection(
    ctx: &RecordContext,
    doc: &Measurements,
    m: &Measurement,
) -> (QualityRecord, Vec<String>) {
    let at = fmt_time(from_unix_ms(doc.received_ms));
    let measured_at = m
        .measured
        .as_ref()
        .and_then(|(_, ms)| ms.map(|ms| fmt_time(from_unix_ms(ms))));
    let mut rec = QualityRecord::new(ctx, RecordKind::Inspection);
    rec.captured_at = at.clone();
    let mut insp = Inspection::default();
    let mut other: Map<String, Value> = m
        .other
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut notes = m.incomplete.clone();
    if let Some(station) = &doc.station {
        rec.subject.station = Some(station.clone());
        rec.provenance.fields.insert(
            "subject.station".into(),
            FieldProvenance {
                source: "constant".into(),
                protocol: "constant".into(),
                endpoint: None,
                address: None,
                raw: Value::String(station.clone()),
                source_timestamp: None,
                server_timestamp: None,
                received_at: at.clone(),
                quality: "good".into(),
                status: None,
            },
        );
    }
    for (path, stated) in &m.fields {
        let text = stated.value.as_str().map(str::to_string);
        let number = stated.value.as_f64();
        let taken = match *path {
            "subject.serial" => text.map(|t| rec.subject.serial = Some(t)),
            "subject.part_number" => text.map(|t| rec.subject.part_number = Some(t)),
            "subject.lot" => text.map(|t| rec.subject.lot = Some(t)),
            "subject.station" => text.map(|t| rec.subject.station = Some(t)),
            "subject.operation" => text.map(|t| rec.subject.operation = Some(t)),
            "inspection.characteristic" => text.map(|t| insp.characteristic = Some(t)),
            "inspection.gauge_id" => text.map(|t| insp.gauge_id = Some(t)),
            "inspection.inspector" => text.map(|t| insp.inspector = Some(t)),
            "inspection.unit" => text.map(|t| insp.unit = Some(t)),
            "inspection.value" => number.map(|n| insp.value = Some(n)),
            "inspection.nominal" => number.map(|n| insp.nominal = Some(n)),
            "inspection.lower_limit" => number.map(|n| insp.lower_limit = Some(n)),
            "inspection.upper_limit" => number.map(|n| insp.upper_limit = Some(n)),
            "inspection.result" => match text.as_deref().and_then(normalize_result) {
                Some(r) => {
                    insp.result = Some(r.to_string());
                    Some(())
                }
                None => {
                    // Kept as the file words it; the result comes from the limits.
                    other.insert("status".into(), Value::String(stated.raw.clone()));
                    continue;
                }
            },
            _ => None,
        };
        if taken.is_none() {
            notes.push(format!(
                "{path}: {} at {} is not a usable value",
                stated.raw, stated.address
            ));
            continue;
        }
        rec.provenance.fields.insert(
            (*path).to_string(),
            FieldProvenance {
                source: doc.source.clone(),
                protocol: doc.origin.protocol.clone(),
                endpoint: doc.origin.endpoint.clone(),
                address: Some(stated.address.clone()),
                raw: Value::String(stated.raw.clone()),
                source_timestamp: measured_at.clone(),
                server_timestamp: None,
                received_at: at.clone(),
                quality: "good".into(),
                status: None,
            },
        );
    }
    rec.inspection = Some(insp);
    let mut file = json!({
        "file": doc.origin.endpoint.clone().unwrap_or_default(),
        "sha256": doc.sha256,
    });
    if let Some((written, _)) = &m.measured {
        file["measured_at"] = Value::String(written.clone());
    }
    if !other.is_empty() {
        file["other"] = Value::Object(other);
    }
    rec.provenance.trigger = Some(TriggerProvenance {
        source: doc.source.clone(),
        source_timestamp: measured_at,
        tag: Some(m.at.clone()),
        value: file,
    });
    (rec, notes)
}

/// What of [`REQUIRED`] `rec` lacks (after enrichment), followed by `notes`.
pub fn incomplete(rec: &QualityRecord, notes: Vec<String>) -> Vec<String> {
    let insp = rec.inspection.as_ref();
    let present = |path: &str| match path {
        "subject.serial" => rec.subject.serial.is_some(),
        "inspection.characteristic" => insp.is_some_and(|i| i.characteristic.is_some()),
        "inspection.value" => insp.is_some_and(|i| i.value.is_some()),
        _ => true,
    };
    REQUIRED
        .iter()
        .filter(|p| !present(p))
        .map(|p| (*p).to_string())
        .chain(notes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::observation::{Origin, Stated};

    fn stated(value: Value, raw: &str) -> Stated {
        Stated {
            value,
            address: "/QIFDocument/Results[1]".into(),
            raw: raw.into(),
        }
    }

    fn doc(fields: Vec<(&'static str, Stated)>) -> Measurements {
        Measurements {
            source: "cmm".into(),
            origin: Origin {
                protocol: "qif".into(),
                endpoint: Some("/spool/a.qif".into()),
                address: None,
            },
            sha256: "ab".repeat(32),
            station: None,
            first: 7,
            items: vec![Measurement {
                at: "/QIFDocument/m[1]".into(),
                fields,
                measured: Some(("2026-01-02T03:04:05Z".into(), Some(1_767_323_045_000))),
                other: vec![("K0006".into(), "batch 4".into())],
                incomplete: Vec::new(),
            }],
            received_ms: 1_767_323_100_000,
        }
    }

    fn ctx() -> RecordContext {
        RecordContext {
            gateway_id: "gw".into(),
            config_sha256: "cd".repeat(32),
        }
    }

    #[test]
    fn the_files_verdict_is_kept_and_the_limits_disagreeing_flag_it() {
        let d = doc(vec![
            ("subject.serial", stated(json!("SN-1"), "SN-1")),
            ("inspection.characteristic", stated(json!("D1"), "D1")),
            ("inspection.value", stated(json!(19.5), "19.50")),
            ("inspection.upper_limit", stated(json!(19.13), "19.13")),
            ("inspection.result", stated(json!("PASS"), "PASS")),
        ]);
        let out = records(&ctx(), &mut Enricher::new(), &d);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].dedupe_key.as_deref(),
            Some(dedupe_key(&"ab".repeat(32), 7).as_str())
        );
        let r: QualityRecord = serde_json::from_str(&out[0].canonical).expect("record");
        let insp = r.inspection.as_ref().expect("inspection");
        assert_eq!(insp.result.as_deref(), Some("pass"), "the file's verdict");
        assert!(r
            .flags
            .contains(&"result_disagrees_with_limits".to_string()));
        let v = &r.provenance.fields["inspection.value"];
        assert_eq!(
            (v.protocol.as_str(), v.raw.as_str(), v.endpoint.as_deref()),
            ("qif", Some("19.50"), Some("/spool/a.qif"))
        );
        assert_eq!(v.address.as_deref(), Some("/QIFDocument/Results[1]"));
        assert_eq!(
            v.source_timestamp.as_deref(),
            Some("2026-01-02T03:04:05.000Z")
        );
        let t = r.provenance.trigger.as_ref().expect("trigger");
        assert_eq!(t.value["sha256"], "ab".repeat(32));
        assert_eq!(t.value["other"]["K0006"], "batch 4");
        assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    }

    #[test]
    fn an_unknown_verdict_or_an_unusable_value_is_said_not_dropped() {
        let d = doc(vec![
            ("inspection.characteristic", stated(json!("D1"), "D1")),
            ("inspection.value", stated(Value::Null, "n/a")),
            ("inspection.result", stated(json!("REWORK"), "REWORK")),
        ]);
        let out = records(&ctx(), &mut Enricher::new(), &d);
        let r: QualityRecord = serde_json::from_str(&out[0].canonical).expect("record");
        assert_eq!(
            r.provenance
                .trigger
                .as_ref()
                .map(|t| &t.value["other"]["status"]),
            Some(&json!("REWORK"))
        );
        assert!(r.flags.contains(&"incomplete".to_string()));
        assert_eq!(r.incomplete[0], "subject.serial");
        assert_eq!(r.incomplete[1], "inspection.value");
        assert!(
            r.incomplete[2].contains("n/a at /QIFDocument/Results[1]"),
            "{:?}",
            r.incomplete
        );
    }
}
