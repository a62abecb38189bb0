//! The rule engine: observations in, quality records out (pure and synchronous; the pipeline journals
//! what it returns).
//!
//! For a batch of tag samples captured together, every sample is stored in the tag table first and
//! the fired rules are evaluated afterwards, so a record sees all values of its own capture. A record
//! missing a required field is **written**, not dropped: its `incomplete` list names the fields and
//! their provenance says why each is missing (no value yet, bad quality, not in the message).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::documents;
use super::enrich::{normalize_result, Enricher, Tolerances};
use super::model::{FieldProvenance, QualityRecord, RecordContext, RecordKind, TriggerProvenance};
use super::observation::{Message, Observation, Quality, Sample, TagId};
use super::rules::{self, Field, FieldType, Rule, RuleConfig, Source, Trigger};
use super::tags::TagTable;
use crate::config::ConfigError;
use crate::journal::NewRecord;
use crate::time::{format as fmt_time, from_unix_ms};

/// What fired a rule.
struct Fired<'m> {
    rule: usize,
    source: String,
    tag: Option<String>,
    value: Value,
    source_ms: Option<i64>,
    received_ms: i64,
    message: Option<&'m Message>,
}

/// Turns observations into records.
pub struct Engine {
    ctx: RecordContext,
    tags: TagTable,
    rules: Vec<Rule>,
    by_tag: Vec<Vec<usize>>,
    message_rules: Vec<usize>,
    enricher: Enricher,
    /// Open outages by (source, channel): since when and why.
    outages: BTreeMap<(String, Option<String>), (i64, String)>,
}

fn ms_text(ms: i64) -> String {
    fmt_time(from_unix_ms(ms))
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Engine {
    /// Compiles the rules of a configuration.
    pub fn new(ctx: RecordContext, configs: &[RuleConfig]) -> Result<Engine, Vec<ConfigError>> {
        let mut tags = TagTable::new();
        let rules = rules::compile(configs, &mut tags)?;
        let mut engine = Engine {
            ctx,
            tags,
            rules,
            by_tag: Vec::new(),
            message_rules: Vec::new(),
            enricher: Enricher::new(),
            outages: BTreeMap::new(),
        };
        engine.index();
        Ok(engine)
    }

    fn index(&mut self) {
        self.by_tag = vec![Vec::new(); self.tags.len()];
        self.message_rules.clear();
        for (i, r) in self.rules.iter().enumerate() {
            match r.trigger.tag() {
                Some(t) => self.by_tag[t].push(i),
                None => self.message_rules.push(i),
            }
        }
    }

    /// The tag table (sources register their tags with origins here before sending samples).
    pub fn tags(&self) -> &TagTable {
        &self.tags
    }

    /// Registers a source's tag with its origin; returns its id.
    pub fn register_tag(
        &mut self,
        source: &str,
        tag: &str,
        origin: super::observation::Origin,
    ) -> TagId {
        let id = self.tags.register(source, tag, Some(origin));
        if self.by_tag.len() < self.tags.len() {
            self.by_tag.resize(self.tags.len(), Vec::new());
        }
        id
    }

    /// Learns from a record already in the journal (calibrations, travelers) for enrichment.
    pub fn learn(&mut self, r: &QualityRecord) {
        self.enricher.learn(r);
    }

    /// Processes one observation; returns the records it makes, in order.
    pub fn observe(&mut self, obs: Observation) -> Vec<NewRecord> {
        match obs {
            Observation::Tags(values) => self.observe_tags(values),
            Observation::Message(m) => self.observe_message(&m),
            Observation::Messages(ms) => ms.iter().flat_map(|m| self.observe_message(m)).collect(),
            Observation::Measurements(doc) => {
                documents::records(&self.ctx, &mut self.enricher, &doc)
            }
            Observation::SourceDown {
                source,
                channel,
                at_ms,
                reason,
            } => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.outages.entry((source, channel))
                {
                    tracing::warn!(
                        "source {}: no data from {} ({reason}); a gap record follows when it is back",
                        slot.key().0,
                        ms_text(at_ms)
                    );
                    slot.insert((at_ms, reason));
                }
                Vec::new()
            }
            Observation::SourceUp {
                source,
                channel,
                at_ms,
            } => {
                let key = (source, channel);
                match self.outages.remove(&key) {
                    Some((from, reason)) => vec![self.gap(&key.0, from, at_ms, reason)],
                    None => Vec::new(),
                }
            }
            Observation::Nothing => Vec::new(),
        }
    }

    /// Gap records for outages still open when the agent stops.
    pub fn shutdown(&mut self, at_ms: i64) -> Vec<NewRecord> {
        std::mem::take(&mut self.outages)
            .into_iter()
            .map(|((source, _), (from, reason))| {
                self.gap(
                    &source,
                    from,
                    at_ms,
                    format!("{reason} (still open when the agent stopped)"),
                )
            })
            .collect()
    }

    fn gap(&self, source: &str, from: i64, to: i64, reason: String) -> NewRecord {
        tracing::info!(
            "source {source}: delivering again; gap from {} to {} recorded",
            ms_text(from),
            ms_text(to)
        );
        NewRecord::new(QualityRecord::gap(
            &self.ctx,
            source,
            ms_text(from),
            ms_text(to),
            reason,
        ))
    }

    fn observe_tags(&mut self, values: Vec<(TagId, Sample)>) -> Vec<NewRecord> {
        let mut fired: Vec<(usize, TagId)> = Vec::new();
        for (id, sample) in values {
            if sample.quality != Quality::Bad {
                if let Some(rules) = self.by_tag.get(id) {
                    for &ri in rules {
                        if self.rules[ri].fires_on(&sample.value) {
                            fired.push((ri, id));
                        }
                    }
                }
            }
            self.tags.update(id, sample);
        }
        let mut out = Vec::with_capacity(fired.len());
        for (ri, id) in fired {
            let Some(tag) = self.tags.get(id) else {
                continue;
            };
            let Some(s) = &tag.latest else { continue };
            let f = Fired {
                rule: ri,
                source: tag.source.clone(),
                tag: tag.name.split_once('.').map(|(_, t)| t.to_string()),
                value: s.value.clone(),
                source_ms: s.source_ms,
                received_ms: s.received_ms,
                message: None,
            };
            out.push(self.make(f));
        }
        out
    }

    fn observe_message(&mut self, m: &Message) -> Vec<NewRecord> {
        let mut out = Vec::new();
        for i in 0..self.message_rules.len() {
            let ri = self.message_rules[i];
            let matches = match &self.rules[ri].trigger {
                Trigger::Message(source, filter) => {
                    *source == m.source
                        && filter
                            .as_deref()
                            .is_none_or(|f| rules::topic_matches(f, &m.topic))
                }
                Trigger::Row(source, endpoint) => {
                    *source == m.source
                        && m.origin.protocol == "rest"
                        && endpoint.as_deref().is_none_or(|e| e == m.topic)
                }
                _ => false,
            };
            if matches {
                let f = Fired {
                    rule: ri,
                    source: m.source.clone(),
                    tag: Some(m.topic.clone()),
                    value: Value::Null,
                    source_ms: m.source_ms,
                    received_ms: m.received_ms,
                    message: Some(m),
                };
                out.push(self.make(f));
            }
        }
        out
    }

    /// Reads one field; `Err` says why there is no usable value.
    fn read(
        &self,
        field: &Field,
        f: &Fired<'_>,
        at: &str,
    ) -> (Result<Value, String>, FieldProvenance) {
        let mut prov = FieldProvenance {
            source: f.source.clone(),
            protocol: String::new(),
            endpoint: None,
            address: None,
            raw: Value::Null,
            source_timestamp: None,
            server_timestamp: None,
            received_at: at.to_string(),
            quality: "good".into(),
            status: None,
        };
        let raw: Result<Value, String> = match &field.source {
            Source::Const(v) => {
                prov.source = "constant".into();
                prov.protocol = "constant".into();
                prov.raw = v.clone();
                Ok(v.clone())
            }
            Source::Tag(id) => match self.tags.get(*id) {
                None => Err("unknown tag".into()),
                Some(tag) => {
                    prov.source = tag.source.clone();
                    prov.protocol = tag.origin.protocol.clone();
                    prov.endpoint = tag.origin.endpoint.clone();
                    prov.address = Some(
                        tag.origin
                            .address
                            .clone()
                            .unwrap_or_else(|| tag.name.clone()),
                    );
                    match &tag.latest {
                        None => {
                            prov.quality = "bad".into();
                            prov.status = Some("no value received yet".into());
                            Err(format!("no value from {} yet", tag.name))
                        }
                        Some(s) => {
                            prov.raw = s.raw.clone();
                            prov.source_timestamp = s.source_ms.map(ms_text);
                            prov.server_timestamp = s.server_ms.map(ms_text);
                            prov.received_at = ms_text(s.received_ms);
                            prov.quality = s.quality.as_str().into();
                            prov.status = s.status.clone();
                            if s.quality == Quality::Bad {
                                Err(format!(
                                    "bad quality from {}{}",
                                    tag.name,
                                    s.status
                                        .as_deref()
                                        .map(|st| format!(" ({st})"))
                                        .unwrap_or_default()
                                ))
                            } else {
                                Ok(s.value.clone())
                            }
                        }
                    }
                }
            },
            Source::Pointer(_) | Source::TopicLevel(_) if f.message.is_none() => {
                Err("no message".into())
            }
            Source::Pointer(p) => {
                let Some(m) = f.message else {
                    return (Err("no message".into()), prov);
                };
                prov.protocol = m.origin.protocol.clone();
                prov.endpoint = m.origin.endpoint.clone();
                prov.address = Some(format!("{} {p}", m.topic));
                prov.source_timestamp = m.source_ms.map(ms_text);
                prov.received_at = ms_text(m.received_ms);
                match m.doc.pointer(p) {
                    Some(v) if !v.is_null() => {
                        prov.raw = v.clone();
                        Ok(v.clone())
                    }
                    _ => {
                        prov.quality = "bad".into();
                        prov.status = Some(format!("no {p} in the message"));
                        Err(format!("no {p} in the message"))
                    }
                }
            }
            Source::TopicLevel(n) => {
                let Some(m) = f.message else {
                    return (Err("no message".into()), prov);
                };
                prov.protocol = m.origin.protocol.clone();
                prov.endpoint = m.origin.endpoint.clone();
                prov.address = Some(format!("{} level {n}", m.topic));
                prov.received_at = ms_text(m.received_ms);
                match m.topic.split('/').nth(*n) {
                    Some(level) => {
                        prov.raw = Value::String(level.to_string());
                        Ok(Value::String(level.to_string()))
                    }
                    None => Err(format!("topic {} has no level {n}", m.topic)),
                }
            }
        };
        let value = raw.and_then(|v| convert(field, v));
        if let Err(e) = &value {
            prov.quality = if prov.quality == "good" {
                "bad".into()
            } else {
                prov.quality
            };
            prov.status.get_or_insert_with(|| e.clone());
        }
        (value, prov)
    }

    fn make(&mut self, f: Fired<'_>) -> NewRecord {
        let at = ms_text(f.received_ms);
        let rule = &self.rules[f.rule];
        let mut rec = QualityRecord::new(&self.ctx, rule.kind);
        rec.captured_at = at.clone();
        rec.provenance.rule = Some(rule.name.clone());
        rec.provenance.trigger = Some(TriggerProvenance {
            source: f.source.clone(),
            tag: f.tag.clone(),
            value: f.value.clone(),
            source_timestamp: f.source_ms.map(ms_text),
        });
        let mut values: HashMap<&str, Value> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        for field in &rule.fields {
            let (v, prov) = self.read(field, &f, &at);
            match v {
                Ok(v) => {
                    values.insert(field.path.as_str(), v);
                }
                Err(why) => missing.push(format!("{} ({why})", field.path)),
            }
            rec.provenance.fields.insert(field.path.clone(), prov);
        }
        let mut incomplete: Vec<String> = rule
            .required
            .iter()
            .filter(|r| !values.contains_key(r.as_str()))
            .cloned()
            .collect();
        let tol = Tolerances {
            lower: values
                .remove("inspection.lower_tolerance")
                .and_then(|v| v.as_f64()),
            upper: values
                .remove("inspection.upper_tolerance")
                .and_then(|v| v.as_f64()),
        };
        let dedupe = rule
            .dedupe_key
            .as_deref()
            .and_then(|t| render_key(t, &values, f.message));
        let mut sections: HashMap<&str, Map<String, Value>> = HashMap::new();
        for (path, v) in &values {
            if let Some((section, name)) = path.split_once('.') {
                sections
                    .entry(section)
                    .or_default()
                    .insert(name.to_string(), v.clone());
            }
        }
        let mut take = |name: &str| sections.remove(name).unwrap_or_default();
        rec.subject = section("subject", take("subject"), &mut missing, &mut incomplete);
        match rule.kind {
            RecordKind::Inspection => {
                rec.inspection = Some(section(
                    "inspection",
                    take("inspection"),
                    &mut missing,
                    &mut incomplete,
                ));
            }
            RecordKind::Traveler => {
                rec.traveler = Some(section(
                    "traveler",
                    take("traveler"),
                    &mut missing,
                    &mut incomplete,
                ));
            }
            RecordKind::Calibration => {
                let mut c = take("calibration");
                c.entry("instrument_id")
                    .or_insert(Value::String(String::new()));
                rec.calibration = Some(section("calibration", c, &mut missing, &mut incomplete));
            }
            RecordKind::Gap | RecordKind::AgentEvent => {}
        }
        let rule_name = rule.name.clone();
        if !missing.is_empty() {
            tracing::debug!(
                "rule {rule_name}: fields without value: {}",
                missing.join("; ")
            );
        }
        let warnings = self.enricher.enrich(&mut rec, tol);
        for w in warnings {
            tracing::warn!("rule {rule_name}, record {}: {w}", rec.id);
        }
        // Enrichment may have filled a required field (the work order from the traveler).
        incomplete.retain(|p| !field_present(&rec, p));
        if !incomplete.is_empty() {
            tracing::warn!(
                "rule {rule_name}: record {} is incomplete, missing {}; it is written with `incomplete` set",
                rec.id,
                incomplete.join(", ")
            );
            rec.flags.push("incomplete".into());
            rec.incomplete = incomplete;
        }
        self.enricher.learn(&rec);
        let new = NewRecord::new(rec);
        match dedupe {
            Some(key) => new.with_dedupe_key(format!("{rule_name}:{key}")),
            None => new,
        }
    }
}

fn field_present(r: &QualityRecord, path: &str) -> bool {
    let v = serde_json::to_value(r).unwrap_or(Value::Null);
    let pointer = format!("/{}", path.replace('.', "/"));
    v.pointer(&pointer).is_some_and(|v| !v.is_null() && v != "")
}

fn render_key(
    template: &str,
    values: &HashMap<&str, Value>,
    m: Option<&Message>,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 1..end];
        let v = if name.starts_with('/') {
            m.and_then(|m| m.doc.pointer(name)).and_then(text_of)
        } else {
            values.get(name).and_then(text_of)
        }?;
        out.push_str(&v);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Converts a raw value to the field's type and applies scale, offset, map and format.
fn convert(field: &Field, v: Value) -> Result<Value, String> {
    let spec = &field.spec;
    match field.ty {
        FieldType::Number => {
            let x = match &v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                _ => None,
            }
            .ok_or_else(|| format!("{v} is not a number"))?;
            let y = x * spec.scale.unwrap_or(1.0) + spec.offset.unwrap_or(0.0);
            if !y.is_finite() {
                return Err(format!("{y} is not a finite number"));
            }
            Ok(Value::from(y))
        }
        FieldType::Text => {
            let mut s = text_of(&v).ok_or_else(|| format!("{v} is not text"))?;
            if let Some(mapped) = spec.map.get(&s) {
                s = mapped.clone();
            }
            if let Some(fmt) = &spec.format {
                s = fmt.replace("{value}", &s);
            }
            let s = match field.path.as_str() {
                "inspection.result" => normalize_result(&s)
                    .ok_or_else(|| {
                        format!("result {s:?} is neither pass nor fail (use map to translate it)")
                    })?
                    .to_string(),
                "calibration.result" => {
                    let l = s.trim().to_ascii_lowercase();
                    match normalize_result(&l) {
                        Some(r) => r.to_string(),
                        None if l == "adjusted" || l == "limited" => l,
                        None => {
                            return Err(format!(
                                "calibration result {s:?} is not pass, fail, adjusted or limited"
                            ))
                        }
                    }
                }
                "traveler.status" => {
                    let l = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
                    match l.as_str() {
                        "queued" | "started" | "completed" | "on_hold" | "scrapped" => l,
                        _ => {
                            return Err(format!(
                                "status {s:?} is not queued, started, completed, on_hold or scrapped (use map to translate it)"
                            ))
                        }
                    }
                }
                _ => s,
            };
            if s.is_empty() {
                return Err("empty text".into());
            }
            Ok(Value::String(s))
        }
        FieldType::Time => match &v {
            Value::Number(n) => n
                .as_i64()
                .map(|ms| Value::String(ms_text(ms)))
                .ok_or_else(|| format!("{v} is not a Unix time in milliseconds")),
            Value::String(s) if crate::time::parse(s).is_some() || is_date(s) => Ok(v.clone()),
            _ => Err(format!("{v} is not an RFC 3339 time or a date")),
        },
    }
}

fn is_date(s: &str) -> bool {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
}

/// A record section (`subject`, `inspection` …) from the fields a rule mapped to it. The rule's
/// fields were checked against the record's schema at start and their values coerced to its types,
/// so this does not fail; should a value still not fit, that field is left out, named in the log
/// and in `incomplete` (with the reason), and the rest of the section is kept: a section never
/// becomes empty without a word.
fn section<T: serde::de::DeserializeOwned + Default>(
    name: &str,
    fields: Map<String, Value>,
    missing: &mut Vec<String>,
    incomplete: &mut Vec<String>,
) -> T {
    // Read through a reference: the usual case costs no copy of the fields.
    if let Ok(t) = T::deserialize(&fields) {
        return t;
    }
    let mut kept = Map::new();
    for (key, value) in fields {
        let mut tried = kept.clone();
        tried.insert(key.clone(), value);
        match serde_json::from_value::<T>(Value::Object(tried.clone())) {
            Ok(_) => kept = tried,
            Err(e) => {
                let path = format!("{name}.{key}");
                tracing::error!(
                    "record field {path} left out: its value does not fit the record ({e})"
                );
                missing.push(format!("{path} (value does not fit the record: {e})"));
                if !incomplete.contains(&path) {
                    incomplete.push(path);
                }
            }
        }
    }
    // `kept` holds only fields that deserialised together; should it still not, the section is
    // named incomplete rather than left empty without a word.
    serde_json::from_value::<T>(Value::Object(kept)).unwrap_or_else(|e| {
        tracing::error!("record section {name} left out: {e}");
        missing.push(format!("{name} (does not fit the record: {e})"));
        incomplete.push(name.to_string());
        T::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::model::{Calibration, Inspection};

    #[test]
    fn a_field_that_does_not_fit_is_named_and_the_rest_of_the_section_kept() {
        let mut fields = Map::new();
        fields.insert("characteristic".into(), Value::String("OD-1".into()));
        fields.insert("value".into(), Value::String("not a number".into()));
        fields.insert("unit".into(), Value::String("mm".into()));
        let (mut missing, mut incomplete) = (Vec::new(), Vec::new());
        let i: Inspection = section("inspection", fields, &mut missing, &mut incomplete);
        assert_eq!(i.characteristic.as_deref(), Some("OD-1"));
        assert_eq!(i.unit.as_deref(), Some("mm"));
        assert_eq!(i.value, None);
        assert_eq!(incomplete, ["inspection.value"]);
        assert!(
            missing[0].starts_with("inspection.value (value does not fit"),
            "{missing:?}"
        );

        // A section whose required key is present keeps its other good fields too.
        let mut fields = Map::new();
        fields.insert("instrument_id".into(), Value::String("G-101".into()));
        fields.insert("due_at".into(), json_number());
        let (mut missing, mut incomplete) = (Vec::new(), Vec::new());
        let c: Calibration = section("calibration", fields, &mut missing, &mut incomplete);
        assert_eq!(c.instrument_id, "G-101");
        assert_eq!(incomplete, ["calibration.due_at"]);
    }

    fn json_number() -> Value {
        Value::from(12)
    }
}
