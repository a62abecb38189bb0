//! Audit tools that read the journal: `verify` (the hash chain), `status` (health for OT staff)
//! and `trace` (the thread of a part, lot, work order or gauge).

pub mod status;
pub mod trace;
pub mod verify;
