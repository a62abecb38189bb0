//! Optional Ed25519 signatures (`journal.sign = true`): each record's chain hash is signed with the
//! gateway's key, so a journal or evidence package rewritten with a consistent new chain still fails
//! `verify` against the gateway's public key.
//!
//! - The key is created on the first run with signing on: `<data_dir>/keys/gateway-ed25519.pk8`
//!   (PKCS#8), directory mode 0700, file mode 0600, owned by the agent's user. It never leaves the
//!   gateway; back it up with the journal if the journal must stay verifiable after a disk loss.
//! - `shopfloor-agent public-key` prints the public key (hex) for the QMS or the quality manager to
//!   keep; an `agent_event` record `signing_key_created` also carries it in the chain.
//! - What is signed: the 32 bytes of the record's chain hash (`hash` decoded from hex). The
//!   signature (64 bytes, hex) is the `signature` column, and `signature` in an evidence package's
//!   `chain.jsonl`.
//! - `verify` checks every signature with the key given by `--public-key`, else the gateway's key
//!   file. A key found only inside the journal proves nothing about who signed, and is not used.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use super::chain::to_hex;
use super::JournalError;

/// The key file, relative to the data directory.
pub const KEY_FILE: &str = "keys/gateway-ed25519.pk8";

/// The gateway's signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.public_key_hex())
    }
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

fn io(path: &Path, what: &str, e: std::io::Error) -> JournalError {
    JournalError::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

impl Signer {
    /// The key of `data_dir`, if there is one.
    pub fn load(data_dir: &Path) -> Result<Option<Signer>, JournalError> {
        let path = key_path(data_dir);
        let der = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "cannot read the signing key", e)),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| {
            JournalError::Unreadable(format!(
                "signing key {} is not an Ed25519 PKCS#8 key ({e}); restore it from the backup",
                path.display()
            ))
        })?;
        Ok(Some(Signer { pair }))
    }

    /// The key of `data_dir`, created (mode 0600) if there is none; `true` if it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Signer, bool), JournalError> {
        if let Some(s) = Self::load(data_dir)? {
            return Ok((s, false));
        }
        let path = key_path(data_dir);
        let dir = path.parent().unwrap_or(data_dir);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, "cannot create the key directory", e))?;
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
            JournalError::Failed(
                "the system's random source failed while making the signing key".into(),
            )
        })?;
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io(&path, "cannot create the signing key", e))?
        };
        file.write_all(pkcs8.as_ref())
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&path, "cannot write the signing key", e))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| JournalError::Failed(format!("the new signing key is unusable: {e}")))?;
        Ok((Signer { pair }, true))
    }

    /// The public key, hex (64 characters).
    pub fn public_key_hex(&self) -> String {
        to_hex(self.pair.public_key().as_ref())
    }

    /// The signature (hex) of a record's chain hash, given as its 32 raw bytes (the writer's form).
    pub fn sign(&self, hash: &[u8; 32]) -> String {
        to_hex(self.pair.sign(hash).as_ref())
    }
}

/// Whether `signature_hex` is the signature of `hash_hex` by `public_key_hex`.
pub fn verify_signature(public_key_hex: &str, hash_hex: &str, signature_hex: &str) -> bool {
    match (
        from_hex(public_key_hex),
        from_hex(hash_hex),
        from_hex(signature_hex),
    ) {
        (Some(key), Some(hash), Some(sig)) => UnparsedPublicKey::new(&ED25519, key)
            .verify(&hash, &sig)
            .is_ok(),
        _ => false,
    }
}

/// Whether `s` looks like an Ed25519 public key in hex.
pub fn is_public_key_hex(s: &str) -> bool {
    s.len() == 64 && from_hex(s).is_some()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_signs_hashes_it_verifies() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sfa-sign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (signer, created) = Signer::load_or_create(&dir).expect("key");
        assert!(created);
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = Signer::load_or_create(&dir).expect("key");
        assert!(!created);
        assert_eq!(again.public_key_hex(), signer.public_key_hex());

        let hash = "ab".repeat(32);
        let sig = signer.sign(&[0xab; 32]);
        assert_eq!(sig.len(), 128);
        let key = signer.public_key_hex();
        assert!(verify_signature(&key, &hash, &sig));
        assert!(
            !verify_signature(&key, &"ac".repeat(32), &sig),
            "another hash"
        );
        let other = Signer::load_or_create(&dir.join("other")).expect("key").0;
        assert!(
            !verify_signature(&other.public_key_hex(), &hash, &sig),
            "another key"
        );
        assert!(!verify_signature(&key, &hash, "zz"), "not hex");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
