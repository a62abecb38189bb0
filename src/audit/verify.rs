//! `verify`: re-walks the hash chain from the last retention checkpoint and names the first bad seq,
//! then checks the chain's anchors (signatures, the signed checkpoint, the head seal, and that
//! nothing names a seq after the newest record: `journal::seal`).

use serde::Serialize;

use crate::journal::chain::{canonical_json, chain_hash, decode_hex32, to_hex, GENESIS};
use crate::journal::seal;
use crate::journal::signing::verify_signature;
use crate::journal::{JournalError, Store};

/// The result of a chain walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows checked.
    pub checked: u64,
    /// First seq checked (none for an empty journal).
    pub first_seq: Option<i64>,
    /// Last seq checked.
    pub last_seq: Option<i64>,
    /// The retention checkpoint the walk started from, as (seq, hash).
    pub checkpoint: Option<(i64, String)>,
    /// Hash of the last row: publish it to anchor the chain.
    pub head_hash: String,
    /// Rows carrying a signature.
    pub signed: u64,
    /// The public key the signatures were checked with (None: not checked).
    pub signatures_checked_with: Option<String>,
    /// The first problem found.
    pub problem: Option<Problem>,
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first seq that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub what: String,
}

impl VerifyReport {
    /// Whether the whole chain verified.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks every row of the journal (signatures are not checked).
pub fn verify(store: &Store) -> Result<VerifyReport, JournalError> {
    verify_signed(store, None)
}

/// Walks every row of the journal and checks each signature with `public_key` (hex), if given;
/// then checks the chain's anchors (see `journal::seal`): nothing names a seq after the newest
/// record, and the head seal matches.
///
/// With a key, signatures are required: from a signed retention checkpoint on, from the
/// `signing_key_created` event of that key on, and after the first record that carries a valid
/// signature (signing, once on, stays on); a journal holding no signature at all fails too.
pub fn verify_signed(
    store: &Store,
    public_key: Option<&str>,
) -> Result<VerifyReport, JournalError> {
    let checkpoint = store.checkpoint()?;
    let (mut prev_seq, mut prev_hash) = match &checkpoint {
        Some(c) => (c.seq, c.hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    let mut report = VerifyReport {
        checked: 0,
        first_seq: None,
        last_seq: None,
        checkpoint: checkpoint.map(|c| (c.seq, c.hash)),
        head_hash: prev_hash.clone(),
        signed: 0,
        signatures_checked_with: public_key.map(str::to_string),
        problem: None,
    };
    // Signatures are required from this seq on (with a key).
    let mut signed_from: Option<i64> = None;
    if let Some((seq, hash)) = report.checkpoint.clone() {
        let (seq, hash) = (&seq, &hash);
        if decode_hex32(hash).is_none() {
            return Ok(report.broken(
                *seq,
                format!(
                    "the retention checkpoint's hash {} is not 64 hex digits: the checkpoint was altered",
                    short(hash)
                ),
            ));
        }
        if let Some(key) = public_key {
            let digest = seal::checkpoint_digest(*seq, hash).map(|d| to_hex(&d));
            match (store.checkpoint_signature()?, digest) {
                (Some(sig), Some(d)) if verify_signature(key, &d, &sig) => signed_from = Some(*seq),
                (Some(_), _) => {
                    return Ok(report.broken(
                        *seq,
                        format!(
                            "the retention checkpoint's signature does not verify with public key {}: the checkpoint was altered or inserted",
                            short(key)
                        ),
                    ))
                }
                (None, _) => {
                    return Ok(report.broken(
                        *seq,
                        "the retention checkpoint carries no signature although signatures are checked: it was inserted or altered (a checkpoint written before signing was on has none: the next retention run replaces it)".to_string(),
                    ))
                }
            }
        }
    }
    let data_dir = store
        .path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let head_seal = match seal::read(&data_dir) {
        Ok(s) => s,
        Err(e) => return Ok(report.broken(prev_seq + 1, e.to_string())),
    };
    let mut sealed_hash: Option<String> = None;
    let mut after = i64::MIN;
    loop {
        let rows = store.read_after(after, 10_000)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            report.first_seq.get_or_insert(row.seq);
            let problem = if row.seq != prev_seq + 1 {
                Some(if row.seq > prev_seq + 1 {
                    format!(
                        "follows seq {prev_seq}: rows {}..{} are missing (deleted outside retention)",
                        prev_seq + 1,
                        row.seq - 1
                    )
                } else {
                    format!("follows seq {prev_seq}: sequence out of order")
                })
            } else if chain_hash(&prev_hash, row.body.as_bytes()) != row.hash {
                Some(format!(
                    "record body does not match its hash chained from seq {prev_seq} ({}): the record, its hash or a row before it was altered",
                    short(&prev_hash)
                ))
            } else {
                check_columns(row).or_else(|| {
                    check_signature(row, public_key, &mut signed_from, &mut report.signed)
                })
            };
            if let Some(what) = problem {
                return Ok(report.broken(row.seq, what));
            }
            if head_seal.as_ref().is_some_and(|s| s.seq == row.seq) {
                sealed_hash = Some(row.hash.clone());
            }
            report.checked += 1;
            report.last_seq = Some(row.seq);
            prev_seq = row.seq;
            prev_hash = row.hash.clone();
            report.head_hash = prev_hash.clone();
        }
        after = rows[rows.len() - 1].seq;
    }
    if let (Some(key), 0, Some(first)) = (public_key, report.signed, report.first_seq) {
        return Ok(report.broken(
            first,
            format!(
                "no record carries a signature although signatures are checked with public key {}: the signatures were removed, or this journal was never signed (check it without --public-key)",
                short(key)
            ),
        ));
    }
    // The end of the chain: nothing may name a seq after it.
    let head = prev_seq;
    if let Some(b) = store.references_beyond(head)?.first() {
        return Ok(report.broken(head + 1, b.describe(head)));
    }
    if let Some(s) = &head_seal {
        if let Some(what) = check_seal(s, head, sealed_hash.as_deref(), public_key) {
            let at = if s.seq > head { head + 1 } else { s.seq };
            return Ok(report.broken(at, what));
        }
    }
    Ok(report)
}

impl VerifyReport {
    fn broken(mut self, seq: i64, what: String) -> VerifyReport {
        self.problem = Some(Problem { seq, what });
        self
    }
}

/// The signature rule of one row (see [`verify_signed`]); counts signed rows.
fn check_signature(
    row: &crate::journal::JournalRow,
    public_key: Option<&str>,
    signed_from: &mut Option<i64>,
    signed: &mut u64,
) -> Option<String> {
    let key = match (row.signature.as_deref(), public_key) {
        (Some(_), None) => {
            *signed += 1;
            return None;
        }
        (_, None) => return None,
        (_, Some(k)) => k,
    };
    match row.signature.as_deref() {
        Some(sig) => {
            *signed += 1;
            if !verify_signature(key, &row.hash, sig) {
                return Some(format!(
                    "signature does not verify with public key {}: the record's hash or its signature was altered, or another key signed it",
                    short(key)
                ));
            }
            signed_from.get_or_insert(row.seq);
        }
        None => {
            if let Some(from) = signed_from {
                return Some(format!(
                    "record carries no signature although records are signed from seq {from} on: its signature was removed (or signing was turned off)"
                ));
            }
        }
    }
    if row.kind == "agent_event" && row.body.contains("signing_key_created") {
        let created = serde_json::from_str::<serde_json::Value>(&row.body)
            .ok()
            .is_some_and(|v| {
                v["agent_event"]["event"] == "signing_key_created"
                    && v["agent_event"]["details"]["public_key"] == key
            });
        if created {
            signed_from.get_or_insert(row.seq);
        }
    }
    None
}

/// What is wrong with the head seal, if anything; `sealed_hash` is the hash of the row at the
/// sealed seq (`None` when it is not in the journal).
fn check_seal(
    s: &seal::Seal,
    head: i64,
    sealed_hash: Option<&str>,
    public_key: Option<&str>,
) -> Option<String> {
    if let Some(b) = s.beyond(head) {
        return Some(b.describe(head));
    }
    if sealed_hash.is_some_and(|h| h != s.hash) {
        return Some(format!(
            "the record at seq {} is not the one the head seal written at {} names ({}): records from there on were replaced",
            s.seq,
            s.sealed_at,
            short(&s.hash)
        ));
    }
    let key = public_key?;
    let digest = seal::seal_digest(s.seq, &s.hash).map(|d| to_hex(&d));
    match (&s.signature, digest) {
        (Some(sig), Some(d)) if verify_signature(key, &d, sig) => None,
        (Some(_), _) => Some(format!(
            "the head seal's signature does not verify with public key {}: the seal was altered",
            short(key)
        )),
        (None, _) => Some(
            "the head seal carries no signature although signatures are checked: the seal was replaced"
                .to_string(),
        ),
    }
}

fn check_columns(row: &crate::journal::JournalRow) -> Option<String> {
    let value: serde_json::Value = match serde_json::from_str(&row.body) {
        Ok(v) => v,
        Err(e) => return Some(format!("record body is not JSON: {e}")),
    };
    if canonical_json(&value) != row.body {
        return Some("record body is not in canonical form".to_string());
    }
    if value.get("kind").and_then(|v| v.as_str()) != Some(row.kind.as_str()) {
        return Some(format!(
            "kind column {} does not match the record",
            row.kind
        ));
    }
    None
}

fn short(h: &str) -> String {
    h.chars().take(12).collect::<String>() + "…"
}
