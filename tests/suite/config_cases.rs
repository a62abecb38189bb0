//! Walks `tests/cases/config/*/`: `validate` must exit 78 and print every expected line, in order.

use std::process::Command;

use crate::support::{agent_bin, case_dirs};

#[test]
fn every_config_case_fails_with_its_expected_messages() {
    let cases = case_dirs("config", 11);
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

/// The examples that ship (`config/examples/`, installed with the package) and the reference
/// configuration are valid as they are.
#[test]
fn every_shipped_example_and_the_reference_configuration_are_valid() {
    let dir = crate::support::root().join("config/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("config/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the examples: {files:?}");
    files.push(crate::support::root().join("config/agent.toml"));
    for file in files {
        // Secrets come from the environment: give each `${env:NAME}` the file names a value.
        let text = std::fs::read_to_string(&file).expect("example");
        let mut cmd = Command::new(agent_bin());
        for part in text.split("${env:").skip(1) {
            if let Some((name, _)) = part.split_once('}') {
                cmd.env(name, "example-secret");
            }
        }
        let out = cmd
            .arg("--config")
            .arg(&file)
            .arg("validate")
            .output()
            .expect("validate");
        // The Kafka sink is a feature outside the default build: without it, its example is
        // refused with the feature named.
        if file.ends_with("kafka.toml") && !cfg!(feature = "sink-kafka") {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("the Cargo feature `sink-kafka`"),
                "{stderr}"
            );
            continue;
        }
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
