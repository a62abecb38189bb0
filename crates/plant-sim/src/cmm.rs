//! A coordinate measuring machine's result files, for the metrology source's tests and benches.
//!
//! [`qif_part`] writes the results of one part, as the demo's CMM drops them into its spool folder:
//! a valid QIF 3.0 document (`tests/interop/metrology.sh` checks it against the schema through the
//! `cmm-qif` example).
//! [`qif_results`] writes a QIF 3.0 results document shaped as a CMM writes one (plan, then the
//! measurements of each part, then the parts' serial numbers) with every part in tolerance. Its
//! ids are names (`d0`, `i0`, `m3-0`), not the numbers the QIF schema asks for: it is for reading
//! and rates, not for schema checks (`tests/interop/metrology.sh` validates its own documents).

/// A results document of `parts` parts with `per_part` diameters each (nominal 25 mm, ± 0.02),
/// measured on device `CMM-01`; part `p` has serial `SN-{p:06}`.
pub fn qif_results(parts: usize, per_part: usize) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0">
<FileUnits><PrimaryUnits><LinearUnit><SIUnitName>meter</SIUnitName><UnitName>mm</UnitName></LinearUnit></PrimaryUnits></FileUnits>
<MeasurementResources><MeasurementDevices n="1"><MeasurementDevice id="dev"><Name>CMM-01</Name></MeasurementDevice></MeasurementDevices></MeasurementResources>
<Characteristics><CharacteristicDefinitions>"#,
    );
    for c in 0..per_part {
        s.push_str(&format!(r#"<DiameterCharacteristicDefinition id="d{c}"><Tolerance><MaxValue>0.02</MaxValue><MinValue>-0.02</MinValue><DefinedAsLimit>false</DefinedAsLimit></Tolerance></DiameterCharacteristicDefinition>"#));
    }
    s.push_str("</CharacteristicDefinitions><CharacteristicNominals>");
    for c in 0..per_part {
        s.push_str(&format!(r#"<DiameterCharacteristicNominal id="n{c}"><CharacteristicDefinitionId>d{c}</CharacteristicDefinitionId><TargetValue>25</TargetValue></DiameterCharacteristicNominal>"#));
    }
    s.push_str("</CharacteristicNominals><CharacteristicItems>");
    for c in 0..per_part {
        s.push_str(&format!(r#"<DiameterCharacteristicItem id="i{c}"><Name>D{c}</Name><MeasurementDeviceIds n="1"><Id>dev</Id></MeasurementDeviceIds><CharacteristicNominalId>n{c}</CharacteristicNominalId></DiameterCharacteristicItem>"#));
    }
    s.push_str("</CharacteristicItems></Characteristics><Results><MeasurementResultsSet>");
    for p in 0..parts {
        s.push_str(&format!(
            r#"<MeasurementResults id="r{p}"><MeasuredCharacteristics><CharacteristicMeasurements>"#
        ));
        for c in 0..per_part {
            s.push_str(&format!(r#"<DiameterCharacteristicMeasurement id="m{p}-{c}"><Status><CharacteristicStatusEnum>PASS</CharacteristicStatusEnum></Status><CharacteristicItemId>i{c}</CharacteristicItemId><Value>25.00{}</Value></DiameterCharacteristicMeasurement>"#, c % 10));
        }
        s.push_str(&format!(r#"</CharacteristicMeasurements></MeasuredCharacteristics><ActualComponentIds><Id>a{p}</Id></ActualComponentIds></MeasurementResults>"#));
    }
    s.push_str("</MeasurementResultsSet><ActualComponentSets><ActualComponentSet>");
    for p in 0..parts {
        s.push_str(&format!(
            r#"<ActualComponent id="a{p}"><SerialNumber>SN-{p:06}</SerialNumber></ActualComponent>"#
        ));
    }
    s.push_str("</ActualComponentSet></ActualComponentSets></Results></QIFDocument>\n");
    s
}

/// The document's persistent id (a UUID, as QIF asks), the same for the same serial.
fn qpid(serial: &str) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, serial).hash(&mut h);
        h.finish()
    };
    let (a, b) = (half(1), half(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// One measured characteristic of [`qif_part`]: name, nominal, ± tolerance, measured value.
pub type Characteristic<'a> = (&'a str, f64, f64, f64);

/// The results of part `serial` measured at `at` (RFC 3339) on device `CMM-01`, one diameter per
/// characteristic, with the CMM's own verdict (`PASS` or `FAIL` by the tolerance).
pub fn qif_part(serial: &str, at: &str, characteristics: &[Characteristic<'_>]) -> String {
    // Ids: 1 device, 2 results, 3 part, 4 the standard, then definitions, nominals, items and
    // measurements.
    let n = characteristics.len();
    let id_max = 10 + 4 * n;
    let mut s = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0" idMax="{id_max}">
<QPId>{}</QPId>
<StandardsDefinitions n="1"><Standard id="4"><Organization><StandardsOrganizationEnum>ISO</StandardsOrganizationEnum></Organization><Designator>1101</Designator></Standard></StandardsDefinitions>
<FileUnits><PrimaryUnits><LinearUnit><SIUnitName>meter</SIUnitName><UnitName>mm</UnitName></LinearUnit></PrimaryUnits></FileUnits>
<MeasurementResources><MeasurementDevices n="1"><MeasurementDevice id="1"><Name>CMM-01</Name></MeasurementDevice></MeasurementDevices></MeasurementResources>
<Characteristics><FormalStandardId>4</FormalStandardId><CharacteristicDefinitions n="{n}">"#,
        qpid(serial)
    );
    for (c, (_, _, tol, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicDefinition id="{}"><Tolerance><MaxValue>{tol}</MaxValue><MinValue>-{tol}</MinValue><DefinedAsLimit>false</DefinedAsLimit></Tolerance></DiameterCharacteristicDefinition>"#, 10 + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicDefinitions><CharacteristicNominals n="{n}">"#
    ));
    for (c, (_, nominal, _, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicNominal id="{}"><CharacteristicDefinitionId>{}</CharacteristicDefinitionId><TargetValue>{nominal}</TargetValue></DiameterCharacteristicNominal>"#, 10 + n + c, 10 + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicNominals><CharacteristicItems n="{n}">"#
    ));
    for (c, (name, _, _, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicItem id="{}"><Name>{name}</Name><MeasurementDeviceIds n="1"><Id>1</Id></MeasurementDeviceIds><CharacteristicNominalId>{}</CharacteristicNominalId></DiameterCharacteristicItem>"#, 10 + 2 * n + c, 10 + n + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicItems></Characteristics><Results><MeasurementResultsSet n="1"><MeasurementResults id="2"><InspectionTraceability><InspectionStart>{at}</InspectionStart></InspectionTraceability><MeasuredCharacteristics><CharacteristicMeasurements n="{n}">"#
    ));
    let in_tolerance =
        |(_, nominal, tol, value): &Characteristic<'_>| (value - nominal).abs() <= *tol + 1e-9;
    let part = if characteristics.iter().all(in_tolerance) {
        "PASS"
    } else {
        "FAIL"
    };
    for (c, ch) in characteristics.iter().enumerate() {
        let verdict = if in_tolerance(ch) { "PASS" } else { "FAIL" };
        let value = ch.3;
        s.push_str(&format!(r#"<DiameterCharacteristicMeasurement id="{}"><Status><CharacteristicStatusEnum>{verdict}</CharacteristicStatusEnum></Status><CharacteristicItemId>{}</CharacteristicItemId><Value>{value:.4}</Value></DiameterCharacteristicMeasurement>"#, 10 + 3 * n + c, 10 + 2 * n + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicMeasurements></MeasuredCharacteristics><InspectionStatus><InspectionStatusEnum>{part}</InspectionStatusEnum></InspectionStatus><ActualComponentIds n="1"><Id>3</Id></ActualComponentIds></MeasurementResults></MeasurementResultsSet><ActualComponentSets n="1"><ActualComponentSet n="1"><ActualComponent id="3"><SerialNumber>{serial}</SerialNumber><Status><InspectionStatusEnum>{part}</InspectionStatusEnum></Status></ActualComponent></ActualComponentSet></ActualComponentSets></Results></QIFDocument>
"#
    ));
    s
}
