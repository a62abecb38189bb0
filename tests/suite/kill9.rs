//! kill -9 of the real binary while it appends under load, 20 times over the same journal.
//!
//! `shopfloor-agent bench-journal --print-acks` prints `ack <seq> <id>` only after the append was
//! committed. After every SIGKILL, each printed record must be in the journal at the printed seq, and
//! the chain must verify.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shopfloor_agent::audit::verify::verify;
use shopfloor_agent::journal::Store;

use crate::support::{agent_bin, eventually_blocking, tempdir};

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    let mut rng = crate::support::seeded("sigkill_at_random_moments_loses_no_acknowledged_record");
    let dir = tempdir();
    let journal_dir = dir.path().join("journal");
    let mut acked: HashMap<String, i64> = HashMap::new();
    for round in 0..20 {
        let mut child = Command::new(agent_bin())
            .args([
                "bench-journal",
                "--records",
                "10000000",
                "--producers",
                "8",
                "--print-acks",
            ])
            .arg("--dir")
            .arg(&journal_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent");
        let stdout = child.stdout.take().expect("stdout");
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
                counter.fetch_add(1, Ordering::Relaxed);
            }
            lines
        });
        eventually_blocking(Duration::from_secs(30), "first acknowledgements", || {
            count.load(Ordering::Relaxed) > 0
        });
        std::thread::sleep(Duration::from_millis(rng.u64(20..400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let lines = reader.join().expect("reader");
        let mut this_round = 0;
        for line in &lines {
            // A line cut by the kill is incomplete and not an acknowledgement.
            let parts: Vec<&str> = line.split(' ').collect();
            if let ["ack", seq, id] = parts[..] {
                if let (Ok(seq), 36) = (seq.parse::<i64>(), id.len()) {
                    acked.insert(id.to_string(), seq);
                    this_round += 1;
                }
            }
        }
        assert!(this_round > 0, "round {round}: no acknowledgement parsed");

        let store = Store::open_ro(&journal_dir).expect("journal opens after SIGKILL");
        let rows = store.read_after(i64::MIN, usize::MAX >> 1).expect("read");
        let in_journal: HashMap<&str, i64> = rows.iter().map(|r| (r.id.as_str(), r.seq)).collect();
        for (id, seq) in &acked {
            assert_eq!(
                in_journal.get(id.as_str()),
                Some(seq),
                "round {round}: acknowledged record {id} (seq {seq}) missing after SIGKILL"
            );
        }
        let report = verify(&store).expect("verify");
        assert!(report.ok(), "round {round}: {report:?}");
        assert_eq!(report.checked as usize, rows.len());
    }
    assert!(
        acked.len() >= 20,
        "too little load to mean anything: {}",
        acked.len()
    );
}

#[test]
fn a_restart_after_sigkill_records_the_gap() {
    let dir = tempdir();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\ngateway_id = \"gw-kill\"\ndata_dir = \"data\"\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let start = |cfg: &std::path::Path| {
        Command::new(agent_bin())
            .current_dir(cfg.parent().expect("config dir"))
            .arg("--config")
            .arg(cfg)
            .arg("run")
            .stderr(Stdio::null())
            .spawn()
            .expect("start")
    };
    let mut child = start(&config);
    eventually_blocking(Duration::from_secs(20), "the start record", || {
        Store::open_ro(&data)
            .and_then(|s| s.head())
            .map(|h| h.seq >= 1)
            .unwrap_or(false)
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mut child = start(&config);
    eventually_blocking(
        Duration::from_secs(20),
        "the gap and second start record",
        || {
            Store::open_ro(&data)
                .and_then(|s| s.head())
                .map(|h| h.seq >= 3)
                .unwrap_or(false)
        },
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("reap");
    let store = Store::open_ro(&data).expect("journal");
    let gaps = store.bodies_of_kind("gap").expect("gaps");
    assert_eq!(gaps.len(), 1);
    let gap: serde_json::Value = serde_json::from_str(&gaps[0]).expect("json");
    assert_eq!(gap["gap"]["source"], "agent");
    assert!(gap["gap"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("without a clean shutdown"));
    assert!(verify(&store).expect("verify").ok());
}
