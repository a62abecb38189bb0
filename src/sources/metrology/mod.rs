//! Metrology result files: what coordinate measuring machines, vision systems and SPC stations
//! write after measuring a part, read into one [`Measured`] per characteristic.
//!
//! | file | what |
//! |---|---|
//! | `measured.rs` | [`Measured`]: what every format parser gives, each field with its place in the file |
//! | `qif.rs` | QIF 3.0 Results (ISO 23952): two streaming passes, plans in other files joined by QPId |
//! | `folder.rs` | a watched folder: which files are complete (stable, renamed in, marked), `processed/`, `failed/` |
//! | `aqdef.rs` | Q-DAS AQDEF: K-lines and compact value lines, `.dfq` or `.dfd` + `.dfx`, Windows-1252 |
//!
//! Each format parser is pure (bytes in, measurements out: no file system, no clock, no
//! journal); `folder.rs` is the file-system side.

pub mod aqdef;
pub mod folder;
pub mod measured;
pub mod qif;

pub use measured::{Located, Measured};
