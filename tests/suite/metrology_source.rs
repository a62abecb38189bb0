//! The metrology source in the real binary: result files dropped into a folder become inspection
//! records once each (by SHA-256, across SIGKILL), refused files go to `failed/` with the reason
//! and a quarantine entry, and the source goes on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shopfloor_agent::journal::Store;
use shopfloor_agent::sources::metrology::{folder::sha256, qif, read};

use crate::support::{
    agent_bin, eventually_blocking, root, source_state_value, tempdir, KillOnDrop,
};

const WAIT: Duration = Duration::from_secs(60);

/// Starts the agent on `dir` with a metrology source `cmm` on `dir/spool` (files renamed in).
pub(crate) fn start(dir: &Path) -> KillOnDrop {
    start_with(dir, "")
}

/// [`start`] with more lines in `[sources.cmm]` (when the test has not written its own config).
pub(crate) fn start_with(dir: &Path, extra: &str) -> KillOnDrop {
    if !dir.join("agent.toml").exists() {
        write_config(
            dir,
            "",
            &format!("poll_ms = 100\nstation = \"CMM-1\"\n{extra}"),
            "",
        );
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .expect("log");
    KillOnDrop(
        Command::new(agent_bin())
            .arg("--config")
            .arg(dir.join("agent.toml"))
            .arg("run")
            .stderr(log)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .spawn()
            .expect("start agent"),
    )
}

/// Writes `dir/agent.toml`: journal in `dir/data`, `journal` lines in `[journal]`, a metrology
/// source `cmm` with the `source` lines on `dir/spool` (created; files renamed in; `folder` lines
/// in its folder table).
pub(crate) fn write_config(dir: &Path, journal: &str, source: &str, folder: &str) {
    std::fs::create_dir_all(dir.join("spool")).expect("spool");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"[agent]
gateway_id = "gw-cmm"
data_dir = "{data}"

[journal]
{journal}

[sources.cmm]
type = "metrology"
{source}
[[sources.cmm.folders]]
path = "{spool}"
completion = "rename"
{folder}
"#,
            data = dir.join("data").display(),
            spool = dir.join("spool").display(),
        ),
    )
    .expect("config");
}

/// Puts `text` into the spool as `name`, renamed in complete.
pub(crate) fn drop_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = dir.join("spool").join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    let to = dir.join("spool").join(name);
    std::fs::rename(&tmp, &to).expect("rename in");
    to
}

pub(crate) fn inspections(dir: &Path) -> Vec<Value> {
    Store::open_ro(&dir.join("data"))
        .and_then(|s| s.records_of_kind("inspection"))
        .map(|rows| {
            rows.iter()
                .map(|(_, body)| serde_json::from_str(body).expect("record JSON"))
                .collect()
        })
        .unwrap_or_default()
}

/// Measurements with a value in a QIF document, by the library's own parser.
fn measurements_in(text: &str) -> usize {
    let ix = qif::Index::read(text.as_bytes()).expect("index");
    let mut n = 0;
    ix.measurements::<qif::QifError>(text.as_bytes(), &qif::Plans::new(), |_| {
        n += 1;
        Ok(())
    })
    .expect("measurements");
    n
}

/// What `status` prints for the agent configured in `dir`.
fn status_text(dir: &Path) -> String {
    let out = Command::new(agent_bin())
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .arg("status")
        .output()
        .expect("status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stop(mut agent: KillOnDrop) {
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    let _ = agent.0.wait();
}

#[test]
fn a_qif_file_becomes_one_record_per_characteristic_once_and_status_counts_it() {
    let dir = tempdir();
    let dir = dir.path();
    let sample = root().join("tests/cases/metrology/qif/WIDGET_QIF_RESULTS.QIF");
    let bytes = std::fs::read(&sample).expect("sample");
    let expected = measurements_in(std::str::from_utf8(&bytes).expect("utf-8"));
    assert!(expected > 10, "{expected}");
    let (sha, _) = sha256(&sample).expect("sha");
    let agent = start(dir);
    drop_file(dir, "widget.qif", &bytes);
    let processed = dir.join("spool/processed/widget.qif");
    eventually_blocking(WAIT, "the file moved to processed/", || processed.exists());
    let records = inspections(dir);
    assert_eq!(records.len(), expected, "one record per measurement");
    for r in &records {
        crate::support::assert_schema_valid(r);
        let trigger = &r["provenance"]["trigger"];
        assert_eq!(trigger["value"]["sha256"], sha.as_str(), "{r:#}");
        assert_eq!(r["subject"]["station"], "CMM-1");
        let value = &r["provenance"]["fields"]["inspection.value"];
        assert_eq!(value["protocol"], "qif");
        assert!(
            value["endpoint"]
                .as_str()
                .is_some_and(|e| e.ends_with("widget.qif")),
            "{value:#}"
        );
        assert!(value["address"]
            .as_str()
            .is_some_and(|a| a.starts_with('/')));
        let raw: f64 = value["raw"]
            .as_str()
            .and_then(|s| s.trim().parse().ok())
            .expect("raw text is the number as written");
        assert_eq!(r["inspection"]["value"].as_f64(), Some(raw));
    }
    // The WIDGET's diameter 50, checked by hand against the file.
    let d50 = records
        .iter()
        .find(|r| {
            r["inspection"]["characteristic"] == "Diameter 50"
                || r["inspection"]["characteristic"] == "DIAMETER50"
        })
        .or_else(|| {
            records
                .iter()
                .find(|r| r["inspection"]["value"].as_f64() == Some(19.007))
        })
        .expect("the 19.007 measurement");
    assert_eq!(d50["inspection"]["nominal"].as_f64(), Some(19.0));
    assert_eq!(d50["inspection"]["lower_limit"].as_f64(), Some(18.87));
    assert_eq!(d50["inspection"]["upper_limit"].as_f64(), Some(19.13));
    assert_eq!(d50["inspection"]["result"], "pass");

    // The same content again, under another name: not read again, counted.
    drop_file(dir, "widget-again.qif", &bytes);
    let again = dir.join("spool/processed/widget-again.qif");
    eventually_blocking(WAIT, "the duplicate moved to processed/", || again.exists());
    eventually_blocking(WAIT, "the duplicate counted in the folder's status", || {
        let key = format!("folder:{}", dir.join("spool").display());
        source_state_value(&dir.join("data"), "cmm", &key)
            .is_some_and(|v| v.contains("ingested 1 · duplicates 1"))
    });
    assert_eq!(inspections(dir).len(), expected, "nothing journaled twice");
    stop(agent);
    let text = status_text(dir);
    assert!(
        text.contains(&format!(
            "folder:{} = waiting 0 · ingested 1 · duplicates 1 · failed 0",
            dir.join("spool").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("cmm             1 result files known by SHA-256"),
        "{text}"
    );
}

#[test]
fn a_file_left_in_place_is_read_once_and_again_when_its_content_changes() {
    // `after = "leave"`: the file stays where the CMM wrote it. Later scans must not read it (nor
    // count it as a duplicate of itself), a restart must not journal it again, and new content
    // under the same name (a CMM that writes over its result file) is a new file. The journal
    // has 16 KiB pages, as `config/examples/metrology.toml` sets.
    let dir = tempdir();
    let dir = dir.path();
    write_config(
        dir,
        "page_size_bytes = 16384",
        "poll_ms = 100\nstation = \"CMM-1\"",
        "after = \"leave\"",
    );
    let qif = |name: &str| {
        let bytes =
            std::fs::read(root().join("tests/cases/metrology/qif").join(name)).expect("sample");
        let n = measurements_in(std::str::from_utf8(&bytes).expect("utf-8"));
        (bytes, n)
    };
    let (first, first_n) = qif("WIDGET_QIF_RESULTS.QIF");
    let (second, second_n) = qif("QIF_Results_Sample.QIF");
    let key = format!("folder:{}", dir.join("spool").display());
    let counts =
        |dir: &Path| source_state_value(&dir.join("data"), "cmm", &key).unwrap_or_default();
    let agent = start(dir);
    let file = drop_file(dir, "result.qif", &first);
    eventually_blocking(WAIT, "the file journaled", || {
        counts(dir).contains("ingested 1 ·")
    });
    assert_eq!(inspections(dir).len(), first_n);
    // Twenty scans later: still in place, still once, not a duplicate of itself.
    std::thread::sleep(Duration::from_secs(2));
    assert!(file.exists(), "the file is left where it was");
    assert!(!dir.join("spool/processed").join("result.qif").exists());
    assert_eq!(inspections(dir).len(), first_n, "read once");
    assert!(
        counts(dir).contains("ingested 1 · duplicates 0"),
        "{}",
        counts(dir)
    );
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("log");
    assert!(
        !log.contains("result.qif was journaled before"),
        "a file left in place is not hashed and looked up again at every scan:\n{log}"
    );
    stop(agent);

    // A restart finds it known by its SHA-256 and leaves it unread.
    let agent = start(dir);
    eventually_blocking(WAIT, "the restarted source to see the file", || {
        std::fs::read_to_string(dir.join("agent.log"))
            .is_ok_and(|log| log.contains("result.qif was journaled before the agent stopped"))
    });
    assert_eq!(
        inspections(dir).len(),
        first_n,
        "not journaled again after a restart"
    );
    assert!(file.exists());

    // The CMM writes its next result over the same name: new content, a new file.
    drop_file(dir, "result.qif", &second);
    eventually_blocking(WAIT, "the new content journaled", || {
        inspections(dir).len() == first_n + second_n
    });
    assert!(file.exists());
    stop(agent);
    let journal = Store::open_ro(&dir.join("data")).expect("journal");
    assert_eq!(journal.page_size().expect("page size"), 16384);
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("log");
    assert!(
        !log.contains("its pages are"),
        "the journal has the configured pages:\n{log}"
    );
    let text = status_text(dir);
    assert!(
        text.contains("(16 KiB pages)"),
        "status names the pages:\n{text}"
    );
}

#[test]
fn a_file_without_a_serial_takes_the_serial_and_order_of_the_traveler_at_its_station() {
    // The third way to a serial (after the file and its name): the traveler active at the
    // source's `station`, here a work order the ERP (REST) puts on CMM-1. A file measured after
    // that order is completed gets no serial from it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut erp = plant_sim::erp::Erp::default();
    let row = |id: i64, status: &str, at: &str| {
        serde_json::json!({ "ID": id, "workOrder": "WO-3003", "operation": "0050",
            "serial": "SN-77", "workCenter": "CMM-1", "status": status, "modifiedAt": at })
    };
    erp.sets.insert(
        "WorkOrders".into(),
        vec![row(1, "IN_PROGRESS", "2026-12-03T10:00:00.000Z")],
    );
    let server = rt.block_on(plant_sim::erp::ErpServer::start(erp));
    let dir = tempdir();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("spool")).expect("spool");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"[agent]
gateway_id = "gw-cmm"
data_dir = "{data}"

[sources.erp]
type = "rest"
url = "{url}"
poll_interval_ms = 200
auth = {{ type = "basic", username = "erp-reader", password = "erp123" }}
[[sources.erp.endpoints]]
name = "WorkOrders"
path = "WorkOrders"
key = "/ID"
watermark = {{ field = "/modifiedAt", filter = "$filter=modifiedAt ge {{watermark}}&$orderby=modifiedAt,ID", overlap_s = 0 }}

[sources.cmm]
type = "metrology"
poll_ms = 100
station = "CMM-1"
[[sources.cmm.folders]]
path = "{spool}"
completion = "rename"

[[records]]
name = "work_orders"
kind = "traveler"
trigger = {{ type = "row", source = "erp", endpoint = "WorkOrders" }}
dedupe_key = "{{/ID}}/{{/modifiedAt}}"
[records.fields]
"subject.work_order" = {{ pointer = "/workOrder" }}
"subject.operation" = {{ pointer = "/operation" }}
"subject.serial" = {{ pointer = "/serial" }}
"subject.station" = {{ pointer = "/workCenter" }}
"traveler.status" = {{ pointer = "/status", map = {{ IN_PROGRESS = "started", DONE = "completed" }} }}
"#,
            data = dir.join("data").display(),
            url = server.url(),
            spool = dir.join("spool").display(),
        ),
    )
    .expect("config");
    let travelers = |dir: &Path| {
        Store::open_ro(&dir.join("data"))
            .and_then(|s| s.records_of_kind("traveler"))
            .map(|r| r.len())
            .unwrap_or(0)
    };
    // The QIF file of case 01 without its serial number.
    let without_serial = std::fs::read_to_string(
        root().join("tests/cases/metrology/01-qif-one-part/input/SN-01003.qif"),
    )
    .expect("case 01")
    .replace("<SerialNumber>SN-01003</SerialNumber>", "");
    let agent = start(dir);
    eventually_blocking(WAIT, "the traveler journaled", || travelers(dir) == 1);
    drop_file(dir, "part.qif", without_serial.as_bytes());
    eventually_blocking(WAIT, "the file journaled", || inspections(dir).len() == 2);
    for r in inspections(dir) {
        assert_eq!(r["subject"]["serial"], "SN-77", "{r:#}");
        assert_eq!(r["subject"]["work_order"], "WO-3003", "{r:#}");
        assert_eq!(r["subject"]["operation"], "0050", "{r:#}");
        assert!(r["incomplete"].is_null(), "{r:#}");
        let serial = &r["provenance"]["fields"]["subject.serial"];
        assert_eq!(serial["source"], "enrichment", "{r:#}");
        assert!(
            serial["address"]
                .as_str()
                .is_some_and(|a| a.ends_with("joined by station CMM-1 (latest traveler)")),
            "{r:#}"
        );
    }

    // The order is completed: the next file's records get no serial from it, and say so.
    server.erp.lock().expect("erp").sets.insert(
        "WorkOrders".into(),
        vec![row(1, "DONE", "2026-12-03T11:00:00.000Z")],
    );
    eventually_blocking(WAIT, "the completion journaled", || travelers(dir) == 2);
    drop_file(
        dir,
        "next.qif",
        without_serial.replace("12.004", "12.006").as_bytes(),
    );
    eventually_blocking(WAIT, "the next file journaled", || {
        inspections(dir).len() == 4
    });
    for r in &inspections(dir)[2..] {
        assert!(r["subject"]["serial"].is_null(), "{r:#}");
        assert!(r["subject"]["work_order"].is_null(), "{r:#}");
        assert_eq!(
            r["incomplete"],
            serde_json::json!(["subject.serial"]),
            "{r:#}"
        );
    }
    stop(agent);
}

#[test]
fn a_file_that_cannot_be_read_goes_to_failed_with_its_reason_and_the_source_goes_on() {
    let dir = tempdir();
    let dir = dir.path();
    let agent = start(dir);
    let sample = std::fs::read(root().join("tests/cases/metrology/qif/WIDGET_QIF_RESULTS.QIF"))
        .expect("sample");
    drop_file(dir, "cut.qif", &sample[..sample.len() / 2]);
    let failed = dir.join("spool/failed/cut.qif");
    eventually_blocking(WAIT, "the truncated file in failed/", || failed.exists());
    let reason = std::fs::read_to_string(dir.join("spool/failed/cut.qif.reason.txt"))
        .expect("reason beside it");
    assert!(
        reason.contains("truncated") || reason.contains("end"),
        "{reason}"
    );
    let quarantined: i64 =
        crate::support::journal_sql(&Store::open_ro(&dir.join("data")).expect("journal"))
            .query_row(
                "SELECT count(*) FROM quarantine WHERE source = 'cmm' AND topic LIKE '%cut.qif'",
                [],
                |r| r.get(0),
            )
            .expect("quarantine");
    assert_eq!(quarantined, 1);
    assert!(
        inspections(dir).is_empty(),
        "nothing of a refused file is journaled"
    );

    // The source goes on.
    drop_file(dir, "good.qif", &sample);
    let processed = dir.join("spool/processed/good.qif");
    eventually_blocking(WAIT, "the next file read", || processed.exists());
    assert!(!inspections(dir).is_empty());
    stop(agent);
}

#[test]
fn sigkill_in_the_middle_of_a_long_file_leaves_every_characteristic_once() {
    let dir = tempdir();
    let dir = dir.path();
    // 10,000 characteristics: 100 parts of 100.
    let text = plant_sim::cmm::qif_results(100, 100);
    let expected = measurements_in(&text);
    assert_eq!(expected, 10_000);
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(text.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let key = format!("file:{sha}");
    let mut agent = start(dir);
    drop_file(dir, "long.qif", text.as_bytes());
    // Killed once some chunks are journaled and before the file is done.
    eventually_blocking(WAIT, "part of the file journaled", || {
        source_state_value(&dir.join("data"), "cmm", &key).is_some()
    });
    agent.0.kill().expect("SIGKILL");
    let _ = agent.0.wait();
    let state = source_state_value(&dir.join("data"), "cmm", &key).unwrap_or_default();
    let before = inspections(dir).len();
    eprintln!("killed at state {state:?} with {before} records");
    assert!(
        before < expected,
        "the kill came after the whole file: {state}"
    );
    let agent = start(dir);
    let processed = dir.join("spool/processed/long.qif");
    eventually_blocking(WAIT, "the file finished after the restart", || {
        processed.exists()
    });
    let records = inspections(dir);
    assert_eq!(records.len(), expected, "every characteristic once");
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        let key = (
            r["subject"]["serial"].as_str().map(str::to_string),
            r["inspection"]["characteristic"]
                .as_str()
                .map(str::to_string),
        );
        assert!(seen.insert(key.clone()), "twice: {key:?}");
    }
    assert!(
        source_state_value(&dir.join("data"), "cmm", &key)
            .is_some_and(|v| v.starts_with("done 10000 ")),
        "the file is marked done"
    );
    stop(agent);
    // `trace` follows one part's CMM characteristics to the file, by its content hash.
    let trace = Command::new(agent_bin())
        .arg("--config")
        .arg(dir.join("agent.toml"))
        .args(["trace", "--serial", "SN-000007"])
        .output()
        .expect("trace");
    let text = String::from_utf8_lossy(&trace.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" inspection "))
        .collect();
    assert_eq!(lines.len(), 100, "{text}");
    let file = format!(
        "file {} (sha256 {})",
        dir.join("spool/long.qif").display(),
        &sha[..12]
    );
    assert!(lines.iter().all(|l| l.contains(&file)), "{text}");
}

#[test]
fn an_aqdef_pair_is_read_together_with_its_times_and_moved_together() {
    let dir = tempdir();
    let dir = dir.path();
    let agent = start_with(dir, "utc_offset = \"+01:00\"");
    // The description in Windows-1252, the values in the compact form; the .dfx is renamed in
    // last, so the pair is complete when it appears.
    let dfd: &[u8] = b"K0100 2\r\nK1001/1 PN-778\r\nK1002/1 Geh\xe4use\r\nK2001/1 OD-1\r\nK2101/1 25\r\nK2110/1 24,98\r\nK2111/1 25,02\r\nK2142/1 mm\r\nK2001/2 LEN\r\nK2142/2 mm\r\n";
    let dfx = "25.004\u{14}0\u{14}03.12.2026/10:15:30\u{14}\u{14}\u{14}\u{14}op17\u{14}\u{14}\u{14}MIC-0042\u{0f}80.1\u{14}255\n";
    drop_file(dir, "part.dfd", dfd);
    drop_file(dir, "part.dfx", dfx.as_bytes());
    let processed = dir.join("spool/processed");
    eventually_blocking(WAIT, "both files moved to processed/", || {
        processed.join("part.dfd").exists() && processed.join("part.dfx").exists()
    });
    let records = inspections(dir);
    assert_eq!(
        records.len(),
        2,
        "one record per value, the invalid one kept"
    );
    let od = &records[0];
    crate::support::assert_schema_valid(od);
    assert_eq!(od["inspection"]["characteristic"], "OD-1");
    assert_eq!(od["inspection"]["value"].as_f64(), Some(25.004));
    assert_eq!(od["inspection"]["gauge_id"], "MIC-0042");
    assert_eq!(od["inspection"]["inspector"], "op17");
    assert_eq!(od["inspection"]["result"], "pass", "from the limits");
    let value = &od["provenance"]["fields"]["inspection.value"];
    assert_eq!(value["protocol"], "aqdef");
    assert_eq!(
        value["address"],
        "part.dfx line 1, characteristic 1 field 1"
    );
    assert_eq!(
        value["source_timestamp"], "2026-12-03T09:15:30.000Z",
        "K0004 read at the configured offset"
    );
    let trigger = &od["provenance"]["trigger"];
    assert_eq!(trigger["value"]["measured_at"], "03.12.2026/10:15:30");
    assert_eq!(trigger["value"]["other"]["K1002"], "Gehäuse");
    let len = &records[1];
    assert_eq!(len["inspection"]["characteristic"], "LEN");
    assert_eq!(
        len["provenance"]["trigger"]["value"]["other"]["status"], "255",
        "the invalid value's attribute is kept: {len:#}"
    );
    stop(agent);
}

#[test]
fn a_folder_that_disappears_is_an_outage_and_its_return_a_gap_record() {
    let dir = tempdir();
    let dir = dir.path();
    let agent = start(dir);
    let spool = dir.join("spool");
    let data = dir.join("data");
    let key = format!("connection:{}", spool.display());
    let state = || source_state_value(&data, "cmm", &key).unwrap_or_default();
    eventually_blocking(WAIT, "the folder up", || state().starts_with("up since"));
    // The share is unmounted: the folder is gone.
    std::fs::rename(&spool, dir.join("spool.away")).expect("unmount");
    eventually_blocking(WAIT, "the folder down", || {
        state().starts_with("DOWN since")
    });
    assert!(state().contains("cannot list"), "{}", state());
    std::fs::rename(dir.join("spool.away"), &spool).expect("mount again");
    eventually_blocking(WAIT, "the folder up again", || {
        state().starts_with("up since")
    });
    let gaps = Store::open_ro(&data)
        .and_then(|s| s.records_of_kind("gap"))
        .expect("gaps");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let gap: Value = serde_json::from_str(&gaps[0].1).expect("gap JSON");
    assert_eq!(gap["gap"]["source"], "cmm");
    // Files written meanwhile are read once it is back.
    let sample = std::fs::read(root().join("tests/cases/metrology/qif/WIDGET_QIF_RESULTS.QIF"))
        .expect("sample");
    drop_file(dir, "after.qif", &sample);
    eventually_blocking(WAIT, "the file read", || {
        spool.join("processed/after.qif").exists()
    });
    stop(agent);
}

#[test]
fn a_full_journal_holds_the_file_and_a_restart_with_room_finishes_it_once() {
    let dir = tempdir();
    let dir = dir.path();
    let spool = dir.join("spool");
    let config = |limit: &str| {
        write_config(
            dir,
            &format!("max_disk_bytes = {limit}"),
            "poll_ms = 100",
            "",
        );
    };
    config("4194304");
    let text = plant_sim::cmm::qif_results(100, 100);
    let agent = start(dir);
    drop_file(dir, "long.qif", text.as_bytes());
    let log = || std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    eventually_blocking(WAIT, "the journal's refusal", || {
        log().contains("the journal refused measurements of")
    });
    stop(agent);
    // What is journaled is exactly what the file's state says, and the file is still there.
    let held = inspections(dir).len();
    let (sha, _) = sha256(&spool.join("long.qif")).expect("the file waits in the spool");
    let state = source_state_value(&dir.join("data"), "cmm", &format!("file:{sha}"));
    let progress: usize = state
        .as_deref()
        .and_then(|v| v.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The progress state names only chunks acknowledged before it was sent: never more than is
    // journaled, at most the two chunks in flight less.
    assert!(
        progress <= held && held <= progress + 2 * read::CHUNK,
        "progress {state:?}, {held} journaled"
    );
    assert!(held < 10_000, "{held}");

    config("0");
    let agent = start(dir);
    eventually_blocking(WAIT, "the file finished", || {
        spool.join("processed/long.qif").exists()
    });
    stop(agent);
    assert_eq!(inspections(dir).len(), 10_000, "each characteristic once");
    assert!(
        log().contains("reading it again from measurement"),
        "the refusal names where reading resumes"
    );
}

#[test]
fn a_file_renamed_in_is_read_on_the_kernels_word_with_the_serial_its_name_gives() {
    let dir = tempdir();
    let dir = dir.path();
    let spool = dir.join("spool");
    // A poll once an hour: only an inotify event can make the file be read within the wait.
    write_config(
        dir,
        "",
        "poll_ms = 3600000",
        "serial_from_name = \"{serial}_*.qif\"",
    );
    let agent = start(dir);
    let key = format!("connection:{}", spool.display());
    eventually_blocking(WAIT, "the first scan", || {
        source_state_value(&dir.join("data"), "cmm", &key).is_some_and(|v| v.starts_with("up"))
    });
    let sample = std::fs::read(root().join("tests/cases/metrology/qif/WIDGET_QIF_RESULTS.QIF"))
        .expect("sample");
    drop_file(dir, "SN-77_now.qif", &sample);
    eventually_blocking(WAIT, "the file read on the event", || {
        spool.join("processed/SN-77_now.qif").exists()
    });
    stop(agent);
    // The file names no serial: its name does, by the folder's pattern.
    let records = inspections(dir);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["subject"]["serial"], "SN-77", "{r:#}");
        let p = &r["provenance"]["fields"]["subject.serial"];
        assert_eq!(p["raw"], "SN-77_now.qif");
        assert_eq!(
            p["address"],
            "file name (serial_from_name \"{serial}_*.qif\")"
        );
        assert!(r["incomplete"].is_null(), "{r:#}");
    }
}

#[test]
fn a_calypso_table_becomes_records_and_a_table_it_cannot_read_is_refused_with_the_column() {
    let dir = tempdir();
    let dir = dir.path();
    write_config(
        dir,
        "",
        "poll_ms = 100",
        "table = { kind = \"calypso\" }\nserial_from_name = \"{serial}_chr.txt\"",
    );
    let agent = start(dir);
    let table = "planid\tid\ttype\tactual\tnominal\tuppertol\tlowertol\r\n\
                 P-2040\tDM-1\tDurchmesser\t25.004\t25\t0.02\t-0.02\r\n\
                 P-2040\tDM-2\tDurchmesser\t25.031\t25\t0.02\t-0.02\r\n";
    drop_file(dir, "SN-5_chr.txt", table.as_bytes());
    // The folder reads tables as Calypso writes them: a comma-separated file has no `id` column.
    drop_file(dir, "other.csv", b"Feature,Actual\nA,1\n");
    let spool = dir.join("spool");
    eventually_blocking(WAIT, "the table read and the CSV refused", || {
        spool.join("processed/SN-5_chr.txt").exists() && spool.join("failed/other.csv").exists()
    });
    stop(agent);
    let reason =
        std::fs::read_to_string(spool.join("failed/other.csv.reason.txt")).expect("reason");
    assert!(
        reason.contains("other.csv: the header has no column \"id\" (for characteristic)"),
        "{reason}"
    );
    let records = inspections(dir);
    assert_eq!(records.len(), 2);
    let (ok, out) = (&records[0], &records[1]);
    crate::support::assert_schema_valid(ok);
    assert_eq!(ok["subject"]["serial"], "SN-5");
    assert_eq!(ok["inspection"]["characteristic"], "DM-1");
    assert_eq!(ok["inspection"]["lower_limit"].as_f64(), Some(24.98));
    assert_eq!(ok["inspection"]["upper_limit"].as_f64(), Some(25.02));
    assert_eq!(ok["inspection"]["result"], "pass", "from the limits");
    let value = &ok["provenance"]["fields"]["inspection.value"];
    assert_eq!(value["protocol"], "calypso");
    assert_eq!(value["address"], "SN-5_chr.txt line 2 column 4 (actual)");
    assert_eq!(value["raw"], "25.004");
    assert_eq!(
        ok["provenance"]["trigger"]["value"]["other"]["type"], "Durchmesser",
        "the localised type name is kept"
    );
    assert_eq!(out["inspection"]["result"], "fail", "25.031 is above 25.02");
}

#[test]
fn a_files_hash_is_forgotten_after_remember_days_and_its_records_stay_stored_once() {
    let dir = tempdir();
    let dir = dir.path();
    // 0.00002 days: 1.7 s.
    write_config(dir, "", "poll_ms = 100\nremember_days = 0.00002", "");
    let agent = start(dir);
    let sample = root().join("tests/cases/metrology/qif/WIDGET_QIF_RESULTS.QIF");
    let bytes = std::fs::read(&sample).expect("sample");
    let (sha, _) = sha256(&sample).expect("sha");
    let key = format!("file:{sha}");
    let data = dir.join("data");
    drop_file(dir, "a.qif", &bytes);
    eventually_blocking(WAIT, "a.qif read", || {
        source_state_value(&data, "cmm", &key).is_some_and(|v| v.starts_with("done "))
    });
    let first = inspections(dir).len();
    eventually_blocking(WAIT, "the hash forgotten", || {
        source_state_value(&data, "cmm", &key).is_none()
    });
    // The same content again: read again, not counted as a duplicate, stored once.
    drop_file(dir, "b.qif", &bytes);
    eventually_blocking(WAIT, "b.qif read", || {
        dir.join("spool/processed/b.qif").exists()
    });
    let folder = format!("folder:{}", dir.join("spool").display());
    eventually_blocking(WAIT, "the folder's counts", || {
        source_state_value(&data, "cmm", &folder)
            .is_some_and(|v| v.contains("ingested 2 · duplicates 0"))
    });
    stop(agent);
    assert_eq!(
        inspections(dir).len(),
        first,
        "the dedupe keys keep each record once"
    );
}
