//! The metrology parsers alone: characteristics per second read from a QIF results document and
//! an AQDEF file held in memory, on one core (both QIF passes included; no journal, no disk).
//!
//! `cargo bench --bench metrology`. `METROLOGY_BENCH_PARTS` parts (default 2,000) of 50
//! characteristics each: 100,000 characteristics per format.

use std::time::Instant;

use shopfloor_agent::sources::metrology::aqdef::{Aqdef, AqdefError, Encoding};
use shopfloor_agent::sources::metrology::qif::{Index, Plans, QifError};

const PER_PART: usize = 50;

fn aqdef(parts: usize) -> String {
    let mut s = format!("K0100 {PER_PART}\nK1001/1 PN-778\n");
    for c in 1..=PER_PART {
        s.push_str(&format!(
            "K2001/{c} D{c}\nK2101/{c} 25\nK2110/{c} 24.98\nK2111/{c} 25.02\nK2142/{c} mm\n"
        ));
    }
    for p in 0..parts {
        for c in 1..=PER_PART {
            s.push_str(&format!(
                "K0001/{c} 25.00{}\nK0004/{c} 03.12.2026/10:15:30\nK0012/{c} MIC-0042\nK0014/{c} SN-{p:06}\n",
                c % 10
            ));
        }
    }
    s
}

fn report(format: &str, n: usize, bytes: usize, start: Instant) {
    let s = start.elapsed().as_secs_f64();
    println!(
        "metrology bench ({format}): {n} characteristics from {:.1} MB in {s:.2} s = {:.0} characteristics/s, {:.0} MB/s, on one core",
        bytes as f64 / 1e6,
        n as f64 / s,
        bytes as f64 / 1e6 / s
    );
}

fn main() {
    let parts: usize = std::env::var("METROLOGY_BENCH_PARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);

    let doc = plant_sim::cmm::qif_results(parts, PER_PART);
    let start = Instant::now();
    let index = Index::read(doc.as_bytes()).expect("index");
    let mut n = 0usize;
    index
        .measurements(doc.as_bytes(), &Plans::new(), |m| {
            n += usize::from(m.value.is_some() && m.serial.is_some());
            Ok::<(), QifError>(())
        })
        .expect("measurements");
    assert_eq!(
        n,
        parts * PER_PART,
        "every characteristic with value and serial"
    );
    report("QIF 3.0, both passes", n, doc.len(), start);

    let text = aqdef(parts);
    let start = Instant::now();
    let mut reader = Aqdef::new(Encoding::Detect);
    let mut n = 0usize;
    let mut emit = |m: shopfloor_agent::sources::metrology::Measured| {
        n += usize::from(m.value.is_some() && m.serial.is_some());
        Ok::<(), AqdefError>(())
    };
    reader
        .read(text.as_bytes(), "bench.dfq", &mut emit)
        .expect("read");
    reader.finish(&mut emit).expect("finish");
    assert_eq!(n, parts * PER_PART, "every value with its serial");
    report("Q-DAS AQDEF K-lines", n, text.len(), start);
}
