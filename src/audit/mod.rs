//! Audit tools that read the journal: `verify` (the hash chain), `status` (health for OT staff)
//! `trace` (the thread of a part, lot, work order or gauge) and `export` (evidence packages, checked
//! offline by `verify --package`), `replay` and `dead-letters` (re-send requests the running agent
//! performs) and reconciliation (`status --by`).

pub mod export;
pub mod reconcile;
pub mod resend;
pub mod status;
pub mod trace;
pub mod verify;
