//! OPC UA subscription cost: 10,000 monitored items sampled every second from one server, the
//! agent's CPU share and resident memory measured from /proc while it runs as its own process.
//!
//! `cargo bench --bench opcua` (set `OPCUA_BENCH_SECONDS`, default 30; `OPCUA_BENCH_WRAP` runs the agent
//! under a profiler, e.g. "heaptrack -o /tmp/agent"; `OPCUA_BENCH_AGENT` names another agent binary,
//! e.g. the gateway build `target/min/shopfloor-agent`). The server is async-opcua in
//! this process on 127.0.0.1 with 10,000 Double variables, every one of them changing once a
//! second. The agent is the real binary with one source of 10,000 tags (sampling and publishing
//! interval 1 s, items created in batches) and one rule that makes a record whenever tag 0
//! changes, so the record count proves that data flowed for the whole run.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opcua::server::address_space::Variable;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{DataValue, NodeId, QualifiedName, Variant};

mod common;
use common::{cpu_ticks, rss_kib, TICKS_PER_SECOND};

const ITEMS: usize = 10_000;
const NS: &str = "urn:bench";
const WATCHED: [usize; 3] = [0, ITEMS / 2, ITEMS - 1];

fn main() {
    let seconds: u64 = common::env_or("OPCUA_BENCH_SECONDS", 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let _rt = rt.enter(); // the server's sampler starts its task when it is built
    let dir = tempfile::tempdir().expect("tmp");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut builder = ServerBuilder::new()
        .application_name("bench server")
        .application_uri("urn:bench:server")
        .create_sample_keypair(true)
        .pki_dir(dir.path().join("server-pki"))
        .host("127.0.0.1")
        .port(port)
        .discovery_urls(vec!["/".to_owned()])
        .add_endpoint(
            "none",
            (
                "/",
                opcua::crypto::SecurityPolicy::None,
                opcua::types::MessageSecurityMode::None,
                &[ANONYMOUS_USER_TOKEN_ID] as &[&str],
            ),
        )
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: NS.into(),
                ..Default::default()
            },
            "bench",
        ));
    builder
        .limits_mut()
        .subscriptions
        .max_monitored_items_per_sub = ITEMS * 2;
    let (server, handle) = builder.build().expect("server");
    let nm = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .expect("node manager");
    let ns = handle.get_namespace_index(NS).expect("ns");
    let ids: Vec<NodeId> = (0..ITEMS)
        .map(|i| NodeId::new(ns, format!("V{i}")))
        .collect();
    {
        let mut space = nm.address_space().write();
        let folder = NodeId::new(ns, "Bench");
        space.add_folder(
            &folder,
            QualifiedName::new(ns, "Bench"),
            "Bench",
            &NodeId::objects_folder_id(),
        );
        let vars = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                Variable::new(
                    id,
                    QualifiedName::new(ns, format!("V{i}")),
                    format!("V{i}"),
                    0.0f64,
                )
            })
            .collect();
        space.add_variables(vars, &folder);
    }
    rt.spawn(async move {
        let _ = server.run_with(listener).await;
    });
    let subs = handle.subscriptions().clone();
    let updater_ids = ids.clone();
    let nm2: Arc<SimpleNodeManager> = nm.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0.0f64;
        loop {
            tick.tick().await;
            n += 1.0;
            let values = updater_ids.iter().enumerate().map(|(i, id)| {
                (
                    id,
                    None,
                    DataValue::new_now(Variant::Double(n + i as f64 * 1e-3)),
                )
            });
            let _ = nm2.set_values(&subs, values);
        }
    });

    let mut toml = format!(
        "[agent]\ngateway_id = \"bench\"\ndata_dir = \"{data}\"\n\n[sources.plc]\ntype = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/\"\nsecurity_policy = \"none\"\nsecurity_mode = \"none\"\npublishing_interval_ms = 1000\nsampling_interval_ms = 1000\nqueue_size = 1\n",
        data = dir.path().join("data").display()
    );
    for i in 0..ITEMS {
        toml.push_str(&format!(
            "[[sources.plc.tags]]\nname = \"v{i}\"\nnode = \"nsu={NS};s=V{i}\"\n"
        ));
    }
    // Watch the first, a middle and the last tag: each must change once a second.
    for w in WATCHED {
        toml.push_str(&format!(
            "\n[[records]]\nname = \"tick{w}\"\nkind = \"inspection\"\ntrigger = {{ type = \"change\", tag = \"plc.v{w}\" }}\n[records.fields]\n\"subject.serial\" = {{ const = \"bench\" }}\n\"inspection.characteristic\" = {{ const = \"v{w}\" }}\n\"inspection.value\" = {{ tag = \"plc.v{w}\" }}\n"
        ));
    }
    let cfg = dir.path().join("agent.toml");
    std::fs::File::create(&cfg)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .expect("config");
    // OPCUA_BENCH_WRAP="heaptrack -o /tmp/agent" runs the agent under a profiler.
    let wrap: Vec<String> = std::env::var("OPCUA_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    // OPCUA_BENCH_AGENT=target/min/shopfloor-agent measures the gateway build instead.
    let bin = std::env::var("OPCUA_BENCH_AGENT")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shopfloor-agent").to_string());
    let (program, pre) = match wrap.split_first() {
        Some((p, rest)) => (p.clone(), [rest.to_vec(), vec![bin]].concat()),
        None => (bin, Vec::new()),
    };
    let mut agent = std::process::Command::new(program)
        .args(pre)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stderr(
            std::fs::File::create(dir.path().join("agent.log"))
                .map(std::process::Stdio::from)
                .unwrap_or_else(|_| std::process::Stdio::null()),
        )
        .spawn()
        .expect("agent");
    let pid = agent.id();
    std::thread::sleep(Duration::from_secs(10)); // certificate, connect, 10 batches of items
                                                 // Records per watched tag.
    let records = || -> Vec<i64> {
        let conn = rusqlite::Connection::open(dir.path().join("data/journal.sqlite"));
        WATCHED
            .iter()
            .map(|w| {
                conn.as_ref()
                    .ok()
                    .and_then(|c| {
                        c.query_row(
                            "SELECT count(*) FROM records WHERE kind = 'inspection' AND json_extract(body, '$.inspection.characteristic') = ?1",
                            [format!("v{w}")],
                            |r| r.get(0),
                        )
                        .ok()
                    })
                    .unwrap_or(0)
            })
            .collect()
    };
    let (t0, c0, n0) = (Instant::now(), cpu_ticks(pid), records());
    let mut peak = 0;
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss_kib(pid));
    }
    let (elapsed, c1, n1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid), records());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    let rates: Vec<String> = n1
        .iter()
        .zip(&n0)
        .map(|(a, b)| format!("{:.2}", (a - b) as f64 / elapsed))
        .collect();
    if n1 == n0 {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        eprintln!("no data reached the journal; the agent's log:\n{log}");
    }
    let cpu = (c1 - c0) as f64 / TICKS_PER_SECOND / elapsed * 100.0;
    println!(
        "opcua bench: {ITEMS} monitored items changing every 1 s, {elapsed:.0} s: agent CPU {cpu:.2}% of one core, peak RSS {:.1} MiB, changes seen per second of tags {WATCHED:?}: {} (each changes once a second)",
        peak as f64 / 1024.0,
        rates.join(", ")
    );
}
