//! `fleet verify --kafka`'s read rate: G gateways' chains (N records in all, bodies the size of an
//! inspection record, CloudEvents binary headers as the Kafka sink writes them, keyed by record id)
//! produced into a topic of P partitions on librdkafka's mock cluster (three brokers in this
//! process, on 127.0.0.1), then read and checked by the same code as the command. Prints one JSON
//! line. The mock keeps at most 5 MiB per partition (older messages are dropped, and the check
//! then names the missing seqs): 48 partitions hold the default 200,000 records.
//!
//! `cargo bench --features sink-kafka --bench kafka_verify -- [--records 200000] [--gateways 20]
//! [--partitions 48]`

use std::time::Instant;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use shopfloor_agent::audit::fleet::kafka::{verify, KafkaTarget};
use shopfloor_agent::audit::fleet::FleetCheck;

mod common;
use common::{arg, Chains};

fn main() {
    let records = arg("--records", 200_000);
    let gateways = arg("--gateways", 20).max(1);
    let partitions = arg("--partitions", 48).max(1) as i32;
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("quality", partitions, 3).expect("topic");
    let brokers = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");

    let started = Instant::now();
    let mut chains = Chains::new(gateways);
    for i in 0..records {
        let r = chains.record(i);
        let headers =
            r.headers()
                .into_iter()
                .fold(OwnedHeaders::new_with_capacity(9), |h, (key, v)| {
                    h.insert(Header {
                        key,
                        value: Some(v),
                    })
                });
        let mut record = BaseRecord::to("quality")
            .key(r.id.as_str())
            .payload(r.body.as_str())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(std::time::Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(std::time::Duration::from_secs(120))
        .expect("flush");
    let produced_s = started.elapsed().as_secs_f64();

    let target = KafkaTarget {
        brokers,
        topic: "quality".into(),
        sasl: None,
        ca_file: None,
    };
    let started = Instant::now();
    let report = verify(&target, FleetCheck::new(Default::default())).expect("verify");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.messages, records as u64);
    println!(
        "{}",
        serde_json::json!({
            "bench": "kafka_verify",
            "records": records,
            "gateways": gateways,
            "partitions": partitions,
            "produce_s": (produced_s * 10.0).round() / 10.0,
            "verify_s": (secs * 100.0).round() / 100.0,
            "verified_per_s": (records as f64 / secs).round(),
            "verdict": if report.ok() { "ok" } else { "broken" },
        })
    );
}
