//! Q-DAS AQDEF (`.dfq`, or a `.dfd` description with its `.dfx` values), read line by line.
//!
//! A K-line is `K<field>/<index> <text>`. Part fields (`K1001` part number, `K1002` title …) are
//! indexed by part; characteristic fields (`K2001` number, `K2002` title, `K2101` nominal, `K2110`
//! lower and `K2111` upper limit, `K2142` unit …) by characteristic, and a characteristic belongs
//! to the part defined last before it. Value fields are indexed by characteristic: each `K0001`
//! starts a new value, and the fields after it (`K0002` attribute, `K0004` time, `K0006` batch,
//! `K0008` operator, `K0012` gauge, `K0014` part ident …) belong to that value; index 0 applies a
//! field to the current value of every characteristic. A line that is not a K-line is a value
//! line in the compact form: characteristics separated by character 15, and in each the fields
//! value, attribute, time, events, batch, nest, operator, machine, process parameter and gauge
//! separated by character 20.
//!
//! Nothing is dropped: a value's attribute is kept as written (an invalid or deleted value is
//! given with its attribute, the record keeps it), and a field the record has no place for,
//! known or not, is kept in [`Measured::other`] with its line.
//!
//! Files are UTF-8 or, most often, Windows-1252 ([`Encoding`]). Memory holds the part and
//! characteristic descriptions and the current value of each characteristic, whatever the file's
//! length; a line is at most [`MAX_LINE`] bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

pub use super::lines::MAX_LINE;
use super::lines::{Lines, Next};
use super::measured::{number, Located, Measured};
/// Most characteristics (and parts) a file may describe.
pub const MAX_CHARACTERISTICS: u32 = 100_000;

/// Separates characteristics on a compact value line.
const CHARACTERISTIC_SEPARATOR: char = '\u{0f}';
/// Separates the fields of one value on a compact value line.
const FIELD_SEPARATOR: char = '\u{14}';
/// The fields of one value on a compact line, in order (as K-fields).
const COMPACT_FIELDS: [u16; 10] = [1, 2, 4, 5, 6, 7, 8, 10, 11, 12];

/// The text encoding of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
pub enum Encoding {
    /// UTF-8 where a line is valid UTF-8, Windows-1252 where it is not.
    #[default]
    #[serde(rename = "detect")]
    Detect,
    /// UTF-8 only: a line that is not is an error.
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows-1252 (a superset of ISO-8859-1's printable characters).
    #[serde(rename = "windows-1252")]
    Windows1252,
}

/// Why an AQDEF file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AqdefError {
    /// A line that is neither a K-line nor a value line.
    #[error("{at}: {message}")]
    Line {
        /// File and line.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// Not UTF-8 where UTF-8 is configured.
    #[error(
        "{at}: not UTF-8 (set the folder's encoding to windows-1252 if the files are written so)"
    )]
    Encoding {
        /// File and line.
        at: String,
    },
    /// Beyond a bound of the reader.
    #[error("{at}: {what} exceeds {limit}: the file is refused")]
    TooLarge {
        /// File and line.
        at: String,
        /// What is too large.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// Reading failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Fields of a part or characteristic: K-number → text as written, with its line.
type Fields = BTreeMap<u16, Located<String>>;

#[derive(Debug, Default)]
struct Characteristic {
    part: u32,
    fields: Fields,
}

/// One value being read: its fields until the next value of its characteristic.
#[derive(Debug, Default)]
struct Value {
    fields: Fields,
}

/// What the reader saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Values given.
    pub values: usize,
    /// Characteristics described.
    pub characteristics: usize,
}

/// An AQDEF reader: feed it the file (or the `.dfd` then the `.dfx`) with [`Aqdef::read`], then
/// [`Aqdef::finish`]. Values are given as soon as they are complete.
#[derive(Debug, Default)]
pub struct Aqdef {
    encoding: Encoding,
    parts: HashMap<u32, Fields>,
    characteristics: BTreeMap<u32, Characteristic>,
    current: BTreeMap<u32, Value>,
    last_part: u32,
    summary: Summary,
}

impl Aqdef {
    /// A reader for files in `encoding`.
    pub fn new(encoding: Encoding) -> Aqdef {
        Aqdef {
            encoding,
            last_part: 1,
            ..Aqdef::default()
        }
    }

    /// Reads `input` (named `label` in places: the file name), giving each complete value to
    /// `emit`.
    pub fn read<E: From<AqdefError>>(
        &mut self,
        input: impl BufRead,
        label: &str,
        emit: &mut impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut lines = Lines::new(input);
        loop {
            let (number, bytes) = match lines.read_line().map_err(AqdefError::from)? {
                Next::Line(number, bytes) => (number, bytes),
                Next::TooLong(number) => {
                    return Err(AqdefError::TooLarge {
                        at: format!("{label} line {number}"),
                        what: "a line",
                        limit: MAX_LINE,
                    }
                    .into())
                }
                Next::End => break,
            };
            let at = format!("{label} line {number}");
            let decoded = self.decode(bytes, &at)?;
            let line = decoded.as_str();
            if line.trim().is_empty() {
                continue;
            }
            if let Some((key, index, text)) = k_line(line) {
                self.field(key, index, text, &at, emit)?;
            } else {
                self.compact(line, &at, emit)?;
            }
        }
        Ok(())
    }

    /// Gives the values still open and says what was read.
    pub fn finish<E>(
        mut self,
        emit: &mut impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<Summary, E> {
        for (c, v) in std::mem::take(&mut self.current) {
            self.give(c, v, emit)?;
        }
        self.summary.characteristics = self.characteristics.len();
        Ok(self.summary)
    }

    fn decode(&self, bytes: &[u8], at: &str) -> Result<String, AqdefError> {
        match (self.encoding, std::str::from_utf8(bytes)) {
            (Encoding::Windows1252, _) => Ok(windows_1252(bytes)),
            (_, Ok(s)) => Ok(s.to_string()),
            (Encoding::Detect, Err(_)) => Ok(windows_1252(bytes)),
            (Encoding::Utf8, Err(_)) => Err(AqdefError::Encoding { at: at.to_string() }),
        }
    }

    fn field<E: From<AqdefError>>(
        &mut self,
        key: u16,
        index: u32,
        text: &str,
        at: &str,
        emit: &mut impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<(), E> {
        if index > MAX_CHARACTERISTICS {
            return Err(AqdefError::TooLarge {
                at: at.to_string(),
                what: "a part or characteristic number",
                limit: MAX_CHARACTERISTICS as usize,
            }
            .into());
        }
        let located = Located::new(
            text.to_string(),
            format!("{at}, K{key:04}/{index}"),
            text.to_string(),
        );
        match key {
            1000..=1999 => {
                self.last_part = index.max(1);
                self.parts
                    .entry(self.last_part)
                    .or_default()
                    .insert(key, located);
            }
            2000..=2999 => {
                let part = self.last_part;
                self.characteristics
                    .entry(index)
                    .or_insert_with(|| Characteristic {
                        part,
                        fields: Fields::new(),
                    })
                    .fields
                    .insert(key, located);
            }
            // A new value of characteristic `index` (index 0: of every characteristic).
            1 => {
                let targets: Vec<u32> = match index {
                    0 => self.characteristics.keys().copied().collect(),
                    i => vec![i],
                };
                for c in targets {
                    if let Some(done) = self.current.remove(&c) {
                        self.give(c, done, emit)?;
                    }
                    let mut v = Value::default();
                    v.fields.insert(1, located.clone());
                    self.current.insert(c, v);
                }
            }
            // Fields of the current value (index 0: of every characteristic's).
            2..=999 => {
                let targets: Vec<u32> = match index {
                    0 => self.current.keys().copied().collect(),
                    i => vec![i],
                };
                for c in targets {
                    self.current
                        .entry(c)
                        .or_default()
                        .fields
                        .insert(key, located.clone());
                }
            }
            // The file header (K0100 number of characteristics …) and fields of later
            // sections (K5xxx hierarchy, K8xxx …): read, not needed for a record.
            _ => {}
        }
        Ok(())
    }

    fn compact<E: From<AqdefError>>(
        &mut self,
        line: &str,
        at: &str,
        emit: &mut impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<(), E> {
        if !line.contains([CHARACTERISTIC_SEPARATOR, FIELD_SEPARATOR])
            && number(&decimal(line)).is_none()
        {
            return Err(AqdefError::Line {
                at: at.to_string(),
                message: format!(
                    "{:?} is neither a K-field line (K1001/1 …) nor a value line",
                    line.chars().take(40).collect::<String>()
                ),
            }
            .into());
        }
        for (i, part) in line.split(CHARACTERISTIC_SEPARATOR).enumerate() {
            let c = i as u32 + 1;
            let mut v = Value::default();
            for (f, text) in part.split(FIELD_SEPARATOR).enumerate() {
                let Some(&key) = COMPACT_FIELDS.get(f) else {
                    break;
                };
                if text.is_empty() {
                    continue;
                }
                v.fields.insert(
                    key,
                    Located::new(
                        text.to_string(),
                        format!("{at}, characteristic {c} field {}", f + 1),
                        text,
                    ),
                );
            }
            if let Some(done) = self.current.remove(&c) {
                self.give(c, done, emit)?;
            }
            self.give(c, v, emit)?;
        }
        Ok(())
    }

    /// Gives a complete value of characteristic `c` to `emit`, and counts it.
    fn give<E>(
        &mut self,
        c: u32,
        v: Value,
        emit: &mut impl FnMut(Measured) -> Result<(), E>,
    ) -> Result<(), E> {
        emit(self.measured(c, v))?;
        self.summary.values += 1;
        Ok(())
    }

    /// A value joined with its characteristic and part.
    fn measured(&self, c: u32, mut v: Value) -> Measured {
        let mut out = Measured::default();
        let empty = Fields::new();
        let ch = self.characteristics.get(&c);
        let cf = ch.map_or(&empty, |ch| &ch.fields);
        let pf = ch.and_then(|ch| self.parts.get(&ch.part)).unwrap_or(&empty);
        if ch.is_none() {
            out.incomplete
                .push(format!("characteristic {c} is not described in the file"));
        }
        let text = |f: &Fields, key: u16| f.get(&key).cloned();
        let num = |f: &Fields, key: u16, out: &mut Measured| -> Option<Located<f64>> {
            let l = f.get(&key)?;
            match number(&decimal(&l.value)) {
                Some(x) => Some(Located::new(x, l.at.clone(), l.raw.clone())),
                None => {
                    out.incomplete
                        .push(format!("K{key:04} {:?} is not a number", l.raw));
                    None
                }
            }
        };
        out.characteristic = text(cf, 2001).or_else(|| text(cf, 2002));
        out.nominal = num(cf, 2101, &mut out);
        out.lower_limit = num(cf, 2110, &mut out);
        out.upper_limit = num(cf, 2111, &mut out);
        out.unit = text(cf, 2142);
        out.part_number = text(pf, 1001);
        out.value = num(&v.fields, 1, &mut out);
        if !v.fields.contains_key(&1) {
            out.incomplete
                .push(format!("characteristic {c}: a value without K0001"));
        }
        out.at = v
            .fields
            .get(&1)
            .map(|l| l.at.clone())
            .unwrap_or_else(|| format!("characteristic {c}"));
        out.status = v.fields.remove(&2).map(|a| Located {
            value: format!("attribute {}", a.value.trim()),
            ..a
        });
        out.measured_at = v.fields.remove(&4);
        out.operator = v.fields.remove(&8);
        out.device = v.fields.remove(&12);
        out.serial = v.fields.remove(&14);
        v.fields.remove(&1);
        let used_c = [2001, 2101, 2110, 2111, 2142];
        out.other = pf
            .iter()
            .filter(|(k, _)| **k != 1001)
            .chain(cf.iter().filter(|(k, _)| !used_c.contains(k)))
            .chain(v.fields.iter())
            .map(|(k, l)| (format!("K{k:04}"), l.clone()))
            .collect();
        if out.characteristic.is_none() && ch.is_some() {
            out.incomplete
                .push(format!("characteristic {c} has no K2001 or K2002"));
        }
        out
    }
}

/// Splits `K2001/3 text` into (2001, 3, "text"); `K0100 9` has index 0.
fn k_line(line: &str) -> Option<(u16, u32, &str)> {
    let rest = line.strip_prefix('K')?;
    let digits = rest.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key: u16 = digits.parse().ok()?;
    let rest = &rest[4..];
    let (index, text) = match rest.strip_prefix('/') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            (r[..end].parse().ok()?, &r[end..])
        }
        None => (0, rest),
    };
    if !(text.is_empty() || text.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, index, text.strip_prefix([' ', '\t']).unwrap_or(text)))
}

/// A number as AQDEF writers write it: a decimal comma is read as a point.
fn decimal(text: &str) -> String {
    let t = text.trim();
    if t.contains(',') && !t.contains('.') && t.matches(',').count() == 1 {
        t.replace(',', ".")
    } else {
        t.to_string()
    }
}

/// What Windows-1252 writes at 0x80..=0x9F (the WHATWG mapping: the five bytes it leaves
/// undefined are their C1 control characters). Every other byte is the Unicode code point of the
/// same number (ASCII below, Latin-1 above).
const CP1252_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// Windows-1252 text. A table of 32 characters rather than a general decoder library: such a
/// library's decoder is one dispatch over every encoding it knows, and links all their tables
/// (about a megabyte) into the gateway build.
pub fn windows_1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_80_9F[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_decodes_every_byte_as_the_whatwg_decoder_does() {
        let all: Vec<u8> = (0..=255).collect();
        let reference = encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(&all)
            .0
            .into_owned();
        assert_eq!(windows_1252(&all), reference);
        assert_eq!(windows_1252(b"Geh\xe4use \x80 \x9f"), "Gehäuse € Ÿ");
    }

    #[test]
    fn k_lines_split_into_field_index_and_text() {
        assert_eq!(k_line("K2001/3 OD 25"), Some((2001, 3, "OD 25")));
        assert_eq!(k_line("K0100 9"), Some((100, 0, "9")));
        assert_eq!(k_line("K0001/12 25.004"), Some((1, 12, "25.004")));
        assert_eq!(k_line("K0001/1"), Some((1, 1, "")));
        assert_eq!(k_line("K20x1/3 a"), None);
        assert_eq!(k_line("25.004"), None);
        assert_eq!(k_line("K2001/3x"), None);
    }

    #[test]
    fn decimal_commas_and_windows_1252() {
        assert_eq!(decimal(" 25,004 "), "25.004");
        assert_eq!(decimal("1,000.5"), "1,000.5");
        assert_eq!(windows_1252(b"Durchmesser \xd8 \xb5m"), "Durchmesser Ø µm");
    }
}
