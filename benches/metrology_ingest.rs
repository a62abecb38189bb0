//! A large QIF results file through the real agent into the journal: characteristics per second
//! (from the file renamed in until the journal marks it done) and the agent's peak resident memory
//! (`VmHWM`).
//!
//! `cargo bench --bench metrology_ingest`. `METROLOGY_INGEST_PARTS` parts (default 4,700) of 100
//! characteristics: about 100 MB of QIF, 470,000 characteristics. The agent runs as its own process
//! (the release binary), with a metrology source on a spool folder and no sink; the journal commits
//! with `synchronous=FULL` as always, without a size limit (the records take about 2.5 GB), in
//! pages of 16 KiB as `config/examples/metrology.toml` (`METROLOGY_INGEST_PAGE_SIZE=4096` for the
//! journal's default).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shopfloor_agent::journal::Store;
use shopfloor_agent::sources::metrology::folder::sha256;

const PER_PART: usize = 100;

fn state(data: &Path, key: &str) -> Option<String> {
    Store::open_ro(data)
        .and_then(|s| s.source_state(Some("cmm")))
        .ok()?
        .into_iter()
        .find(|(_, k, _, _)| k == key)
        .map(|(_, _, v, _)| v)
}

fn main() {
    let parts: usize = common::env_or("METROLOGY_INGEST_PARTS", 4_700);
    // As config/examples/metrology.toml: four characteristics' records to a page instead of one.
    let page_size: u32 = common::env_or("METROLOGY_INGEST_PAGE_SIZE", 16_384);
    let dir = tempfile::Builder::new()
        .prefix("sfa-metrology-ingest-")
        .tempdir()
        .expect("temp dir");
    let dir = dir.path();
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).expect("spool");
    let staged = dir.join("big.qif");
    {
        let doc = plant_sim::cmm::qif_results(parts, PER_PART);
        std::fs::write(&staged, doc).expect("write the document");
    }
    // On disk before the clock starts: its write-back would otherwise compete with the journal's.
    std::fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .expect("sync the document");
    let bytes = std::fs::metadata(&staged).expect("size").len();
    let (sha, _) = sha256(&staged).expect("sha");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
gateway_id = "bench-cmm"
data_dir = "{data}"

[journal]
max_disk_bytes = 0
page_size_bytes = {page_size}

[metrics]
enabled = false

[sources.cmm]
type = "metrology"
poll_ms = 100
[[sources.cmm.folders]]
path = "{spool}"
completion = "rename"
"#,
            data = dir.join("data").display(),
            spool = spool.display(),
            page_size = page_size,
        ),
    )
    .expect("config");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_shopfloor-agent"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let pid = agent.id();
    let data = dir.join("data");
    let up = Instant::now();
    while state(&data, &format!("connection:{}", spool.display())).is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "the agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle_kib = common::rss_kib(pid);
    let ticks = common::cpu_ticks(pid);
    let written = common::written_bytes(pid);
    let start = Instant::now();
    std::fs::rename(&staged, spool.join("big.qif")).expect("rename in");
    let key = format!("file:{sha}");
    loop {
        if state(&data, &key).is_some_and(|v| v.starts_with("done ")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "not done after 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = (common::cpu_ticks(pid) - ticks) as f64 / common::TICKS_PER_SECOND;
    let peak = common::peak_kib(pid);
    let written = common::written_bytes(pid) - written;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    let n = parts * PER_PART;
    let journaled = Store::open_ro(&data)
        .and_then(|s| s.records_of_kind("inspection"))
        .map(|r| r.len())
        .unwrap_or(0);
    assert_eq!(journaled, n, "every characteristic journaled once");
    println!(
        "metrology ingest: {n} characteristics from {:.1} MB of QIF into the journal ({page_size}-byte pages) in {took:.1} s = {:.0} characteristics/s; {:.1} KB written per characteristic; agent CPU {cpu:.1} s ({:.0} % of one core); resident memory idle {:.1} MiB, peak {:.1} MiB",
        bytes as f64 / 1e6,
        n as f64 / took,
        written as f64 / n as f64 / 1e3,
        100.0 * cpu / took,
        idle_kib as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}
