//! Tables of measured characteristics, one row per characteristic: CSV with the column mapping of
//! the folder's configuration, and Zeiss Calypso table files (`*_chr.txt`, tab-separated), whose
//! column names are the default mapping.
//!
//! The first line that is not empty is the header; columns are found by name (trimmed, compared
//! without regard to case). Each row gives one [`Measured`]; every field's place is its line and
//! column (`part_chr.txt line 4 column 6 (actual)`). Columns the mapping does not name are kept
//! under their header names in `other` (Calypso's localised `type` names among them): nothing of
//! a row is dropped. Tolerances are offsets from the nominal (Calypso's `uppertol` / `lowertol`),
//! limits are limits. Quoted cells (`"a;b"`, `""` for a quote) are read as CSV writes them; a
//! quote left open at the end of a line is an error naming the line.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::lines::{Lines, Next, MAX_LINE};
use super::measured::{number, offset, Located, Measured};

/// Which column holds which field, by header name.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The characteristic's name.
    #[serde(default)]
    pub characteristic: Option<String>,
    /// The measured value.
    #[serde(default)]
    pub value: Option<String>,
    /// The target value.
    #[serde(default)]
    pub nominal: Option<String>,
    /// The upper limit.
    #[serde(default)]
    pub upper_limit: Option<String>,
    /// The lower limit.
    #[serde(default)]
    pub lower_limit: Option<String>,
    /// The upper tolerance, an offset from the nominal.
    #[serde(default)]
    pub upper_tolerance: Option<String>,
    /// The lower tolerance, an offset from the nominal (negative below it).
    #[serde(default)]
    pub lower_tolerance: Option<String>,
    /// The unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// The part's serial.
    #[serde(default)]
    pub serial: Option<String>,
    /// The part number.
    #[serde(default)]
    pub part_number: Option<String>,
    /// The row's own verdict.
    #[serde(default)]
    pub result: Option<String>,
    /// The measuring device.
    #[serde(default)]
    pub gauge_id: Option<String>,
    /// Who measured.
    #[serde(default)]
    pub inspector: Option<String>,
    /// When it was measured.
    #[serde(default)]
    pub measured_at: Option<String>,
}

impl Columns {
    /// Calypso's characteristic table (`*_chr.txt`): `id`, `actual`, `nominal`, `uppertol`,
    /// `lowertol`, as Calypso names its columns; a configured name replaces its default (and
    /// `unit` when the table has it: [`Layout::calypso`]).
    pub fn calypso(configured: &Columns) -> Columns {
        let or = |c: &Option<String>, d: &str| Some(c.clone().unwrap_or_else(|| d.to_string()));
        Columns {
            characteristic: or(&configured.characteristic, "id"),
            value: or(&configured.value, "actual"),
            nominal: or(&configured.nominal, "nominal"),
            upper_tolerance: or(&configured.upper_tolerance, "uppertol"),
            lower_tolerance: or(&configured.lower_tolerance, "lowertol"),
            ..configured.clone()
        }
    }

    /// Calypso's columns used when a table has them: `unit` (unless `unit` is configured).
    fn calypso_if_present(configured: &Columns) -> Columns {
        Columns {
            unit: configured.unit.is_none().then(|| "unit".to_string()),
            ..Columns::default()
        }
    }

    fn named(&self) -> [(Field, Option<&String>); 14] {
        [
            (Field::Characteristic, self.characteristic.as_ref()),
            (Field::Value, self.value.as_ref()),
            (Field::Nominal, self.nominal.as_ref()),
            (Field::UpperLimit, self.upper_limit.as_ref()),
            (Field::LowerLimit, self.lower_limit.as_ref()),
            (Field::UpperTolerance, self.upper_tolerance.as_ref()),
            (Field::LowerTolerance, self.lower_tolerance.as_ref()),
            (Field::Unit, self.unit.as_ref()),
            (Field::Serial, self.serial.as_ref()),
            (Field::PartNumber, self.part_number.as_ref()),
            (Field::Result, self.result.as_ref()),
            (Field::Gauge, self.gauge_id.as_ref()),
            (Field::Inspector, self.inspector.as_ref()),
            (Field::MeasuredAt, self.measured_at.as_ref()),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Characteristic,
    Value,
    Nominal,
    UpperLimit,
    LowerLimit,
    UpperTolerance,
    LowerTolerance,
    Unit,
    Serial,
    PartNumber,
    Result,
    Gauge,
    Inspector,
    MeasuredAt,
}

/// How a table is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The cell separator (`,`, `;`, a tab).
    pub delimiter: char,
    /// Numbers written with a decimal comma (`24,98`).
    pub decimal_comma: bool,
    /// The column mapping.
    pub columns: Columns,
    /// Columns used when the header has them and the mapping names no other for their field
    /// (Calypso's `unit`); unlike [`Layout::columns`], their absence is no error.
    pub if_present: Columns,
}

impl Layout {
    /// Calypso's `*_chr.txt`: tab-separated, decimal points, Calypso's column names (a name in
    /// `configured` replaces its default) and its `unit` column where the table has one.
    pub fn calypso(configured: &Columns) -> Layout {
        Layout {
            delimiter: '\t',
            decimal_comma: false,
            columns: Columns::calypso(configured),
            if_present: Columns::calypso_if_present(configured),
        }
    }
}

/// Why a table cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A line the reader cannot take.
    #[error("{at}: {message}")]
    Line {
        /// File and line.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The header lacks a column the mapping names.
    #[error("{file}: the header has no column {column:?} (for {field}); it has {found}")]
    Column {
        /// The file.
        file: String,
        /// The column's name in the mapping.
        column: String,
        /// The record field it was to fill.
        field: &'static str,
        /// The header's columns.
        found: String,
    },
    /// Not text.
    #[error("{at}: not UTF-8 text")]
    Encoding {
        /// File and line.
        at: String,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::Characteristic => "characteristic",
        Field::Value => "value",
        Field::Nominal => "nominal",
        Field::UpperLimit => "upper_limit",
        Field::LowerLimit => "lower_limit",
        Field::UpperTolerance => "upper_tolerance",
        Field::LowerTolerance => "lower_tolerance",
        Field::Unit => "unit",
        Field::Serial => "serial",
        Field::PartNumber => "part_number",
        Field::Result => "result",
        Field::Gauge => "gauge_id",
        Field::Inspector => "inspector",
        Field::MeasuredAt => "measured_at",
    }
}

/// Splits one line into cells: `delimiter` between them, `"…"` around a cell that holds one
/// (`""` inside is a quote). `None` when a quote is left open.
fn cells(line: &str, delimiter: char) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == delimiter {
            out.push(std::mem::take(&mut cell));
            at_start = true;
        } else {
            cell.push(c);
            at_start = false;
        }
    }
    if quoted {
        return None;
    }
    out.push(cell);
    Some(out)
}

/// Reads the table in `input` (named `label` in places), giving one [`Measured`] per row to
/// `emit`; returns the number of rows.
pub fn read<E: From<TableError>>(
    input: impl BufRead,
    label: &str,
    layout: &Layout,
    emit: &mut impl FnMut(Measured) -> Result<(), E>,
) -> Result<usize, E> {
    let mut lines = Lines::new(input);
    let mut header: Option<Header> = None;
    let mut rows = 0usize;
    loop {
        let (number, bytes) = match lines.read_line().map_err(TableError::from)? {
            Next::Line(number, bytes) => (number, bytes),
            Next::TooLong(number) => {
                return Err(TableError::Line {
                    at: format!("{label} line {number}"),
                    message: format!("longer than {MAX_LINE} bytes"),
                }
                .into())
            }
            Next::End => break,
        };
        let at = format!("{label} line {number}");
        let Ok(line) = std::str::from_utf8(bytes) else {
            return Err(TableError::Encoding { at }.into());
        };
        if line.trim().is_empty() {
            continue;
        }
        let Some(cells) = cells(line, layout.delimiter) else {
            return Err(TableError::Line {
                at,
                message: "a quote is opened and not closed on this line".into(),
            }
            .into());
        };
        let Some((names, map)) = &header else {
            header = Some(columns(cells, label, layout)?);
            continue;
        };
        emit(row(&cells, names, map, &at, layout))?;
        rows += 1;
    }
    Ok(rows)
}

/// The header's names and, for each mapped field, its column.
type Header = (Vec<String>, Vec<(Field, usize)>);

/// Reads the header line: its names and where each mapped column is.
fn columns(names: Vec<String>, label: &str, layout: &Layout) -> Result<Header, TableError> {
    let names: Vec<String> = names.into_iter().map(|n| n.trim().to_string()).collect();
    let mut map = Vec::new();
    for (field, column) in layout.columns.named() {
        let Some(column) = column else { continue };
        match names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(column.trim()))
        {
            Some(i) => map.push((field, i)),
            None => {
                return Err(TableError::Column {
                    file: label.to_string(),
                    column: column.clone(),
                    field: field_name(field),
                    found: names.join(", "),
                })
            }
        }
    }
    for (field, column) in layout.if_present.named() {
        let Some(column) = column else { continue };
        if map.iter().any(|(f, _)| *f == field) {
            continue;
        }
        if let Some(i) = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(column.trim()))
        {
            map.push((field, i));
        }
    }
    Ok((names, map))
}

fn row(
    cells: &[String],
    names: &[String],
    map: &[(Field, usize)],
    at: &str,
    layout: &Layout,
) -> Measured {
    let mut out = Measured {
        at: at.to_string(),
        ..Measured::default()
    };
    let cell = |i: usize| -> Option<Located<String>> {
        let raw = cells.get(i)?;
        let value = raw.trim();
        if value.is_empty() {
            return None;
        }
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .map(String::as_str)
            .unwrap_or("no header");
        Some(Located::new(
            value.to_string(),
            format!("{at} column {} ({name})", i + 1),
            raw.clone(),
        ))
    };
    let mut tolerances = (None, None);
    for &(field, i) in map {
        let Some(text) = cell(i) else { continue };
        let numeric = |out: &mut Measured| -> Option<Located<f64>> {
            let written = if layout.decimal_comma {
                text.value.replace(',', ".")
            } else {
                text.value.clone()
            };
            match number(&written) {
                Some(v) => Some(Located::new(v, text.at.clone(), text.raw.clone())),
                None => {
                    out.incomplete
                        .push(format!("{}: {:?} is not a number", text.at, text.raw));
                    None
                }
            }
        };
        match field {
            Field::Characteristic => out.characteristic = Some(text),
            Field::Value => out.value = numeric(&mut out),
            Field::Nominal => out.nominal = numeric(&mut out),
            Field::UpperLimit => out.upper_limit = numeric(&mut out),
            Field::LowerLimit => out.lower_limit = numeric(&mut out),
            Field::UpperTolerance => tolerances.0 = numeric(&mut out),
            Field::LowerTolerance => tolerances.1 = numeric(&mut out),
            Field::Unit => out.unit = Some(text),
            Field::Serial => out.serial = Some(text),
            Field::PartNumber => out.part_number = Some(text),
            Field::Result => out.status = Some(text),
            Field::Gauge => out.device = Some(text),
            Field::Inspector => out.operator = Some(text),
            Field::MeasuredAt => out.measured_at = Some(text),
        }
    }
    // Tolerances are offsets from the nominal; a limit given as such wins.
    let limit = |tol: Option<Located<f64>>, out: &mut Measured| -> Option<Located<f64>> {
        let t = tol?;
        match &out.nominal {
            Some(n) => Some(Located::new(
                offset(n.value, &n.raw, t.value, &t.raw),
                t.at,
                t.raw,
            )),
            None => {
                out.incomplete.push(format!(
                    "{}: the tolerance {} is an offset from a nominal the row does not give",
                    t.at, t.raw
                ));
                None
            }
        }
    };
    if out.upper_limit.is_none() {
        out.upper_limit = limit(tolerances.0, &mut out);
    }
    if out.lower_limit.is_none() {
        out.lower_limit = limit(tolerances.1, &mut out);
    }
    // Every other cell is kept under its header name; a cell beyond the header (a row longer
    // than its header) as `column N`.
    let mapped: Vec<usize> = map.iter().map(|(_, i)| *i).collect();
    for i in 0..cells.len().max(names.len()) {
        if mapped.contains(&i) {
            continue;
        }
        if let Some(text) = cell(i) {
            let name = match names.get(i) {
                Some(n) if !n.is_empty() => n.clone(),
                _ => format!("column {}", i + 1),
            };
            out.other.push((name, text));
        }
    }
    if out.characteristic.is_none() {
        out.incomplete
            .push(format!("{at}: the row names no characteristic"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, layout: &Layout) -> Result<Vec<Measured>, TableError> {
        let mut out = Vec::new();
        read(text.as_bytes(), "t.csv", layout, &mut |m| {
            out.push(m);
            Ok::<(), TableError>(())
        })?;
        Ok(out)
    }

    #[test]
    fn cells_are_split_as_csv_writes_them() {
        assert_eq!(
            cells(r#"a;"b;c";"say ""hi""";"#, ';'),
            Some(vec![
                "a".into(),
                "b;c".into(),
                "say \"hi\"".into(),
                String::new()
            ])
        );
        assert_eq!(cells(r#"a;"open"#, ';'), None);
    }

    #[test]
    fn a_calypso_table_gives_limits_from_tolerances_and_keeps_the_rest() {
        let layout = Layout::calypso(&Columns::default());
        let text = "planid\tid\ttype\tactual\tnominal\tuppertol\tlowertol\n\
                    P1\tDM-1\tDurchmesser\t25.004\t25\t0.02\t-0.02\n\
                    P1\tLEN\tAbstand\t\t80\t0.1\t-0.1\n";
        let rows = read_all(text, &layout).expect("read");
        assert_eq!(rows.len(), 2);
        let d = &rows[0];
        assert_eq!(
            d.characteristic.as_ref().map(|c| c.value.as_str()),
            Some("DM-1")
        );
        assert_eq!(d.value.as_ref().map(|v| v.value), Some(25.004));
        assert_eq!(d.upper_limit.as_ref().map(|v| v.value), Some(25.02));
        assert_eq!(d.lower_limit.as_ref().map(|v| v.value), Some(24.98));
        assert_eq!(
            d.value.as_ref().map(|v| v.at.as_str()),
            Some("t.csv line 2 column 4 (actual)")
        );
        assert!(d
            .other
            .iter()
            .any(|(k, v)| k == "type" && v.value == "Durchmesser"));
        assert!(rows[1].value.is_none(), "an empty cell is no value");
    }

    /// The column set Calypso writes (`planid partnb id type idsymbol actual nominal uppertol
    /// lowertol deviation exceed … unit group1 … group10`, the header ending in a tab, rows
    /// shorter than the header): the unit column is used, every other cell is kept.
    #[test]
    fn a_calypso_table_as_calypso_writes_it_gives_the_unit_and_keeps_every_cell() {
        let layout = Layout::calypso(&Columns::default());
        let header = "planid\tpartnb\tid\ttype\tidsymbol\tactual\tnominal\tuppertol\tlowertol\t\
                      deviation\texceed\twarningLimitCF\tfeatureid\tunit\tgroup1\tgroup2\t";
        let text = format!(
            "{header}\nPLAN-7\t12\tBore_1.D\tD1\tdiameter\t16.004\t16.0\t0.01\t0.0\t0.004\t\t\
             100.0\tBore_1\tmm\tBores\n\
             PLAN-7\t12\tBore_1.X\tX1\txValue\t0.002\t0.0\t0.005\t-0.005\t0.002\t\t100.0\t\
             Bore_1\tmm\tBores\tBore_1.D\textra\tbeyond\n"
        );
        let rows = read_all(&text, &layout).expect("read");
        assert_eq!(rows.len(), 2);
        let d = &rows[0];
        assert_eq!(d.unit.as_ref().map(|u| u.value.as_str()), Some("mm"));
        assert_eq!(
            d.unit.as_ref().map(|u| u.at.as_str()),
            Some("t.csv line 2 column 14 (unit)")
        );
        assert_eq!(d.upper_limit.as_ref().map(|v| v.value), Some(16.01));
        assert_eq!(d.lower_limit.as_ref().map(|v| v.value), Some(16.0));
        let other = |m: &Measured, k: &str| {
            m.other
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.value.clone())
        };
        assert_eq!(other(d, "partnb").as_deref(), Some("12"));
        assert_eq!(other(d, "idsymbol").as_deref(), Some("diameter"));
        assert_eq!(other(d, "group1").as_deref(), Some("Bores"));
        // The second row has a cell under the header's trailing tab and one beyond the header.
        let x = &rows[1];
        assert_eq!(other(x, "group2").as_deref(), Some("Bore_1.D"));
        assert_eq!(other(x, "column 17").as_deref(), Some("extra"));
        assert_eq!(other(x, "column 18").as_deref(), Some("beyond"));
        // A table without the column is read as before (the unit is only used when present).
        let plain = read_all(
            "id\tactual\tnominal\tuppertol\tlowertol\nA\t1\t1\t0.1\t-0.1\n",
            &layout,
        )
        .expect("read");
        assert!(plain[0].unit.is_none());
    }

    #[test]
    fn a_mapped_column_the_header_lacks_is_named_with_what_it_has() {
        let layout = Layout {
            delimiter: ';',
            decimal_comma: true,
            columns: Columns {
                characteristic: Some("Merkmal".into()),
                value: Some("Istwert".into()),
                ..Columns::default()
            },
            if_present: Columns::default(),
        };
        let e = read_all("Merkmal;Wert\nA;1,5\n", &layout).expect_err("no Istwert");
        assert_eq!(
            e.to_string(),
            "t.csv: the header has no column \"Istwert\" (for value); it has Merkmal, Wert"
        );
        let ok = Layout {
            columns: Columns {
                value: Some("wert".into()),
                ..layout.columns.clone()
            },
            ..layout
        };
        let rows = read_all("Merkmal;Wert\nA;1,5\nB;x\n", &ok).expect("read");
        assert_eq!(
            rows[0].value.as_ref().map(|v| v.value),
            Some(1.5),
            "decimal comma"
        );
        assert!(rows[1].incomplete[0].contains("\"x\" is not a number"));
    }
}
