//! Drain benchmark (placeholder until written).
fn main() {}
