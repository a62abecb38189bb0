//! The command line as an operator uses it: generate-config, validate, run, status, verify.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::KillOnDrop as Running;
use crate::support::{agent_bin, eventually_blocking, tempdir};

/// Writes `toml` as `agent.toml` in `dir`.
fn config_file(dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml).expect("config");
    path
}

/// Sends SIGTERM, as systemd does on stop.
fn sigterm(pid: u32) {
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
}

fn agent(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(agent_bin())
        .current_dir(config.parent().expect("config dir"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run")
}

#[test]
fn generate_config_prints_a_reference_that_validates() {
    let dir = tempdir();
    let out = Command::new(agent_bin())
        .arg("generate-config")
        .output()
        .expect("run");
    assert!(out.status.success());
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, &out.stdout).expect("write");
    let v = Command::new(agent_bin())
        .arg("--config")
        .arg(&path)
        .arg("validate")
        .env("QMS_TOKEN", "x")
        .env("OPCUA_PASSWORD", "x")
        .env("ERP_PASSWORD", "x")
        .env("MQTT_PASSWORD", "x")
        .output()
        .expect("validate");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // Without the environment the secret is not needed (checking a config away from the gateway).
    let v = Command::new(agent_bin())
        .arg("--config")
        .arg(&path)
        .args(["validate", "--no-environment"])
        .env_remove("QMS_TOKEN")
        .output()
        .expect("validate");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[cfg(unix)]
#[test]
fn run_stops_cleanly_on_sigterm_then_status_and_verify_report() {
    let dir = tempdir();
    let config = config_file(
        dir.path(),
        "[agent]\ngateway_id = \"gw-cli\"\ndata_dir = \"data\"\n[sinks.audit]\ntype = \"file\"\npath = \"out/records.jsonl\"\n",
    );
    let child = Command::new(agent_bin())
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut running = Running(child);
    let out_dir = dir.path().join("out");
    eventually_blocking(
        Duration::from_secs(20),
        "the start record in the file sink",
        || {
            std::fs::read_dir(&out_dir)
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        },
    );
    sigterm(running.0.id());
    let status = running.0.wait().expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = running.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("journal closed cleanly"), "{stderr}");

    let status = agent(&config, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("gw-cli"), "{text}");
    assert!(text.contains("stopped cleanly"), "{text}");
    assert!(text.contains("health    ok"), "{text}");
    assert!(
        text.contains("agent_event 2"),
        "start and stop records: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("audit") && l.contains(" ok ") && l.contains(" 0 ")),
        "sink delivered everything: {text}"
    );

    let json = agent(&config, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status --json");
    assert_eq!(v["sinks"][0]["backlog"], 0);
    assert_eq!(v["last_seq"], 2);

    let verify = agent(&config, &["verify"]);
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("chain verified, 2 records"));

    let conn = rusqlite::Connection::open(dir.path().join("data/journal.sqlite")).expect("open");
    conn.execute_batch(
        "DROP TRIGGER records_append_only; UPDATE records SET body = replace(body, 'started', 'STARTED') WHERE seq = 1;",
    )
    .expect("tamper");
    drop(conn);
    let verify = agent(&config, &["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("CHAIN BROKEN at seq 1"), "{text}");
}
