//! Disk full under the real binary: the data directory is a small tmpfs mounted in a private mount
//! namespace (`unshare`: no root needed where user namespaces are allowed), filled up by the test
//! while MQTT messages flow, then freed again.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::mosquitto::{publish_all, Broker};
use crate::support::qms::Qms;
use crate::support::{agent_bin, eventually, tempdir, KillOnDrop};

const WAIT: Duration = Duration::from_secs(60);

/// A mount namespace, kept alive by a sleeping holder, where `dir` is a tmpfs of `size`.
struct Tmpfs {
    holder: KillOnDrop,
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-c",
                "mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" && echo mounted && exec sleep 3600",
            ])
            .arg(dir)
            .arg(size)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("unshare");
            panic!(
                "cannot mount a tmpfs in a private namespace: {}\nthis test needs user namespaces \
                 (sysctl kernel.unprivileged_userns_clone=1, or run it as root)",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Tmpfs {
            holder: KillOnDrop(holder),
            dir: dir.to_path_buf(),
        }
    }

    /// `path` (inside the tmpfs) as the test, outside the namespace, reaches it.
    fn outside(&self, path: &Path) -> PathBuf {
        let inside = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.holder.0.id())).join(inside)
    }

    /// `program` run inside the namespace (it sees the tmpfs on the data directory).
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.0.id().to_string()])
            .args(["--user", "--mount", "--preserve-credentials"])
            .arg(program);
        c
    }

    /// Fills the tmpfs up to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        let filler = self.outside(&self.dir.join("filler"));
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0xA5u8; 64 * 1024];
        let mut small = vec![0xA5u8; 512];
        while f.write_all(&block).is_ok() {}
        // What is left below one block, a sector at a time.
        while f.write_all(&small).is_ok() {}
        small.clear();
        let _ = f.sync_all();
        filler
    }
}

/// The MQTT suite's source and records, delivered to the QMS.
fn config(data: &Path, broker: u16, qms: &str) -> String {
    format!(
        "{}\n[sinks.qms]\ntype = \"http\"\nurl = \"{qms}\"\nretry_initial_ms = 100\nretry_max_ms = 500\n",
        super::mqtt::toml(broker, "gw-disk-full", &data.display().to_string())
    )
}

fn messages(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range.map(super::mqtt::message).collect()
}

/// Serials at the QMS (each once).
fn serials(qms: &Qms) -> std::collections::BTreeSet<String> {
    qms.state
        .events
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e["data"]["kind"] == "inspection")
        .filter_map(|e| e["data"]["subject"]["serial"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_records_clearly_and_everything_arrives_when_space_returns() {
    let dir = tempdir();
    let broker = Broker::start();
    let qms = Qms::start().await;
    let data = dir.path().join("data");
    let disk = Tmpfs::mount(&data, "16m");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config(&data, broker.port, &format!("http://{}/events", qms.addr)),
    )
    .expect("config");
    let log = dir.path().join("agent.log");
    let mut agent = KillOnDrop(
        disk.command(&agent_bin())
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("agent"),
    );
    let status = |disk: &Tmpfs| -> Value {
        let out = disk
            .command(&agent_bin())
            .arg("--config")
            .arg(&cfg)
            .args(["status", "--json"])
            .output()
            .expect("status");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {out:?}"))
    };
    // The agent's session exists before the messages are published.
    eventually(WAIT, "the journal on the tmpfs", || {
        disk.outside(&data.join("journal.sqlite")).exists()
    })
    .await;
    // A window for the session to be subscribed (the source's state is not read here from
    // outside the agent's mount namespace).
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish_all(broker.port, messages(0..20), Duration::from_millis(5)).await;
    eventually(WAIT, "the first 20 at the QMS", || {
        serials(&qms).len() == 20
    })
    .await;
    assert_eq!(status(&disk)["health"]["status"], "ok");

    // The disk fills up; the broker keeps taking messages.
    let filler = disk.fill();
    publish_all(broker.port, messages(20..120), Duration::from_millis(5)).await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(WAIT, "the refusal in the log", || {
        read_log().contains("disk full; new records are REFUSED")
    })
    .await;
    // The advice fits a full file system: free space; the size limit is no remedy.
    let refusal = read_log()
        .lines()
        .find(|l| l.contains("disk full; new records are REFUSED"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(refusal.contains("free space on it"), "{refusal}");
    assert!(
        refusal.contains("raising journal.max_disk_bytes cannot help"),
        "{refusal}"
    );
    let s = status(&disk);
    assert_eq!(s["health"]["status"], "degraded", "{s}");
    assert!(
        s["health"]["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r
                .as_str()
                .unwrap_or("")
                .contains("disk holding the journal almost full")),
        "{s}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent runs on with a full disk:\n{}",
        read_log()
    );
    assert!(
        serials(&qms).len() < 120,
        "nothing could be journaled meanwhile"
    );

    // Space returns: every message arrives, the refusal is one gap record.
    std::fs::remove_file(&filler).expect("free the space");
    eventually(WAIT, "all 120 at the QMS", || serials(&qms).len() == 120).await;
    let want: std::collections::BTreeSet<String> =
        (0..120).map(|seq| format!("SN-{seq:05}")).collect();
    assert_eq!(serials(&qms), want);
    eventually(WAIT, "the gap record at the QMS", || {
        qms.state
            .events
            .lock()
            .expect("lock")
            .iter()
            .any(|e| e["data"]["kind"] == "gap" && e["data"]["gap"]["source"] == "journal")
    })
    .await;
    // The broker sent every refused message again: the gap says so, and claims no loss
    // (security review, finding 5).
    let gap_reason = qms
        .state
        .events
        .lock()
        .expect("lock")
        .iter()
        .find(|e| e["data"]["kind"] == "gap" && e["data"]["gap"]["source"] == "journal")
        .and_then(|e| e["data"]["gap"]["reason"].as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        gap_reason.contains("none was lost") && !gap_reason.contains("not captured"),
        "{gap_reason}"
    );
    assert!(
        read_log().contains("journal accepts records again"),
        "{}",
        read_log()
    );
    assert_eq!(status(&disk)["health"]["status"], "ok");

    assert!(Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill")
        .success());
    assert!(agent.0.wait().expect("wait").success(), "{}", read_log());
    let verify = disk
        .command(&agent_bin())
        .arg("--config")
        .arg(&cfg)
        .arg("verify")
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{verify:?}");
}
