//! A coordinate measuring machine's result files, for the metrology source's tests and benches.
//!
//! [`qif_part`] writes the results of one part, as the demo's CMM drops them into its spool folder.
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

/// One measured characteristic of [`qif_part`]: name, nominal, ± tolerance, measured value.
pub type Characteristic<'a> = (&'a str, f64, f64, f64);

/// The results of part `serial` measured at `at` (RFC 3339) on device `CMM-01`, one diameter per
/// characteristic, with the CMM's own verdict (`PASS` or `FAIL` by the tolerance).
pub fn qif_part(serial: &str, at: &str, characteristics: &[Characteristic<'_>]) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<QIFDocument xmlns="http://qifstandards.org/xsd/qif3" versionQIF="3.0.0">
<FileUnits><PrimaryUnits><LinearUnit><SIUnitName>meter</SIUnitName><UnitName>mm</UnitName></LinearUnit></PrimaryUnits></FileUnits>
<MeasurementResources><MeasurementDevices n="1"><MeasurementDevice id="1"><Name>CMM-01</Name></MeasurementDevice></MeasurementDevices></MeasurementResources>
<Characteristics><CharacteristicDefinitions>"#,
    );
    let n = characteristics.len();
    for (c, (_, _, tol, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicDefinition id="{}"><Tolerance><MaxValue>{tol}</MaxValue><MinValue>-{tol}</MinValue><DefinedAsLimit>false</DefinedAsLimit></Tolerance></DiameterCharacteristicDefinition>"#, 10 + c));
    }
    s.push_str("</CharacteristicDefinitions><CharacteristicNominals>");
    for (c, (_, nominal, _, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicNominal id="{}"><CharacteristicDefinitionId>{}</CharacteristicDefinitionId><TargetValue>{nominal}</TargetValue></DiameterCharacteristicNominal>"#, 10 + n + c, 10 + c));
    }
    s.push_str("</CharacteristicNominals><CharacteristicItems>");
    for (c, (name, _, _, _)) in characteristics.iter().enumerate() {
        s.push_str(&format!(r#"<DiameterCharacteristicItem id="{}"><Name>{name}</Name><MeasurementDeviceIds n="1"><Id>1</Id></MeasurementDeviceIds><CharacteristicNominalId>{}</CharacteristicNominalId></DiameterCharacteristicItem>"#, 10 + 2 * n + c, 10 + n + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicItems></Characteristics><Results><MeasurementResultsSet><MeasurementResults id="2"><InspectionTraceability><InspectionStart>{at}</InspectionStart></InspectionTraceability><MeasuredCharacteristics><CharacteristicMeasurements>"#
    ));
    for (c, (_, nominal, tol, value)) in characteristics.iter().enumerate() {
        let verdict = if (value - nominal).abs() <= *tol + 1e-9 {
            "PASS"
        } else {
            "FAIL"
        };
        s.push_str(&format!(r#"<DiameterCharacteristicMeasurement id="{}"><Status><CharacteristicStatusEnum>{verdict}</CharacteristicStatusEnum></Status><CharacteristicItemId>{}</CharacteristicItemId><Value>{value:.4}</Value></DiameterCharacteristicMeasurement>"#, 10 + 3 * n + c, 10 + 2 * n + c));
    }
    s.push_str(&format!(
        r#"</CharacteristicMeasurements></MeasuredCharacteristics><ActualComponentIds n="1"><Id>3</Id></ActualComponentIds></MeasurementResults></MeasurementResultsSet><ActualComponentSets><ActualComponentSet><ActualComponent id="3"><SerialNumber>{serial}</SerialNumber></ActualComponent></ActualComponentSet></ActualComponentSets></Results></QIFDocument>
"#
    ));
    s
}
