//! Enrichment at the edge: tolerance result, gauge calibration status and traveler context, each
//! written into the record with its provenance (`source = "enrichment"`).
//!
//! The enricher learns from every calibration and traveler record the agent journals (from any
//! source), and from those already in the journal at start. Travelers are kept for the last
//! [`MAX_TRAVELERS`] serials (the parts that can still be at a station); older serials are
//! forgotten, so memory stays bounded on a gateway that runs for months.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

use super::model::{FieldProvenance, GaugeCalibration, QualityRecord, RecordKind};

#[derive(Debug, Clone)]
struct CalibrationSeen {
    record_id: String,
    calibrated_at: Option<String>,
    due_at: Option<String>,
    result: Option<String>,
}

#[derive(Debug, Clone)]
struct TravelerSeen {
    record_id: String,
    work_order: Option<String>,
    operation: Option<String>,
    serial: Option<String>,
    part_number: Option<String>,
    revision: Option<String>,
    status: Option<String>,
}

/// Serials whose traveler is kept for the join (the most recently seen).
pub const MAX_TRAVELERS: usize = 10_000;

/// Room of the queue of sightings: superseded sightings are dropped before it would grow.
const SIGHTINGS: usize = 2 * MAX_TRAVELERS;

/// Caches of calibration and traveler records, and the enrichment they allow.
#[derive(Debug, Default)]
pub struct Enricher {
    calibrations: HashMap<String, CalibrationSeen>,
    by_station: HashMap<String, TravelerSeen>,
    by_serial: Recent,
}

/// Travelers by serial, the most recently seen [`MAX_TRAVELERS`] of them.
#[derive(Debug)]
struct Recent {
    /// Serial → (generation of its last sighting, its slot in `slots`).
    map: HashMap<String, (u64, usize)>,
    /// The travelers; a forgotten serial's slot is reused (`free`).
    slots: Vec<TravelerSeen>,
    free: Vec<usize>,
    /// (generation, serial) in the order seen; an entry whose generation is no longer the map's
    /// was superseded by a later sighting.
    order: VecDeque<(u64, String)>,
    generation: u64,
}

impl Default for Recent {
    /// Sized from the start so that nothing ever grows: a gateway's memory does not step up by a
    /// rehash or a reallocation (old and new buffer side by side, then a hole in the heap) the
    /// day its 7,169th traveler arrives or its travelers' updates pile up (`benches/outage.sh`
    /// found these steps, heaptrack named them). The table has room for twice the travelers it
    /// keeps: the tombstones that forgetting leaves are then cleared by rehashing in place, which
    /// the hash table does only while at most half full (fuller, it doubles). Its entries are
    /// small (serial and slot); the travelers live in `slots`.
    fn default() -> Self {
        Recent {
            map: HashMap::with_capacity(2 * MAX_TRAVELERS),
            slots: Vec::with_capacity(MAX_TRAVELERS + 1),
            free: Vec::with_capacity(MAX_TRAVELERS + 1),
            order: VecDeque::with_capacity(SIGHTINGS + 1),
            generation: 0,
        }
    }
}

impl Recent {
    fn insert(&mut self, serial: String, seen: TravelerSeen) {
        // Superseded sightings (serials seen again) are dropped before the queue outgrows its
        // room; afterwards it holds one sighting per kept traveler, at most MAX_TRAVELERS, so this
        // runs at most once every MAX_TRAVELERS insertions.
        if self.order.len() >= SIGHTINGS {
            let map = &self.map;
            self.order
                .retain(|(g, s)| map.get(s).is_some_and(|(mg, _)| mg == g));
        }
        self.generation += 1;
        self.order.push_back((self.generation, serial.clone()));
        match self.map.get_mut(&serial) {
            Some((g, slot)) => {
                *g = self.generation;
                self.slots[*slot] = seen;
            }
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot] = seen;
                        slot
                    }
                    None => {
                        self.slots.push(seen);
                        self.slots.len() - 1
                    }
                };
                self.map.insert(serial, (self.generation, slot));
            }
        }
        while self.map.len() > MAX_TRAVELERS {
            let Some((g, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|(mg, _)| *mg == g) {
                if let Some((_, slot)) = self.map.remove(&oldest) {
                    self.free.push(slot);
                }
            }
        }
    }

    fn get(&self, serial: &str) -> Option<&TravelerSeen> {
        self.map
            .get(serial)
            .and_then(|(_, slot)| self.slots.get(*slot))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Tolerances given instead of limits (`inspection.lower_tolerance` / `upper_tolerance`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerances {
    /// Below nominal (its sign is ignored).
    pub lower: Option<f64>,
    /// Above nominal (its sign is ignored).
    pub upper: Option<f64>,
}

fn enrichment(address: String, raw: Value, received_at: &str) -> FieldProvenance {
    FieldProvenance {
        source: "enrichment".into(),
        protocol: "enrichment".into(),
        endpoint: None,
        address: Some(address),
        raw,
        source_timestamp: None,
        server_timestamp: None,
        received_at: received_at.to_string(),
        quality: "good".into(),
        status: None,
    }
}

/// Normalizes a source's pass/fail wording; `None` if it is not recognizable.
pub fn normalize_result(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "pass" | "passed" | "ok" | "good" | "in" | "true" | "1" | "accept" | "accepted" => {
            Some("pass")
        }
        "fail" | "failed" | "nok" | "nio" | "bad" | "out" | "false" | "0" | "reject"
        | "rejected" => Some("fail"),
        _ => None,
    }
}

/// The last instant a due date allows: a date is valid through its whole (UTC) day.
pub fn due_instant(due: &str) -> Option<time::OffsetDateTime> {
    instant(due, (23, 59, 59))
}

/// The instant of a calibration date: a date alone counts from the start of its (UTC) day.
pub fn calibrated_instant(at: &str) -> Option<time::OffsetDateTime> {
    instant(at, (0, 0, 0))
}

fn instant(s: &str, (h, m, sec): (u8, u8, u8)) -> Option<time::OffsetDateTime> {
    if let Some(t) = crate::time::parse(s) {
        return Some(t);
    }
    let date =
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.with_hms(h, m, sec).ok()?.assume_utc())
}

impl Enricher {
    /// An enricher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many serials' travelers are kept.
    pub fn travelers_kept(&self) -> usize {
        self.by_serial.len()
    }

    /// Learns from a journaled record (calibrations and travelers).
    pub fn learn(&mut self, r: &QualityRecord) {
        match r.kind {
            RecordKind::Calibration => {
                let Some(c) = &r.calibration else { return };
                if c.instrument_id.is_empty() {
                    return;
                }
                let newer = match self.calibrations.get(&c.instrument_id) {
                    Some(old) => match (&old.calibrated_at, &c.calibrated_at) {
                        (Some(a), Some(b)) => b >= a,
                        _ => true,
                    },
                    None => true,
                };
                if newer {
                    self.calibrations.insert(
                        c.instrument_id.clone(),
                        CalibrationSeen {
                            record_id: r.id.to_string(),
                            calibrated_at: c.calibrated_at.clone(),
                            due_at: c.due_at.clone(),
                            result: c.result.clone(),
                        },
                    );
                }
            }
            RecordKind::Traveler => {
                let seen = TravelerSeen {
                    record_id: r.id.to_string(),
                    work_order: r.subject.work_order.clone(),
                    operation: r.subject.operation.clone(),
                    serial: r.subject.serial.clone(),
                    part_number: r.subject.part_number.clone(),
                    revision: r.subject.revision.clone(),
                    status: r.traveler.as_ref().and_then(|t| t.status.clone()),
                };
                if let Some(st) = &r.subject.station {
                    self.by_station.insert(st.clone(), seen.clone());
                }
                if let Some(sn) = &r.subject.serial {
                    self.by_serial.insert(sn.clone(), seen);
                }
            }
            _ => {}
        }
    }

    /// Enriches an inspection record in place; returns warnings for the log.
    pub fn enrich(&self, r: &mut QualityRecord, tol: Tolerances) -> Vec<String> {
        let mut warnings = Vec::new();
        let at = r.captured_at.clone();
        self.join_traveler(r, &at);
        if r.kind != RecordKind::Inspection {
            return warnings;
        }
        let Some(insp) = r.inspection.as_mut() else {
            return warnings;
        };
        // Limits from tolerances.
        if let Some(nominal) = insp.nominal {
            if insp.lower_limit.is_none() {
                if let Some(t) = tol.lower {
                    insp.lower_limit = Some(nominal - t.abs());
                    r.provenance.fields.insert(
                        "inspection.lower_limit".into(),
                        enrichment(
                            format!("nominal {nominal} - lower_tolerance {}", t.abs()),
                            json!(t),
                            &at,
                        ),
                    );
                }
            }
            if insp.upper_limit.is_none() {
                if let Some(t) = tol.upper {
                    insp.upper_limit = Some(nominal + t.abs());
                    r.provenance.fields.insert(
                        "inspection.upper_limit".into(),
                        enrichment(
                            format!("nominal {nominal} + upper_tolerance {}", t.abs()),
                            json!(t),
                            &at,
                        ),
                    );
                }
            }
        }
        // Result from limits.
        if let Some(value) = insp.value {
            if insp.lower_limit.is_some() || insp.upper_limit.is_some() {
                let ok = insp.lower_limit.is_none_or(|l| value >= l)
                    && insp.upper_limit.is_none_or(|u| value <= u);
                let computed = if ok { "pass" } else { "fail" };
                let limits = format!(
                    "{value} within [{}, {}]",
                    insp.lower_limit
                        .map_or("-inf".to_string(), |l| l.to_string()),
                    insp.upper_limit
                        .map_or("+inf".to_string(), |u| u.to_string())
                );
                match insp.result.as_deref() {
                    None => {
                        insp.result = Some(computed.to_string());
                        r.provenance.fields.insert(
                            "inspection.result".into(),
                            enrichment(format!("limits: {limits}"), Value::Null, &at),
                        );
                    }
                    Some(given) if given != computed => {
                        r.flags.push("result_disagrees_with_limits".into());
                        warnings.push(format!(
                            "the source says {given} but the limits say {computed} ({limits}); the source's result is kept and the record flagged"
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        // Gauge calibration.
        if let Some(gauge) = insp.gauge_id.clone() {
            let (status, cal) = match self.calibrations.get(&gauge) {
                None => ("unknown", None),
                Some(c) => {
                    let failed = c.result.as_deref() == Some("fail");
                    let overdue = match (
                        c.due_at.as_deref().and_then(due_instant),
                        crate::time::parse(&at),
                    ) {
                        (Some(due), Some(now)) => now > due,
                        _ => false,
                    };
                    let status = if failed {
                        "failed"
                    } else if overdue {
                        "overdue"
                    } else if c.due_at.is_some() {
                        "valid"
                    } else {
                        "unknown"
                    };
                    (status, Some(c))
                }
            };
            insp.gauge_calibration = Some(GaugeCalibration {
                status: status.to_string(),
                due_at: cal.and_then(|c| c.due_at.clone()),
                record_id: cal.map(|c| c.record_id.clone()),
            });
            let how = match cal {
                Some(c) => format!("latest calibration record {} of {gauge}", c.record_id),
                None => format!("no calibration record of {gauge} seen"),
            };
            r.provenance.fields.insert(
                "inspection.gauge_calibration".into(),
                enrichment(how, Value::Null, &at),
            );
            let flag = match status {
                "overdue" => Some("gauge_overdue"),
                "failed" => Some("gauge_calibration_failed"),
                "unknown" => Some("gauge_calibration_unknown"),
                _ => None,
            };
            if let Some(f) = flag {
                r.flags.push(f.to_string());
            }
            if status == "overdue" || status == "failed" {
                warnings.push(format!(
                    "gauge {gauge} was used while its calibration is {status} (due {}); the inspection is flagged",
                    cal.and_then(|c| c.due_at.clone()).unwrap_or_else(|| "?".into())
                ));
            }
        }
        warnings
    }

    /// Fills missing work order, operation (and serial, by station) from the active traveler.
    fn join_traveler(&self, r: &mut QualityRecord, at: &str) {
        if r.kind == RecordKind::Traveler || r.kind == RecordKind::Calibration {
            return;
        }
        let s = &r.subject;
        if s.work_order.is_some() && s.operation.is_some() {
            return;
        }
        let (found, how) = if let Some(sn) = s
            .serial
            .as_ref()
            .and_then(|sn| self.by_serial.get(sn).map(|t| (t, sn)))
        {
            (sn.0, format!("serial {}", sn.1))
        } else if let Some(st) = s
            .station
            .as_ref()
            .and_then(|st| self.by_station.get(st).map(|t| (t, st)))
        {
            if matches!(st.0.status.as_deref(), Some("completed") | Some("scrapped")) {
                return; // nothing is active on the station
            }
            (st.0, format!("station {} (latest traveler)", st.1))
        } else {
            return;
        };
        let found = found.clone();
        let address = format!("traveler record {} joined by {how}", found.record_id);
        let mut fill = |path: &str, slot: &mut Option<String>, value: &Option<String>| {
            if slot.is_none() {
                if let Some(v) = value {
                    *slot = Some(v.clone());
                    r.provenance
                        .fields
                        .insert(path.to_string(), enrichment(address.clone(), json!(v), at));
                }
            }
        };
        let mut subject = r.subject.clone();
        fill(
            "subject.work_order",
            &mut subject.work_order,
            &found.work_order,
        );
        fill(
            "subject.operation",
            &mut subject.operation,
            &found.operation,
        );
        fill("subject.serial", &mut subject.serial, &found.serial);
        fill(
            "subject.part_number",
            &mut subject.part_number,
            &found.part_number,
        );
        fill("subject.revision", &mut subject.revision, &found.revision);
        r.subject = subject;
    }
}

#[cfg(test)]
mod bounded {
    use super::*;

    fn seen(n: usize) -> TravelerSeen {
        TravelerSeen {
            record_id: format!("r{n}"),
            work_order: None,
            operation: Some(format!("OP-{n}")),
            serial: Some(format!("SN-{n}")),
            part_number: None,
            revision: None,
            status: None,
        }
    }

    #[test]
    fn travelers_are_kept_for_the_most_recent_serials_only() {
        let mut r = Recent::default();
        let table = r.map.capacity();
        let queue = r.order.capacity();
        let slots = r.slots.capacity();
        assert!(
            table > MAX_TRAVELERS,
            "sized for every traveler kept: {table}"
        );
        for n in 0..MAX_TRAVELERS {
            r.insert(format!("SN-{n}"), seen(n));
        }
        // SN-0 is seen again: it becomes recent.
        r.insert("SN-0".into(), seen(0));
        for n in MAX_TRAVELERS..MAX_TRAVELERS + 500 {
            r.insert(format!("SN-{n}"), seen(n));
        }
        assert_eq!(r.len(), MAX_TRAVELERS);
        assert!(r.get("SN-0").is_some(), "seen again, kept");
        assert!(
            r.get("SN-1").is_none() && r.get("SN-500").is_none(),
            "oldest forgotten"
        );
        assert!(r.get("SN-501").is_some());
        assert!(r.get(&format!("SN-{}", MAX_TRAVELERS + 499)).is_some());
        // One serial updated forever does not grow the bookkeeping either.
        for _ in 0..10 * MAX_TRAVELERS {
            r.insert("SN-0".into(), seen(0));
        }
        assert!(r.order.len() <= SIGHTINGS, "{}", r.order.len());
        assert_eq!(r.order.capacity(), queue, "the queue never grew");
        // Many serials come and go (the tombstones they leave would make a fuller table double).
        for n in 0..5 * MAX_TRAVELERS {
            r.insert(format!("SN-x{n}"), seen(n));
        }
        assert_eq!(r.len(), MAX_TRAVELERS);
        assert!(r.get(&format!("SN-x{}", 5 * MAX_TRAVELERS - 1)).is_some());
        assert_eq!(r.slots.capacity(), slots, "the travelers' slots never grew");
        // Forgetting leaves tombstones (the reported capacity shrinks a little until an in-place
        // rehash clears them); a table sized for MAX_TRAVELERS alone doubles here instead.
        assert!(
            r.map.capacity() <= table,
            "the table never grew: {} > {table}",
            r.map.capacity()
        );
    }
}
