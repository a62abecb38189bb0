//! Record rules (`[[records]]`): a trigger, field mappings and a dedupe key, compiled against the tag
//! table.
//!
//! ```toml
//! [[records]]
//! name = "od_check"
//! kind = "inspection"
//! trigger = { type = "rising", tag = "cell4_plc.part_complete" }
//! dedupe_key = "{subject.serial}/{inspection.characteristic}"
//! [records.fields]
//! "subject.serial" = { tag = "cell4_plc.serial" }
//! "inspection.value" = { tag = "gauge1.diameter", scale = 0.001 }
//! "inspection.characteristic" = { const = "OD-1" }
//! ```
//!
//! Trigger semantics:
//! - `rising` / `falling`: a good sample turns the tag true / false (numbers: non-zero is true). The
//!   first value seen is not an edge (there is no previous state to compare with).
//! - `change`: the first value, then every value that differs from the value at the last firing (by
//!   more than `deadband` for numbers).
//! - `equals`: the tag becomes equal to `value` (it was different, or unknown).
//! - `message`: every message of `source` whose topic matches `topic` (MQTT wildcards `+`, `#`).
//! - `row`: every REST row of `source` (of `endpoint`, if given).
//!
//! Bad-quality samples never fire a trigger and are never used as field values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::RecordKind;
use super::observation::TagId;
use super::tags::TagTable;
use crate::config::ConfigError;

pub use super::targets::{target_type, FieldType, TARGETS};

/// `[[records]]`: one rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name, written into every record's `provenance.rule`; lowercase letters, digits, '_'.
    pub name: String,
    /// `traveler`, `inspection` or `calibration`.
    pub kind: RecordKind,
    /// What makes a record.
    pub trigger: TriggerConfig,
    /// Template of the key that identifies the physical event, e.g.
    /// `"{subject.serial}/{inspection.characteristic}"` or, for REST rows, `"{/ID}/{/modifiedAt}"`
    /// (a `{/pointer}` reads the message). A second record with the same key is not written.
    #[serde(default)]
    pub dedupe_key: Option<String>,
    /// Fields that must have a value; a record without one is still written, listing them in
    /// `incomplete`. Default: `inspection.value` (inspection), `calibration.instrument_id`
    /// (calibration), `subject.work_order` (traveler).
    #[serde(default)]
    pub required: Option<Vec<String>>,
    /// Field mappings, by record field path.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

/// What fires a rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerConfig {
    /// A boolean tag turns true.
    Rising {
        /// `source.tag`.
        tag: String,
    },
    /// A boolean tag turns false.
    Falling {
        /// `source.tag`.
        tag: String,
    },
    /// A tag changes.
    Change {
        /// `source.tag`.
        tag: String,
        /// Smallest numeric change that counts.
        #[serde(default)]
        deadband: f64,
    },
    /// A tag becomes equal to a value.
    Equals {
        /// `source.tag`.
        tag: String,
        /// The value.
        value: Value,
    },
    /// Every message of a source.
    Message {
        /// Source id.
        source: String,
        /// MQTT topic filter.
        #[serde(default)]
        topic: Option<String>,
    },
    /// Every REST row of a source.
    Row {
        /// Source id.
        source: String,
        /// Endpoint name.
        #[serde(default)]
        endpoint: Option<String>,
    },
}

/// Where a field's value comes from, and how it is transformed. Exactly one of `tag`, `pointer`,
/// `const`, `topic_level`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Latest value of a tag (`source.tag`), from any source.
    #[serde(default)]
    pub tag: Option<String>,
    /// JSON pointer into the triggering message (`/workOrder`).
    #[serde(default)]
    pub pointer: Option<String>,
    /// A constant.
    #[serde(default, rename = "const")]
    pub constant: Option<Value>,
    /// A level of the triggering message's topic, counted from 0.
    #[serde(default)]
    pub topic_level: Option<usize>,
    /// Numbers: value × scale + offset.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Numbers: value × scale + offset.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Text: replace values (`{ RELEASED = "queued" }`), applied before `format`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Text: a template where `{value}` is the value (`"SN-{value}"`).
    #[serde(default)]
    pub format: Option<String>,
}

/// A compiled trigger.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Edge to true.
    Rising(TagId),
    /// Edge to false.
    Falling(TagId),
    /// Change beyond a deadband.
    Change(TagId, f64),
    /// Becomes equal.
    Equals(TagId, Value),
    /// Messages of a source, optionally filtered by topic.
    Message(String, Option<String>),
    /// REST rows of a source, optionally of one endpoint.
    Row(String, Option<String>),
}

impl Trigger {
    /// The tag that drives the trigger, for tag triggers.
    pub fn tag(&self) -> Option<TagId> {
        match self {
            Trigger::Rising(t)
            | Trigger::Falling(t)
            | Trigger::Change(t, _)
            | Trigger::Equals(t, _) => Some(*t),
            Trigger::Message(..) | Trigger::Row(..) => None,
        }
    }
}

/// Where a compiled field takes its value.
#[derive(Debug, Clone)]
pub enum Source {
    /// A tag.
    Tag(TagId),
    /// A JSON pointer into the message.
    Pointer(String),
    /// A constant.
    Const(Value),
    /// A topic level.
    TopicLevel(usize),
}

/// A compiled field mapping.
#[derive(Debug, Clone)]
pub struct Field {
    /// Target path (`inspection.value`).
    pub path: String,
    /// Target type.
    pub ty: FieldType,
    /// Where the value comes from.
    pub source: Source,
    /// The transformation options.
    pub spec: FieldSpec,
}

/// Per-rule trigger state.
#[derive(Debug, Clone, Default)]
pub struct TriggerState {
    /// Last good boolean state (edges).
    pub last_bool: Option<bool>,
    /// Whether the tag equalled the value at the last good sample (equals).
    pub last_equal: Option<bool>,
    /// Value at the last firing (change).
    pub last_fired: Option<Value>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name.
    pub name: String,
    /// Record kind.
    pub kind: RecordKind,
    /// Trigger.
    pub trigger: Trigger,
    /// Trigger state.
    pub state: TriggerState,
    /// Fields.
    pub fields: Vec<Field>,
    /// Required field paths.
    pub required: Vec<String>,
    /// Dedupe key template.
    pub dedupe_key: Option<String>,
}

fn default_required(kind: RecordKind) -> Vec<String> {
    match kind {
        RecordKind::Inspection => vec!["inspection.value".into()],
        RecordKind::Calibration => vec!["calibration.instrument_id".into()],
        RecordKind::Traveler => vec!["subject.work_order".into()],
        RecordKind::Gap | RecordKind::AgentEvent => Vec::new(),
    }
}

fn tag_ref(tags: &mut TagTable, at: &str, name: &str, errors: &mut Vec<ConfigError>) -> TagId {
    match name.split_once('.') {
        Some((source, tag)) if !source.is_empty() && !tag.is_empty() => {
            tags.register(source, tag, None)
        }
        _ => {
            errors.push(
                ConfigError::new(at, format!("{name:?} is not a tag reference"))
                    .hint("write source.tag, e.g. \"cell4_plc.part_complete\""),
            );
            0
        }
    }
}

/// Compiles rules, registering the tags they name; collects every problem with its path.
pub fn compile(configs: &[RuleConfig], tags: &mut TagTable) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, c) in configs.iter().enumerate() {
        let at = format!("records[{i}]");
        crate::config::check_id(&format!("{at}.name"), &c.name, &mut errors);
        if !names.insert(c.name.clone()) {
            errors.push(
                ConfigError::new(
                    format!("{at}.name"),
                    format!("duplicate rule name {:?}", c.name),
                )
                .hint("each rule needs its own name: it identifies the rule in every record"),
            );
        }
        if matches!(c.kind, RecordKind::Gap | RecordKind::AgentEvent) {
            errors.push(
                ConfigError::new(format!("{at}.kind"), format!("rules cannot make {} records", c.kind.as_str()))
                    .hint("use traveler, inspection or calibration; gap and agent_event records are made by the agent"),
            );
        }
        let trigger = match &c.trigger {
            TriggerConfig::Rising { tag } => Trigger::Rising(tag_ref(
                tags,
                &format!("{at}.trigger.tag"),
                tag,
                &mut errors,
            )),
            TriggerConfig::Falling { tag } => Trigger::Falling(tag_ref(
                tags,
                &format!("{at}.trigger.tag"),
                tag,
                &mut errors,
            )),
            TriggerConfig::Change { tag, deadband } => {
                if *deadband < 0.0 || !deadband.is_finite() {
                    errors.push(ConfigError::new(
                        format!("{at}.trigger.deadband"),
                        "must be 0 or more",
                    ));
                }
                Trigger::Change(
                    tag_ref(tags, &format!("{at}.trigger.tag"), tag, &mut errors),
                    *deadband,
                )
            }
            TriggerConfig::Equals { tag, value } => Trigger::Equals(
                tag_ref(tags, &format!("{at}.trigger.tag"), tag, &mut errors),
                value.clone(),
            ),
            TriggerConfig::Message { source, topic } => {
                Trigger::Message(source.clone(), topic.clone())
            }
            TriggerConfig::Row { source, endpoint } => {
                Trigger::Row(source.clone(), endpoint.clone())
            }
        };
        let from_message = matches!(trigger, Trigger::Message(..) | Trigger::Row(..));
        let mut fields = Vec::new();
        for (path, spec) in &c.fields {
            let fat = format!("{at}.fields.\"{path}\"");
            let Some(ty) = target_type(path, c.kind) else {
                let known: Vec<&str> = TARGETS
                    .iter()
                    .filter(|(_, _, k)| k.is_none_or(|k| k == c.kind))
                    .map(|(p, _, _)| *p)
                    .collect();
                errors.push(
                    ConfigError::new(
                        fat,
                        format!("{} records have no field {path:?}", c.kind.as_str()),
                    )
                    .hint(format!("fields of this kind: {}", known.join(", "))),
                );
                continue;
            };
            let sources = [
                spec.tag.is_some(),
                spec.pointer.is_some(),
                spec.constant.is_some(),
                spec.topic_level.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                errors.push(
                    ConfigError::new(fat, "needs exactly one of tag, pointer, const, topic_level")
                        .hint("e.g. { tag = \"gauge1.diameter\" } or { pointer = \"/serial\" } or { const = \"mm\" }"),
                );
                continue;
            }
            let source = if let Some(t) = &spec.tag {
                Source::Tag(tag_ref(tags, &format!("{fat}.tag"), t, &mut errors))
            } else if let Some(p) = &spec.pointer {
                if !from_message {
                    errors.push(
                        ConfigError::new(
                            format!("{fat}.pointer"),
                            "a pointer needs a message or row trigger",
                        )
                        .hint("tag triggers have no message; use { tag = \"source.tag\" }"),
                    );
                }
                if !(p.is_empty() || p.starts_with('/')) {
                    errors.push(
                        ConfigError::new(
                            format!("{fat}.pointer"),
                            format!("{p:?} is not a JSON pointer"),
                        )
                        .hint("JSON pointers start with '/', e.g. \"/measurement/value\""),
                    );
                }
                Source::Pointer(p.clone())
            } else if let Some(n) = spec.topic_level {
                if !from_message {
                    errors.push(ConfigError::new(
                        format!("{fat}.topic_level"),
                        "a topic level needs a message trigger",
                    ));
                }
                Source::TopicLevel(n)
            } else {
                Source::Const(spec.constant.clone().unwrap_or(Value::Null))
            };
            if (spec.scale.is_some() || spec.offset.is_some()) && ty != FieldType::Number {
                errors.push(ConfigError::new(
                    fat.clone(),
                    format!("scale and offset apply to numbers; {path} is text"),
                ));
            }
            fields.push(Field {
                path: path.clone(),
                ty,
                source,
                spec: spec.clone(),
            });
        }
        let required = c
            .required
            .clone()
            .unwrap_or_else(|| default_required(c.kind));
        for r in &required {
            if target_type(r, c.kind).is_none() {
                errors.push(ConfigError::new(
                    format!("{at}.required"),
                    format!("{} records have no field {r:?}", c.kind.as_str()),
                ));
            }
        }
        if let Some(t) = &c.dedupe_key {
            for placeholder in placeholders(t) {
                if !placeholder.starts_with('/') && target_type(placeholder, c.kind).is_none() {
                    errors.push(
                        ConfigError::new(
                            format!("{at}.dedupe_key"),
                            format!("{{{placeholder}}} is neither a field of {} records nor a JSON pointer", c.kind.as_str()),
                        )
                        .hint("use record fields like {subject.serial} or, for messages, pointers like {/ID}"),
                    );
                }
            }
        }
        rules.push(Rule {
            name: c.name.clone(),
            kind: c.kind,
            trigger,
            state: TriggerState::default(),
            fields,
            required,
            dedupe_key: c.dedupe_key.clone(),
        });
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// The `{…}` placeholders of a template.
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(p, _)| p))
}

/// Whether the value counts as true (bools, non-zero numbers, "true"/"1").
pub fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "on" => Some(true),
            "false" | "0" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Whether two values are equal, numbers by value (1 == 1.0).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Rule {
    /// Evaluates a tag trigger on a new good value; updates the trigger state.
    pub fn fires_on(&mut self, value: &Value) -> bool {
        match &self.trigger {
            Trigger::Rising(_) | Trigger::Falling(_) => {
                let Some(now) = truthy(value) else {
                    return false;
                };
                let before = self.state.last_bool.replace(now);
                let want = matches!(self.trigger, Trigger::Rising(_));
                before == Some(!want) && now == want
            }
            Trigger::Change(_, deadband) => {
                let fire = match &self.state.last_fired {
                    None => true,
                    Some(last) => match (last.as_f64(), value.as_f64()) {
                        (Some(a), Some(b)) => (a - b).abs() > *deadband,
                        _ => last != value,
                    },
                };
                if fire {
                    self.state.last_fired = Some(value.clone());
                }
                fire
            }
            Trigger::Equals(_, target) => {
                let now = same_value(value, target);
                let before = self.state.last_equal.replace(now);
                now && before != Some(true)
            }
            Trigger::Message(..) | Trigger::Row(..) => false,
        }
    }
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topic_filters() {
        assert!(topic_matches(
            "plant1/+/inspection",
            "plant1/cell4/inspection"
        ));
        assert!(topic_matches("plant1/#", "plant1/cell4/inspection"));
        assert!(!topic_matches(
            "plant1/+/inspection",
            "plant1/cell4/x/inspection"
        ));
        assert!(!topic_matches("plant1/+", "plant1"));
    }

    fn rule(trigger: Trigger) -> Rule {
        Rule {
            name: "r".into(),
            kind: RecordKind::Inspection,
            trigger,
            state: TriggerState::default(),
            fields: Vec::new(),
            required: Vec::new(),
            dedupe_key: None,
        }
    }

    #[test]
    fn edges_need_a_previous_state() {
        let mut r = rule(Trigger::Rising(0));
        let seq = [true, false, true, true, false, true];
        let fired: Vec<bool> = seq.iter().map(|v| r.fires_on(&json!(v))).collect();
        assert_eq!(fired, vec![false, false, true, false, false, true]);
        let mut f = rule(Trigger::Falling(0));
        let fired: Vec<bool> = [1, 0, 1, 0].iter().map(|v| f.fires_on(&json!(v))).collect();
        assert_eq!(fired, vec![false, true, false, true]);
    }

    #[test]
    fn change_respects_the_deadband_from_the_last_firing() {
        let mut r = rule(Trigger::Change(0, 0.01));
        let vals = [25.0, 25.005, 25.009, 25.011, 25.0, 24.995];
        let fired: Vec<bool> = vals.iter().map(|v| r.fires_on(&json!(v))).collect();
        assert_eq!(fired, vec![true, false, false, true, true, false]);
    }

    #[test]
    fn equals_fires_on_becoming_equal() {
        let mut r = rule(Trigger::Equals(0, json!(2)));
        let fired: Vec<bool> = [json!(2), json!(2), json!(1), json!(2.0), json!(3)]
            .iter()
            .map(|v| r.fires_on(v))
            .collect();
        assert_eq!(fired, vec![true, false, false, true, false]);
    }
}
