//! QIF 3.0 Results (ISO 23952), read in two streaming passes.
//!
//! A QIF document names its characteristics three times: a **definition** (the tolerance), a
//! **nominal** (the target value, pointing at its definition) and an **item** (the name, the
//! measuring devices, pointing at its nominal). Each **measurement** in `Results` points at an
//! item and gives value and status; the part it measured is an `ActualComponent` (serial number),
//! named by the `MeasurementResults` after its measurements. So the file is read twice, never
//! held in memory:
//!
//! 1. [`Index::read`] keeps the plan (definitions, nominals, items, devices, units), the actual
//!    components and, per `MeasurementResults`, its components, start time and operator: memory
//!    in proportion to the characteristics and parts the file names, not to its size.
//! 2. [`Index::measurements`] streams the measurements and gives one [`Measured`] per
//!    `*CharacteristicMeasurement`, joined through the index.
//!
//! A results file whose items live in a separate plan file says so with an `xId` on
//! `CharacteristicItemId` and an `ExternalQIFDocument` (QPId, URI); the caller reads that plan
//! with [`Index::read`] and passes it in [`Plans`]. Without it the measurement is still given,
//! marked incomplete with the missing plan's QPId and URI.
//!
//! Tolerances: `Tolerance/MaxValue` and `MinValue` are offsets from the nominal unless
//! `DefinedAsLimit` is true (then they are the limits); a geometric `ToleranceValue` is an upper
//! limit (form and location deviations are measured from zero).
//!
//! Hostile input: a document type declaration is refused (QIF has none; its entities are what
//! expansion bombs are made of), undefined entities are errors, element text is capped at
//! [`MAX_TEXT`] bytes, nesting at [`MAX_DEPTH`], the index at [`MAX_ENTRIES`] entries; only
//! UTF-8 documents are read. A file that ends inside an element is refused as truncated.

use std::collections::HashMap;
use std::io::BufRead;

use super::measured::{number, offset, Located, Measured};

mod walker;
use walker::{path, Step, Walker};

/// The QIF 3 namespace.
pub const NAMESPACE: &str = "http://qifstandards.org/xsd/qif3";
/// Longest element text read, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;
/// Deepest element nesting read.
pub const MAX_DEPTH: usize = 256;
/// Most entries (definitions, nominals, items, devices, components, results) an index holds.
pub const MAX_ENTRIES: usize = 2_000_000;

/// Why a QIF file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum QifError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {position}: {message}")]
    Xml {
        /// Byte offset in the file.
        position: u64,
        /// The parser's description.
        message: String,
    },
    /// A `<!DOCTYPE …>`.
    #[error("a document type declaration at byte {position}: QIF documents have none, and the entities one declares can expand without bound; the file is refused")]
    DocType {
        /// Byte offset in the file.
        position: u64,
    },
    /// An entity other than XML's five and character references.
    #[error("entity &{name}; at byte {position} is not defined (QIF uses XML's predefined entities only)")]
    UnknownEntity {
        /// The entity's name.
        name: String,
        /// Byte offset in the file.
        position: u64,
    },
    /// Another encoding than UTF-8 declared.
    #[error("the document declares encoding {0:?}; QIF files are read as UTF-8 only")]
    Encoding(String),
    /// The root is not a QIF 3 document.
    #[error("the root element is <{found}> in namespace {namespace:?}, not a QIFDocument in {NAMESPACE}")]
    NotQif {
        /// The root element's name.
        found: String,
        /// Its namespace, if any.
        namespace: Option<String>,
    },
    /// A QIF document of another version.
    #[error("QIF version {found}: only QIF 3 documents (namespace {NAMESPACE}, versionQIF 3.x) are read")]
    Version {
        /// The version or namespace found.
        found: String,
    },
    /// The file ends inside an element.
    #[error("the file ends inside <{open}> (byte {position}): truncated, or still being written")]
    Truncated {
        /// The innermost open element.
        open: String,
        /// Where the file ends.
        position: u64,
    },
    /// Beyond a bound of the reader.
    #[error("{what} at byte {position} exceeds {limit}: the file is refused")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The bound.
        limit: usize,
        /// Byte offset in the file.
        position: u64,
    },
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// A text read at a place.
type Text = Located<String>;

fn text(value: &str, at: String) -> Text {
    let v = value.trim();
    Located::new(v.to_string(), at, v)
}

#[derive(Debug, Default, Clone)]
struct Definition {
    max: Option<Text>,
    min: Option<Text>,
    defined_as_limit: bool,
    tolerance_value: Option<Text>,
}

#[derive(Debug, Default, Clone)]
struct Nominal {
    definition: Option<String>,
    target: Option<Text>,
}

#[derive(Debug, Default, Clone)]
struct Item {
    kind: String,
    name: Option<Text>,
    nominal: Option<String>,
    devices: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Device {
    name: Option<Text>,
    serial: Option<Text>,
}

#[derive(Debug, Default, Clone)]
struct Results {
    components: Vec<String>,
    start: Option<Text>,
    operator: Option<Text>,
}

#[derive(Debug, Default, Clone)]
struct External {
    qpid: Option<String>,
    uri: Option<String>,
}

/// What the first pass keeps of a QIF document: its plan, its parts and the header of each
/// `MeasurementResults`.
#[derive(Debug, Default, Clone)]
pub struct Index {
    qpid: Option<String>,
    created: Option<Text>,
    linear_unit: Option<Text>,
    angular_unit: Option<Text>,
    definitions: HashMap<String, Definition>,
    nominals: HashMap<String, Nominal>,
    items: HashMap<String, Item>,
    devices: HashMap<String, Device>,
    components: HashMap<String, Text>,
    results: Vec<Results>,
    externals: HashMap<String, External>,
    entries: usize,
}

/// Plan documents by QPId (as [`Index::qpid`] gives it), for results that reference their plan.
pub type Plans = HashMap<String, Index>;

/// What the second pass saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Measurements given.
    pub measurements: usize,
    /// `MeasurementResults` elements (parts or runs).
    pub results: usize,
}

/// The text of a QPId, as compared: trimmed, lower case (QPIds are UUIDs).
fn qpid_key(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

impl Index {
    /// The first pass: reads the plan, the parts and the results' headers of the document.
    pub fn read(input: impl BufRead) -> Result<Index, QifError> {
        let mut w = Walker::new(input);
        let mut ix = Index::default();
        let mut definition = Definition::default();
        let mut nominal = Nominal::default();
        let mut item = Item::default();
        let mut device = Device::default();
        let mut results = Results::default();
        let mut external = External::default();
        let mut serial: Option<Text> = None;
        loop {
            let (frame, body) = match w.next()? {
                Step::End => break,
                Step::Open => continue,
                Step::Close(frame, body) => (frame, body),
            };
            let at = || w.xpath(Some(&frame));
            match frame.name.as_str() {
                "QPId" if w.open_is(&["QIFDocument"]) => ix.qpid = Some(qpid_key(&body)),
                "TimeCreated" if w.open_is(&["QIFDocument", "Version"]) => {
                    ix.created = Some(text(&body, at()))
                }
                "UnitName" if w.open_ends_with(&["PrimaryUnits", "LinearUnit"]) => {
                    ix.linear_unit = Some(text(&body, at()))
                }
                "UnitName" if w.open_ends_with(&["PrimaryUnits", "AngularUnit"]) => {
                    ix.angular_unit = Some(text(&body, at()))
                }
                _ => {}
            }
            let id = || frame.id.clone().unwrap_or_default();
            let mut added = false;
            if let Some(below) = w.inside("CharacteristicDefinitions") {
                match path(below, &frame).as_slice() {
                    [_] => {
                        ix.definitions.insert(id(), std::mem::take(&mut definition));
                        added = true;
                    }
                    [_, "ToleranceValue"] => definition.tolerance_value = Some(text(&body, at())),
                    [_, "Tolerance", "MaxValue"] => definition.max = Some(text(&body, at())),
                    [_, "Tolerance", "MinValue"] => definition.min = Some(text(&body, at())),
                    [_, "Tolerance", "DefinedAsLimit"] => {
                        definition.defined_as_limit = body.trim() == "true" || body.trim() == "1"
                    }
                    _ => {}
                }
            } else if let Some(below) = w.inside("CharacteristicNominals") {
                match path(below, &frame).as_slice() {
                    [_] => {
                        ix.nominals.insert(id(), std::mem::take(&mut nominal));
                        added = true;
                    }
                    [_, "CharacteristicDefinitionId"] => {
                        nominal.definition = Some(body.trim().to_string())
                    }
                    [_, "TargetValue"] => nominal.target = Some(text(&body, at())),
                    _ => {}
                }
            } else if let Some(below) = w.inside("CharacteristicItems") {
                match path(below, &frame).as_slice() {
                    [kind] => {
                        item.kind = kind.to_string();
                        ix.items.insert(id(), std::mem::take(&mut item));
                        added = true;
                    }
                    [_, "Name"] => item.name = Some(text(&body, at())),
                    [_, "CharacteristicNominalId"] => item.nominal = Some(body.trim().to_string()),
                    [_, "MeasurementDeviceIds", "Id"] => item.devices.push(body.trim().to_string()),
                    _ => {}
                }
            } else if let Some(below) = w.inside("MeasurementDevices") {
                match path(below, &frame).as_slice() {
                    [_] => {
                        ix.devices.insert(id(), std::mem::take(&mut device));
                        added = true;
                    }
                    [_, "Name"] => device.name = Some(text(&body, at())),
                    [_, "SerialNumber"] => device.serial = Some(text(&body, at())),
                    _ => {}
                }
            } else if let Some(below) = w.inside("ActualComponentSet") {
                match path(below, &frame).as_slice() {
                    ["ActualComponent"] => {
                        if let Some(s) = serial.take() {
                            ix.components.insert(id(), s);
                            added = true;
                        }
                    }
                    ["ActualComponent", "SerialNumber"] => serial = Some(text(&body, at())),
                    _ => {}
                }
            } else if let Some(below) = w.inside("MeasurementResultsSet") {
                match path(below, &frame).as_slice() {
                    ["MeasurementResults"] => {
                        ix.results.push(std::mem::take(&mut results));
                        added = true;
                    }
                    ["MeasurementResults", "ActualComponentIds", "Id"] => {
                        results.components.push(body.trim().to_string())
                    }
                    ["MeasurementResults", "InspectionTraceability", "InspectionStart"] => {
                        results.start = Some(text(&body, at()))
                    }
                    ["MeasurementResults", "InspectionTraceability", "InspectionOperator", "Name"] => {
                        results.operator = Some(text(&body, at()))
                    }
                    _ => {}
                }
            } else if let Some(below) = w.inside("ExternalQIFReferences") {
                match path(below, &frame).as_slice() {
                    [_] => {
                        ix.externals.insert(id(), std::mem::take(&mut external));
                        added = true;
                    }
                    [_, "QPId"] => external.qpid = Some(qpid_key(&body)),
                    [_, "URI"] => external.uri = Some(body.trim().to_string()),
                    _ => {}
                }
            }
            if added {
                ix.entries += 1;
                if ix.entries > MAX_ENTRIES {
                    return Err(QifError::TooLarge {
                        what: "the number of definitions, items, devices and parts",
                        limit: MAX_ENTRIES,
                        position: w.position(),
                    });
                }
            }
        }
        Ok(ix)
    }

    /// The document's own QPId (lower case).
    pub fn qpid(&self) -> Option<&str> {
        self.qpid.as_deref()
    }

    /// The documents this one references: (QPId, URI as written).
    pub fn external_documents(&self) -> Vec<(String, Option<String>)> {
        let mut out: Vec<_> = self
            .externals
            .values()
            .filter_map(|e| e.qpid.clone().map(|q| (q, e.uri.clone())))
            .collect();
        out.sort();
        out
    }

    /// The second pass over the same document: one [`Measured`] per characteristic measurement,
    /// in document order, given to `emit`; `plans` holds the external plans by QPId.
    pub fn measurements<E: From<QifError>>(
        &self,
        input: impl BufRead,
        plans: &Plans,
        mut emit: impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<Summary, E> {
        let mut w = Walker::new(input);
        let mut summary = Summary::default();
        let mut m = Raw::default();
        loop {
            let step = w.next()?;
            let (frame, body) = match step {
                Step::End => break,
                Step::Open => {
                    if w.open_ends_with(&["MeasurementResultsSet", "MeasurementResults"]) {
                        summary.results += 1;
                    }
                    continue;
                }
                Step::Close(frame, body) => (frame, body),
            };
            let Some(below) = w.inside("CharacteristicMeasurements") else {
                continue;
            };
            let at = || w.xpath(Some(&frame));
            match path(below, &frame).as_slice() {
                [kind] => {
                    let raw = std::mem::take(&mut m);
                    let results = summary
                        .results
                        .checked_sub(1)
                        .and_then(|i| self.results.get(i));
                    emit(self.join(raw, kind, at(), results, plans))?;
                    summary.measurements += 1;
                }
                [_, "Value"] => m.value = Some(text(&body, at())),
                [_, "Status", "CharacteristicStatusEnum"]
                | [_, "Status", "OtherCharacteristicStatus"] => m.status = Some(text(&body, at())),
                [_, "CharacteristicItemId"] => {
                    m.item = Some((body.trim().to_string(), frame.xid.clone()))
                }
                [_, "TimeStamp"] => m.time = Some(text(&body, at())),
                [_, "ActualComponentId"] => m.component = Some(body.trim().to_string()),
                [_, "MeasurementDeviceIds", "Id"] => m.devices.push(body.trim().to_string()),
                _ => {}
            }
        }
        Ok(summary)
    }

    /// A measurement joined with its item, nominal, definition, device, part and results.
    fn join(
        &self,
        raw: Raw,
        kind: &str,
        at: String,
        results: Option<&Results>,
        plans: &Plans,
    ) -> Measured {
        let mut out = Measured {
            at,
            ..Measured::default()
        };
        // The plan holding the item: this document, or the external one `xId` points through.
        let (plan, item_id) = match &raw.item {
            None => {
                out.incomplete
                    .push("the measurement names no CharacteristicItemId".into());
                (None, None)
            }
            Some((local, None)) => (Some(self), Some(local.clone())),
            Some((doc, Some(xid))) => {
                let ext = self.externals.get(doc);
                let qpid = ext.and_then(|e| e.qpid.as_deref());
                match qpid.and_then(|q| plans.get(q)) {
                    Some(plan) => (Some(plan), Some(xid.clone())),
                    None => {
                        out.incomplete.push(format!(
                            "its plan is another file, QPId {} ({}), which was not found: name, nominal and limits unknown",
                            qpid.unwrap_or("not given"),
                            ext.and_then(|e| e.uri.as_deref()).unwrap_or("no URI")
                        ));
                        (None, None)
                    }
                }
            }
        };
        let item = match (plan, &item_id) {
            (Some(p), Some(id)) => {
                let item = p.items.get(id);
                if item.is_none() {
                    out.incomplete
                        .push(format!("characteristic item {id} is not in the plan"));
                }
                item
            }
            _ => None,
        };
        out.characteristic = item.and_then(|i| i.name.clone());
        if out.characteristic.is_none() {
            out.incomplete.push("the characteristic has no name".into());
        }
        let nominal = match (plan, item.and_then(|i| i.nominal.as_ref())) {
            (Some(p), Some(id)) => p.nominals.get(id),
            _ => None,
        };
        let definition = match (plan, nominal.and_then(|n| n.definition.as_ref())) {
            (Some(p), Some(id)) => p.definitions.get(id),
            _ => None,
        };
        out.nominal = nominal
            .and_then(|n| n.target.as_ref())
            .and_then(|t| number(&t.value).map(|v| Located::new(v, t.at.clone(), t.raw.clone())));
        if let Some(d) = definition {
            self.limits(d, &mut out);
        }
        // Value and status as written.
        match &raw.value {
            Some(v) => match number(&v.value) {
                Some(x) => out.value = Some(Located::new(x, v.at.clone(), v.raw.clone())),
                None => out
                    .incomplete
                    .push(format!("the value {:?} is not a number", v.raw)),
            },
            None => out.incomplete.push("the measurement has no Value".into()),
        }
        out.status = raw.status;
        // Units: angles in the angular unit, everything else in the linear one.
        let angular = ["Angle", "AngleBetween", "AngleFrom", "AngularCoordinate"]
            .iter()
            .any(|a| kind.strip_suffix("CharacteristicMeasurement") == Some(a));
        let units = plan.unwrap_or(self);
        out.unit = if angular {
            units
                .angular_unit
                .clone()
                .or_else(|| self.angular_unit.clone())
        } else {
            units
                .linear_unit
                .clone()
                .or_else(|| self.linear_unit.clone())
        };
        // The device: the measurement's own, else the item's.
        let device_ids = if raw.devices.is_empty() {
            item.map(|i| i.devices.clone()).unwrap_or_default()
        } else {
            raw.devices
        };
        out.device = device_ids.first().and_then(|id| {
            let d = self
                .devices
                .get(id)
                .or_else(|| plan.and_then(|p| p.devices.get(id)))?;
            d.name.clone().or_else(|| d.serial.clone())
        });
        // The part: the measurement's own component, else its results' only one.
        let component = raw
            .component
            .or_else(|| match results.map(|r| r.components.as_slice()) {
                Some([one]) => Some(one.clone()),
                Some([]) | None => None,
                Some(many) => {
                    out.incomplete.push(format!(
                        "its results name {} parts and the measurement does not say which",
                        many.len()
                    ));
                    None
                }
            });
        out.serial = component.and_then(|c| self.components.get(&c).cloned());
        out.operator = results.and_then(|r| r.operator.clone());
        out.measured_at = raw
            .time
            .or_else(|| results.and_then(|r| r.start.clone()))
            .or_else(|| self.created.clone());
        out
    }

    /// The limits of a definition, as limits.
    fn limits(&self, d: &Definition, out: &mut Measured) {
        if let Some(t) = &d.tolerance_value {
            match number(&t.value) {
                Some(v) => out.upper_limit = Some(Located::new(v, t.at.clone(), t.raw.clone())),
                None => out
                    .incomplete
                    .push(format!("the tolerance {:?} is not a number", t.raw)),
            }
            return;
        }
        let mut bound = |limit: &Option<Text>| -> Option<Located<f64>> {
            let l = limit.as_ref()?;
            let Some(v) = number(&l.value) else {
                out.incomplete
                    .push(format!("the tolerance limit {:?} is not a number", l.raw));
                return None;
            };
            if d.defined_as_limit {
                return Some(Located::new(v, l.at.clone(), l.raw.clone()));
            }
            match &out.nominal {
                Some(n) => Some(Located::new(
                    offset(n.value, &n.raw, v, &l.raw),
                    l.at.clone(),
                    l.raw.clone(),
                )),
                None => {
                    out.incomplete.push(format!(
                        "the tolerance {} is an offset from a nominal the file does not give",
                        l.raw
                    ));
                    None
                }
            }
        };
        let upper = bound(&d.max);
        let lower = bound(&d.min);
        out.upper_limit = upper;
        out.lower_limit = lower;
    }
}

/// A measurement as read, before the join.
#[derive(Debug, Default)]
struct Raw {
    value: Option<Text>,
    status: Option<Text>,
    /// (id as written, `xId` if the item is in another document).
    item: Option<(String, Option<String>)>,
    time: Option<Text>,
    component: Option<String>,
    devices: Vec<String>,
}
