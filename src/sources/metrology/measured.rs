//! What every result-file parser gives: one measured characteristic of one part, each field with
//! the place in the file it was read from and the text as written there.

/// A value read from a file, with where it was read and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where in the file: an XPath with ids (QIF), a K-field and line (AQDEF), line and column
    /// (tables).
    pub at: String,
    /// The text as written. For a limit computed from a nominal and a tolerance offset (QIF
    /// tolerances that are not `DefinedAsLimit`), the offset as written, at the offset's place.
    pub raw: String,
}

impl<T> Located<T> {
    /// A value read at `at`, written as `raw`.
    pub fn new(value: T, at: impl Into<String>, raw: impl Into<String>) -> Located<T> {
        Located {
            value,
            at: at.into(),
            raw: raw.into(),
        }
    }
}

/// One measured characteristic of one part. Absent fields are `None`; `incomplete` says why a
/// field the record needs is absent when the file itself does not explain it (a plan that is
/// missing, a value that is not a number).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measured {
    /// Where the measurement is in the file.
    pub at: String,
    /// The characteristic's name.
    pub characteristic: Option<Located<String>>,
    /// The measured value.
    pub value: Option<Located<f64>>,
    /// The unit of value, nominal and limits.
    pub unit: Option<Located<String>>,
    /// The target value.
    pub nominal: Option<Located<f64>>,
    /// The lower limit.
    pub lower_limit: Option<Located<f64>>,
    /// The upper limit.
    pub upper_limit: Option<Located<f64>>,
    /// The file's own verdict, as the file words it (`PASS`, `FAIL`, …).
    pub status: Option<Located<String>>,
    /// The part's serial number.
    pub serial: Option<Located<String>>,
    /// The part number.
    pub part_number: Option<Located<String>>,
    /// The measuring device (the record's `gauge_id`).
    pub device: Option<Located<String>>,
    /// Who measured.
    pub operator: Option<Located<String>>,
    /// When it was measured, as the file writes it.
    pub measured_at: Option<Located<String>>,
    /// Fields of the file the record has no place for (a part's title, a batch, an unknown
    /// K-field), by the file's own name for them, as written.
    pub other: Vec<(String, Located<String>)>,
    /// Why fields the record needs are missing.
    pub incomplete: Vec<String>,
}

/// Parses a decimal number as written in a result file (surrounding blanks allowed); `None` for
/// anything else, NaN and infinities included.
pub fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `base + offset` rounded to the decimals the two operands were written with (at most 15), so
/// that `19 + -0.13` is `18.87` and not `18.869999999999997`.
pub fn offset(base: f64, base_raw: &str, offset: f64, offset_raw: &str) -> f64 {
    let decimals = |raw: &str| {
        raw.trim().split_once('.').map_or(0, |(_, frac)| {
            frac.chars().take_while(char::is_ascii_digit).count()
        })
    };
    let places = decimals(base_raw).max(decimals(offset_raw)).min(15);
    let sum = base + offset;
    format!("{sum:.places$}").parse().unwrap_or(sum)
}

/// The instant a result file's time names, as Unix milliseconds: RFC 3339 (`2024-03-01T10:20:30Z`,
/// with an offset), or a time without offset read at `offset`: ISO (`2024-03-01T10:20:30`,
/// fractions allowed) or the AQDEF form (`01.03.2024/10:20:30`). `None` for anything else, and
/// for a time without offset when no `offset` is configured.
pub fn instant(text: &str, offset: Option<time::UtcOffset>) -> Option<i64> {
    use time::macros::format_description;
    let text = text.trim();
    if let Some(t) = crate::time::parse(text) {
        return Some(crate::time::unix_ms(t));
    }
    let local = time::PrimitiveDateTime::parse(
        text,
        format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .or_else(|_| {
        time::PrimitiveDateTime::parse(
            text,
            format_description!("[day].[month].[year]/[hour]:[minute]:[second]"),
        )
    })
    .or_else(|_| {
        time::PrimitiveDateTime::parse(
            text,
            format_description!("[day].[month].[year]/[hour]:[minute]"),
        )
    })
    .ok()?;
    Some(crate::time::unix_ms(local.assume_offset(offset?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_times_become_instants_only_where_they_name_one() {
        let plus1 = time::UtcOffset::from_hms(1, 0, 0).ok();
        assert_eq!(instant("1970-01-01T00:00:01Z", None), Some(1000));
        assert_eq!(instant("1970-01-01T01:00:01+01:00", None), Some(1000));
        assert_eq!(
            instant("1970-01-01T01:00:01", None),
            None,
            "no offset known"
        );
        assert_eq!(instant("1970-01-01T01:00:01.5", plus1), Some(1500));
        assert_eq!(instant("01.01.1970/01:00:02", plus1), Some(2000));
        assert_eq!(instant("01.01.1970/01:01", plus1), Some(60_000));
        assert_eq!(instant("yesterday", plus1), None);
    }

    #[test]
    fn numbers_as_written_and_limits_without_binary_noise() {
        assert_eq!(number(" 19.007000000000001\n"), Some(19.007));
        assert_eq!(number("1e-3"), Some(0.001));
        assert_eq!(number("NaN"), None);
        assert_eq!(number("inf"), None);
        assert_eq!(number("12,5"), None);
        assert_eq!(offset(19.0, "19", -0.13, "-0.13"), 18.87);
        assert_eq!(offset(19.0, "19", 0.13, "0.13"), 19.13);
        assert_eq!(
            offset(25.4, "25.399999999999999", 0.25, "0.25"),
            25.65,
            "{}",
            25.4 + 0.25
        );
    }
}
