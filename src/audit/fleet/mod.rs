//! `fleet verify`: reads a fleet's central stream and checks every gateway's chain in it.
//!
//! Every record a gateway delivers carries its journal `seq`, `prev_hash`, `hash` and signature
//! (CloudEvents `sequence`, `prevhash`, `hash`, `signature`, as headers in binary mode or in the
//! event in structured mode), under the gateway's `source` (`urn:shopfloor-agent:<gateway_id>`).
//! The stream therefore holds a copy of each gateway's chain: a journal shortened or rewritten on
//! the gateway after delivery is found here, where the gateway cannot reach it ([`check`]).
//!
//! | file | what |
//! |---|---|
//! | `check.rs` | the checks on one gateway's chain, fed in any order |
//! | `mod.rs` | decoding a message (binary or structured CloudEvent), the report, its text |
//! | `nats.rs` | reading a JetStream stream with an ordered consumer |
//! | `kafka.rs` | reading every partition of a Kafka topic up to its end at the start |

pub mod check;
#[cfg(feature = "sink-kafka")]
pub mod kafka;
#[cfg(feature = "sink-nats")]
pub mod nats;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use check::{Chain, Entry, GatewayReport};

/// The CloudEvents `source` prefix of a gateway's records.
const SOURCE_PREFIX: &str = "urn:shopfloor-agent:";

/// The checks of every gateway seen in one stream.
#[derive(Debug, Default)]
pub struct FleetCheck {
    chains: BTreeMap<String, Chain>,
    keys: HashMap<String, String>,
    messages: u64,
    foreign: u64,
    unreadable: Vec<String>,
}

/// The headers a check reads, taken in one pass over a message's headers (a lookup per name
/// would cost a hash or a scan each, for every message of the stream).
#[derive(Debug, Default)]
struct CeHeaders<'h> {
    content_type: Option<&'h str>,
    source: Option<&'h str>,
    sequence: Option<&'h str>,
    prevhash: Option<&'h str>,
    hash: Option<&'h str>,
    ty: Option<&'h str>,
    signature: Option<&'h str>,
}

impl<'h> CeHeaders<'h> {
    /// The first value of each name (compared without case, as HTTP and the CloudEvents Kafka
    /// binding do).
    fn read(headers: impl IntoIterator<Item = (&'h str, &'h str)>) -> CeHeaders<'h> {
        let mut h = CeHeaders::default();
        for (name, value) in headers {
            let slot = if name.eq_ignore_ascii_case("content-type") {
                &mut h.content_type
            } else if let Some(rest) = name
                .get(..3)
                .filter(|p| p.eq_ignore_ascii_case("ce-"))
                .and_then(|_| name.get(3..))
            {
                let is = |n: &str| rest.eq_ignore_ascii_case(n);
                if is("source") {
                    &mut h.source
                } else if is("sequence") {
                    &mut h.sequence
                } else if is("prevhash") {
                    &mut h.prevhash
                } else if is("hash") {
                    &mut h.hash
                } else if is("type") {
                    &mut h.ty
                } else if is("signature") {
                    &mut h.signature
                } else {
                    continue;
                }
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        h
    }
}

/// The verdict on a stream.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// Where the records were read (`nats://… stream QUALITY`).
    pub stream: String,
    /// Messages read.
    pub messages: u64,
    /// Messages not from a gateway (another `source`, or no CloudEvent): not checked.
    pub foreign: u64,
    /// Messages from a gateway that cannot be read as a record (the first 20).
    pub unreadable: Vec<String>,
    /// One verdict per gateway, by id.
    pub gateways: Vec<GatewayReport>,
}

impl FleetReport {
    /// Whether every gateway's chain verified and every gateway message could be read.
    pub fn ok(&self) -> bool {
        self.unreadable.is_empty() && self.gateways.iter().all(GatewayReport::ok)
    }

    /// The report for people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} messages, {} gateways{}",
            self.stream,
            self.messages,
            self.gateways.len(),
            if self.foreign > 0 {
                format!(
                    ", {} messages not from a gateway (not checked)",
                    self.foreign
                )
            } else {
                String::new()
            }
        );
        for g in &self.gateways {
            let signed = match (&g.key, &g.key_from) {
                (Some(_), Some(from)) => format!(", {} signed (key {from})", g.signed),
                _ if g.unchecked_signatures > 0 => format!(
                    ", {} signatures NOT CHECKED: no key announced in the stream; give --public-keys",
                    g.unchecked_signatures
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "{:<20} {:<7} seq {}..{} ({} records{}), head {}{}",
                super::terminal_safe(&g.gateway),
                if g.ok() { "ok" } else { "BROKEN" },
                g.first_seq,
                g.last_seq,
                g.records,
                if g.duplicates > 0 {
                    format!(", {} resent", g.duplicates)
                } else {
                    String::new()
                },
                g.last_hash,
                signed
            );
            for p in &g.problems {
                let _ = writeln!(s, "    - {p}");
            }
            if g.problems_total > g.problems.len() as u64 {
                let _ = writeln!(
                    s,
                    "    … {} more problems (--json lists the first {} too)",
                    g.problems_total - g.problems.len() as u64,
                    g.problems.len()
                );
            }
        }
        for u in &self.unreadable {
            let _ = writeln!(s, "unreadable: {}", super::terminal_safe(u));
        }
        let _ = writeln!(
            s,
            "{}",
            if self.ok() {
                "every gateway's chain verified"
            } else {
                "FLEET CHECK FAILED"
            }
        );
        s
    }
}

/// A structured-mode event, as far as the checks need it.
#[derive(Deserialize)]
struct Structured<'a> {
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow, default)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sequence: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    prevhash: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    hash: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    signature: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The record kind in a CloudEvents type `<prefix>.<kind>.v1`.
fn kind_of(ty: &str) -> &str {
    let mut parts = ty.rsplit('.');
    let _version = parts.next();
    parts.next().unwrap_or("")
}

impl FleetCheck {
    /// Checks with the public keys the auditor holds (gateway id → hex key); other gateways are
    /// checked with the key they announced in the stream.
    pub fn new(keys: HashMap<String, String>) -> FleetCheck {
        FleetCheck {
            keys,
            ..FleetCheck::default()
        }
    }

    fn chain(&mut self, gateway: &str) -> &mut Chain {
        if !self.chains.contains_key(gateway) {
            let key = self.keys.get(gateway).cloned();
            self.chains
                .insert(gateway.to_string(), Chain::with_key(key));
        }
        self.chains.get_mut(gateway).expect("just inserted")
    }

    fn unreadable(&mut self, what: String) {
        if self.unreadable.len() < 20 {
            self.unreadable.push(what);
        }
    }

    /// One message (`position`: where it is in the stream, `stream seq 12` or `partition 3
    /// offset 40`, for the report): its headers (name, value; read once, names compared without
    /// case) and payload.
    pub fn add_message<'h>(
        &mut self,
        position: impl std::fmt::Display,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        payload: &[u8],
    ) {
        self.messages += 1;
        let h = CeHeaders::read(headers);
        let structured = h
            .content_type
            .is_some_and(|c| c.starts_with("application/cloudevents+json"));
        if structured {
            let Ok(ev) = serde_json::from_slice::<Structured<'_>>(payload) else {
                self.foreign += 1;
                return;
            };
            let Some(gateway) = ev.source.strip_prefix(SOURCE_PREFIX) else {
                self.foreign += 1;
                return;
            };
            let Ok(seq) = ev.sequence.parse::<i64>() else {
                self.unreadable(format!(
                    "{position}: gateway {gateway}: sequence {:?} is not a number",
                    ev.sequence
                ));
                return;
            };
            self.chain(gateway).add(Entry {
                seq,
                kind: kind_of(&ev.ty),
                prev_hash: &ev.prevhash,
                hash: &ev.hash,
                signature: ev.signature.as_deref(),
                body: ev.data.get().as_bytes(),
            });
            return;
        }
        let Some(gateway) = h.source.and_then(|s| s.strip_prefix(SOURCE_PREFIX)) else {
            self.foreign += 1;
            return;
        };
        let (Some(seq), Some(prev), Some(hash)) = (
            h.sequence.and_then(|s| s.parse::<i64>().ok()),
            h.prevhash,
            h.hash,
        ) else {
            self.unreadable(format!(
                "{position}: gateway {gateway}: ce-sequence, ce-prevhash or ce-hash missing or not a number"
            ));
            return;
        };
        self.chain(gateway).add(Entry {
            seq,
            kind: kind_of(h.ty.unwrap_or("")),
            prev_hash: prev,
            hash,
            signature: h.signature,
            body: payload,
        });
    }

    /// The verdict.
    pub fn finish(self, stream: String) -> FleetReport {
        FleetReport {
            stream,
            messages: self.messages,
            foreign: self.foreign,
            unreadable: self.unreadable,
            gateways: self.chains.into_iter().map(|(g, c)| c.finish(&g)).collect(),
        }
    }
}

/// Reads `--public-keys FILE`: lines `gateway_id hexkey` (`#` comments).
pub fn read_keys(text: &str) -> Result<HashMap<String, String>, String> {
    let mut keys = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(g), Some(k), None) if crate::journal::signing::is_public_key_hex(k) => {
                keys.insert(g.to_string(), k.to_lowercase());
            }
            _ => {
                return Err(format!(
                    "line {}: expected `<gateway_id> <public key, 64 hex digits>` (shopfloor-agent public-key prints it)",
                    n + 1
                ))
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_in_one_pass_without_case_and_first_value_wins() {
        let h = CeHeaders::read([
            ("Content-Type", "application/json"),
            ("CE-Source", "urn:shopfloor-agent:gw-1"),
            ("ce-sequence", "7"),
            ("ce-sequence", "8"),
            ("ce-prevhash", "aa"),
            ("ce-hash", "bb"),
            ("ce-hashes", "not the hash"),
            ("ce-type", "org.shopfloor.quality.inspection.v1"),
            ("Nats-Msg-Id", "x"),
        ]);
        assert_eq!(h.content_type, Some("application/json"));
        assert_eq!(h.source, Some("urn:shopfloor-agent:gw-1"));
        assert_eq!(h.sequence, Some("7"));
        assert_eq!(h.hash, Some("bb"));
        assert_eq!(h.signature, None);
    }

    #[test]
    fn header_names_of_any_bytes_do_not_panic() {
        // Names from a stream are anyone's: "ceé…" has no char boundary at byte 3.
        let h = CeHeaders::read([
            ("ce\u{e9}hash", "x"),
            ("c", "y"),
            ("ce-", "z"),
            ("ce-\u{e9}", "w"),
        ]);
        assert!(h.hash.is_none() && h.source.is_none());
        let mut check = FleetCheck::new(HashMap::new());
        check.add_message(
            "stream seq 1",
            [("ce\u{e9}source", "urn:shopfloor-agent:gw-1")],
            b"{}",
        );
        let report = check.finish("s".into());
        assert_eq!((report.messages, report.foreign), (1, 1));
    }
}
