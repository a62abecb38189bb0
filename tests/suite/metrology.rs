//! Metrology result files: the QIF 3.0 parser against the public samples in
//! `tests/cases/metrology/qif/` (Boost licence, `LICENSE.md` there), and against hostile input.

use std::path::PathBuf;

use shopfloor_agent::sources::metrology::qif::{Index, Plans, QifError};
use shopfloor_agent::sources::metrology::Measured;

fn samples() -> PathBuf {
    crate::support::root().join("tests/cases/metrology/qif")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(samples().join(name)).expect("sample")
}

/// Both passes over `bytes`.
fn parse(bytes: &[u8], plans: &Plans) -> Result<Vec<Measured>, QifError> {
    let index = Index::read(bytes)?;
    let mut out = Vec::new();
    index.measurements(bytes, plans, |m| {
        out.push(m);
        Ok::<(), QifError>(())
    })?;
    Ok(out)
}

/// An independent reading of the same file: the `<Value>` text of every element whose name ends
/// in `CharacteristicMeasurement`, in document order (`None` for one without a value). A plain
/// text scan, sharing nothing with the parser.
fn values_by_scan(text: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.ends_with("CharacteristicMeasurement") {
            let close = format!("</{name}>");
            let end = rest.find(&close).expect("closed");
            let body = &rest[..end];
            // The measurement's own <Value> (not one nested deeper, which these samples lack).
            out.push(body.find("<Value>").map(|v| {
                let after = &body[v + "<Value>".len()..];
                after[..after.find("</Value>").expect("value closed")]
                    .trim()
                    .to_string()
            }));
            rest = &rest[end..];
        }
    }
    out
}

fn sample_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(samples())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".qif"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_sample_gives_one_measurement_per_characteristic_measurement_with_its_value() {
    let names = sample_names();
    assert!(names.len() >= 10, "{names:?}");
    let mut total = 0;
    for name in &names {
        let bytes = read(name);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let scanned = values_by_scan(&text);
        let parsed = parse(&bytes, &Plans::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.len(), scanned.len(), "{name}: one per measurement");
        for (m, raw) in parsed.iter().zip(&scanned) {
            let raw = raw
                .as_deref()
                .expect("every sample measurement has a value");
            let v = m.value.as_ref().unwrap_or_else(|| panic!("{name}: {m:?}"));
            assert_eq!(v.raw, raw, "{name}: the value as written");
            assert_eq!(Some(v.value), raw.parse::<f64>().ok(), "{name}: the value");
            assert!(v.at.ends_with("/Value"), "{}", v.at);
        }
        total += parsed.len();
    }
    assert_eq!(
        total,
        4 + 2 + 13 + 38 + 38 + 42 + 7,
        "the samples' measurements"
    );
}

#[test]
fn a_diameter_is_joined_with_its_item_nominal_tolerance_device_and_unit() {
    let all = parse(&read("WIDGET_QIF_RESULTS.QIF"), &Plans::new()).expect("parse");
    // <DiameterCharacteristicMeasurement id="50">: item 49, nominal 48 (target 19),
    // definition 47 (tolerance -0.13/+0.13 around the nominal), device 15 ("CMM"), unit mm.
    let d = all
        .iter()
        .find(|m| {
            m.at.ends_with("DiameterCharacteristicMeasurement[@id='50']")
        })
        .expect("measurement 50");
    let v = d.value.as_ref().expect("value");
    assert_eq!((v.value, v.raw.as_str()), (19.007, "19.007000000000001"));
    assert_eq!(v.at, "//DiameterCharacteristicMeasurement[@id='50']/Value");
    assert_eq!(d.nominal.as_ref().map(|n| n.value), Some(19.0));
    assert_eq!(d.lower_limit.as_ref().map(|l| l.value), Some(18.87));
    assert_eq!(d.upper_limit.as_ref().map(|l| l.value), Some(19.13));
    assert_eq!(
        d.lower_limit
            .as_ref()
            .map(|l| (l.raw.as_str(), l.at.ends_with("/Tolerance/MinValue"))),
        Some(("-0.13", true))
    );
    assert_eq!(d.unit.as_ref().map(|u| u.value.as_str()), Some("mm"));
    assert_eq!(d.status.as_ref().map(|s| s.value.as_str()), Some("PASS"));
    assert_eq!(d.device.as_ref().map(|s| s.value.as_str()), Some("CMM"));
    assert!(d.characteristic.is_some(), "{d:?}");
    // The document's creation time stands in for a measurement time the results do not give.
    assert_eq!(
        d.measured_at.as_ref().map(|t| t.value.as_str()),
        Some("2015-10-23T14:03:22")
    );
    // A geometric tolerance is an upper limit from zero.
    let flat = all
        .iter()
        .find(|m| {
            m.at.ends_with("FlatnessCharacteristicMeasurement[@id='16']")
        })
        .expect("flatness 16");
    assert_eq!(flat.upper_limit.as_ref().map(|l| l.value), Some(0.25));
    assert_eq!(flat.lower_limit, None);
    assert!(flat.incomplete.is_empty(), "{:?}", flat.incomplete);
}

#[test]
fn results_whose_plan_is_another_file_are_joined_with_it_or_say_which_plan_is_missing() {
    let results = read("Exploded_Results1.QIF");
    let index = Index::read(results.as_slice()).expect("index");
    let wanted = index.external_documents();
    assert_eq!(
        wanted,
        [(
            "6558f196-d952-4b80-8054-0a0756d60526".to_string(),
            Some("./Exploded_Plan.QIF".to_string())
        )]
    );

    // Without the plan: every measurement is there, value and status as written, and says which
    // plan it misses.
    let alone = parse(&results, &Plans::new()).expect("parse");
    assert_eq!(alone.len(), 2);
    for m in &alone {
        assert!(m.value.is_some() && m.status.is_some(), "{m:?}");
        assert_eq!(m.nominal, None);
        assert!(
            m.incomplete
                .iter()
                .any(|r| r.contains("6558f196-d952-4b80-8054-0a0756d60526")
                    && r.contains("./Exploded_Plan.QIF")),
            "{:?}",
            m.incomplete
        );
    }

    // With the plan (found by its QPId, whatever case it is written in).
    let plan = Index::read(read("Exploded_Plan.QIF").as_slice()).expect("plan");
    let mut plans = Plans::new();
    plans.insert(plan.qpid().expect("qpid").to_string(), plan);
    let joined = parse(&results, &plans).expect("parse");
    let d = &joined[0];
    assert_eq!(
        d.characteristic.as_ref().map(|c| c.value.as_str()),
        Some("SphericalDiameter1")
    );
    let v = d.value.as_ref().expect("value");
    assert_eq!(
        (v.raw.as_str(), Some(v.value)),
        ("25.008279671621001", "25.008279671621001".parse().ok())
    );
    assert_eq!(d.nominal.as_ref().map(|n| n.value), Some(25.4));
    assert_eq!(d.lower_limit.as_ref().map(|l| l.value), Some(25.15));
    assert_eq!(d.upper_limit.as_ref().map(|l| l.value), Some(25.65));
    assert_eq!(d.status.as_ref().map(|s| s.value.as_str()), Some("FAIL"));
    assert!(d.incomplete.is_empty(), "{:?}", d.incomplete);
    let s = &joined[1];
    assert_eq!(
        s.characteristic.as_ref().map(|c| c.value.as_str()),
        Some("Sphericity1")
    );
    assert_eq!(s.upper_limit.as_ref().map(|l| l.value), Some(0.05));
}

#[test]
fn a_serial_comes_from_the_actual_component_its_results_name() {
    // Two parts in one file, each results naming its component after its measurements.
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0">
  <FileUnits><PrimaryUnits><LinearUnit><SIUnitName>meter</SIUnitName><UnitName>mm</UnitName></LinearUnit></PrimaryUnits></FileUnits>
  <Characteristics>
    <CharacteristicDefinitions n="1"><DiameterCharacteristicDefinition id="1"><Tolerance><MaxValue>25.02</MaxValue><MinValue>24.98</MinValue><DefinedAsLimit>true</DefinedAsLimit></Tolerance></DiameterCharacteristicDefinition></CharacteristicDefinitions>
    <CharacteristicNominals n="1"><DiameterCharacteristicNominal id="2"><CharacteristicDefinitionId>1</CharacteristicDefinitionId><TargetValue>25</TargetValue></DiameterCharacteristicNominal></CharacteristicNominals>
    <CharacteristicItems n="1"><DiameterCharacteristicItem id="3"><Name>OD-1 &amp; bore</Name><CharacteristicNominalId>2</CharacteristicNominalId></DiameterCharacteristicItem></CharacteristicItems>
  </Characteristics>
  <Results>
    <MeasurementResultsSet n="2">
      <MeasurementResults id="10">
        <InspectionTraceability><InspectionStart>2026-12-03T10:00:00Z</InspectionStart><InspectionOperator><Name>op17</Name></InspectionOperator></InspectionTraceability>
        <MeasuredCharacteristics><CharacteristicMeasurements n="1"><DiameterCharacteristicMeasurement id="11"><Status><CharacteristicStatusEnum>PASS</CharacteristicStatusEnum></Status><CharacteristicItemId>3</CharacteristicItemId><Value>25.004</Value></DiameterCharacteristicMeasurement></CharacteristicMeasurements></MeasuredCharacteristics>
        <ActualComponentIds n="1"><Id>20</Id></ActualComponentIds>
      </MeasurementResults>
      <MeasurementResults id="12">
        <MeasuredCharacteristics><CharacteristicMeasurements n="1"><DiameterCharacteristicMeasurement id="13"><Status><CharacteristicStatusEnum>FAIL</CharacteristicStatusEnum></Status><CharacteristicItemId>3</CharacteristicItemId><TimeStamp>2026-12-03T10:05:00Z</TimeStamp><Value>25.031</Value></DiameterCharacteristicMeasurement></CharacteristicMeasurements></MeasuredCharacteristics>
        <ActualComponentIds n="1"><Id>21</Id></ActualComponentIds>
      </MeasurementResults>
    </MeasurementResultsSet>
    <ActualComponentSets n="1"><ActualComponentSet n="2">
      <ActualComponent id="20"><SerialNumber>SN-000123</SerialNumber></ActualComponent>
      <ActualComponent id="21"><SerialNumber>SN-000124</SerialNumber></ActualComponent>
    </ActualComponentSet></ActualComponentSets>
  </Results>
</QIFDocument>"#;
    let all = parse(doc.as_bytes(), &Plans::new()).expect("parse");
    let got: Vec<_> = all
        .iter()
        .map(|m| {
            (
                m.serial.as_ref().map(|s| s.value.clone()),
                m.value.as_ref().map(|v| v.value),
                m.measured_at.as_ref().map(|t| t.value.clone()),
                m.operator.as_ref().map(|o| o.value.clone()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("SN-000123".into()),
                Some(25.004),
                Some("2026-12-03T10:00:00Z".into()),
                Some("op17".into())
            ),
            (
                Some("SN-000124".into()),
                Some(25.031),
                Some("2026-12-03T10:05:00Z".into()),
                None
            ),
        ]
    );
    let first = &all[0];
    assert_eq!(
        first.characteristic.as_ref().map(|c| c.value.as_str()),
        Some("OD-1 & bore")
    );
    assert_eq!(
        (
            first.lower_limit.as_ref().map(|l| l.value),
            first.upper_limit.as_ref().map(|l| l.value)
        ),
        (Some(24.98), Some(25.02)),
        "limits defined as limits"
    );
    assert_eq!(
        first.serial.as_ref().map(|s| s.at.as_str()),
        Some("//ActualComponent[@id='20']/SerialNumber")
    );
}

/// The error of a document, which must not parse.
fn refused(doc: &str) -> QifError {
    parse(doc.as_bytes(), &Plans::new()).expect_err("refused")
}

#[test]
fn hostile_and_broken_documents_are_refused_with_the_reason() {
    // An entity-expansion bomb ("billion laughs"): refused at its DOCTYPE, nothing expanded.
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0"><QPId>&lol3;</QPId></QIFDocument>"#;
    assert!(
        matches!(refused(bomb), QifError::DocType { .. }),
        "{}",
        refused(bomb)
    );
    // An entity nobody declared.
    let undeclared =
        r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif3"><QPId>&x;</QPId></QIFDocument>"#;
    assert!(matches!(refused(undeclared), QifError::UnknownEntity { ref name, .. } if name == "x"));
    // Malformed XML names the byte.
    let malformed =
        r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif3"><QPId>1</Other></QIFDocument>"#;
    assert!(
        matches!(refused(malformed), QifError::Xml { .. }),
        "{}",
        refused(malformed)
    );
    // A truncated file (or one still being written).
    let full = String::from_utf8(read("WIDGET_QIF_RESULTS.QIF")).expect("utf-8");
    let cut = &full[..full.len() / 2];
    let e = refused(cut);
    assert!(
        matches!(e, QifError::Truncated { .. } | QifError::Xml { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("byte"), "{e}");
    // Another QIF version, another document, another encoding.
    let qif2 = r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif2" versionQIF="2.1"/>"#;
    assert!(matches!(refused(qif2), QifError::Version { ref found } if found == "2.1"));
    let v4 = r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="4.0.0"/>"#;
    assert!(matches!(refused(v4), QifError::Version { .. }));
    let other = r#"<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>"#;
    assert!(matches!(refused(other), QifError::NotQif { .. }));
    let latin1 = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><QIFDocument xmlns=\"http://qifstandards.org/xsd/qif3\"/>";
    assert!(matches!(refused(latin1), QifError::Encoding(ref e) if e == "ISO-8859-1"));
    // Text beyond the bound.
    let long = format!(
        r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif3"><QPId>{}</QPId></QIFDocument>"#,
        "x".repeat(shopfloor_agent::sources::metrology::qif::MAX_TEXT + 1)
    );
    assert!(matches!(refused(&long), QifError::TooLarge { .. }));
    // Nesting beyond the bound.
    let deep = format!(
        r#"<QIFDocument xmlns="http://qifstandards.org/xsd/qif3">{}{}</QIFDocument>"#,
        "<a>".repeat(300),
        "</a>".repeat(300)
    );
    assert!(matches!(refused(&deep), QifError::TooLarge { .. }));
}

#[test]
fn the_parser_never_panics_on_arbitrary_bytes() {
    // Seeded mutations of every sample (truncations, flipped and inserted bytes) and random
    // bytes: each is read or refused, never a panic. `TEST_SEED` repeats a run.
    let mut rng = crate::support::seeded("the_parser_never_panics_on_arbitrary_bytes");
    let originals: Vec<Vec<u8>> = sample_names().iter().map(|n| read(n)).collect();
    let rounds = 400;
    for round in 0..rounds {
        let mut bytes = originals[round % originals.len()].clone();
        match rng.u8(0..4) {
            0 => bytes.truncate(rng.usize(0..=bytes.len())),
            1 => {
                for _ in 0..rng.usize(1..20) {
                    let at = rng.usize(0..bytes.len());
                    bytes[at] = rng.u8(..);
                }
            }
            2 => {
                for _ in 0..rng.usize(1..10) {
                    let at = rng.usize(0..=bytes.len());
                    let what: &[u8] = [
                        &b"<"[..],
                        b">",
                        b"&",
                        b"]]>",
                        b"<!DOCTYPE x>",
                        b"\xff",
                        b"</Value>",
                    ][rng.usize(0..7)];
                    bytes.splice(at..at, what.iter().copied());
                }
            }
            _ => bytes = (0..rng.usize(0..4096)).map(|_| rng.u8(..)).collect(),
        }
        let _ = parse(&bytes, &Plans::new());
    }
}

#[test]
fn a_large_document_streams_every_measurement_with_its_part() {
    let doc = plant_sim::cmm::qif_results(200, 50);
    let index = Index::read(doc.as_bytes()).expect("index");
    let mut n = 0;
    let mut last_serial = String::new();
    let summary = index
        .measurements(doc.as_bytes(), &Plans::new(), |m| {
            n += 1;
            let serial = m.serial.expect("serial").value;
            assert!(serial >= last_serial, "document order");
            last_serial = serial;
            assert_eq!(m.lower_limit.map(|l| l.value), Some(24.98));
            Ok::<(), QifError>(())
        })
        .expect("measurements");
    assert_eq!(
        (n, summary.measurements, summary.results),
        (10_000, 10_000, 200)
    );
    assert_eq!(last_serial, "SN-000199");
}

// ---- Q-DAS AQDEF (`tests/cases/metrology/aqdef/`, MIT licence, `LICENSE` there) ----

use shopfloor_agent::sources::metrology::aqdef::{Aqdef, AqdefError, Encoding};

/// Every value of `files` (read in turn into one reader, as a `.dfd` and its `.dfx`).
fn aqdef(files: &[(&[u8], &str)], encoding: Encoding) -> Result<Vec<Measured>, AqdefError> {
    let mut reader = Aqdef::new(encoding);
    let mut out = Vec::new();
    let mut emit = |m: Measured| {
        out.push(m);
        Ok::<(), AqdefError>(())
    };
    for (bytes, label) in files {
        reader.read(*bytes, label, &mut emit)?;
    }
    reader.finish(&mut emit)?;
    Ok(out)
}

fn aqdef_sample(name: &str) -> Vec<u8> {
    std::fs::read(
        crate::support::root()
            .join("tests/cases/metrology/aqdef")
            .join(name),
    )
    .expect("sample")
}

/// (characteristic number, value as written) of every `K0001/n` line: a scan of the text alone.
fn k0001_by_scan(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("K0001/"))
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap_or((l, ""));
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_aqdef_sample_gives_each_value_once_with_its_characteristic() {
    let dir = crate::support::root().join("tests/cases/metrology/aqdef");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dfq"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in &names {
        let bytes = aqdef_sample(name);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let all =
            aqdef(&[(&bytes, name)], Encoding::Detect).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut got: Vec<(String, String)> = all
            .iter()
            .filter_map(|m| {
                let v = m.value.as_ref()?;
                // `<file> line N, K0001/n`: the characteristic number is the index.
                let n = v.at.rsplit_once("K0001/").map(|(_, n)| n.to_string())?;
                Some((n, v.raw.clone()))
            })
            .collect();
        got.sort();
        assert_eq!(got, k0001_by_scan(&text), "{name}: every K0001 once");
        // Value sets without a K0001 (the attributive sample's K0020/K0021) are given too, and
        // say what they lack.
        for m in all.iter().filter(|m| m.value.is_none()) {
            assert!(!m.incomplete.is_empty(), "{name}: {m:?}");
        }
    }
}

#[test]
fn an_aqdef_value_is_joined_with_its_characteristic_and_the_part_defined_before_it() {
    let bytes = aqdef_sample("basicDfq_threeParts_differentNumberOfCharacteristics.dfq");
    let all = aqdef(&[(&bytes, "three.dfq")], Encoding::Detect).expect("read");
    let of = |code: &str| -> Vec<&Measured> {
        all.iter()
            .filter(|m| m.characteristic.as_ref().is_some_and(|c| c.value == code))
            .collect()
    };
    // Characteristic 1 belongs to part 1 (8 values), characteristics 2..4 to part 2, 5..9 to
    // part 3.
    let part = |m: &Measured| m.part_number.as_ref().map(|p| p.value.clone());
    let first: Vec<_> = of("<characteristic_code_1>");
    let in_part = |n: &str| {
        first
            .iter()
            .filter(|m| part(m).as_deref() == Some(n))
            .count()
    };
    assert_eq!(
        (
            in_part("<part_number_1>"),
            in_part("<part_number_2>"),
            in_part("<part_number_3>")
        ),
        (8, 1, 3),
        "the code of characteristics 1, 2 and 5, in parts 1, 2 and 3"
    );
    let m = *of("<characteristic_code_2>")
        .iter()
        .find(|m| part(m).as_deref() == Some("<part_number_2>"))
        .expect("characteristic 3, the code 2 of part 2");
    assert_eq!(m.nominal.as_ref().map(|n| n.value), Some(3.0));
    assert_eq!(m.lower_limit.as_ref().map(|n| n.value), Some(2.0));
    assert_eq!(m.upper_limit.as_ref().map(|n| n.value), Some(4.0));
    assert_eq!(m.value.as_ref().map(|v| v.value), Some(3.1));
    assert_eq!(
        m.measured_at
            .as_ref()
            .map(|t| (t.value.as_str(), t.at.as_str())),
        Some(("01.01.2013/15:18:31", "three.dfq line 44, K0004/3"))
    );
    // The part's title is kept beside the record.
    assert!(m
        .other
        .iter()
        .any(|(k, l)| k == "K1002" && l.value == "<part_title_2>"));
}

#[test]
fn aqdef_fields_of_a_value_attributes_windows_1252_and_the_compact_form() {
    // A `.dfd` description in Windows-1252, then its `.dfx` values in the compact form.
    let dfd: &[u8] = b"K0100 2\r\nK1001/1 PN-778\r\nK1002/1 Geh\xe4use\r\nK2001/1 OD-1\r\nK2002/1 \xd8 au\xdfen\r\nK2101/1 25\r\nK2110/1 24,98\r\nK2111/1 25,02\r\nK2142/1 mm\r\nK2001/2 LEN\r\nK2142/2 mm\r\n";
    let dfx = "25.004\u{14}0\u{14}03.12.2026/10:15:30\u{14}\u{14}\u{14}\u{14}op17\u{14}\u{14}\u{14}MIC-0042\u{0f}80.1\u{14}255\n";
    let all = aqdef(
        &[(dfd, "part.dfd"), (dfx.as_bytes(), "part.dfx")],
        Encoding::Detect,
    )
    .expect("read");
    assert_eq!(all.len(), 2);
    let od = &all[0];
    assert_eq!(
        od.characteristic.as_ref().map(|c| c.value.as_str()),
        Some("OD-1")
    );
    assert_eq!(od.value.as_ref().map(|v| v.value), Some(25.004));
    assert_eq!(
        (
            od.lower_limit.as_ref().map(|l| l.value),
            od.upper_limit.as_ref().map(|l| l.value)
        ),
        (Some(24.98), Some(25.02)),
        "decimal commas"
    );
    assert_eq!(od.unit.as_ref().map(|u| u.value.as_str()), Some("mm"));
    assert_eq!(od.operator.as_ref().map(|o| o.value.as_str()), Some("op17"));
    assert_eq!(
        od.device.as_ref().map(|d| d.value.as_str()),
        Some("MIC-0042")
    );
    assert_eq!(
        od.value.as_ref().map(|v| v.at.as_str()),
        Some("part.dfx line 1, characteristic 1 field 1")
    );
    assert!(
        od.other
            .iter()
            .any(|(k, l)| k == "K2002" && l.value == "Ø außen"),
        "{:?}",
        od.other
    );
    assert!(od
        .other
        .iter()
        .any(|(k, l)| k == "K1002" && l.value == "Gehäuse"));
    // An invalid value is given with its attribute, not dropped.
    let len = &all[1];
    assert_eq!(len.value.as_ref().map(|v| v.value), Some(80.1));
    assert_eq!(
        len.status.as_ref().map(|s| s.value.as_str()),
        Some("attribute 255")
    );

    // The K-line form: fields after K0001 belong to that value; index 0 to every current value;
    // an unknown field is kept.
    let dfq = "K0100 2\nK2001/1 A\nK2001/2 B\nK0001/1 1.5\nK0001/2 2.5\nK0014/0 SN-000123\nK0002/2 256\nK0099/1 something new\nK0001/1 1.6\n";
    let all = aqdef(&[(dfq.as_bytes(), "x.dfq")], Encoding::Utf8).expect("read");
    let got: Vec<_> = all
        .iter()
        .map(|m| {
            (
                m.characteristic.as_ref().map(|c| c.value.clone()),
                m.value.as_ref().map(|v| v.value),
                m.serial.as_ref().map(|s| s.value.clone()),
                m.status.as_ref().map(|s| s.value.clone()),
                m.other
                    .iter()
                    .map(|(k, l)| format!("{k}={}", l.value))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("A".into()),
                Some(1.5),
                Some("SN-000123".into()),
                None,
                vec!["K0099=something new".to_string()]
            ),
            (Some("A".into()), Some(1.6), None, None, vec![]),
            (
                Some("B".into()),
                Some(2.5),
                Some("SN-000123".into()),
                Some("attribute 256".into()),
                vec![]
            ),
        ]
    );
}

#[test]
fn broken_aqdef_files_are_refused_with_the_line() {
    let e = aqdef(
        &[(b"K0100 1\nK2001/1 A\nthis is not AQDEF\n", "bad.dfq")],
        Encoding::Detect,
    )
    .expect_err("refused");
    assert!(e.to_string().starts_with("bad.dfq line 3:"), "{e}");
    let e = aqdef(&[(b"K2001/1 Geh\xe4use\n", "latin.dfq")], Encoding::Utf8).expect_err("refused");
    assert!(matches!(e, AqdefError::Encoding { .. }), "{e}");
    assert!(e.to_string().contains("windows-1252"), "{e}");
    let long = format!(
        "K2001/1 {}\n",
        "x".repeat(shopfloor_agent::sources::metrology::aqdef::MAX_LINE)
    );
    assert!(matches!(
        aqdef(&[(long.as_bytes(), "long.dfq")], Encoding::Detect),
        Err(AqdefError::TooLarge { .. })
    ));
    assert!(matches!(
        aqdef(&[(b"K2001/999999999 A\n", "many.dfq")], Encoding::Detect),
        Err(AqdefError::TooLarge { .. })
    ));
    // Arbitrary bytes: read or refused, never a panic.
    let mut rng = crate::support::seeded("broken_aqdef_files_are_refused_with_the_line");
    let sample = aqdef_sample("basicDfq_threeParts_differentNumberOfCharacteristics.dfq");
    for _ in 0..300 {
        let mut bytes = sample.clone();
        for _ in 0..rng.usize(1..30) {
            let at = rng.usize(0..bytes.len());
            bytes[at] = [b'/', b' ', b'\n', 0x0f, 0x14, b'K', b'0', 0xff][rng.usize(0..8)];
        }
        let _ = aqdef(&[(&bytes, "fuzz.dfq")], Encoding::Detect);
    }
}

#[test]
fn tables_of_arbitrary_bytes_are_read_or_refused_never_a_panic() {
    use shopfloor_agent::sources::metrology::table::{read, Columns, Layout, TableError};
    let layouts = [
        Layout::calypso(&Columns::default()),
        Layout {
            delimiter: ';',
            decimal_comma: true,
            columns: Columns {
                characteristic: Some("id".into()),
                value: Some("actual".into()),
                upper_tolerance: Some("uppertol".into()),
                ..Columns::default()
            },
            if_present: Columns::default(),
        },
    ];
    let sample = "planid\tid\ttype\tactual\tnominal\tuppertol\tlowertol\tunit\n\
                  P1\tDM-1\tDurchmesser\t25.004\t25\t0.02\t-0.02\n\
                  P1\t\"L;1\"\tAbstand\t80,01\t80\t0.1\t-0.1\n"
        .as_bytes()
        .to_vec();
    let mut rng =
        crate::support::seeded("tables_of_arbitrary_bytes_are_read_or_refused_never_a_panic");
    let mut read_ok = 0;
    for round in 0..400 {
        let mut bytes = sample.clone();
        for _ in 0..rng.usize(1..20) {
            let at = rng.usize(0..bytes.len());
            bytes[at] = [b'\t', b';', b'"', b'\n', b',', b'-', b'9', 0xff][rng.usize(0..8)];
        }
        let outcome = read(&bytes[..], "fuzz_chr.txt", &layouts[round % 2], &mut |m| {
            assert!(m.at.starts_with("fuzz_chr.txt line "), "{}", m.at);
            Ok::<(), TableError>(())
        });
        if outcome.is_ok() {
            read_ok += 1;
        }
    }
    assert!(read_ok > 0, "some mutated tables still read");
}
