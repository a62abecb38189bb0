//! Walks `tests/cases/config/*/`: `validate` must exit 78 and print every expected line, in order.

use std::process::Command;

use crate::support::{agent_bin, case_dirs};

#[test]
fn every_config_case_fails_with_its_expected_messages() {
    let cases = case_dirs("config", 10);
    let mut failures = Vec::new();
    for case in &cases {
        let mut cmd = Command::new(agent_bin());
        cmd.arg("--config")
            .arg(case.join("agent.toml"))
            .arg("validate");
        if let Ok(env) = std::fs::read_to_string(case.join("env")) {
            for line in env.lines().filter(|l| !l.trim().is_empty()) {
                let (k, v) = line.split_once('=').expect("env line NAME=value");
                cmd.env(k, v);
            }
        }
        let out = cmd.output().expect("run validate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = std::fs::read_to_string(case.join("expected.err")).expect("expected.err");
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        if out.status.code() != Some(78) {
            failures.push(format!(
                "{name}: exit {:?}, expected 78\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        let mut rest: &str = &stderr;
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            match rest.find(line) {
                Some(i) => rest = &rest[i + line.len()..],
                None => {
                    failures.push(format!(
                        "{name}: missing (or out of order): {line:?}\n--- got:\n{stderr}"
                    ));
                    break;
                }
            }
        }
        assert!(
            !stderr.contains("panicked"),
            "{name}: validate panicked:\n{stderr}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
