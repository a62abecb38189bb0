//! Bad surroundings: an unusable data directory, a damaged journal file. A clear error, never a panic.

use std::process::Command;

use crate::support::{agent_bin, tempdir};

fn write_config(dir: &std::path::Path, data_dir: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!("[agent]\ngateway_id = \"gw-test\"\ndata_dir = \"{data_dir}\"\n"),
    )
    .expect("write config");
    path
}

fn run(config: &std::path::Path, cmd: &str) -> (Option<i32>, String) {
    // Relative paths in the config are taken from the working directory: the test's temp dir.
    let mut child = Command::new(agent_bin())
        .current_dir(config.parent().expect("config dir"))
        .arg("--config")
        .arg(config)
        .arg(cmd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    // The agent must give up on its own; if it keeps running, that is the failure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{cmd}` kept running instead of refusing the bad input");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("panicked"), "{cmd} panicked:\n{text}");
    (out.status.code(), text)
}

#[test]
fn an_unusable_data_dir_is_named_with_a_fix() {
    let dir = tempdir();
    // A regular file where a directory should be: fails even for root.
    std::fs::write(dir.path().join("occupied"), "not a directory").expect("file");
    let config = write_config(dir.path(), "occupied/state");
    let (code, text) = run(&config, "run");
    assert_eq!(code, Some(74), "{text}");
    assert!(text.contains("occupied/state"), "names the path: {text}");
    assert!(text.contains("write access"), "says what to do: {text}");
}

#[test]
fn a_damaged_journal_file_is_refused_clearly_and_left_alone() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("journal.sqlite"), &garbage).expect("garbage");
    let config = write_config(dir.path(), "data");
    for cmd in ["run", "status", "verify"] {
        let (code, text) = run(&config, cmd);
        assert_eq!(code, Some(74), "{cmd}: {text}");
        assert!(
            text.contains("journal.sqlite"),
            "{cmd} names the file: {text}"
        );
        assert!(
            text.contains("move it aside"),
            "{cmd} says what to do: {text}"
        );
    }
    assert_eq!(
        std::fs::read(data.join("journal.sqlite")).expect("read"),
        garbage,
        "evidence untouched"
    );
}

#[test]
fn a_journal_from_a_newer_agent_is_not_misread() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let conn = rusqlite::Connection::open(data.join("journal.sqlite")).expect("open");
    conn.pragma_update(None, "user_version", 99)
        .expect("version");
    drop(conn);
    let config = write_config(dir.path(), "data");
    let (code, text) = run(&config, "run");
    assert_eq!(code, Some(74), "{text}");
    assert!(text.contains("schema version 99 is newer"), "{text}");
}
