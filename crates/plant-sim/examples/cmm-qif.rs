//! Prints the QIF results file the demo's CMM drops for one part (`plant::Plant::cmm_measures`),
//! one bore out of tolerance, for `tests/interop/metrology.sh` to validate against the QIF 3.0
//! schema.
//!
//! `cargo run -p plant-sim --example cmm-qif > part.qif`

fn main() {
    print!(
        "{}",
        plant_sim::cmm::qif_part(
            "SN-000007",
            "2026-12-04T01:00:00.000Z",
            &[("BORE-2", 12.0, 0.02, 12.041), ("LEN-1", 80.0, 0.1, 80.02)],
        )
    );
}
