//! Decoding Modbus registers into values: every type, byte and word order, bits, ASCII strings.
//!
//! Orders name where the bytes of a big-endian value `A B C D` (`A` most significant) sit in the
//! registers, register by register: `abcd` = `[AB][CD]` (the Modbus standard), `badc` = `[BA][DC]`
//! (bytes swapped in each register), `cdab` = `[CD][AB]` (word-swapped, common on PLCs), `dcba` =
//! `[DC][BA]` (little endian). 64-bit values extend the same pattern over four registers. 16-bit
//! values only see the byte order (`abcd`/`cdab`: `[AB]`, `badc`/`dcba`: `[BA]`); ASCII strings take
//! the high byte first unless the order swaps bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The value type of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// A coil, a discrete input, or one bit of a register (`bit`).
    Bool,
    /// Signed 16-bit.
    I16,
    /// Unsigned 16-bit.
    U16,
    /// Signed 32-bit (2 registers).
    I32,
    /// Unsigned 32-bit (2 registers).
    U32,
    /// Signed 64-bit (4 registers).
    I64,
    /// Unsigned 64-bit (4 registers).
    U64,
    /// IEEE 754 single (2 registers).
    F32,
    /// IEEE 754 double (4 registers).
    F64,
    /// ASCII text of `registers` registers (2 characters each).
    String,
}

impl DataType {
    /// Registers the type occupies (strings: `None`, their length is configured).
    pub fn registers(self) -> Option<u16> {
        match self {
            DataType::Bool | DataType::I16 | DataType::U16 => Some(1),
            DataType::I32 | DataType::U32 | DataType::F32 => Some(2),
            DataType::I64 | DataType::U64 | DataType::F64 => Some(4),
            DataType::String => None,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::I16 => "i16",
            DataType::U16 => "u16",
            DataType::I32 => "i32",
            DataType::U32 => "u32",
            DataType::I64 => "i64",
            DataType::U64 => "u64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }
}

/// Byte and word order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Big endian, the Modbus standard.
    #[default]
    Abcd,
    /// Bytes swapped in each register.
    Badc,
    /// Registers swapped (low word first), bytes big endian.
    Cdab,
    /// Little endian.
    Dcba,
}

impl WordOrder {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "abcd",
            WordOrder::Badc => "badc",
            WordOrder::Cdab => "cdab",
            WordOrder::Dcba => "dcba",
        }
    }
}

/// Puts the registers' bytes into big-endian order (most significant byte first).
fn big_endian_bytes(regs: &[u16], order: WordOrder) -> Vec<u8> {
    let swap_bytes = matches!(order, WordOrder::Badc | WordOrder::Dcba);
    let swap_words = matches!(order, WordOrder::Cdab | WordOrder::Dcba);
    let mut words: Vec<u16> = regs.to_vec();
    if swap_words {
        words.reverse();
    }
    let mut out = Vec::with_capacity(words.len() * 2);
    for w in words {
        let [hi, lo] = w.to_be_bytes();
        if swap_bytes {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

/// Why registers do not give a value: the sample is recorded as bad with this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer registers than the type needs.
    #[error("{ty} needs {need} registers, got {got}")]
    TooFewRegisters {
        /// The tag's type (`f32`, …).
        ty: &'static str,
        /// Registers the type needs.
        need: usize,
        /// Registers the device answered.
        got: usize,
    },
    /// The registers (or the scaled value) are NaN.
    #[error("value is NaN")]
    NaN,
    /// The registers (or the scaled value) are an infinity.
    #[error("value is {}infinite", if *.negative { "-" } else { "+" })]
    Infinite {
        /// Negative infinity.
        negative: bool,
    },
}

fn float(f: f64) -> Result<Value, DecodeError> {
    if f.is_nan() {
        Err(DecodeError::NaN)
    } else if f.is_infinite() {
        Err(DecodeError::Infinite { negative: f < 0.0 })
    } else {
        Ok(Value::from(f))
    }
}

/// Decodes registers of one tag. `bit` picks one bit of the first register (for `Bool`).
pub fn decode(
    regs: &[u16],
    ty: DataType,
    order: WordOrder,
    bit: Option<u8>,
) -> Result<Value, DecodeError> {
    let need = ty.registers().unwrap_or(regs.len() as u16) as usize;
    if regs.len() < need || regs.is_empty() {
        return Err(DecodeError::TooFewRegisters {
            ty: ty.as_str(),
            need,
            got: regs.len(),
        });
    }
    let regs = &regs[..need];
    let b = big_endian_bytes(regs, order);
    Ok(match ty {
        DataType::Bool => {
            let bit = bit.unwrap_or(0);
            Value::Bool((regs[0] >> bit) & 1 == 1)
        }
        DataType::I16 => Value::from(i16::from_be_bytes([b[0], b[1]])),
        DataType::U16 => Value::from(u16::from_be_bytes([b[0], b[1]])),
        DataType::I32 => Value::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        DataType::U32 => Value::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        DataType::I64 => Value::from(i64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])),
        DataType::U64 => Value::from(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])),
        // Through the shortest decimal that reads back as the same f32: a gauge's 24.994 is recorded
        // as 24.994, not 24.993999481201172 (the registers stay in the provenance).
        DataType::F32 => {
            let f = f32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            return float(f.to_string().parse::<f64>().unwrap_or(f64::from(f)));
        }
        DataType::F64 => {
            return float(f64::from_be_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ]))
        }
        DataType::String => {
            // Strings keep register order; only the byte order within registers matters.
            let mut bytes = Vec::with_capacity(regs.len() * 2);
            let swap = matches!(order, WordOrder::Badc | WordOrder::Dcba);
            for r in regs {
                let [hi, lo] = r.to_be_bytes();
                if swap {
                    bytes.extend([lo, hi]);
                } else {
                    bytes.extend([hi, lo]);
                }
            }
            let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
            let text: String = bytes[..end]
                .iter()
                .map(|&c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c as char
                    } else {
                        '?'
                    }
                })
                .collect();
            Value::String(text.trim_end().to_string())
        }
    })
}

/// Applies `value × scale + offset` to numbers (integers stay integers without scale or offset).
pub fn scale(v: Value, scale: Option<f64>, offset: Option<f64>) -> Result<Value, DecodeError> {
    if scale.is_none() && offset.is_none() {
        return Ok(v);
    }
    match v.as_f64() {
        Some(x) => float(x * scale.unwrap_or(1.0) + offset.unwrap_or(0.0)),
        None => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use DataType::*;
    use WordOrder::*;

    /// Registers holding big-endian `bytes` in `order`: the inverse of decoding, written out by hand.
    fn encode(bytes: &[u8], order: WordOrder) -> Vec<u16> {
        let mut words: Vec<u16> = bytes
            .chunks(2)
            .map(|p| match order {
                Abcd | Cdab => u16::from_be_bytes([p[0], p[1]]),
                Badc | Dcba => u16::from_be_bytes([p[1], p[0]]),
            })
            .collect();
        if matches!(order, Cdab | Dcba) {
            words.reverse();
        }
        words
    }

    fn cases() -> Vec<(DataType, Vec<u8>, Value)> {
        vec![
            (I16, (-2i16).to_be_bytes().to_vec(), json!(-2)),
            (I16, i16::MIN.to_be_bytes().to_vec(), json!(i16::MIN)),
            (I16, i16::MAX.to_be_bytes().to_vec(), json!(i16::MAX)),
            (U16, u16::MAX.to_be_bytes().to_vec(), json!(u16::MAX)),
            (U16, 0x1234u16.to_be_bytes().to_vec(), json!(0x1234)),
            (I32, (-123_456i32).to_be_bytes().to_vec(), json!(-123_456)),
            (I32, i32::MIN.to_be_bytes().to_vec(), json!(i32::MIN)),
            (U32, u32::MAX.to_be_bytes().to_vec(), json!(u32::MAX)),
            (
                U32,
                0x0102_0304u32.to_be_bytes().to_vec(),
                json!(0x0102_0304),
            ),
            (I64, i64::MIN.to_be_bytes().to_vec(), json!(i64::MIN)),
            (I64, (-5i64).to_be_bytes().to_vec(), json!(-5)),
            (U64, u64::MAX.to_be_bytes().to_vec(), json!(u64::MAX)),
            (
                U64,
                0x0102_0304_0506_0708u64.to_be_bytes().to_vec(),
                json!(0x0102_0304_0506_0708u64),
            ),
            (F32, 25.004f32.to_be_bytes().to_vec(), json!(25.004)),
            (F32, (-1.5f32).to_be_bytes().to_vec(), json!(-1.5)),
            (F32, f32::MAX.to_be_bytes().to_vec(), json!(3.4028235e38)),
            (
                F32,
                f32::MIN_POSITIVE.to_be_bytes().to_vec(),
                json!(1.1754944e-38),
            ),
            (F64, 25.004f64.to_be_bytes().to_vec(), json!(25.004)),
            (F64, f64::MIN.to_be_bytes().to_vec(), json!(f64::MIN)),
            (F64, (-0.001f64).to_be_bytes().to_vec(), json!(-0.001)),
        ]
    }

    #[test]
    fn every_type_in_every_order() {
        for (ty, bytes, want) in cases() {
            for order in [Abcd, Badc, Cdab, Dcba] {
                let regs = encode(&bytes, order);
                let got = decode(&regs, ty, order, None);
                assert_eq!(
                    got,
                    Ok(want.clone()),
                    "{} {}: registers {regs:04x?}",
                    ty.as_str(),
                    order.as_str()
                );
            }
        }
    }

    #[test]
    fn the_orders_are_the_documented_layouts() {
        // 24.994f32 (a gauge reading) = 0x41C7F3B6: recorded as 24.994, not 24.993999481201172.
        assert_eq!(
            decode(&[0xF3B6, 0x41C7], F32, Cdab, None),
            Ok(json!(24.994))
        );
        // 25.0f32 = 0x41C80000
        assert_eq!(decode(&[0x41C8, 0x0000], F32, Abcd, None), Ok(json!(25.0)));
        assert_eq!(decode(&[0xC841, 0x0000], F32, Badc, None), Ok(json!(25.0)));
        assert_eq!(decode(&[0x0000, 0x41C8], F32, Cdab, None), Ok(json!(25.0)));
        assert_eq!(decode(&[0x0000, 0xC841], F32, Dcba, None), Ok(json!(25.0)));
        assert_eq!(decode(&[0x0001, 0x0000], U32, Cdab, None), Ok(json!(1)));
        assert_eq!(decode(&[0x0100], U16, Badc, None), Ok(json!(1)));
    }

    #[test]
    fn nan_and_infinity_are_errors_not_values() {
        for order in [Abcd, Badc, Cdab, Dcba] {
            let nan = encode(&f32::NAN.to_be_bytes(), order);
            assert_eq!(decode(&nan, F32, order, None), Err(DecodeError::NaN));
            let inf = encode(&f64::NEG_INFINITY.to_be_bytes(), order);
            let err = decode(&inf, F64, order, None).expect_err("infinite");
            assert_eq!(err, DecodeError::Infinite { negative: true });
            assert_eq!(err.to_string(), "value is -infinite");
        }
    }

    #[test]
    fn bits_strings_and_short_input() {
        assert_eq!(decode(&[0b1010], Bool, Abcd, Some(1)), Ok(json!(true)));
        assert_eq!(decode(&[0b1010], Bool, Abcd, Some(2)), Ok(json!(false)));
        assert_eq!(decode(&[0x8000], Bool, Abcd, Some(15)), Ok(json!(true)));
        let wo = [0x574F, 0x2D31, 0x3030, 0x3100, 0x0000]; // "WO-1001"
        assert_eq!(decode(&wo, String, Abcd, None), Ok(json!("WO-1001")));
        let swapped = [0x4F57, 0x312D, 0x3030, 0x0031];
        assert_eq!(decode(&swapped, String, Badc, None), Ok(json!("WO-1001")));
        assert!(decode(&[1], U32, Abcd, None).is_err());
    }

    #[test]
    fn scale_and_offset() {
        assert_eq!(scale(json!(25004), Some(0.001), None), Ok(json!(25.004)));
        assert_eq!(scale(json!(100), Some(0.1), Some(-5.0)), Ok(json!(5.0)));
        assert_eq!(scale(json!(7), None, None), Ok(json!(7)));
    }
}
