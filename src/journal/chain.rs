//! The hash chain: RFC 8785 (JCS) canonical JSON and `hash = SHA-256(prev_hash ‖ JCS(record))`.
//!
//! `prev_hash` enters the digest as its 32 raw bytes; the first record of a journal chains to 32 zero
//! bytes ([`GENESIS`]). Hashes are stored and shown as lowercase hex.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record of a journal: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Serializes `value` as RFC 8785 canonical JSON: object members sorted by UTF-16 code units, numbers
/// in ECMAScript form, strings with the minimal escaping, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    // JCS numbers are IEEE-754 doubles printed the way ECMAScript prints them.
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        out.push('0'); // -0 prints as 0
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format(f));
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{08}' => "\\b",
            '\u{09}' => "\\t",
            '\u{0a}' => "\\n",
            '\u{0c}' => "\\f",
            '\u{0d}' => "\\r",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(escape);
        }
        run = i + c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Serializes any `Serialize` value as RFC 8785 canonical JSON in one pass, when its maps and structs
/// already come out in canonical key order (structs declared in alphabetical field order, maps that
/// are `BTreeMap`s). The output is checked cheaply: if a key could sort differently under UTF-16 than
/// under UTF-8 (a character at or above U+E000 anywhere), it falls back to [`canonical_json`].
pub fn to_canonical_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::with_capacity(768);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JcsFormatter);
    // ASCII (the usual case) is checked a machine word at a time; only other text is scanned for
    // the lead bytes of U+E000 and above.
    let fast = value.serialize(&mut ser).is_ok()
        && (out.is_ascii() || !out.iter().fold(false, |seen, &b| seen | (b >= 0xEE)));
    if fast {
        if let Ok(text) = String::from_utf8(out) {
            return text;
        }
    }
    canonical_json(&serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
}

/// serde_json formatter with RFC 8785 numbers: every number printed as the IEEE double ECMAScript
/// would print. Strings already match JCS (serde_json escapes only `"`, `\\` and controls, as JCS does).
struct JcsFormatter;

impl JcsFormatter {
    fn number<W: ?Sized + std::io::Write>(w: &mut W, f: f64) -> std::io::Result<()> {
        if f == 0.0 || !f.is_finite() {
            return w.write_all(b"0");
        }
        let mut buf = ryu_js::Buffer::new();
        w.write_all(buf.format(f).as_bytes())
    }
}

macro_rules! jcs_int {
    ($($name:ident: $t:ty),*) => {$(
        fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: $t) -> std::io::Result<()> {
            Self::number(w, v as f64)
        }
    )*};
}

impl serde_json::ser::Formatter for JcsFormatter {
    jcs_int!(write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64, write_i128: i128,
             write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64, write_u128: u128);

    fn write_f32<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f32) -> std::io::Result<()> {
        Self::number(w, f64::from(v))
    }

    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f64) -> std::io::Result<()> {
        Self::number(w, v)
    }
}

/// `SHA-256(prev_hash ‖ canonical)` as lowercase hex. `prev_hash` is hex; a malformed one hashes as given
/// (so a tampered `prev_hash` column cannot make verification panic, it only mismatches).
pub fn chain_hash(prev_hash_hex: &str, canonical: &[u8]) -> String {
    to_hex(&chain_hash_from_hex(prev_hash_hex, canonical))
}

/// [`chain_hash`] as raw bytes: how the writer chains its first row from the head's hex (the last
/// row's, or a retention checkpoint's), the same way `verify` does, malformed hex included.
pub fn chain_hash_from_hex(prev_hash_hex: &str, canonical: &[u8]) -> [u8; 32] {
    match decode_hex32(prev_hash_hex) {
        Some(prev) => chain_hash_raw(&prev, canonical),
        None => {
            let mut h = Sha256::new();
            h.update(prev_hash_hex.as_bytes());
            h.update(canonical);
            h.finalize().into()
        }
    }
}

/// `SHA-256(prev_hash ‖ canonical)` on raw hashes: the writer's form, without hex on its hot path.
pub fn chain_hash_raw(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// A hash column as lowercase hex: 32 raw bytes (schema 6 and later) are encoded, text (a journal
/// of an older schema opened read-only) is taken as it is, anything else is shown as its bytes so
/// that it mismatches instead of failing the read.
pub fn hash_column_hex(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Blob(b) if b.len() == 32 => to_hex(b),
        ValueRef::Blob(b) | ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
    }
}

/// SHA-256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// 64 hex digits as 32 bytes (None if `s` is not that).
pub fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    #[allow(clippy::excessive_precision)] // the RFC's own test value
    fn jcs_sorts_keys_by_utf16_and_formats_numbers_like_ecmascript() {
        // Cases from RFC 8785 §3.2.2 and appendix B.
        let v = json!({"b": 1, "a": [1.0, 25.004, 1e21, 1e-7, -0.0, 333333333.33333329], "\u{20ac}": "x", "\r": "\n\u{1}"});
        assert_eq!(
            canonical_json(&v),
            "{\"\\r\":\"\\n\\u0001\",\"a\":[1,25.004,1e+21,1e-7,0,333333333.3333333],\"b\":1,\"€\":\"x\"}"
        );
    }

    #[test]
    fn jcs_orders_surrogate_pairs_by_code_unit() {
        // U+1F600 (surrogates D83D..) sorts before U+FB33 (FB33) in UTF-16 order, after it in UTF-8 order.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2});
        assert_eq!(canonical_json(&v), "{\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }

    #[test]
    fn one_pass_canonical_json_equals_the_reference_for_a_full_record() {
        use crate::records::model::*;
        let ctx = RecordContext {
            gateway_id: "gw".into(),
            config_sha256: "ab".repeat(32),
        };
        let mut r = QualityRecord::agent_event(
            &ctx,
            "e",
            "m\u{1}\"q\"",
            json!({"z": 1, "a": [1.5, 2.0, 9007199254740993u64], "é": null}),
        );
        r.subject = Subject {
            work_order: Some("W".into()),
            part_number: Some("P".into()),
            revision: Some("R".into()),
            serial: Some("S".into()),
            lot: Some("L".into()),
            operation: Some("O".into()),
            station: Some("T".into()),
        };
        r.traveler = Some(Traveler {
            status: Some("started".into()),
            work_center: Some("wc".into()),
            quantity_good: Some(3.0),
            quantity_scrap: Some(0.5),
            operator: Some("op".into()),
            started_at: Some("2026-01-01T00:00:00.000Z".into()),
            completed_at: Some("2026-01-01T00:00:01.000Z".into()),
        });
        r.inspection = Some(Inspection {
            characteristic: Some("OD".into()),
            value: Some(25.004),
            unit: Some("mm".into()),
            nominal: Some(25.0),
            lower_limit: Some(1e-7),
            upper_limit: Some(1e21),
            result: Some("pass".into()),
            gauge_id: Some("G".into()),
            inspector: Some("I".into()),
            gauge_calibration: Some(GaugeCalibration {
                status: "valid".into(),
                due_at: Some("2027-01-01".into()),
                record_id: Some("x".into()),
            }),
        });
        r.calibration = Some(Calibration {
            instrument_id: "G".into(),
            description: Some("d".into()),
            calibrated_at: Some("c".into()),
            due_at: Some("u".into()),
            result: Some("pass".into()),
            certificate: Some("cert".into()),
            standard: Some("std".into()),
            performed_by: Some("pb".into()),
        });
        r.gap = Some(Gap {
            source: "s".into(),
            from: "f".into(),
            to: "t".into(),
            reason: "r".into(),
        });
        r.provenance.rule = Some("rule".into());
        r.provenance.trigger = Some(TriggerProvenance {
            source: "s".into(),
            tag: Some("t".into()),
            value: json!(true),
            source_timestamp: Some("ts".into()),
        });
        r.provenance.fields.insert(
            "inspection.value".into(),
            FieldProvenance {
                source: "s".into(),
                protocol: "modbus".into(),
                endpoint: Some("e".into()),
                address: Some("a".into()),
                raw: json!([16840, 1234]),
                source_timestamp: Some("st".into()),
                server_timestamp: Some("sv".into()),
                received_at: "ra".into(),
                quality: "good".into(),
                status: Some("ok".into()),
            },
        );
        r.flags = vec!["gauge_overdue".into()];
        r.incomplete = vec!["inspection.value".into()];
        let reference = canonical_json(&serde_json::to_value(&r).expect("value"));
        assert_eq!(
            to_canonical_json(&r),
            reference,
            "a struct field is declared out of alphabetical order"
        );
        // Keys that sort differently under UTF-16 take the slow path and still come out canonical.
        let odd = json!({"\u{fb33}": 1, "\u{1f600}": 2});
        assert_eq!(to_canonical_json(&odd), canonical_json(&odd));
    }

    #[test]
    fn canonical_numbers_survive_a_parse_round_trip() {
        // verify re-parses stored bodies: every double must come back bit-exact (float_roundtrip).
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..20_000 {
            let f = match i % 3 {
                0 => f64::from(f32::from_bits(rng.u32(..))),
                1 => f64::from_bits(rng.u64(..)),
                _ => 25.0 + (rng.f64() - 0.5) * 0.04,
            };
            if !f.is_finite() {
                continue;
            }
            let text = to_canonical_json(&json!({ "v": f }));
            let back: Value = serde_json::from_str(&text).expect("parse");
            assert_eq!(canonical_json(&back), text, "{f:e} does not round-trip");
        }
    }

    #[test]
    fn chain_hash_depends_on_prev_and_body() {
        let a = chain_hash(GENESIS, b"{}");
        assert_eq!(a, sha256_hex(&[[0u8; 32].as_slice(), b"{}"].concat()));
        assert_ne!(chain_hash(&a, b"{}"), a);
        assert_ne!(chain_hash(GENESIS, b"{ }"), a);
    }
}
