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
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{09}' => out.push_str("\\t"),
            '\u{0a}' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0d}' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `SHA-256(prev_hash ‖ canonical)` as lowercase hex. `prev_hash` is hex; a malformed one hashes as given
/// (so a tampered `prev_hash` column cannot make verification panic, it only mismatches).
pub fn chain_hash(prev_hash_hex: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    match decode_hex32(prev_hash_hex) {
        Some(bytes) => h.update(bytes),
        None => h.update(prev_hash_hex.as_bytes()),
    }
    h.update(canonical);
    to_hex(&h.finalize())
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

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
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
    fn chain_hash_depends_on_prev_and_body() {
        let a = chain_hash(GENESIS, b"{}");
        assert_eq!(a, sha256_hex(&[[0u8; 32].as_slice(), b"{}"].concat()));
        assert_ne!(chain_hash(&a, b"{}"), a);
        assert_ne!(chain_hash(GENESIS, b"{ }"), a);
    }
}
