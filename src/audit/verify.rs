//! `verify`: re-walks the hash chain from the last retention checkpoint and names the first bad seq.

use serde::Serialize;

use crate::journal::chain::{canonical_json, chain_hash, decode_hex32, GENESIS};
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

/// Walks every row of the journal and checks each signature with `public_key` (hex), if given.
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
    if let Some((seq, hash)) = &report.checkpoint {
        if decode_hex32(hash).is_none() {
            report.problem = Some(Problem {
                seq: *seq,
                what: format!(
                    "the retention checkpoint's hash {} is not 64 hex digits: the checkpoint was altered",
                    short(hash)
                ),
            });
            return Ok(report);
        }
    }
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
                    let signature = row.signature.as_deref()?;
                    report.signed += 1;
                    let key = public_key?;
                    (!verify_signature(key, &row.hash, signature)).then(|| {
                        format!(
                            "signature does not verify with public key {}: the record's hash or its signature was altered, or another key signed it",
                            short(key)
                        )
                    })
                })
            };
            if let Some(what) = problem {
                report.problem = Some(Problem { seq: row.seq, what });
                return Ok(report);
            }
            report.checked += 1;
            report.last_seq = Some(row.seq);
            prev_seq = row.seq;
            prev_hash = row.hash.clone();
            report.head_hash = prev_hash.clone();
        }
        after = rows[rows.len() - 1].seq;
    }
    Ok(report)
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
