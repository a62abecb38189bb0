//! The agent as systemd runs it: the shipped unit's own ExecStartPre/ExecStart/ExecReload lines,
//! a notification socket standing in for the service manager, credentials, reload and stop.

#![cfg(unix)]

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::qms::Qms;
use crate::support::KillOnDrop;
use crate::support::{agent_bin, eventually, root, tempdir};

/// The Exec lines of `systemd/shopfloor-agent.service`, by setting name.
fn unit_commands() -> HashMap<String, Vec<String>> {
    let unit =
        std::fs::read_to_string(root().join("systemd/shopfloor-agent.service")).expect("unit file");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in unit.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if key.starts_with("Exec") {
                out.entry(key.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    out
}

/// A unit command line as systemd would run it: the `%E` specifier (the configuration root, `/etc`)
/// from `etc`, `${VAR}` and `$VAR` from `env`, the installed binary path replaced by the binary
/// under test.
fn command(line: &str, etc: &Path, env: &[(&str, String)]) -> Command {
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| {
            let mut w = w.replace("%E", &etc.display().to_string());
            for (k, v) in env {
                w = w
                    .replace(&format!("${{{k}}}"), v)
                    .replace(&format!("${k}"), v);
            }
            assert!(!w.contains('$'), "unexpanded variable in {line:?}");
            w
        })
        .collect();
    let program = if words[0] == "/usr/bin/shopfloor-agent" {
        agent_bin().display().to_string()
    } else {
        words[0].clone()
    };
    let mut c = Command::new(program);
    c.args(&words[1..]);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(line: &str, etc: &Path, env: &[(&str, String)]) -> Output {
    command(line, etc, env).output().expect("run unit command")
}

/// The service manager's side of sd_notify.
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let s = UnixDatagram::bind(path).expect("bind notify socket");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        NotifySocket(s)
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self.0.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next notification that is not a watchdog ping; counts the pings it skipped.
    fn next_state(&self, pings: &mut usize) -> String {
        loop {
            let m = self.next();
            if m == "WATCHDOG=1" {
                *pings += 1;
            } else {
                return m;
            }
        }
    }
}

fn events_named(qms: &Qms, event: &str) -> Vec<serde_json::Value> {
    qms.events()
        .into_iter()
        .filter_map(|e| {
            let r = e.get("data")?.clone();
            (r["kind"] == "agent_event" && r["agent_event"]["event"] == event).then_some(r)
        })
        .collect()
}

/// The newest request the QMS saw.
fn last_request(qms: &Qms) -> crate::support::qms::Seen {
    qms.state
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request")
}

fn sha_printed_by_validate(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit("config sha256 ")
        .next()
        .expect("sha in validate output")
        .trim()
        .trim_end_matches(')')
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_units_own_commands_validate_start_notify_reload_with_both_hashes_and_stop() {
    let qms = Qms::start().await;
    let dir = tempdir();
    let etc = dir.path().join("etc");
    let conf = etc.join("shopfloor-agent");
    let credentials = dir.path().join("credentials");
    std::fs::create_dir_all(&conf).expect("etc");
    std::fs::create_dir_all(&credentials).expect("credentials");
    std::fs::write(credentials.join("qms_token"), "token-1\n").expect("credential");
    let state = dir.path().join("state");
    let config = |plant: &str| {
        format!(
            "[agent]\ngateway_id = \"gw-unit\"\ndata_dir = \"{}\"\n\n[sinks.qms]\ntype = \"http\"\nurl = \"{}\"\nauth = {{ type = \"bearer\", token = \"${{credential:qms_token}}\" }}\nheaders = {{ \"X-Plant\" = \"{plant}\" }}\n",
            state.display(),
            qms.url()
        )
    };
    std::fs::write(conf.join("agent.toml"), config("plant-1")).expect("config");
    let socket_path = dir.path().join("notify.sock");
    let notify = NotifySocket::bind(&socket_path);
    let unit = unit_commands();
    let mut env = vec![
        ("CONFIGURATION_DIRECTORY", conf.display().to_string()),
        ("NOTIFY_SOCKET", socket_path.display().to_string()),
        ("WATCHDOG_USEC", "400000".to_string()),
    ];

    // ExecStartPre checks the config without secrets: it passes even with no credentials around.
    let pre = run(&unit["ExecStartPre"][0], &etc, &env);
    assert!(pre.status.success(), "{pre:?}");
    let first_sha = sha_printed_by_validate(&pre);

    env.push(("CREDENTIALS_DIRECTORY", credentials.display().to_string()));
    assert_eq!(unit["ExecStart"].len(), 1);
    let mut start = command(&unit["ExecStart"][0], &etc, &env);
    let mut agent = KillOnDrop(start.stderr(Stdio::null()).spawn().expect("ExecStart"));
    let mut pings = 0;
    let ready = notify.next_state(&mut pings);
    assert!(ready.starts_with("READY=1\nSTATUS=running"), "{ready:?}");
    for _ in 0..3 {
        assert_eq!(notify.next(), "WATCHDOG=1", "a ping every 200 ms");
    }
    eventually(
        Duration::from_secs(20),
        "the start record at the QMS",
        || !events_named(&qms, "start").is_empty(),
    )
    .await;
    let first = qms.state.requests.lock().expect("lock")[0].clone();
    assert_eq!(first.authorization.as_deref(), Some("Bearer token-1"));
    assert_eq!(first.x_plant.as_deref(), Some("plant-1"));

    // `systemctl reload`: a new header, a rotated credential and a smaller batch; ExecReload
    // validates, then SIGHUP. (Header values and credentials are secrets: the hash leaves them
    // out, the batch size changes it.)
    let config2 = || config("plant-2") + "batch_max_records = 400\n";
    std::fs::write(conf.join("agent.toml"), config2()).expect("config");
    std::fs::write(credentials.join("qms_token"), "token-2\n").expect("credential");
    env.push(("MAINPID", agent.0.id().to_string()));
    let reload = &unit["ExecReload"];
    assert_eq!(reload.len(), 2, "validate, then signal");
    let checked = run(&reload[0], &etc, &env);
    assert!(checked.status.success(), "{checked:?}");
    let second_sha = sha_printed_by_validate(&checked);
    assert_ne!(first_sha, second_sha);
    assert!(run(&reload[1], &etc, &env).status.success());
    assert!(notify.next_state(&mut pings).starts_with("RELOADING=1"));
    let ready = notify.next_state(&mut pings);
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=running with config {}", &second_sha[..12])
    );
    eventually(
        Duration::from_secs(20),
        "the reload record at the QMS",
        || !events_named(&qms, "config_reload").is_empty(),
    )
    .await;
    let reloaded = &events_named(&qms, "config_reload")[0];
    assert_eq!(
        reloaded["agent_event"]["details"]["old_config_sha256"],
        first_sha
    );
    assert_eq!(
        reloaded["agent_event"]["details"]["new_config_sha256"],
        second_sha
    );
    assert_eq!(reloaded["agent_event"]["details"]["requested_by"], "SIGHUP");
    assert_eq!(reloaded["provenance"]["config_sha256"], second_sha);
    let last = last_request(&qms);
    assert_eq!(last.authorization.as_deref(), Some("Bearer token-2"));
    assert_eq!(last.x_plant.as_deref(), Some("plant-2"));

    // Only the credential rotates: the hash stays, and the reload still takes the new token.
    std::fs::write(credentials.join("qms_token"), "token-3\n").expect("credential");
    let checked = run(&reload[0], &etc, &env);
    assert!(checked.status.success(), "{checked:?}");
    assert_eq!(sha_printed_by_validate(&checked), second_sha);
    assert!(run(&reload[1], &etc, &env).status.success());
    assert!(notify.next_state(&mut pings).starts_with("RELOADING=1"));
    assert_eq!(
        notify.next_state(&mut pings),
        format!("READY=1\nSTATUS=running with config {}", &second_sha[..12])
    );
    eventually(
        Duration::from_secs(20),
        "the second reload record at the QMS",
        || events_named(&qms, "config_reload").len() >= 2,
    )
    .await;
    let last = last_request(&qms);
    assert_eq!(last.authorization.as_deref(), Some("Bearer token-3"));

    // A broken config: ExecReload's validate stops `systemctl reload`; a bare SIGHUP is refused
    // by the agent, which runs on and records why.
    std::fs::write(
        conf.join("agent.toml"),
        config("plant-3") + "retry_max_ms = \"a minute\"\n\n[journal]\nsurprise = true\n",
    )
    .expect("config");
    let refused = run(&reload[0], &etc, &env);
    assert_eq!(refused.status.code(), Some(78), "{refused:?}");
    assert!(run(&reload[1], &etc, &env).status.success());
    assert!(notify.next_state(&mut pings).starts_with("RELOADING=1"));
    assert!(notify
        .next_state(&mut pings)
        .ends_with(&format!("running with config {}", &second_sha[..12])));
    eventually(Duration::from_secs(20), "the refusal at the QMS", || {
        !events_named(&qms, "config_reload_refused").is_empty()
    })
    .await;
    let why = events_named(&qms, "config_reload_refused")[0]["agent_event"]["details"].clone();
    assert_eq!(why["config_sha256"], second_sha);
    // Every problem, each named by its key (a wrong value inside a sink once named only the table).
    let errors = why["errors"].to_string();
    assert!(errors.contains("journal.surprise"), "{why}");
    assert!(errors.contains("sinks.qms.retry_max_ms"), "{why}");
    assert!(agent.0.try_wait().expect("wait").is_none(), "still running");

    // `systemctl stop`.
    assert!(Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .expect("kill")
        .success());
    assert!(notify
        .next_state(&mut pings)
        .starts_with("STOPPING=1\nSTATUS=stopping (SIGTERM)"));
    assert!(agent.0.wait().expect("wait").success());
    // The broken config is still on disk; verify reads only [agent].
    std::fs::write(conf.join("agent.toml"), config2()).expect("config");
    let verify = Command::new(agent_bin())
        .arg("--config")
        .arg(conf.join("agent.toml"))
        .arg("verify")
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{verify:?}");
}

/// Runs `run` for a moment against an unreachable QMS (so it logs info and a warning) with stderr
/// on `stderr`, `JOURNAL_STREAM` set to `journal_stream` (if any); returns what it wrote there
/// after SIGTERM, read back by `read`.
fn logs_of_a_short_run(
    stderr: std::process::Stdio,
    journal_stream: Option<String>,
    read: impl FnOnce() -> Vec<u8>,
) -> Vec<u8> {
    let dir = crate::support::tempdir();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ngateway_id = \"gw-log\"\ndata_dir = \"{}\"\n\n[metrics]\nenabled = false\n\n[sinks.qms]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/events\"\nretry_initial_ms = 50\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let mut cmd = std::process::Command::new(crate::support::agent_bin());
    cmd.arg("--config").arg(&config).arg("run").stderr(stderr);
    cmd.env_remove("JOURNAL_STREAM").env_remove("NOTIFY_SOCKET");
    if let Some(js) = journal_stream {
        cmd.env("JOURNAL_STREAM", js);
    }
    let mut child = crate::support::KillOnDrop(cmd.spawn().expect("run"));
    // The command holds our copy of the stream: drop it, so a reader sees the end when the agent exits.
    drop(cmd);
    // The agent runs a while (its start-up lines are what is read), then is stopped.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    read()
}

/// Issue 18: under systemd the logs carried colour codes and a second timestamp. To a file: no
/// escape bytes. To a socket that `JOURNAL_STREAM` names (as journald's stream is): sd-daemon level
/// prefixes, no timestamp, no escape bytes.
#[test]
fn logs_read_well_in_a_file_and_in_journald() {
    use std::os::unix::fs::MetadataExt;
    // A file.
    let dir = crate::support::tempdir();
    let path = dir.path().join("stderr.log");
    let file = std::fs::File::create(&path).expect("log file");
    let text = logs_of_a_short_run(file.into(), None, || std::fs::read(&path).expect("read"));
    let shown = String::from_utf8_lossy(&text).into_owned();
    assert!(!text.contains(&0x1b), "escape bytes in a file: {shown}");
    assert!(shown.contains(" INFO "), "{shown}");
    assert!(shown.contains("retrying in"), "{shown}");
    assert!(!shown.contains("retrying in 0 s"), "{shown}");

    // A socket named by JOURNAL_STREAM.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
    let theirs_fd: std::os::fd::OwnedFd = theirs.into();
    let meta = std::fs::File::from(theirs_fd.try_clone().expect("dup"))
        .metadata()
        .expect("fstat");
    let js = format!("{}:{}", meta.dev(), meta.ino());
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &ours, &mut out);
        out
    });
    let text = logs_of_a_short_run(theirs_fd.into(), Some(js), move || {
        reader.join().expect("reader")
    });
    let shown = String::from_utf8_lossy(&text).into_owned();
    assert!(!text.contains(&0x1b), "escape bytes for journald: {shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l.starts_with("<3>")
                || l.starts_with("<4>")
                || l.starts_with("<6>")
                || l.starts_with("<7>"),
            "no level prefix: {l:?}"
        );
        assert!(
            !l.contains("2026-") && !l.contains("Z INFO"),
            "a timestamp: {l:?}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{shown}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("sink qms")),
        "the sink's warning at level 4: {shown}"
    );
}

/// Issue 18: `log.repeat_summary_s` was honoured by the sinks only; the sources summarised a
/// continuing outage every 600 s whatever it said. Four sources, each facing a closed port, with
/// summaries every second: each source writes its summary line within a few seconds. And the
/// libraries' log lines stay below the agent's.
#[test]
fn every_source_summarises_an_outage_as_often_as_configured() {
    let dir = crate::support::tempdir();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
gateway_id = "gw-repeat"
data_dir = "{data}"

[log]
repeat_summary_s = 1

[metrics]
enabled = false

[sources.gauge]
type = "modbus"
transport = "tcp"
address = "127.0.0.1:{closed}"
addressing = "pdu"
retries = 0
reconnect_initial_ms = 100
reconnect_max_ms = 200
[[sources.gauge.tags]]
name = "diameter"
kind = "holding"
address = 0
type = "f32"

[sources.plc]
type = "opcua"
endpoint = "opc.tcp://127.0.0.1:{closed}/plc"
security_policy = "none"
security_mode = "none"
reconnect_initial_ms = 100
reconnect_max_ms = 200
[[sources.plc.tags]]
name = "serial"
node = "nsu=urn:example:cell1;s=Serial"

[sources.erp]
type = "rest"
url = "http://127.0.0.1:{closed}/odata/"
poll_interval_ms = 100
retry_initial_ms = 100
retry_max_ms = 200
[[sources.erp.endpoints]]
name = "WorkOrders"
path = "WorkOrders"
key = "/ID"

[sources.vision]
type = "mqtt"
host = "127.0.0.1"
port = {closed}
client_id = "gw-repeat"
topics = ["plant1/+/inspection"]
payload = "json"

[sinks.audit]
type = "file"
path = "{out}"
"#,
            data = dir.path().join("data").display(),
            out = dir.path().join("out").display(),
        ),
    )
    .expect("config");
    let log = dir.path().join("stderr.log");
    let mut cmd = std::process::Command::new(crate::support::agent_bin());
    cmd.arg("--config")
        .arg(&config)
        .arg("run")
        .stderr(std::fs::File::create(&log).expect("log"))
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    let mut child = crate::support::KillOnDrop(cmd.spawn().expect("run"));
    let summaries = [
        "Modbus device gauge at 127.0.0.1",
        "OPC UA source plc at opc.tcp://127.0.0.1",
        "REST source erp endpoint WorkOrders:",
        "MQTT broker mqtt://127.0.0.1",
    ];
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let missing = |text: &str| -> Vec<&str> {
        summaries
            .iter()
            .copied()
            .filter(|s| {
                !text
                    .lines()
                    .any(|l| l.contains(s) && l.contains("still") && l.contains("attempts in"))
            })
            .collect()
    };
    while !missing(&read()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    let text = read();
    assert!(
        missing(&text).is_empty(),
        "no summary from {:?}:\n{text}",
        missing(&text)
    );
    // Issue 18: the OPC UA client library's own lines ("Could not connect to host" as ERROR on
    // every attempt, "Endpoint config contains no endpoints" at each start) stay below the agent's:
    // an unreachable server is the agent's WARN, and ERROR means evidence at risk.
    for noise in [
        " ERROR ",
        "Endpoint config contains no endpoints",
        "Writing X509 cert",
    ] {
        assert!(
            !text.lines().any(|l| l.contains(noise)),
            "{noise:?} in the log:\n{text}"
        );
    }
}
