//! Payload decoding (pure): bytes of an MQTT message to the JSON document the record rules read.
//!
//! A new format (Sparkplug B, say) is one more variant here and one more arm in [`decode`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How payloads are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// A JSON document (fields by JSON pointer).
    #[default]
    Json,
    /// A plain number (`25.004`): the document is `{"value": 25.004}`.
    Number,
    /// UTF-8 text: the document is `{"value": "…"}`.
    Text,
}

/// Why a message is quarantined instead of recorded: the reason names what was received.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// Larger than the source's `max_message_bytes`.
    #[error("{len} bytes, over max_message_bytes ({max})")]
    TooLarge {
        /// The message's size.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Valid JSON, but not an object (fields are read by JSON pointer from an object).
    #[error("a JSON {0} where an object is expected (use payload = \"number\" or \"text\" for plain values)")]
    NotAnObject(&'static str),
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Bytes that are not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// Text that is not a number (`payload = "number"`).
    #[error("{0:?} is not a number")]
    NotANumber(String),
    /// NaN or an infinity.
    #[error("{0} is not a finite number")]
    NotFinite(f64),
}

/// Decodes a payload; `Err` is the reason it is quarantined.
pub fn decode(format: PayloadFormat, bytes: &[u8]) -> Result<Value, PayloadError> {
    match format {
        PayloadFormat::Json => match serde_json::from_slice(bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            // Fields are read by JSON pointer from an object; anything else would make a record
            // with every field missing.
            Ok(other) => Err(PayloadError::NotAnObject(match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                _ => "null",
            })),
            Err(e) => Err(PayloadError::NotJson(e.to_string())),
        },
        PayloadFormat::Number => {
            let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
            let n: f64 = text
                .trim()
                .parse()
                .map_err(|_| PayloadError::NotANumber(text.trim().to_string()))?;
            if !n.is_finite() {
                return Err(PayloadError::NotFinite(n));
            }
            Ok(serde_json::json!({ "value": n }))
        }
        PayloadFormat::Text => std::str::from_utf8(bytes)
            .map(|t| serde_json::json!({ "value": t }))
            .map_err(|_| PayloadError::NotUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        assert_eq!(
            decode(PayloadFormat::Json, br#"{"a":1}"#),
            Ok(json!({"a": 1}))
        );
        assert!(decode(PayloadFormat::Json, b"{oops")
            .is_err_and(|e| e.to_string().starts_with("not JSON")));
        assert_eq!(
            decode(PayloadFormat::Json, b"[1,2,3]"),
            Err(PayloadError::NotAnObject("array"))
        );
        assert!(decode(PayloadFormat::Json, b"42")
            .is_err_and(|e| e.to_string().contains("JSON number")));
        assert_eq!(
            decode(PayloadFormat::Number, b" 25.004\n"),
            Ok(json!({"value": 25.004}))
        );
        assert!(decode(PayloadFormat::Number, b"NaN").is_err());
        assert_eq!(
            decode(PayloadFormat::Text, b"OK"),
            Ok(json!({"value": "OK"}))
        );
        assert!(decode(PayloadFormat::Text, &[0xff, 0xfe]).is_err());
    }

    /// Issue 18: values must read as the device meant them. JSON numbers (and plain-number payloads)
    /// are recorded as published, in the journal's canonical form: no float noise added, no
    /// digits lost. (Integers beyond 2^53 are the exception: RFC 8785 writes every number as an
    /// IEEE double, so such an integer is rounded: a known gap, it should be kept as text.)
    #[test]
    fn numbers_stay_as_the_publisher_wrote_them() {
        let v = decode(
            PayloadFormat::Json,
            br#"{"d":24.994,"p":0.30000000000000004,"n":1234567890123456,"e":1e-7,"x":-0.5}"#,
        )
        .expect("json");
        let text = crate::journal::chain::canonical_json(&v);
        assert_eq!(
            text,
            r#"{"d":24.994,"e":1e-7,"n":1234567890123456,"p":0.30000000000000004,"x":-0.5}"#
        );
        let v = decode(PayloadFormat::Number, b"24.994").expect("number");
        assert_eq!(
            crate::journal::chain::canonical_json(&v),
            r#"{"value":24.994}"#
        );
    }
}
