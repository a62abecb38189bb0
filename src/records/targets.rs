//! The fields a record rule may set (`[[records]] fields.<path>`): each with its type and the record
//! kinds it belongs to. The schema (`config/quality-record.v1.schema.json`) and the record model
//! (`model.rs`) hold the same fields; a rule naming any other path is refused by `validate`.

use super::model::RecordKind;

/// The type a record field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text.
    Text,
    /// Number.
    Number,
    /// Timestamp or date (text; numbers are taken as Unix milliseconds).
    Time,
}

/// Every field a rule may set, with its type and the kinds it belongs to (`None`: every kind).
pub const TARGETS: &[(&str, FieldType, Option<RecordKind>)] = &[
    ("subject.work_order", FieldType::Text, None),
    ("subject.part_number", FieldType::Text, None),
    ("subject.revision", FieldType::Text, None),
    ("subject.serial", FieldType::Text, None),
    ("subject.lot", FieldType::Text, None),
    ("subject.operation", FieldType::Text, None),
    ("subject.station", FieldType::Text, None),
    (
        "inspection.characteristic",
        FieldType::Text,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.value",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.unit",
        FieldType::Text,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.nominal",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.lower_limit",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.upper_limit",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.lower_tolerance",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.upper_tolerance",
        FieldType::Number,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.result",
        FieldType::Text,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.gauge_id",
        FieldType::Text,
        Some(RecordKind::Inspection),
    ),
    (
        "inspection.inspector",
        FieldType::Text,
        Some(RecordKind::Inspection),
    ),
    (
        "traveler.status",
        FieldType::Text,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.work_center",
        FieldType::Text,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.quantity_good",
        FieldType::Number,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.quantity_scrap",
        FieldType::Number,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.operator",
        FieldType::Text,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.started_at",
        FieldType::Time,
        Some(RecordKind::Traveler),
    ),
    (
        "traveler.completed_at",
        FieldType::Time,
        Some(RecordKind::Traveler),
    ),
    (
        "calibration.instrument_id",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.description",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.calibrated_at",
        FieldType::Time,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.due_at",
        FieldType::Time,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.result",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.certificate",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.standard",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
    (
        "calibration.performed_by",
        FieldType::Text,
        Some(RecordKind::Calibration),
    ),
];

/// The type of a target field, if `kind` may have it.
pub fn target_type(path: &str, kind: RecordKind) -> Option<FieldType> {
    TARGETS
        .iter()
        .find(|(p, _, k)| *p == path && k.is_none_or(|k| k == kind))
        .map(|(_, t, _)| *t)
}
