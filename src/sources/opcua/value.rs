//! OPC UA values to samples: the variant becomes JSON, the status code the quality.
//!
//! - Good → `good`; Uncertain → `uncertain` (value kept, status named); Bad → `bad` with the status
//!   name (`BadSensorFailure`, `BadNodeIdUnknown`...) in the provenance and no value.
//! - Source and server timestamps are both kept; the source timestamp (when the device measured)
//!   is what records call `source_timestamp`.

use opcua::types::{DataValue, DateTime, Variant};
use serde_json::{json, Value};

use crate::records::observation::{Quality, Sample};

/// Unix milliseconds of an OPC UA time (`None` for the null time).
pub fn unix_ms(t: &DateTime) -> Option<i64> {
    if t.is_null() {
        None
    } else {
        Some(t.as_chrono().timestamp_millis())
    }
}

/// The JSON form of a variant: numbers, bools and strings as themselves, times as RFC 3339 text,
/// arrays as arrays; anything exotic as its text.
pub fn to_json(v: &Variant) -> Value {
    match v {
        Variant::Empty => Value::Null,
        Variant::Boolean(b) => Value::Bool(*b),
        Variant::SByte(n) => json!(n),
        Variant::Byte(n) => json!(n),
        Variant::Int16(n) => json!(n),
        Variant::UInt16(n) => json!(n),
        Variant::Int32(n) => json!(n),
        Variant::UInt32(n) => json!(n),
        Variant::Int64(n) => json!(n),
        Variant::UInt64(n) => json!(n),
        // Through the shortest decimal text, so 25.01f32 stays 25.01 and not 25.010000228881836.
        Variant::Float(f) if f.is_finite() => f
            .to_string()
            .parse::<f64>()
            .map(|x| json!(x))
            .unwrap_or(Value::Null),
        Variant::Double(f) if f.is_finite() => json!(f),
        Variant::Float(_) | Variant::Double(_) => Value::Null,
        Variant::String(s) => s.value().as_deref().map(Value::from).unwrap_or(Value::Null),
        Variant::DateTime(t) => match unix_ms(t) {
            Some(_) => Value::String(t.to_rfc3339()),
            None => Value::Null,
        },
        Variant::LocalizedText(t) => t
            .text
            .value()
            .as_deref()
            .map(Value::from)
            .unwrap_or(Value::Null),
        Variant::StatusCode(s) => Value::String(s.to_string()),
        Variant::Array(a) => Value::Array(a.values.iter().map(to_json).collect()),
        Variant::Variant(inner) => to_json(inner),
        other => Value::String(other.to_string()),
    }
}

/// A sample from a data value; `received_ms` is the gateway's clock.
pub fn sample(dv: &DataValue, received_ms: i64) -> Sample {
    let status = dv.status.unwrap_or(opcua::types::StatusCode::Good);
    let raw = dv.value.as_ref().map(to_json).unwrap_or(Value::Null);
    let source_ms = dv.source_timestamp.as_ref().and_then(unix_ms);
    let server_ms = dv.server_timestamp.as_ref().and_then(unix_ms);
    let (quality, value, detail) = if status.is_bad() {
        (Quality::Bad, Value::Null, Some(status.to_string()))
    } else if status.is_uncertain() {
        (Quality::Uncertain, raw.clone(), Some(status.to_string()))
    } else if raw.is_null() {
        (
            Quality::Bad,
            Value::Null,
            Some("the server sent no value".to_string()),
        )
    } else {
        (Quality::Good, raw.clone(), None)
    };
    Sample {
        value,
        raw,
        source_ms,
        server_ms,
        received_ms,
        quality,
        status: detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::StatusCode;

    #[test]
    fn variants_become_plain_json() {
        assert_eq!(to_json(&Variant::Float(25.01)), json!(25.01));
        assert_eq!(to_json(&Variant::Double(-0.5)), json!(-0.5));
        assert_eq!(to_json(&Variant::Double(f64::NAN)), Value::Null);
        assert_eq!(to_json(&Variant::Int32(-7)), json!(-7));
        assert_eq!(to_json(&Variant::UInt64(u64::MAX)), json!(u64::MAX));
        assert_eq!(to_json(&Variant::Boolean(true)), json!(true));
        assert_eq!(to_json(&Variant::from("SN-1")), json!("SN-1"));
        assert_eq!(
            to_json(&Variant::from(vec![24.98f64, 25.02])),
            json!([24.98, 25.02])
        );
        let t = DateTime::parse_from_rfc3339("2026-11-22T08:00:00.250Z").expect("valid");
        assert_eq!(to_json(&Variant::from(t)), json!(t.to_rfc3339()));
        assert_eq!(unix_ms(&t), Some(1_795_334_400_250));
    }

    #[test]
    fn status_codes_decide_the_quality_and_are_named() {
        let mut dv = DataValue::new_now(Variant::Double(25.0));
        dv.status = Some(StatusCode::BadSensorFailure);
        let s = sample(&dv, 1);
        assert_eq!(s.quality, Quality::Bad);
        assert_eq!(s.value, Value::Null);
        assert_eq!(s.raw, json!(25.0));
        assert!(s.status.expect("valid").contains("BadSensorFailure"));
        assert!(s.source_ms.is_some() && s.server_ms.is_some());

        dv.status = Some(StatusCode::UncertainLastUsableValue);
        let s = sample(&dv, 1);
        assert_eq!((s.quality, s.value), (Quality::Uncertain, json!(25.0)));

        dv.status = None;
        let s = sample(&dv, 1);
        assert_eq!((s.quality, s.status), (Quality::Good, None));
        let empty = DataValue {
            value: None,
            ..Default::default()
        };
        assert_eq!(sample(&empty, 1).quality, Quality::Bad);
    }
}
