//! `trace`: follow the thread of one part, lot, work order or gauge through the journal.
//!
//! - A part (`--serial`), a lot (`--lot`) or a work order (`--work-order`): every record whose
//!   subject names it, in time order (traveler steps, inspections with value, limits, result, gauge
//!   and the gauge's calibration status as recorded), and every gap record overlapping the time
//!   from its first to its last record: while a source was away, something about the part may be
//!   missing, and the auditor must see that.
//! - A gauge (`--gauge`): every inspection made with it, each judged against the calibration
//!   records in the journal (the calibration in force when the inspection was made: in
//!   calibration, overdue, failed, or none known), and the impact list: the inspections made since
//!   its last passing calibration, which a failed calibration puts in doubt.
//!
//! Reads the journal read-only with SQLite's JSON functions, so it runs beside the agent.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime as Instant;

use crate::journal::store::{Bodies, SubjectField};
use crate::journal::{JournalError, Store};
use crate::records::enrich::{calibrated_instant, due_instant};

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A serial number.
    Serial(String),
    /// A lot.
    Lot(String),
    /// A work order.
    WorkOrder(String),
    /// A gauge (instrument id).
    Gauge(String),
}

/// One journaled record.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Journal sequence number.
    pub seq: i64,
    /// The record.
    pub record: Value,
}

/// The thread of a part, lot or work order.
#[derive(Debug, Clone, Serialize)]
pub struct PartTrace {
    /// `serial`, `lot` or `work_order`.
    pub by: &'static str,
    /// The value followed.
    pub value: String,
    /// First and last capture time of its records.
    pub from: Option<String>,
    /// Last capture time.
    pub to: Option<String>,
    /// Its records in time order.
    pub records: Vec<Entry>,
    /// Gap records overlapping `from..=to`.
    pub gaps: Vec<Entry>,
}

/// How an inspection stood against the gauge's calibrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GaugeStanding {
    /// A passing calibration, not yet due, was in force.
    InCalibration,
    /// The calibration in force was past its due date.
    Overdue,
    /// The calibration in force had failed.
    CalibrationFailed,
    /// No calibration of the gauge is in the journal from before the inspection.
    NoCalibrationKnown,
}

impl GaugeStanding {
    fn as_str(self) -> &'static str {
        match self {
            GaugeStanding::InCalibration => "in calibration",
            GaugeStanding::Overdue => "OVERDUE",
            GaugeStanding::CalibrationFailed => "CALIBRATION FAILED",
            GaugeStanding::NoCalibrationKnown => "no calibration known",
        }
    }
}

/// One calibration of the gauge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationEntry {
    /// Journal sequence number.
    pub seq: i64,
    /// When it was calibrated.
    pub calibrated_at: Option<String>,
    /// When the next calibration is due.
    pub due_at: Option<String>,
    /// pass / fail as recorded.
    pub result: Option<String>,
    /// Certificate number.
    pub certificate: Option<String>,
}

/// One inspection made with the gauge.
#[derive(Debug, Clone, Serialize)]
pub struct GaugeUse {
    /// Journal sequence number.
    pub seq: i64,
    /// Capture time.
    pub captured_at: String,
    /// Part serial.
    pub serial: Option<String>,
    /// Work order.
    pub work_order: Option<String>,
    /// Characteristic.
    pub characteristic: Option<String>,
    /// Measured value.
    pub value: Option<f64>,
    /// pass / fail.
    pub result: Option<String>,
    /// Against the calibrations in the journal.
    pub standing: GaugeStanding,
    /// Made between the last passing calibration before a failed one and the next passing one:
    /// the failure puts this measurement in doubt.
    pub in_doubt: bool,
    /// Made at or after the last passing calibration (in doubt if the next calibration fails).
    pub since_last_pass: bool,
    /// Whether the agent flagged the gauge overdue when it captured the inspection.
    pub flagged_overdue: bool,
}

/// Every use of a gauge.
#[derive(Debug, Clone, Serialize)]
pub struct GaugeTrace {
    /// The gauge.
    pub gauge: String,
    /// Its calibrations, oldest first.
    pub calibrations: Vec<CalibrationEntry>,
    /// The last passing calibration.
    pub last_pass: Option<CalibrationEntry>,
    /// Each failed calibration with the inspections it puts in doubt.
    pub failures: Vec<Failure>,
    /// Its inspections in time order.
    pub inspections: Vec<GaugeUse>,
    /// How many were made while it was overdue.
    pub overdue: usize,
    /// How many were made since the last passing calibration.
    pub since_last_pass: usize,
    /// How many a failed calibration puts in doubt.
    pub in_doubt: usize,
}

/// A failed calibration and what it puts in doubt: the inspections made from the passing
/// calibration before it until the passing calibration after it (or until now).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The failed calibration.
    pub calibration: CalibrationEntry,
    /// The passing calibration before it (None: none on record, everything before is in doubt).
    pub since: Option<String>,
    /// The passing calibration after it (None: still in doubt until the next pass).
    pub until: Option<String>,
    /// Seqs of the inspections in doubt.
    pub inspections: Vec<i64>,
}

/// A trace.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Trace {
    /// Of a part, lot or work order.
    Part(PartTrace),
    /// Of a gauge.
    Gauge(GaugeTrace),
}

/// Follows `query` through the journal.
pub fn trace(store: &Store, query: &Query) -> Result<Trace, JournalError> {
    match query {
        Query::Serial(v) => part(store, SubjectField::Serial, v).map(Trace::Part),
        Query::Lot(v) => part(store, SubjectField::Lot, v).map(Trace::Part),
        Query::WorkOrder(v) => part(store, SubjectField::WorkOrder, v).map(Trace::Part),
        Query::Gauge(g) => gauge(store, g).map(Trace::Gauge),
    }
}

/// Parses the bodies a store query found.
fn entries(found: Bodies) -> Result<Vec<Entry>, JournalError> {
    found
        .into_iter()
        .map(|(seq, body)| {
            let record = serde_json::from_str(&body).map_err(|e| {
                JournalError::Unreadable(format!("record at seq {seq} is not JSON: {e}"))
            })?;
            Ok(Entry { seq, record })
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn part(store: &Store, by: SubjectField, value: &str) -> Result<PartTrace, JournalError> {
    let mut records = entries(store.records_of_subject(by, value)?)?;
    records.sort_by(|a, b| {
        let at = |e: &Entry| crate::time::parse(e.record["captured_at"].as_str().unwrap_or(""));
        at(a).cmp(&at(b)).then(a.seq.cmp(&b.seq))
    });
    let times: Vec<time::OffsetDateTime> = records
        .iter()
        .filter_map(|e| crate::time::parse(e.record["captured_at"].as_str().unwrap_or("")))
        .collect();
    let (first, last) = (times.iter().min().copied(), times.iter().max().copied());
    let gaps = match (first, last) {
        (Some(first), Some(last)) => entries(store.records_of_kind("gap")?)?
            .into_iter()
            .filter(|g| {
                let at = |k: &str| crate::time::parse(g.record["gap"][k].as_str().unwrap_or(""));
                matches!((at("from"), at("to")), (Some(f), Some(t)) if f <= last && t >= first)
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(PartTrace {
        by: by.as_str(),
        value: value.to_string(),
        from: first.map(crate::time::format),
        to: last.map(crate::time::format),
        records,
        gaps,
    })
}

fn gauge(store: &Store, id: &str) -> Result<GaugeTrace, JournalError> {
    let mut calibrations: Vec<CalibrationEntry> = Vec::new();
    for e in entries(store.calibrations_of(id)?)? {
        let c = &e.record["calibration"];
        let entry = CalibrationEntry {
            seq: e.seq,
            calibrated_at: text(&c["calibrated_at"]),
            due_at: text(&c["due_at"]),
            result: text(&c["result"])
                .map(|r| crate::records::enrich::normalize_result(&r).map_or(r, str::to_string)),
            certificate: text(&c["certificate"]),
        };
        // The same calibration read again (an ERP row polled twice) is one calibration.
        let same = |k: &CalibrationEntry| {
            k.calibrated_at == entry.calibrated_at
                && k.due_at == entry.due_at
                && k.result == entry.result
        };
        if !calibrations.iter().any(same) {
            calibrations.push(entry);
        }
    }
    let when = |c: &CalibrationEntry| c.calibrated_at.as_deref().and_then(calibrated_instant);
    calibrations.sort_by_key(|c| (when(c), c.seq));
    let passed = |c: &&CalibrationEntry| c.result.as_deref() == Some("pass");
    let last_pass = calibrations.iter().rev().find(passed).cloned();
    let pass_at = last_pass.as_ref().and_then(when);
    // Each failure's window: from the pass before it to the pass after it.
    let mut failures: Vec<(Failure, Option<Instant>, Option<Instant>)> = calibrations
        .iter()
        .filter(|c| c.result.as_deref() == Some("fail"))
        .map(|f| {
            let at = when(f);
            let before = calibrations
                .iter()
                .filter(passed)
                .rfind(|p| when(p) < at && when(p).is_some());
            let after = calibrations.iter().filter(passed).find(|p| when(p) > at);
            (
                Failure {
                    calibration: f.clone(),
                    since: before.and_then(|p| p.calibrated_at.clone()),
                    until: after.and_then(|p| p.calibrated_at.clone()),
                    inspections: Vec::new(),
                },
                before.and_then(when),
                after.and_then(when),
            )
        })
        .collect();
    let mut inspections = Vec::new();
    for e in entries(store.inspections_with_gauge(id)?)? {
        let r = &e.record;
        let captured_at = text(&r["captured_at"]).unwrap_or_default();
        let at = crate::time::parse(&captured_at);
        let in_force = calibrations
            .iter()
            .rev()
            .find(|c| matches!((when(c), at), (Some(c), Some(a)) if c <= a));
        let standing = match in_force {
            None => GaugeStanding::NoCalibrationKnown,
            Some(c) if c.result.as_deref() == Some("fail") => GaugeStanding::CalibrationFailed,
            Some(c) => match (c.due_at.as_deref().and_then(due_instant), at) {
                (Some(due), Some(a)) if a > due => GaugeStanding::Overdue,
                _ => GaugeStanding::InCalibration,
            },
        };
        let mut in_doubt = false;
        if let Some(a) = at {
            for (f, since, until) in &mut failures {
                if since.is_none_or(|s| a >= s) && until.is_none_or(|u| a < u) {
                    f.inspections.push(e.seq);
                    in_doubt = true;
                }
            }
        }
        let flags: Vec<&str> = r["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        inspections.push(GaugeUse {
            seq: e.seq,
            serial: text(&r["subject"]["serial"]),
            work_order: text(&r["subject"]["work_order"]),
            characteristic: text(&r["inspection"]["characteristic"]),
            value: r["inspection"]["value"].as_f64(),
            result: text(&r["inspection"]["result"]),
            standing,
            in_doubt,
            since_last_pass: matches!((pass_at, at), (Some(p), Some(a)) if a >= p),
            flagged_overdue: flags.contains(&"gauge_overdue"),
            captured_at,
        });
    }
    inspections.sort_by(|a, b| {
        crate::time::parse(&a.captured_at)
            .cmp(&crate::time::parse(&b.captured_at))
            .then(a.seq.cmp(&b.seq))
    });
    Ok(GaugeTrace {
        gauge: id.to_string(),
        overdue: inspections
            .iter()
            .filter(|i| i.standing == GaugeStanding::Overdue)
            .count(),
        since_last_pass: inspections.iter().filter(|i| i.since_last_pass).count(),
        in_doubt: inspections.iter().filter(|i| i.in_doubt).count(),
        calibrations,
        last_pass,
        failures: failures.into_iter().map(|(f, ..)| f).collect(),
        inspections,
    })
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// One line saying what a record is.
fn describe(r: &Value) -> String {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let mut out = String::new();
    match r["kind"].as_str().unwrap_or("") {
        "traveler" => {
            let t = &r["traveler"];
            let _ = write!(
                out,
                "{} {} at {}",
                or_dash(s(&r["subject"]["operation"]).as_deref()),
                or_dash(s(&t["status"]).as_deref()),
                or_dash(
                    s(&t["work_center"])
                        .or_else(|| s(&r["subject"]["station"]))
                        .as_deref()
                ),
            );
        }
        "inspection" => {
            let i = &r["inspection"];
            let _ = write!(out, "{}", or_dash(s(&i["characteristic"]).as_deref()));
            if let Some(v) = i["value"].as_f64() {
                let _ = write!(out, " {v}");
                if let Some(u) = s(&i["unit"]) {
                    let _ = write!(out, " {u}");
                }
            }
            if let (Some(lo), Some(hi)) = (i["lower_limit"].as_f64(), i["upper_limit"].as_f64()) {
                let _ = write!(out, " [{lo}..{hi}]");
            }
            let _ = write!(out, " {}", or_dash(s(&i["result"]).as_deref()));
            if let Some(g) = s(&i["gauge_id"]) {
                let cal = &i["gauge_calibration"];
                let _ = write!(
                    out,
                    "  gauge {g} {}",
                    s(&cal["status"]).unwrap_or_else(|| "calibration not known".into())
                );
                if let Some(due) = s(&cal["due_at"]) {
                    let _ = write!(out, " (due {due})");
                }
            }
            // From a result file: which file, by its content hash.
            let doc = &r["provenance"]["trigger"]["value"];
            if let (Some(file), Some(sha)) = (s(&doc["file"]), s(&doc["sha256"])) {
                let _ = write!(out, "  file {file} (sha256 {})", &sha[..sha.len().min(12)]);
            }
        }
        "calibration" => {
            let c = &r["calibration"];
            let _ = write!(
                out,
                "{} calibrated {} result {} due {}",
                or_dash(s(&c["instrument_id"]).as_deref()),
                or_dash(s(&c["calibrated_at"]).as_deref()),
                or_dash(s(&c["result"]).as_deref()),
                or_dash(s(&c["due_at"]).as_deref())
            );
        }
        "gap" => {
            let g = &r["gap"];
            let _ = write!(
                out,
                "{} {} -> {}: {}",
                or_dash(s(&g["source"]).as_deref()),
                or_dash(s(&g["from"]).as_deref()),
                or_dash(s(&g["to"]).as_deref()),
                or_dash(s(&g["reason"]).as_deref())
            );
        }
        other => {
            let _ = write!(
                out,
                "{other} {}",
                or_dash(s(&r["agent_event"]["message"]).as_deref())
            );
        }
    }
    if let Some(flags) = r["flags"].as_array().filter(|f| !f.is_empty()) {
        let names: Vec<&str> = flags.iter().filter_map(Value::as_str).collect();
        let _ = write!(out, "  FLAGS {}", names.join(","));
    }
    out
}

impl Trace {
    /// The readable form.
    pub fn render(&self) -> String {
        match self {
            Trace::Part(p) => p.render(),
            Trace::Gauge(g) => g.render(),
        }
    }
}

impl PartTrace {
    fn render(&self) -> String {
        let mut s = String::new();
        if self.records.is_empty() {
            let _ = writeln!(s, "{} {}: no records in the journal", self.by, self.value);
            return s;
        }
        let subject = |k: &str| {
            self.records
                .iter()
                .find_map(|e| e.record["subject"][k].as_str())
        };
        let _ = writeln!(
            s,
            "{} {}: {} records from {} to {}",
            self.by,
            self.value,
            self.records.len(),
            or_dash(self.from.as_deref()),
            or_dash(self.to.as_deref())
        );
        let _ = writeln!(
            s,
            "part {} rev {}  work order {}  serial {}",
            or_dash(subject("part_number")),
            or_dash(subject("revision")),
            or_dash(subject("work_order")),
            or_dash(subject("serial")),
        );
        let _ = writeln!(
            s,
            "\n{:<25} {:>7}  {:<11} {:<10} WHAT",
            "CAPTURED", "SEQ", "KIND", "SERIAL"
        );
        for e in &self.records {
            let r = &e.record;
            let _ = writeln!(
                s,
                "{:<25} {:>7}  {:<11} {:<10} {}",
                r["captured_at"].as_str().unwrap_or("-"),
                e.seq,
                r["kind"].as_str().unwrap_or("-"),
                r["subject"]["serial"].as_str().unwrap_or("-"),
                describe(r)
            );
        }
        if self.gaps.is_empty() {
            let _ = writeln!(s, "\nno gap overlaps this time");
        } else {
            let _ = writeln!(
                s,
                "\n{} GAP(S) overlap this time: data from these sources may be missing",
                self.gaps.len()
            );
            for g in &self.gaps {
                let _ = writeln!(s, "  seq {:>7}  {}", g.seq, describe(&g.record));
            }
        }
        s
    }
}

impl GaugeTrace {
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "gauge {}: {} calibration(s), {} inspection(s) made with it",
            self.gauge,
            self.calibrations.len(),
            self.inspections.len()
        );
        for c in &self.calibrations {
            let _ = writeln!(
                s,
                "  calibrated {}  result {}  due {}  certificate {}  (seq {})",
                or_dash(c.calibrated_at.as_deref()),
                or_dash(c.result.as_deref()),
                or_dash(c.due_at.as_deref()),
                or_dash(c.certificate.as_deref()),
                c.seq
            );
        }
        for f in &self.failures {
            let _ = writeln!(
                s,
                "FAILED calibration on {} (certificate {}): {} inspection(s) made from {} until {} are in doubt",
                or_dash(f.calibration.calibrated_at.as_deref()),
                or_dash(f.calibration.certificate.as_deref()),
                f.inspections.len(),
                f.since.as_deref().unwrap_or("the first use"),
                f.until.as_deref().unwrap_or("now (no passing calibration since)"),
            );
        }
        match &self.last_pass {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "last passing calibration {}: {} inspection(s) since then (in doubt if the next calibration fails)",
                    or_dash(p.calibrated_at.as_deref()),
                    self.since_last_pass
                );
            }
            None => {
                let _ = writeln!(s, "no passing calibration in the journal");
            }
        }
        let _ = writeln!(
            s,
            "{} inspection(s) made while the gauge was overdue",
            self.overdue
        );
        let _ = writeln!(
            s,
            "\n{:<25} {:>7}  {:<10} {:<10} {:<8} {:>10} {:<6} {:<22} {:<9} SINCE LAST PASS",
            "CAPTURED",
            "SEQ",
            "SERIAL",
            "WORK ORD.",
            "CHAR.",
            "VALUE",
            "RESULT",
            "GAUGE STANDING",
            "IN DOUBT"
        );
        for i in &self.inspections {
            let _ = writeln!(
                s,
                "{:<25} {:>7}  {:<10} {:<10} {:<8} {:>10} {:<6} {:<22} {:<9} {}",
                i.captured_at,
                i.seq,
                or_dash(i.serial.as_deref()),
                or_dash(i.work_order.as_deref()),
                or_dash(i.characteristic.as_deref()),
                i.value.map_or("-".to_string(), |v| v.to_string()),
                or_dash(i.result.as_deref()),
                i.standing.as_str(),
                if i.in_doubt { "IN DOUBT" } else { "" },
                if i.since_last_pass { "yes" } else { "" }
            );
        }
        s
    }
}
