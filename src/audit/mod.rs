//! Audit tools that read the journal: `verify` (the hash chain) and `status` (health for OT staff).

pub mod status;
pub mod verify;
