//! A coordinate measuring machine's result files, for the metrology source's tests and benches.
//!
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
