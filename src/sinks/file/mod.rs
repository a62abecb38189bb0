//! File sink: records as JSON Lines, rotated by size; for air-gapped plants, audits and the demo.
//!
//! Each line is `{"seq":…,"prev_hash":…,"hash":…,"record":{…}}`, so a file carries its own chain.
//! The sink appends to the active file (`path`, e.g. `out/records.jsonl`); a full file is renamed to
//! `records-<its first seq, 20 digits>.jsonl` beside it. Writes are fsynced before the cursor moves. At
//! start the sink reads the newest file's last complete line (dropping a torn one) and continues after
//! it, so a crash between write and acknowledgement neither loses nor duplicates a line.

pub mod config;
pub mod sink;

pub use config::FileSinkConfig;
pub use sink::FileSink;
