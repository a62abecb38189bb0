//! Rule evaluation: observations per second through the tag table and triggers, on one core.
//!
//! `cargo bench --bench rules`. 1,000 tags on 10 sources, 20 rules (edges, change with deadband,
//! equals); each observation is one tag sample. Two runs: samples that fire nothing, and a realistic
//! mix where one sample in 500 completes a part and makes an inspection record (fields read from
//! other sources, enrichment, canonical JSON).

use std::time::Instant;

use serde_json::json;
use shopfloor_agent::config::{Config, LoadOptions};
use shopfloor_agent::records::engine::Engine;
use shopfloor_agent::records::observation::{Observation, Origin, Sample};

fn config() -> Config {
    let mut toml = String::from("[agent]\ngateway_id = \"bench\"\n");
    for s in 0..10 {
        toml.push_str(&format!(
            r#"
[[records]]
name = "part_{s}"
kind = "inspection"
trigger = {{ type = "rising", tag = "plc{s}.part_complete" }}
dedupe_key = "{{subject.serial}}/{{inspection.characteristic}}"
[records.fields]
"subject.serial" = {{ tag = "plc{s}.serial" }}
"inspection.characteristic" = {{ const = "OD-1" }}
"inspection.value" = {{ tag = "gauge{s}.t0", scale = 0.001 }}
"inspection.nominal" = {{ const = 25.0 }}
"inspection.lower_tolerance" = {{ const = 0.02 }}
"inspection.upper_tolerance" = {{ const = 0.02 }}

[[records]]
name = "trend_{s}"
kind = "inspection"
trigger = {{ type = "change", tag = "gauge{s}.t1", deadband = 1000000.0 }}
[records.fields]
"inspection.value" = {{ tag = "gauge{s}.t1" }}
"#
        ));
    }
    Config::from_texts(
        &[("agent.toml".into(), toml)],
        std::path::Path::new("."),
        LoadOptions::default(),
    )
    .expect("config")
}

fn main() {
    let cfg = config();
    let n: usize = std::env::var("RULES_BENCH_OBSERVATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    for firing in [false, true] {
        let mut engine = Engine::new(cfg.record_context(), &cfg.records).expect("rules");
        let mut ids = Vec::new();
        for s in 0..10 {
            let origin = Origin {
                protocol: "modbus".into(),
                endpoint: Some(format!("10.0.0.{s}:502")),
                address: None,
            };
            for t in 0..98 {
                ids.push(engine.register_tag(
                    &format!("gauge{s}"),
                    &format!("t{t}"),
                    origin.clone(),
                ));
            }
            let plc = Origin {
                protocol: "opcua".into(),
                endpoint: None,
                address: None,
            };
            engine.register_tag(&format!("plc{s}"), "serial", plc.clone());
            engine.register_tag(&format!("plc{s}"), "part_complete", plc);
        }
        let part = engine.tags().id("plc0.part_complete").expect("tag");
        let serial = engine.tags().id("plc0.serial").expect("tag");
        // Pre-built observations: the bench measures the engine, not their construction.
        let obs: Vec<Observation> = (0..n)
            .map(|i| {
                let (id, value) = if firing && i % 250 == 0 {
                    (part, json!((i / 250) % 2 == 1))
                } else if firing && i % 250 == 1 {
                    (serial, json!(format!("SN-{i}")))
                } else {
                    (ids[i % ids.len()], json!(25000 + (i % 7) as i64))
                };
                Observation::Tags(vec![(
                    id,
                    Sample::good(value, 1_763_720_000_000 + i as i64),
                )])
            })
            .collect();
        let start = Instant::now();
        let mut records = 0usize;
        for o in obs {
            records += engine.observe(o).len();
        }
        let elapsed = start.elapsed();
        println!(
            "rules bench ({}): {n} observations in {:.2} s = {:.0} observations/s on one core, {records} records made",
            if firing { "a part completes every 500 observations" } else { "tag updates only" },
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
    }
}
