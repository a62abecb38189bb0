//! The file sink: rotation, the chain in the files, and resume after a crash without loss or duplicate.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use shopfloor_agent::journal::NewRecord;
use shopfloor_agent::runtime::topology::Agent;
use shopfloor_agent::sinks::file::sink::Layout;

use super::journal::inspection;
use crate::support::{assert_schema_valid, config, eventually, tempdir};

const CONFIG: &str = r#"
[agent]
gateway_id = "gw-test"
data_dir = "data"

[sinks.audit]
type = "file"
path = "out/records.jsonl"
max_file_bytes = 8192
batch_max_records = 7
"#;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    Layout::new(&dir.join("out/records.jsonl"))
        .files()
        .expect("list")
}

/// Every line of every file. The sink may rotate between listing and reading (the active file is
/// renamed to `records-<seq>.jsonl`) or be mid-line, so either means: look again.
fn lines(dir: &Path) -> Vec<serde_json::Value> {
    for _ in 0..50 {
        if let Some(all) = try_lines(dir) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the files never settled: a file vanished (rotation) or the last line stayed partial");
}

fn try_lines(dir: &Path) -> Option<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for f in files(dir) {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("{}: {e}", f.display()),
        };
        let mut rows = text.lines().peekable();
        while let Some(l) = rows.next() {
            match serde_json::from_str(l) {
                Ok(v) => out.push(v),
                // The sink may be mid-write on the newest line; anything else is a real defect.
                Err(_) if rows.peek().is_none() && !text.ends_with('\n') => return None,
                Err(e) => panic!("{}: bad line {l:?}: {e}", f.display()),
            }
        }
    }
    Some(out)
}

async fn append(agent: &Agent, n: usize, prefix: &str) {
    let recs = (0..n)
        .map(|i| NewRecord::new(inspection(&format!("{prefix}-{i}"), 25.0)))
        .collect();
    agent.journal().append(recs).await.expect("append");
}

fn assert_contiguous_chain(lines: &[serde_json::Value]) {
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l["seq"].as_i64(),
            Some(i as i64 + 1),
            "each seq exactly once, in order"
        );
        if i > 0 {
            assert_eq!(
                l["prev_hash"],
                lines[i - 1]["hash"],
                "the chain links across lines and files"
            );
        }
        assert_schema_valid(&l["record"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_written_rotated_and_chained() {
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), CONFIG))
        .await
        .expect("start");
    append(&agent, 100, "SN").await;
    eventually(Duration::from_secs(20), "101 lines", || {
        lines(dir.path()).len() == 101
    })
    .await;
    agent.stop("test").await;
    let files = files(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("records.jsonl"),
        "{names:?}"
    );
    assert_eq!(
        names[0], "records-00000000000000000001.jsonl",
        "rotated files are named by their first seq"
    );
    assert!(
        files.len() > 5,
        "8 KiB files must rotate: {} files",
        files.len()
    );
    for f in &files[..files.len() - 1] {
        let len = std::fs::metadata(f).expect("meta").len();
        assert!(
            (8192..8192 + 4096).contains(&len),
            "{}: {len} bytes",
            f.display()
        );
    }
    assert_contiguous_chain(&lines(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_write_and_ack_neither_loses_nor_duplicates() {
    let dir = tempdir();
    let agent = Agent::start(config(dir.path(), CONFIG))
        .await
        .expect("start");
    append(&agent, 40, "SN").await;
    eventually(Duration::from_secs(20), "41 lines", || {
        lines(dir.path()).len() == 41
    })
    .await;
    agent.stop("test").await;

    // As after a crash: the cursor did not record the last writes, and a line was torn.
    let conn = rusqlite::Connection::open(dir.path().join("data/journal.sqlite")).expect("open");
    conn.execute("UPDATE sink_cursors SET acked_seq = 10", [])
        .expect("rewind");
    drop(conn);
    let newest = files(dir.path()).pop().expect("a file");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("open");
    f.write_all(b"{\"seq\":43,\"prev_hash\":\"00")
        .expect("torn write");
    drop(f);

    let agent = Agent::start(config(dir.path(), CONFIG))
        .await
        .expect("restart");
    append(&agent, 20, "LATE").await;
    // 41 + stop + start + 20
    eventually(Duration::from_secs(20), "63 lines", || {
        lines(dir.path()).len() >= 63
    })
    .await;
    agent.stop("test").await;
    let all = lines(dir.path());
    assert_eq!(all.len(), 64, "the second stop record too");
    assert_contiguous_chain(&all);
}
