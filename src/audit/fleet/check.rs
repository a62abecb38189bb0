//! The checks of `fleet verify`, independent of where the records are read from: one [`Chain`] per
//! gateway, fed the records in any order.
//!
//! Per record: its body hashes, with its `prev_hash`, to its `hash` (altered on the way otherwise);
//! its seq was not seen before with another hash (the gateway's journal was shortened or rewritten
//! after it had sent that seq, and the gateway sent new records under old seqs); its `prev_hash` is
//! the hash the stream holds for the seq before (a journal re-forged with a re-computed chain: the
//! first record sent after the forgery no longer chains to what was delivered); its signature
//! verifies with the gateway's key, and it carries one once the gateway signs. At the end: no seq
//! between the first and the last is missing.
//!
//! Signatures are judged in any order too: a signed record read before the gateway's key
//! announcement is kept (seq, hash, signature) until the key is known; records without a signature
//! are kept as seq ranges, and at the end every one after the first signed seq is a problem.
//!
//! Memory: 17 bytes per record (the first 16 bytes of each hash, by seq), so a stream of 10 million
//! records takes about 170 MB. 16 bytes of SHA-256 still make a forged match a 2^128 search. Plus
//! about 200 bytes for each signed record read before its key (a Kafka topic read partition by
//! partition), and 16 bytes per run of unsigned seqs.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::journal::chain::{chain_hash_raw, decode_hex32, to_hex};
use crate::journal::signing::verify_signature;

/// Problems kept per gateway (the count goes on).
const MAX_PROBLEMS: usize = 20;

/// One gateway record as read from the stream.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The journal seq.
    pub seq: i64,
    /// Record kind (`agent_event` for the key announcement).
    pub kind: &'a str,
    /// `prev_hash`, hex.
    pub prev_hash: &'a str,
    /// `hash`, hex.
    pub hash: &'a str,
    /// Signature, hex.
    pub signature: Option<&'a str>,
    /// The record as journaled (canonical JSON).
    pub body: &'a [u8],
}

/// The verdict on one gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// The gateway id.
    pub gateway: String,
    /// Distinct seqs seen.
    pub records: u64,
    /// Lowest seq seen (above 1 when older records are not in the stream: its limits, or the sink
    /// was added later).
    pub first_seq: i64,
    /// Highest seq seen.
    pub last_seq: i64,
    /// Hash of the highest seq: the gateway's head as the stream holds it.
    pub last_hash: String,
    /// The same record again (a resend after the server's duplicate window): not a problem.
    pub duplicates: u64,
    /// Records with a signature that verified.
    pub signed: u64,
    /// Records with a signature that could not be checked: no key was given and none announced
    /// in the stream (its announcement is older than what the stream keeps). Not a problem by
    /// itself; `--public-keys` checks them.
    pub unchecked_signatures: u64,
    /// The key the signatures were checked with, and where it came from.
    pub key: Option<String>,
    /// `given` (`--public-keys`) or `announced at seq N` (its `signing_key_created` event).
    pub key_from: Option<String>,
    /// Problems (the first 20).
    pub problems: Vec<String>,
    /// All problems found.
    pub problems_total: u64,
}

impl GatewayReport {
    /// Whether the gateway's chain verified.
    pub fn ok(&self) -> bool {
        self.problems_total == 0
    }
}

/// What is known of one gateway's chain.
#[derive(Debug, Default)]
pub struct Chain {
    /// seq of `hashes[0]`.
    base: i64,
    /// First 16 bytes of each seq's hash (None: not seen).
    hashes: VecDeque<Option<[u8; 16]>>,
    /// `prev_hash` (first 16 bytes) of records whose predecessor had not arrived.
    unlinked: HashMap<i64, [u8; 16]>,
    records: u64,
    duplicates: u64,
    signed: u64,
    key: Option<(String, String)>,
    /// The lowest seq known to be signed (a verified signature, or the key's announcement):
    /// every record after it must carry a signature. Known only at the end, as records come in
    /// any order.
    signs_from: Option<i64>,
    /// Seqs of records without a signature, as ranges (start → end), judged at the end against
    /// `signs_from`.
    unsigned: std::collections::BTreeMap<i64, i64>,
    /// Signed records that arrived before the key was known (seq, hash, signature): checked
    /// once it is (announced later in the stream), else counted as unchecked.
    early: Vec<(i64, String, String)>,
    last_hash: String,
    problems: Vec<String>,
    problems_total: u64,
}

fn short(h: &[u8; 16]) -> String {
    to_hex(&h[..6])
}

fn prefix(h: &[u8; 32]) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&h[..16]);
    p
}

impl Chain {
    /// A chain whose signatures are checked with `key` (hex) given by the auditor.
    pub fn with_key(key: Option<String>) -> Chain {
        Chain {
            key: key.map(|k| (k, "given".to_string())),
            ..Chain::default()
        }
    }

    fn problem(&mut self, what: String) {
        self.problems_total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what);
        }
    }

    fn slot(&mut self, seq: i64) -> &mut Option<[u8; 16]> {
        if self.hashes.is_empty() {
            self.base = seq;
        }
        while seq < self.base {
            self.hashes.push_front(None);
            self.base -= 1;
        }
        let i = (seq - self.base) as usize;
        if i >= self.hashes.len() {
            self.hashes.resize(i + 1, None);
        }
        &mut self.hashes[i]
    }

    fn get(&self, seq: i64) -> Option<[u8; 16]> {
        if seq < self.base {
            return None;
        }
        self.hashes
            .get((seq - self.base) as usize)
            .copied()
            .flatten()
    }

    /// Checks one record and takes it into the chain.
    pub fn add(&mut self, e: Entry<'_>) {
        let seq = e.seq;
        let (Some(prev), Some(hash)) = (decode_hex32(e.prev_hash), decode_hex32(e.hash)) else {
            self.problem(format!(
                "seq {seq}: prev_hash or hash is not 64 hex digits: the message was altered"
            ));
            return;
        };
        if seq < 1 {
            self.problem(format!(
                "seq {seq} is not a journal seq: the message was altered"
            ));
            return;
        }
        if chain_hash_raw(&prev, e.body) != hash {
            self.problem(format!(
                "seq {seq}: the record does not match its hash: it was altered after it left the gateway"
            ));
        }
        let (p16, h16) = (prefix(&prev), prefix(&hash));
        match *self.slot(seq) {
            Some(held) if held == h16 => {
                self.duplicates += 1;
                return;
            }
            Some(held) => {
                self.problem(format!(
                    "seq {seq} arrived twice with different hashes ({} and {}): the gateway's journal was shortened or rewritten after it had sent seq {seq}",
                    short(&held),
                    short(&h16)
                ));
                return;
            }
            None => *self.slot(seq) = Some(h16),
        }
        self.records += 1;
        if seq == 1 && prev != [0u8; 32] {
            self.problem("seq 1 does not chain to the genesis hash (32 zero bytes)".into());
        }
        match self.get(seq - 1) {
            Some(before) if before != p16 => self.problem(format!(
                "seq {seq} does not chain to seq {} in the stream (its prev_hash {}, the stream's seq {} has {}): the gateway's journal was rewritten up to seq {} after delivery",
                seq - 1,
                short(&p16),
                seq - 1,
                short(&before),
                seq - 1
            )),
            Some(_) => {}
            None if seq > 1 => {
                self.unlinked.insert(seq, p16);
            }
            None => {}
        }
        if let Some(next_prev) = self.unlinked.remove(&(seq + 1)) {
            if next_prev != h16 {
                self.problem(format!(
                    "seq {} does not chain to seq {seq} in the stream (its prev_hash {}, the stream's seq {seq} has {}): the gateway's journal was rewritten up to seq {seq} after delivery",
                    seq + 1,
                    short(&next_prev),
                    short(&h16)
                ));
            }
        }
        if seq >= self.last_seq() {
            self.last_hash = e.hash.to_string();
        }
        self.check_signature(&e);
    }

    fn last_seq(&self) -> i64 {
        self.base + self.hashes.len() as i64 - 1
    }

    fn check_signature(&mut self, e: &Entry<'_>) {
        let seq = e.seq;
        if e.kind == "agent_event" {
            if let Some(announced) = announced_key(e.body) {
                match &self.key {
                    None => {
                        self.key = Some((announced, format!("announced at seq {seq}")));
                        self.signs_from = Some(self.signs_from.map_or(seq, |f| f.min(seq)));
                    }
                    Some((k, _)) if *k == announced => {
                        self.signs_from = Some(self.signs_from.map_or(seq, |f| f.min(seq)));
                    }
                    Some((k, from)) => {
                        let what = format!(
                            "seq {seq} announces another signing key ({}…) than the one {from} ({}…): a second key is a new identity; check it with the gateway's owner",
                            &announced[..12.min(announced.len())],
                            &k[..12.min(k.len())]
                        );
                        self.problem(what);
                    }
                }
            }
        }
        match e.signature {
            None => self.unsigned_seq(seq),
            Some(sig) if self.key.is_none() => {
                self.early.push((seq, e.hash.to_string(), sig.to_string()))
            }
            Some(sig) => self.verify(seq, e.hash, sig),
        }
        if self.key.is_some() && !self.early.is_empty() {
            for (seq, hash, sig) in std::mem::take(&mut self.early) {
                self.verify(seq, &hash, &sig);
            }
        }
    }

    fn verify(&mut self, seq: i64, hash: &str, sig: &str) {
        let Some((key, _)) = &self.key else {
            return;
        };
        if verify_signature(key, hash, sig) {
            self.signed += 1;
            self.signs_from = Some(self.signs_from.map_or(seq, |f| f.min(seq)));
        } else {
            let what = format!(
                "seq {seq}: the signature does not verify with the gateway's key {}…: the record or its signature was forged",
                &key[..12.min(key.len())]
            );
            self.problem(what);
        }
    }

    /// Adds `seq` to the unsigned ranges, merging with its neighbours.
    fn unsigned_seq(&mut self, seq: i64) {
        let before = self
            .unsigned
            .range(..=seq)
            .next_back()
            .map(|(s, e)| (*s, *e));
        if before.is_some_and(|(_, end)| end >= seq) {
            return;
        }
        let mut start = seq;
        let mut end = seq;
        if let Some((s, e)) = before.filter(|(_, e)| *e == seq - 1) {
            start = s;
            end = e.max(seq);
        }
        if let Some(next_end) = self.unsigned.remove(&(seq + 1)) {
            end = next_end;
        }
        self.unsigned.insert(start, end);
    }

    /// Records after the first signed one that carry no signature (their signature was removed).
    fn unsigned_after_signing(&mut self) {
        let Some(from) = self.signs_from else {
            return;
        };
        let late: Vec<(i64, i64)> = self
            .unsigned
            .iter()
            .filter(|(_, end)| **end > from)
            .map(|(s, e)| ((*s).max(from + 1), *e))
            .collect();
        for (s, e) in late {
            let seqs = if s == e {
                format!("seq {s} carries")
            } else {
                format!("seqs {s}..{e} ({} records) carry", e - s + 1)
            };
            self.problem(format!(
                "{seqs} no signature although the gateway signs from seq {from} on: the signatures were removed"
            ));
        }
    }

    /// The verdict, with the seqs missing between the first and the last.
    pub fn finish(mut self, gateway: &str) -> GatewayReport {
        self.unsigned_after_signing();
        let mut missing: Vec<(i64, i64)> = Vec::new();
        for (i, h) in self.hashes.iter().enumerate() {
            if h.is_none() {
                let seq = self.base + i as i64;
                match missing.last_mut() {
                    Some((_, to)) if *to == seq - 1 => *to = seq,
                    _ => missing.push((seq, seq)),
                }
            }
        }
        for (from, to) in missing {
            self.problem(if from == to {
                format!("seq {from} is missing from the stream")
            } else {
                format!(
                    "seqs {from}..{to} ({} records) are missing from the stream",
                    to - from + 1
                )
            });
        }
        let last_seq = self.last_seq();
        let (key, key_from) = match self.key {
            Some((k, f)) => (Some(k), Some(f)),
            None => (None, None),
        };
        GatewayReport {
            gateway: gateway.to_string(),
            records: self.records,
            first_seq: self.base,
            last_seq,
            last_hash: self.last_hash,
            duplicates: self.duplicates,
            signed: self.signed,
            unchecked_signatures: self.early.len() as u64,
            key,
            key_from,
            problems: self.problems,
            problems_total: self.problems_total,
        }
    }
}

/// The public key of a `signing_key_created` event.
fn announced_key(body: &[u8]) -> Option<String> {
    if !body
        .windows(b"signing_key_created".len())
        .any(|w| w == b"signing_key_created")
    {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v["agent_event"]["event"] != "signing_key_created" {
        return None;
    }
    v["agent_event"]["details"]["public_key"]
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::chain::GENESIS;

    /// A chain of `n` records (seq, prev, hash, body).
    fn chain(n: i64, salt: &str) -> Vec<(i64, String, String, String)> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let body = format!("{{\"n\":{seq},\"s\":\"{salt}\"}}");
                let hash = crate::journal::chain::chain_hash(&prev, body.as_bytes());
                let row = (seq, prev.clone(), hash.clone(), body);
                prev = hash;
                row
            })
            .collect()
    }

    fn feed(c: &mut Chain, rows: &[(i64, String, String, String)]) {
        for (seq, prev, hash, body) in rows {
            c.add(Entry {
                seq: *seq,
                kind: "inspection",
                prev_hash: prev,
                hash,
                signature: None,
                body: body.as_bytes(),
            });
        }
    }

    #[test]
    fn a_whole_chain_in_any_order_with_resends_verifies() {
        let rows = chain(50, "a");
        let mut c = Chain::default();
        let mut shuffled = rows.clone();
        shuffled.reverse();
        shuffled.swap(3, 40);
        feed(&mut c, &shuffled);
        feed(&mut c, &rows[10..20]);
        let r = c.finish("gw");
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(
            (r.records, r.duplicates, r.first_seq, r.last_seq),
            (50, 10, 1, 50)
        );
        assert_eq!(r.last_hash, rows[49].2);
    }

    #[test]
    fn a_gap_a_rewrite_an_altered_body_and_a_broken_link_are_each_named() {
        let rows = chain(30, "a");
        let mut c = Chain::default();
        feed(&mut c, &rows[..10]);
        feed(&mut c, &rows[12..]);
        let r = c.finish("gw");
        assert_eq!(
            r.problems,
            vec!["seqs 11..12 (2 records) are missing from the stream"]
        );

        // The journal shortened to seq 20, then new records under seqs 21.. (another chain).
        let other = chain(30, "b");
        let mut c = Chain::default();
        feed(&mut c, &rows);
        feed(&mut c, &other[20..21]);
        let r = c.finish("gw");
        assert!(
            r.problems[0].contains("seq 21 arrived twice with different hashes"),
            "{:?}",
            r.problems
        );

        // Re-forged: seqs 1..30 delivered, then seq 31 chains to a re-computed seq 30.
        let mut forged = rows.clone();
        forged.push((31, other[29].2.clone(), String::new(), "{\"n\":31}".into()));
        forged[30].2 = crate::journal::chain::chain_hash(&forged[30].1, forged[30].3.as_bytes());
        let mut c = Chain::default();
        feed(&mut c, &forged);
        let r = c.finish("gw");
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("seq 31 does not chain to seq 30"));

        // A body altered on the way.
        let mut altered = rows.clone();
        altered[4].3 = altered[4].3.replace("\"a\"", "\"x\"");
        let mut c = Chain::default();
        feed(&mut c, &altered);
        let r = c.finish("gw");
        assert!(r.problems[0].starts_with("seq 5: the record does not match its hash"));
    }

    #[test]
    fn signatures_follow_the_announced_key_and_may_not_stop() {
        let dir = tempfile::tempdir().expect("dir");
        let (signer, _) = crate::journal::signing::Signer::load_or_create(dir.path()).expect("key");
        let key = signer.public_key_hex();
        let event = format!(
            "{{\"agent_event\":{{\"details\":{{\"public_key\":\"{key}\"}},\"event\":\"signing_key_created\"}}}}"
        );
        let mut prev = GENESIS.to_string();
        let mut rows = Vec::new();
        for seq in 1..=5i64 {
            let body = if seq == 1 {
                event.clone()
            } else {
                format!("{{\"n\":{seq}}}")
            };
            let hash = crate::journal::chain::chain_hash(&prev, body.as_bytes());
            let sig = signer.sign(&decode_hex32(&hash).expect("hash"));
            rows.push((seq, prev.clone(), hash.clone(), body, Some(sig)));
            prev = hash;
        }
        let run = |rows: &[(i64, String, String, String, Option<String>)]| {
            let mut c = Chain::default();
            for (seq, prev, hash, body, sig) in rows {
                c.add(Entry {
                    seq: *seq,
                    kind: "agent_event",
                    prev_hash: prev,
                    hash,
                    signature: sig.as_deref(),
                    body: body.as_bytes(),
                });
            }
            c.finish("gw")
        };
        let r = run(&rows);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(
            (r.signed, r.key_from.as_deref()),
            (5, Some("announced at seq 1"))
        );
        let mut stripped = rows.clone();
        stripped[3].4 = None;
        assert!(run(&stripped).problems[0].contains("seq 4 carries no signature"));
        let mut wrong = rows.clone();
        wrong[2].4 = rows[1].4.clone();
        assert!(run(&wrong).problems[0].contains("seq 3: the signature does not verify"));
        // In any order (partitions read one after the other): the announcement last.
        let reversed: Vec<_> = rows.iter().rev().cloned().collect();
        let r = run(&reversed);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.signed, 5);
        let mut stripped: Vec<_> = reversed.clone();
        stripped[1].4 = None;
        stripped[2].4 = None;
        assert!(
            run(&stripped).problems[0].contains("seqs 3..4 (2 records) carry no signature"),
            "{:?}",
            run(&stripped).problems
        );
        let mut forged = reversed.clone();
        forged[0].4 = rows[1].4.clone();
        assert!(run(&forged).problems[0].contains("seq 5: the signature does not verify"));
        // Without the announcement, the signatures are counted as not checked.
        let r = run(&rows[1..]);
        assert_eq!((r.signed, r.unchecked_signatures), (0, 4));
    }
}
