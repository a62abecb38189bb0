//! Anchors of the chain's ends, so that removing records from either end is found.
//!
//! - **Head seal** (`<data_dir>/head.seal`, JSON): the seq and hash of the newest durable record,
//!   written (atomically: temporary file, fsync, rename, fsync of the directory) at every clean stop
//!   and every `journal.seal_interval_s` while records come. With signing on it carries an Ed25519
//!   signature over [`seal_digest`]. It lives outside the database, so deleting the newest rows does
//!   not delete it too; `verify` fails when the journal ends before the seal, or holds another hash
//!   at the sealed seq, or (with a key) the seal's signature does not verify or is missing; `run`
//!   refuses to start on such a journal.
//! - **References beyond the head** ([`Store::references_beyond`]): sink cursors, dead letters,
//!   replay requests and receipts name seqs; one beyond the newest record means records were removed
//!   (or the journal was restored from an older copy). `verify` fails and `run` refuses to start:
//!   appending would reuse seqs the sinks already hold, and they would never be delivered.
//! - **Signed retention checkpoint**: with signing on, a checkpoint carries a signature over
//!   [`checkpoint_digest`], so deleting the oldest rows and inserting a matching checkpoint fails.
//!
//! Digests are domain-separated from the records' signatures (which sign the chain hash itself), so
//! a record's signature can never pass for a checkpoint's or a seal's.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::decode_hex32;
use super::JournalError;

/// The seal file, relative to the data directory.
pub const SEAL_FILE: &str = "head.seal";

/// The head seal as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The newest durable seq when sealed.
    pub seq: i64,
    /// Its chain hash (hex).
    pub hash: String,
    /// When (RFC 3339).
    pub sealed_at: String,
    /// Ed25519 signature of [`seal_digest`] (hex), with signing on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Seal {
    /// The seal as a reference beyond `head`, when it names a later seq.
    pub fn beyond(&self, head: i64) -> Option<Beyond> {
        (self.seq > head).then(|| Beyond {
            what: format!("the head seal written at {}", self.sealed_at),
            seq: self.seq,
        })
    }
}

fn digest(domain: &[u8], seq: i64, hash_hex: &str) -> Option<[u8; 32]> {
    let hash = decode_hex32(hash_hex)?;
    let mut h = Sha256::new();
    h.update(domain);
    h.update(seq.to_be_bytes());
    h.update(hash);
    Some(h.finalize().into())
}

/// What a head seal's signature signs: SHA-256 of `"shopfloor-agent head seal\0" ‖ seq (8 bytes,
/// big-endian) ‖ hash (32 bytes)`. `None` for a hash that is not 64 hex digits.
pub fn seal_digest(seq: i64, hash_hex: &str) -> Option<[u8; 32]> {
    digest(b"shopfloor-agent head seal\0", seq, hash_hex)
}

/// What a retention checkpoint's signature signs: as [`seal_digest`] with the domain
/// `"shopfloor-agent checkpoint\0"`.
pub fn checkpoint_digest(seq: i64, hash_hex: &str) -> Option<[u8; 32]> {
    digest(b"shopfloor-agent checkpoint\0", seq, hash_hex)
}

/// The seal file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SEAL_FILE)
}

/// Reads the seal of `data_dir`; `None` if there is none. A seal that cannot be read is an error
/// (it was damaged or replaced).
pub fn read(data_dir: &Path) -> Result<Option<Seal>, SealError> {
    let p = path(data_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SealError::Unreadable {
                path: p,
                error: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SealError::Altered {
            path: p,
            error: e.to_string(),
        })
}

/// A head seal that is there but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The file exists and cannot be read.
    #[error("cannot read the head seal {}: {error}", .path.display())]
    Unreadable {
        /// The seal file.
        path: PathBuf,
        /// The error of the file system.
        error: String,
    },
    /// The file is not a seal: it was altered.
    #[error("the head seal {} is not a seal ({error}): it was altered", .path.display())]
    Altered {
        /// The seal file.
        path: PathBuf,
        /// What the parser found.
        error: String,
    },
}

/// Writes the seal of `data_dir` atomically and durably.
pub fn write(data_dir: &Path, seal: &Seal) -> Result<(), JournalError> {
    let p = path(data_dir);
    let tmp = p.with_extension("seal.tmp");
    let text = serde_json::to_vec(seal).map_err(|e| JournalError::Failed(e.to_string()))?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

/// A reference to a seq beyond the journal's newest record: what holds it and the seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beyond {
    /// `sink qms's cursor`, `a dead letter of sink qms`, `the head seal`, …
    pub what: String,
    /// The seq it names.
    pub seq: i64,
}

impl Beyond {
    /// The words for `verify` and for `run`'s refusal.
    pub fn describe(&self, head: i64) -> String {
        format!(
            "records after seq {head} are missing: {} names seq {} (records were deleted from the journal's end, or it was restored from an older copy)",
            self.what, self.seq
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_bind_the_seq_and_are_domain_separated() {
        let h = "ab".repeat(32);
        let a = seal_digest(5, &h).expect("digest");
        assert_ne!(Some(a), seal_digest(6, &h));
        assert_ne!(Some(a), checkpoint_digest(5, &h));
        assert_eq!(seal_digest(5, "not hex"), None);
    }

    #[test]
    fn a_seal_is_written_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(read(dir.path()), Ok(None));
        let s = Seal {
            seq: 7,
            hash: "cd".repeat(32),
            sealed_at: "2026-01-01T00:00:00Z".into(),
            signature: None,
        };
        write(dir.path(), &s).expect("write");
        assert_eq!(read(dir.path()), Ok(Some(s)));
        std::fs::write(path(dir.path()), "{").expect("damage");
        assert!(read(dir.path()).is_err());
    }
}
