//! `fleet verify --nats`'s read rate: G gateways' chains (N records in all, bodies the size of an
//! inspection record, `Nats-Msg-Id` and the CloudEvents binary headers as the NATS sink writes
//! them) published into a JetStream stream on one `nats-server` (file storage, on 127.0.0.1), then
//! read and checked by the same code as the command. Prints one JSON line. Needs `nats-server`.
//!
//! `cargo bench --bench nats_verify -- [--records 200000] [--gateways 20]`

use std::time::Instant;

use async_nats::jetstream;
use futures_util::StreamExt;
use plant_sim::nats::NatsServer;
use shopfloor_agent::audit::fleet::nats::{verify, NatsTarget};
use shopfloor_agent::audit::fleet::FleetCheck;

mod common;
use common::{arg, Chains};

fn main() {
    let records = arg("--records", 200_000);
    let gateways = arg("--gateways", 20).max(1);
    let server = NatsServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    rt.block_on(async {
        let client = async_nats::connect(url.as_str()).await.expect("connect");
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: "QUALITY".into(),
            subjects: vec!["quality.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
        let mut chains = Chains::new(gateways);
        let mut acks = futures_util::stream::FuturesOrdered::new();
        for i in 0..records {
            let r = chains.record(i);
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", r.id.as_str());
            for (name, value) in r.headers() {
                h.insert(name, value);
            }
            let subject = format!("quality.plant1.gw-{}.inspection", r.gateway);
            let ack = js
                .publish_with_headers(subject, h, r.body.into())
                .await
                .expect("publish");
            acks.push_back(std::future::IntoFuture::into_future(ack));
            if acks.len() >= 1000 {
                acks.next().await.expect("ack").expect("stored");
            }
        }
        while let Some(ack) = acks.next().await {
            ack.expect("stored");
        }
    });
    let published_s = started.elapsed().as_secs_f64();

    let target = NatsTarget {
        url,
        stream: "QUALITY".into(),
        ..NatsTarget::default()
    };
    // As the command: on a runtime of one thread.
    let one = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let report = one
        .block_on(verify(&target, FleetCheck::new(Default::default())))
        .expect("verify");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.messages, records as u64);
    println!(
        "{}",
        serde_json::json!({
            "bench": "nats_verify",
            "records": records,
            "gateways": gateways,
            "publish_s": (published_s * 10.0).round() / 10.0,
            "verify_s": (secs * 100.0).round() / 100.0,
            "verified_per_s": (records as f64 / secs).round(),
            "verdict": if report.ok() { "ok" } else { "broken" },
        })
    );
    drop(server);
}
