//! Audit tools on a journal built here: four parts over two work orders, two gauges, a calibration
//! that expires mid-run, a failed calibration and the passing one after it, gaps inside and outside
//! a part's time.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use shopfloor_agent::audit::export::{config_hash, export, ExportQuery};
use shopfloor_agent::audit::package::verify_package;
use shopfloor_agent::audit::trace::{trace, GaugeStanding, Query, Trace};
use shopfloor_agent::journal::{Journal, JournalOptions, NewRecord, Store};
use shopfloor_agent::records::model::{Calibration, Traveler};
use shopfloor_agent::records::{QualityRecord, RecordContext, RecordKind};

use crate::support::{agent_bin, tempdir};

/// The configuration the records name (kept in the journal, as `run` does).
const CONFIG: &str = "[agent]\ngateway_id = \"plant1-cell1-gw01\"\ndata_dir = \"data\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"https://qms.example.com/events\"\nauth = { type = \"bearer\", token = \"${env:QMS_TOKEN}\" }\n";

fn ctx() -> RecordContext {
    RecordContext {
        gateway_id: "plant1-cell1-gw01".into(),
        config_sha256: config_hash(CONFIG).expect("config hash"),
    }
}

/// `2026-MM-DDTHH:MM:00.000Z`.
fn at(day: &str, hm: &str) -> String {
    format!("2026-{day}T{hm}:00.000Z")
}

fn traveler(serial: &str, work_order: &str, status: &str, when: String) -> QualityRecord {
    let mut r = QualityRecord::new(&ctx(), RecordKind::Traveler);
    r.captured_at = when;
    r.subject.serial = Some(serial.into());
    r.subject.work_order = Some(work_order.into());
    r.subject.operation = Some("OP-30".into());
    r.subject.station = Some("cell1/station10".into());
    r.traveler = Some(Traveler {
        status: Some(status.into()),
        work_center: Some("cell1/station10".into()),
        ..Traveler::default()
    });
    r
}

fn inspection(
    serial: &str,
    work_order: &str,
    gauge: &str,
    value: f64,
    when: String,
) -> QualityRecord {
    let mut r = crate::suite::journal::inspection(serial, value);
    r.captured_at = when;
    r.subject.work_order = Some(work_order.into());
    if let Some(i) = r.inspection.as_mut() {
        i.gauge_id = Some(gauge.into());
        i.gauge_calibration = None;
    }
    r
}

fn calibration(gauge: &str, on: &str, result: &str, due: &str, certificate: &str) -> QualityRecord {
    let mut r = QualityRecord::new(&ctx(), RecordKind::Calibration);
    r.captured_at = at(on, "12:00");
    r.calibration = Some(Calibration {
        instrument_id: gauge.into(),
        calibrated_at: Some(format!("2026-{on}")),
        due_at: Some(due.into()),
        result: Some(result.into()),
        certificate: Some(certificate.into()),
        ..Calibration::default()
    });
    r
}

fn gap(source: &str, from: String, to: String) -> QualityRecord {
    let mut r = QualityRecord::gap(&ctx(), source, from, to, "connection lost");
    r.captured_at = shopfloor_agent::time::now_rfc3339();
    r
}

/// The journal under `dir`; returns it closed.
fn build(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut opts = JournalOptions::new(dir);
        opts.config_toml = Some(CONFIG.to_string());
        let journal = Journal::open(opts, ctx()).expect("journal");
        let mut sn3 = inspection("SN-3", "WO-2", "G-1", 25.011, at("07-02", "09:00"));
        sn3.subject.lot = Some("L-7".into());
        let records = vec![
            calibration("G-1", "01-01", "pass", "2026-06-30", "CAL-1"),
            // The same calibration read again from the ERP.
            calibration("G-1", "01-01", "pass", "2026-06-30", "CAL-1"),
            traveler("SN-1", "WO-1", "started", at("06-29", "08:00")),
            inspection("SN-1", "WO-1", "G-1", 25.001, at("06-29", "08:10")),
            traveler("SN-1", "WO-1", "completed", at("06-29", "08:20")),
            // G-1 is due on 06-30: from here on it is overdue.
            traveler("SN-2", "WO-1", "started", at("07-01", "08:00")),
            gap("plc", at("07-01", "08:05"), at("07-01", "08:07")),
            inspection("SN-2", "WO-1", "G-1", 25.004, at("07-01", "08:10")),
            traveler("SN-2", "WO-1", "completed", at("07-01", "08:20")),
            sn3,
            inspection("SN-3", "WO-2", "G-2", 11.2, at("07-02", "09:05")),
            gap("erp", at("07-03", "10:00"), at("07-03", "11:00")),
            calibration("G-1", "07-05", "fail", "2026-07-05", "CAL-2"),
            calibration("G-1", "07-06", "pass", "2027-01-06", "CAL-3"),
            inspection("SN-4", "WO-2", "G-1", 24.999, at("07-07", "10:00")),
        ];
        for r in records {
            journal
                .append(vec![NewRecord::new(r)])
                .await
                .expect("append");
        }
        journal.close().await;
    });
}

fn part(t: Trace) -> shopfloor_agent::audit::trace::PartTrace {
    match t {
        Trace::Part(p) => p,
        Trace::Gauge(g) => panic!("a part trace, not {g:?}"),
    }
}

fn what(e: &shopfloor_agent::audit::trace::Entry) -> String {
    let r = &e.record;
    format!(
        "{} {} {}",
        r["subject"]["serial"].as_str().unwrap_or("-"),
        r["kind"].as_str().unwrap_or("-"),
        r["traveler"]["status"]
            .as_str()
            .or(r["inspection"]["gauge_id"].as_str())
            .unwrap_or("-")
    )
}

#[test]
fn trace_follows_a_part_a_lot_and_a_work_order_with_the_gaps_in_their_time() {
    let dir = tempdir();
    build(dir.path());
    let store = Store::open_ro(dir.path()).expect("journal");

    let sn2 = part(trace(&store, &Query::Serial("SN-2".into())).expect("trace"));
    let seen: Vec<String> = sn2.records.iter().map(what).collect();
    assert_eq!(
        seen,
        [
            "SN-2 traveler started",
            "SN-2 inspection G-1",
            "SN-2 traveler completed"
        ]
    );
    assert_eq!(sn2.from.as_deref(), Some("2026-07-01T08:00:00.000Z"));
    assert_eq!(sn2.to.as_deref(), Some("2026-07-01T08:20:00.000Z"));
    // The PLC's gap lies in the part's time; the ERP's two days later does not.
    let gaps: Vec<&str> = sn2
        .gaps
        .iter()
        .map(|g| g.record["gap"]["source"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(gaps, ["plc"]);

    let sn1 = part(trace(&store, &Query::Serial("SN-1".into())).expect("trace"));
    assert_eq!(sn1.records.len(), 3);
    assert!(sn1.gaps.is_empty());

    let wo1 = part(trace(&store, &Query::WorkOrder("WO-1".into())).expect("trace"));
    let serials: Vec<&str> = wo1
        .records
        .iter()
        .map(|e| e.record["subject"]["serial"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(serials, ["SN-1", "SN-1", "SN-1", "SN-2", "SN-2", "SN-2"]);
    assert_eq!(wo1.gaps.len(), 1, "the PLC gap, inside WO-1's time");

    let lot = part(trace(&store, &Query::Lot("L-7".into())).expect("trace"));
    assert_eq!(
        lot.records.iter().map(what).collect::<Vec<_>>(),
        ["SN-3 inspection G-1"]
    );

    let none = part(trace(&store, &Query::Serial("SN-9".into())).expect("trace"));
    assert!(none.records.is_empty() && none.gaps.is_empty());
    assert!(Trace::Part(none)
        .render()
        .contains("no records in the journal"));
}

#[test]
fn trace_of_a_gauge_names_the_overdue_inspections_and_those_a_failed_calibration_puts_in_doubt() {
    let dir = tempdir();
    build(dir.path());
    let store = Store::open_ro(dir.path()).expect("journal");
    let Trace::Gauge(g1) = trace(&store, &Query::Gauge("G-1".into())).expect("trace") else {
        panic!("a gauge trace");
    };
    let certificates: Vec<&str> = g1
        .calibrations
        .iter()
        .map(|c| c.certificate.as_deref().unwrap_or("-"))
        .collect();
    assert_eq!(
        certificates,
        ["CAL-1", "CAL-2", "CAL-3"],
        "the repeated CAL-1 is one calibration"
    );
    let uses: Vec<(&str, GaugeStanding, bool, bool)> = g1
        .inspections
        .iter()
        .map(|i| {
            (
                i.serial.as_deref().unwrap_or("-"),
                i.standing,
                i.in_doubt,
                i.since_last_pass,
            )
        })
        .collect();
    use GaugeStanding::{InCalibration, Overdue};
    assert_eq!(
        uses,
        [
            ("SN-1", InCalibration, true, false),
            ("SN-2", Overdue, true, false),
            ("SN-3", Overdue, true, false),
            ("SN-4", InCalibration, false, true),
        ]
    );
    assert_eq!((g1.overdue, g1.in_doubt, g1.since_last_pass), (2, 3, 1));
    assert_eq!(g1.failures.len(), 1);
    let f = &g1.failures[0];
    assert_eq!(f.calibration.certificate.as_deref(), Some("CAL-2"));
    assert_eq!(f.since.as_deref(), Some("2026-01-01"));
    assert_eq!(f.until.as_deref(), Some("2026-07-06"));
    let doubted: Vec<i64> = g1
        .inspections
        .iter()
        .filter(|i| i.in_doubt)
        .map(|i| i.seq)
        .collect();
    assert_eq!(f.inspections, doubted);

    let Trace::Gauge(g2) = trace(&store, &Query::Gauge("G-2".into())).expect("trace") else {
        panic!("a gauge trace");
    };
    assert_eq!(g2.inspections.len(), 1);
    assert_eq!(
        g2.inspections[0].standing,
        GaugeStanding::NoCalibrationKnown
    );
    assert!(g2.failures.is_empty() && g2.last_pass.is_none());
}

#[test]
fn the_trace_command_prints_a_table_or_json_and_asks_what_to_follow() {
    let dir = tempdir();
    let data = dir.path().join("data");
    build(&data);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .expect("config");
    let run = |args: &[&str]| {
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("trace")
            .args(args)
            .output()
            .expect("trace")
    };
    let out = run(&["--gauge", "G-1"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED calibration on 2026-07-05 (certificate CAL-2): 3 inspection(s) made from 2026-01-01 until 2026-07-06 are in doubt"),
        "{text}"
    );
    assert!(
        text.contains("2 inspection(s) made while the gauge was overdue"),
        "{text}"
    );
    assert_eq!(
        text.matches("IN DOUBT").count(),
        4,
        "header and three rows: {text}"
    );

    let out = run(&["--serial", "SN-2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 GAP(S) overlap this time"), "{text}");
    assert!(
        text.contains("plc 2026-07-01T08:05:00.000Z -> 2026-07-01T08:07:00.000Z"),
        "{text}"
    );

    let out = run(&["--serial", "SN-2", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["records"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["gaps"][0]["record"]["gap"]["source"], "plc");

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--serial") && err.contains("--gauge"), "{err}");
}

fn everything() -> ExportQuery {
    let now = shopfloor_agent::time::now();
    ExportQuery {
        from: now - time::Duration::hours(1),
        to: now + time::Duration::hours(1),
        work_order: None,
    }
}

/// A copy of the package at `from` in `to`, with `change` applied to one file.
fn tampered(from: &Path, to: &Path, file: &str, change: impl FnOnce(String) -> String) {
    std::fs::create_dir_all(to.join("configs")).expect("dir");
    let mut files = Vec::new();
    for sub in ["", "configs"] {
        for e in std::fs::read_dir(from.join(sub)).expect("read").flatten() {
            if e.path().is_file() {
                files.push(Path::new(sub).join(e.file_name()));
            }
        }
    }
    for f in files {
        std::fs::copy(from.join(&f), to.join(&f)).expect("copy");
    }
    let text = std::fs::read_to_string(to.join(file)).expect("file");
    std::fs::write(to.join(file), change(text)).expect("write");
}

/// The manifest of the package in `dir` updated to the files' new sums, as a forger would.
fn reseal(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    let names: Vec<String> = manifest["files"]
        .as_object()
        .expect("files")
        .keys()
        .cloned()
        .collect();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).expect("file");
        manifest["files"][&name] = Value::from(shopfloor_agent::journal::chain::sha256_hex(&bytes));
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).expect("json"),
    )
    .expect("write");
}

fn problems(dir: &Path) -> Vec<String> {
    verify_package(dir, None).problems
}

#[test]
fn an_exported_package_verifies_offline_and_any_altered_byte_is_named() {
    let dir = tempdir();
    let data = dir.path().join("data");
    build(&data);
    let store = Store::open_ro(&data).expect("journal");
    let package = dir.path().join("package");
    let exported = export(&store, &everything(), &package).expect("export");
    assert_eq!((exported.first_seq, exported.last_seq), (1, 15));
    // The inspections name a configuration the journal never kept (as from an older agent).
    assert_eq!(
        (exported.records, exported.gaps, exported.configs),
        (15, 2, 2)
    );
    // The package's last hash is the journal's head: what ties it to the gateway.
    let head = shopfloor_agent::audit::verify::verify(&store)
        .expect("verify")
        .head_hash;
    assert_eq!(exported.last_hash, head);

    let report = verify_package(&package, None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (
            report.records,
            report.configs_checked,
            report.configs_unchecked,
            report.files
        ),
        (15, 1, 1, 7)
    );
    let configs = std::fs::read_to_string(package.join("configs.json")).expect("configs");
    assert!(
        configs.contains("the journal does not hold this configuration's text"),
        "{configs}"
    );
    let config =
        std::fs::read_to_string(package.join(format!("configs/{}.toml", ctx().config_sha256)))
            .expect("config");
    assert!(
        config.contains("${env:QMS_TOKEN}"),
        "references stay: {config}"
    );

    // Through the command, on a machine without the configuration or the journal.
    let out = Command::new(agent_bin())
        .args(["--config", "/nonexistent/agent.toml", "verify", "--package"])
        .arg(&package)
        .output()
        .expect("verify --package");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("intact"),
        "{out:?}"
    );

    // One byte of a record.
    let one_byte = dir.path().join("one-byte");
    tampered(&package, &one_byte, "records.jsonl", |t| {
        t.replacen("25.004", "25.005", 1)
    });
    let found = problems(&one_byte);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("records.jsonl: altered"), "{found:?}");
    // The forger also rewrites the manifest: the chain still names the record.
    reseal(&one_byte);
    let found = problems(&one_byte);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("records.jsonl line 8 (seq 8): does not match its hash in the chain"),
        "{found:?}"
    );
    let out = Command::new(agent_bin())
        .args(["verify", "--package"])
        .arg(&one_byte)
        .output()
        .expect("verify --package");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT INTACT"),
        "{out:?}"
    );

    // A record dropped with its chain entry: the chain breaks there.
    let dropped = dir.path().join("dropped");
    tampered(&package, &dropped, "chain.jsonl", |t| {
        t.lines()
            .filter(|l| !l.contains("\"seq\":5,"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    reseal(&dropped);
    let found = problems(&dropped);
    assert!(
        found.iter().any(
            |p| p == "chain.jsonl line 5: seq 6 follows seq 4: entries missing or out of order"
        ),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("is not in the chain")),
        "{found:?}"
    );

    // The configuration edited.
    let edited = dir.path().join("edited");
    let name = format!("configs/{}.toml", ctx().config_sha256);
    tampered(&package, &edited, &name, |t| {
        t.replace("qms.example.com", "evil.example.com")
    });
    reseal(&edited);
    assert_eq!(
        problems(&edited),
        [format!(
            "{name}: does not hash to {}: the configuration was altered",
            ctx().config_sha256
        )]
    );

    // A file slipped in.
    let added = dir.path().join("added");
    tampered(&package, &added, "README.txt", |t| t);
    std::fs::write(added.join("extra.jsonl"), "{}\n").expect("write");
    assert_eq!(
        problems(&added),
        ["extra.jsonl: not listed in the manifest (added after export)"]
    );
}

#[test]
fn a_work_order_package_holds_its_records_with_every_gap_and_the_whole_chain() {
    let dir = tempdir();
    build(dir.path());
    let store = Store::open_ro(dir.path()).expect("journal");
    let package = dir.path().join("wo1");
    let query = ExportQuery {
        work_order: Some("WO-1".into()),
        ..everything()
    };
    let exported = export(&store, &query, &package).expect("export");
    // SN-1 and SN-2 (three records each) and both gaps.
    assert_eq!((exported.records, exported.gaps), (8, 2));
    let chain = std::fs::read_to_string(package.join("chain.jsonl")).expect("chain");
    assert_eq!(chain.lines().count(), 15, "every seq of the segment");
    assert_eq!(chain.matches("\"included\":false").count(), 7);
    let report = verify_package(&package, None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, 8);

    // A package is never written over another, and an empty range says what the journal holds.
    let again = export(&store, &query, &package).expect_err("exists");
    assert!(
        again.to_string().contains("exists and is not empty"),
        "{again}"
    );
    let old = ExportQuery {
        from: shopfloor_agent::time::parse("2020-01-01T00:00:00Z").expect("t"),
        to: shopfloor_agent::time::parse("2020-01-02T00:00:00Z").expect("t"),
        work_order: None,
    };
    let none = export(&store, &old, &dir.path().join("empty")).expect_err("nothing");
    assert!(none.to_string().contains("no records were journaled between 2020-01-01T00:00:00.000Z and 2020-01-02T00:00:00.000Z (the journal holds records journaled from"), "{none}");
}

/// Rewrites `dir`'s journal from `seq` on with `edit` applied to that record's body and a
/// consistent new chain (as a forger with write access would), keeping the old signatures.
fn rewrite_chain(dir: &Path, seq: i64, edit: impl Fn(String) -> String) {
    let conn = crate::support::forger::forge(dir);
    let body: String = conn
        .query_row("SELECT body FROM records WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("row");
    conn.execute(
        "UPDATE records SET body = ?1 WHERE seq = ?2",
        rusqlite::params![edit(body), seq],
    )
    .expect("edit");
    crate::support::forger::rechain(&conn, seq, |_, old| old);
}

#[test]
fn signed_records_verify_with_the_gateways_key_and_a_consistently_rewritten_chain_does_not() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw-sign\"\ndata_dir = \"{}\"\n\n[journal]\nsign = true\n",
            data.display()
        ),
    )
    .expect("config");
    let agent = |args: &[&str]| {
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("agent")
    };
    // Two runs: the key is made by the first, the records of both are signed.
    for head in [2, 4] {
        let mut child = Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run");
        crate::support::eventually_blocking(
            std::time::Duration::from_secs(20),
            "the start records",
            || {
                Store::open_ro(&data)
                    .and_then(|s| s.head())
                    .is_ok_and(|h| h.seq >= head)
            },
        );
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(child.wait().expect("wait").success());
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let key_file = data.join(shopfloor_agent::journal::signing::KEY_FILE);
        let mode = std::fs::metadata(&key_file)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = agent(&["public-key"]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 64, "{key}");

    let store = Store::open_ro(&data).expect("journal");
    let made: Vec<Value> = store
        .bodies_of_kind("agent_event")
        .expect("events")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).expect("json"))
        .filter(|e| e["agent_event"]["event"] == "signing_key_created")
        .collect();
    assert_eq!(made.len(), 1, "the key is made once");
    assert_eq!(
        made[0]["agent_event"]["details"]["public_key"],
        key.as_str()
    );
    let unsigned: i64 = crate::support::journal_sql(&store)
        .query_row(
            "SELECT count(*) FROM records WHERE signature IS NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(unsigned, 0);
    let records = store.head().expect("head").seq;

    let out = agent(&["verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!(
            "{records} signatures verified with public key {key}"
        )),
        "{text}"
    );
    let other = agent(&["verify", "--public-key", &"cd".repeat(32)]);
    assert_eq!(other.status.code(), Some(1), "another key: {other:?}");
    assert!(
        String::from_utf8_lossy(&other.stdout)
            .contains("CHAIN BROKEN at seq 1: signature does not verify"),
        "{other:?}"
    );

    // An evidence package carries the signatures; checked with the key given.
    let package = dir.path().join("package");
    let now = shopfloor_agent::time::now();
    export(
        &store,
        &ExportQuery {
            from: now - time::Duration::hours(1),
            to: now + time::Duration::hours(1),
            work_order: None,
        },
        &package,
    )
    .expect("export");
    let report = verify_package(&package, Some(&key));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.signed as i64, records);
    drop(store);

    // A forger rewrites the start record and the whole chain after it: the chain alone verifies,
    // the signatures do not.
    rewrite_chain(&data, 2, |b| b.replace("started", "STARTED"));
    let store = Store::open_ro(&data).expect("journal");
    // The head seal written at the last stop names the old head's hash: even without a key, the
    // rewrite is found there.
    let sealed = shopfloor_agent::audit::verify::verify(&store).expect("verify");
    assert!(
        sealed
            .problem
            .as_ref()
            .is_some_and(|p| p.what.contains("head seal")),
        "{sealed:?}"
    );
    // A forger who also removes the seal: the chain alone verifies, the signatures do not.
    std::fs::remove_file(data.join(shopfloor_agent::journal::seal::SEAL_FILE)).expect("seal");
    assert!(shopfloor_agent::audit::verify::verify(&store)
        .expect("verify")
        .ok());
    let out = agent(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("CHAIN BROKEN at seq 2: signature does not verify with public key"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_replays_are_re_sent_by_the_running_agent_and_recorded_with_who_asked() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let d = data.clone();
    std::thread::spawn(move || build(&d))
        .join()
        .expect("journal built");
    let qms = crate::support::qms::Qms::start().await;
    // The QMS refuses part SN-3's records (two inspections) until it is fixed.
    *qms.state.poison.lock().expect("lock") = Some("SN-3".into());
    // It answers with its own receipt id for each record it takes.
    qms.state
        .receipts
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw-resend\"\ndata_dir = \"{}\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"http://{}/events\"\nretry_initial_ms = 100\nretry_max_ms = 300\n",
            data.display(),
            qms.addr
        ),
    )
    .expect("config");
    let cli = |args: &[&str]| {
        Command::new(agent_bin())
            .env("USER", "auditor")
            .env_remove("SUDO_USER")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("agent")
    };
    let mut agent = crate::support::KillOnDrop(
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run"),
    );
    let arrivals = |id: &str| {
        qms.state
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e["id"] == id)
            .count()
    };
    let open_letters = || {
        Store::open_ro(&data)
            .and_then(|s| s.dead_letters(None))
            .map(|d| d.len())
            .unwrap_or(0)
    };
    let events = |event: &str| -> Vec<Value> {
        Store::open_ro(&data)
            .and_then(|s| s.bodies_of_kind("agent_event"))
            .unwrap_or_default()
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|e| e["agent_event"]["event"] == event)
            .collect()
    };
    let wait = std::time::Duration::from_secs(30);
    crate::support::eventually(wait, "SN-3's two records dead-lettered", || {
        open_letters() == 2
    })
    .await;

    let out = cli(&["dead-letters", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("qms ")).count(),
        2,
        "{text}"
    );
    assert!(text.contains("poison"), "{text}");

    // Reconciliation: WO-2's SN-3 records are captured but not acknowledged.
    let by_work_order = |cli_out: std::process::Output| -> Vec<(String, i64, i64, i64)> {
        let v: Value = serde_json::from_slice(&cli_out.stdout).expect("json");
        v[0]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| {
                (
                    l["key"].as_str().unwrap_or("-").to_string(),
                    l["captured"].as_i64().unwrap_or(-1),
                    l["acknowledged"].as_i64().unwrap_or(-1),
                    l["receipted"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let line = |k: &str, c: i64, a: i64, r: i64| (k.to_string(), c, a, r);
    let expected = [
        line("(none)", 6, 6, 6),
        line("WO-1", 6, 6, 6),
        line("WO-2", 3, 1, 1),
    ];
    // The receipts of the record after the dead letters are kept just before its cursor moves:
    // read until both have landed.
    crate::support::eventually(wait, "WO-2's last record acknowledged", || {
        by_work_order(cli(&["status", "--by", "work-order", "--json"])) == expected
    })
    .await;
    let text = String::from_utf8_lossy(&cli(&["status", "--by", "work-order"]).stdout).to_string();
    assert!(text.contains("2 not acknowledged"), "{text}");

    // The QMS is fixed; the dead letters are re-sent on request.
    *qms.state.poison.lock().expect("lock") = None;
    let out = cli(&["dead-letters", "retry", "--reason", "QMS fixed, ticket 42"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "re-send 2 dead letter(s) to sink qms, asked by {}",
            auditor()
        )),
        "{out:?}"
    );
    // The event is journaled first, then the letters are marked retried (two steps: a check
    // between them saw both letters still open on a loaded machine).
    crate::support::eventually(wait, "the retry recorded and the letters closed", || {
        !events("dead_letters_retried").is_empty() && open_letters() == 0
    })
    .await;
    let retried = &events("dead_letters_retried")[0]["agent_event"];
    assert_eq!(retried["details"]["requested_by"], auditor().as_str());
    assert_eq!(retried["details"]["reason"], "QMS fixed, ticket 42");
    assert_eq!(retried["details"]["sent"], 2);
    let sn3: Vec<String> = Store::open_ro(&data)
        .expect("journal")
        .read_after(0, 100)
        .expect("rows")
        .into_iter()
        .filter(|r| r.body.contains("SN-3"))
        .map(|r| r.id)
        .collect();
    assert_eq!(sn3.len(), 2);
    assert!(
        sn3.iter().all(|id| arrivals(id) == 1),
        "each SN-3 record arrived once"
    );
    crate::support::eventually(wait, "the retried records' receipts kept", || {
        by_work_order(cli(&["status", "--by", "work-order", "--json"]))
            .contains(&line("WO-2", 3, 3, 3))
    })
    .await;
    let out = cli(&["status", "--by", "day", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v[0]["lines"][0]["key"], "2026-01-01",
        "the first calibration's capture day: {v}"
    );

    // The QMS lost seq 2..4: replayed on request, each id arrives a second time.
    let ids: Vec<String> = Store::open_ro(&data)
        .expect("journal")
        .read_range(1, 4, 10)
        .expect("rows")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(ids.iter().all(|id| arrivals(id) == 1));
    let out = cli(&[
        "replay",
        "--sink",
        "qms",
        "--from",
        "2",
        "--to",
        "4",
        "--reason",
        "QMS restore",
    ]);
    assert!(out.status.success(), "{out:?}");
    crate::support::eventually(wait, "the replay recorded", || !events("replay").is_empty()).await;
    assert!(
        ids.iter().all(|id| arrivals(id) == 2),
        "seq 2..4 sent again"
    );
    let replay = &events("replay")[0]["agent_event"];
    assert_eq!(replay["details"]["sent"], 3);
    assert_eq!(replay["details"]["requested_by"], auditor().as_str());
    assert!(
        replay["message"]
            .as_str()
            .unwrap_or("")
            .contains("replayed seq 2..4"),
        "{replay}"
    );
    let out = cli(&["dead-letters", "requests"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.matches(" done ").count(), 2, "{text}");

    // Requests that cannot be done are refused with the reason.
    let out = cli(&["replay", "--sink", "mes", "--from", "1"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no sink `mes` in the configuration (sinks: qms)"),
        "{out:?}"
    );
    let out = cli(&["replay", "--sink", "qms", "--from", "0", "--to", "99999"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the journal holds seq 1.."),
        "{out:?}"
    );
    let out = cli(&["dead-letters", "retry"]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "nothing left to retry: {out:?}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    assert!(agent.0.wait().expect("wait").success());
    assert!(cli(&["verify"]).status.success());
}

/// How a request by `USER=auditor` is recorded: the claimed name and the real uid.
fn auditor() -> String {
    use std::os::unix::fs::MetadataExt;
    let mine = tempfile::NamedTempFile::new().expect("file");
    format!(
        "auditor (uid {})",
        mine.as_file().metadata().expect("metadata").uid()
    )
}
