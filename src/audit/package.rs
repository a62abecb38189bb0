//! `verify --package`: checks an evidence package ([`super::export`] describes its files) offline.
//!
//! `verify --package` checks, without the journal: each file against the manifest (and no file
//! unlisted; names in the manifest must be plain relative names, symbolic links are refused and the
//! walk is bounded), that only what the query allows is marked left out (nothing in a full export;
//! no gap or agent event in a work order's), the chain's continuity from the first `prev_hash` to the last `hash`, each record
//! against its chain entry (`hash = SHA-256(prev_hash ‖ record)`), that every included seq has its
//! record, that gaps are records of the package, and each configuration against its hash (the kept
//! text has its secrets replaced already, so it hashes as it is; only a configuration kept by a
//! version before secrets were marked by type loses values here and cannot be checked). The last `hash` is the journal's chain at that seq: compare it
//! with `shopfloor-agent verify` on the gateway, or with a copy published at the time, to tie the
//! package to the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::export::{config_hash, ChainEntry, ConfigEntry, FORMAT};
use crate::journal::chain::{canonical_json, chain_hash, sha256_hex};
use crate::journal::signing::verify_signature;

/// The result of checking a package.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackageReport {
    /// Files checked against the manifest.
    pub files: usize,
    /// First and last seq of the chain segment.
    pub first_seq: Option<i64>,
    /// Last seq.
    pub last_seq: Option<i64>,
    /// The segment's last hash.
    pub last_hash: Option<String>,
    /// Records checked against the chain.
    pub records: usize,
    /// Configurations whose text was checked against their hash.
    pub configs_checked: usize,
    /// Configurations that could not be checked (text missing or secrets removed).
    pub configs_unchecked: usize,
    /// Chain entries carrying a signature.
    pub signed: usize,
    /// The public key the signatures were checked with, and where it came from.
    pub signatures_checked_with: Option<(String, &'static str)>,
    /// Every problem found, each naming the file and the line or seq.
    pub problems: Vec<String>,
}

impl PackageReport {
    /// Whether the package is intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The readable form.
    pub fn render(&self, dir: &Path) -> String {
        let mut s = String::new();
        if self.ok() {
            let _ = writeln!(
                s,
                "package {}: intact. {} files match the manifest; chain seq {}..{} continuous, ending at hash {}; {} records verified against it; {} configuration(s) match their hash{}",
                dir.display(),
                self.files,
                self.first_seq.unwrap_or(0),
                self.last_seq.unwrap_or(0),
                self.last_hash.as_deref().unwrap_or("-"),
                self.records,
                self.configs_checked,
                if self.configs_unchecked > 0 {
                    format!(", {} could not be checked (see configs.json)", self.configs_unchecked)
                } else {
                    String::new()
                }
            );
            match (&self.signatures_checked_with, self.signed) {
                (_, 0) => {}
                (Some((key, "given")), n) => {
                    let _ = writeln!(s, "{n} signatures verified with public key {key}");
                }
                (Some((key, _)), n) => {
                    let _ = writeln!(
                        s,
                        "{n} signatures verified with public key {key}, the key the manifest names: compare it with the gateway's (`shopfloor-agent public-key`) or pass --public-key"
                    );
                }
                (None, n) => {
                    let _ = writeln!(
                        s,
                        "{n} signatures NOT checked: no public key (pass --public-key)"
                    );
                }
            }
        } else {
            let _ = writeln!(
                s,
                "package {}: NOT INTACT, {} problem(s):",
                dir.display(),
                self.problems.len()
            );
            for p in &self.problems {
                let _ = writeln!(s, "  - {p}");
            }
        }
        s
    }
}

fn read(dir: &Path, name: &str, report: &mut PackageReport) -> Option<String> {
    match read_listed(dir, name).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
        Ok(t) => Some(t),
        Err(e) => {
            report
                .problems
                .push(format!("{name}: cannot be read ({e})"));
            None
        }
    }
}

/// Most entries `verify --package` looks at, and how deep: a package has a dozen files in two
/// levels; anything far beyond is not a package (and must not hang the check).
const MAX_ENTRIES: usize = 100_000;

const MAX_DEPTH: usize = 4;

/// Every file under `dir` as a relative name, without following symbolic links: a link is a
/// problem (a package holds none), as is a tree deeper or larger than a package can be.
fn listed_files(
    dir: &Path,
    base: &Path,
    depth: usize,
    out: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if out.len() + problems.len() >= MAX_ENTRIES {
            problems.push(format!(
                "more than {MAX_ENTRIES} entries: not an evidence package (the check stopped there)"
            ));
            return;
        }
        let p = e.path();
        let rel = p
            .strip_prefix(base)
            .map(|r| r.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        match e.file_type() {
            Ok(t) if t.is_symlink() => {
                problems.push(format!("{rel}: a symbolic link (a package holds none)"))
            }
            Ok(t) if t.is_dir() => {
                if depth >= MAX_DEPTH {
                    problems.push(format!("{rel}: nested deeper than a package is"));
                } else {
                    listed_files(&p, base, depth + 1, out, problems);
                }
            }
            Ok(_) => out.push(rel),
            Err(e) => problems.push(format!("{rel}: cannot be read ({e})")),
        }
    }
}

/// Whether a name from the manifest is a plain relative path inside the package: no absolute path,
/// no `..`, no empty or hidden tricks; only letters, digits, `.`, `_`, `-` and `/`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Reads a listed file of the package without following a symbolic link.
fn read_listed(dir: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
        return Err(std::io::Error::other(
            "a symbolic link (a package holds none)",
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks the package in `dir` (see the module documentation for what is checked); signatures
/// with `public_key` (hex), else with the key the manifest names.
pub fn verify_package(dir: &Path, public_key: Option<&str>) -> PackageReport {
    let mut report = PackageReport::default();
    let Some(manifest_text) = read(dir, "manifest.json", &mut report) else {
        return report;
    };
    let manifest: Value = match serde_json::from_str(&manifest_text) {
        Ok(v) => v,
        Err(e) => {
            report
                .problems
                .push(format!("manifest.json: not JSON ({e})"));
            return report;
        }
    };
    if manifest["format"] != FORMAT {
        report.problems.push(format!(
            "manifest.json: format {} is not \"{FORMAT}\"",
            manifest["format"]
        ));
        return report;
    }
    // 1. Files against the manifest.
    let listed: BTreeMap<String, String> = manifest["files"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    for (name, want) in &listed {
        if !safe_name(name) {
            report.problems.push(format!(
                "manifest.json: file name {name:?} is not a plain name inside the package (absolute, `..` or odd characters): not read"
            ));
            continue;
        }
        match read_listed(dir, name) {
            Ok(bytes) => {
                let got = sha256_hex(&bytes);
                if &got != want {
                    report.problems.push(format!(
                        "{name}: altered (SHA-256 {got}, the manifest says {want})"
                    ));
                }
                report.files += 1;
            }
            Err(e) => report.problems.push(format!("{name}: missing ({e})")),
        }
    }
    let mut present = Vec::new();
    listed_files(dir, dir, 0, &mut present, &mut report.problems);
    for f in present {
        if f != "manifest.json" && !listed.contains_key(&f) {
            report.problems.push(format!(
                "{f}: not listed in the manifest (added after export)"
            ));
        }
    }

    // 2. The chain's continuity, and its signatures.
    let c = &manifest["chain"];
    report.signatures_checked_with = match (public_key, manifest["signing_public_key"].as_str()) {
        (Some(k), _) => Some((k.to_string(), "given")),
        (None, Some(k)) => Some((k.to_string(), "named by the manifest")),
        (None, None) => None,
    };
    let mut by_id: HashMap<String, ChainEntry> = HashMap::new();
    if let Some(text) = read(dir, "chain.jsonl", &mut report) {
        let mut prev: Option<ChainEntry> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let e: ChainEntry = match serde_json::from_str(line) {
                Ok(e) => e,
                Err(err) => {
                    report
                        .problems
                        .push(format!("chain.jsonl line {n}: not a chain entry ({err})"));
                    continue;
                }
            };
            match &prev {
                None => {
                    if Some(e.prev_hash.as_str()) != c["first_prev_hash"].as_str() {
                        report.problems.push(format!(
                            "chain.jsonl line {n} (seq {}): prev_hash is not the manifest's first_prev_hash",
                            e.seq
                        ));
                    }
                    report.first_seq = Some(e.seq);
                }
                Some(p) => {
                    if e.seq != p.seq + 1 {
                        report.problems.push(format!(
                            "chain.jsonl line {n}: seq {} follows seq {}: entries missing or out of order",
                            e.seq, p.seq
                        ));
                    } else if e.prev_hash != p.hash {
                        report.problems.push(format!(
                            "chain.jsonl line {n} (seq {}): prev_hash does not match the hash of seq {}: the chain was altered",
                            e.seq, p.seq
                        ));
                    }
                }
            }
            if let Some(sig) = &e.signature {
                report.signed += 1;
                if let Some((key, _)) = &report.signatures_checked_with {
                    if !verify_signature(key, &e.hash, sig) {
                        report.problems.push(format!(
                            "chain.jsonl line {n} (seq {}): the signature does not verify with public key {key}: the hash or the signature was altered, or another key signed it",
                            e.seq
                        ));
                    }
                }
            }
            if !e.included {
                // What the package was filtered by decides what may be left out: nothing in a
                // full export, only other work orders' records (never a gap or an agent event) in
                // a work order's.
                let why = match manifest["query"]["work_order"].as_str() {
                    None => Some(
                        "the package is a full export (no work order), so nothing may be left out",
                    ),
                    Some(_) if matches!(e.kind.as_str(), "gap" | "agent_event") => {
                        Some("a work order's package holds every gap and agent event")
                    }
                    Some(_) => None,
                };
                if let Some(why) = why {
                    report.problems.push(format!(
                        "chain.jsonl line {n} (seq {}): marked as left out, but {why}: the record was removed from the package",
                        e.seq
                    ));
                }
            }
            report.last_seq = Some(e.seq);
            report.last_hash = Some(e.hash.clone());
            prev = Some(e.clone());
            by_id.insert(e.id.clone(), e);
        }
        if report.first_seq != c["first_seq"].as_i64() || report.last_seq != c["last_seq"].as_i64()
        {
            report.problems.push(format!(
                "chain.jsonl: covers seq {:?}..{:?}, the manifest says {}..{}",
                report.first_seq, report.last_seq, c["first_seq"], c["last_seq"]
            ));
        }
        if report.last_hash.as_deref() != c["last_hash"].as_str() {
            report
                .problems
                .push("chain.jsonl: the last hash is not the manifest's last_hash".into());
        }
    }

    // 3. Each record against its chain entry.
    let mut record_lines: BTreeSet<String> = BTreeSet::new();
    let mut config_use: BTreeSet<String> = BTreeSet::new();
    let mut seen_seqs: BTreeSet<i64> = BTreeSet::new();
    if let Some(text) = read(dir, "records.jsonl", &mut report) {
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let value: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    report.problems.push(format!(
                        "records.jsonl line {n}: not JSON ({e}): the record was altered"
                    ));
                    continue;
                }
            };
            let id = value["id"].as_str().unwrap_or_default();
            let Some(entry) = by_id.get(id) else {
                report.problems.push(format!(
                    "records.jsonl line {n}: record {id} is not in the chain"
                ));
                continue;
            };
            if canonical_json(&value) != line
                || chain_hash(&entry.prev_hash, line.as_bytes()) != entry.hash
            {
                report.problems.push(format!(
                    "records.jsonl line {n} (seq {}): does not match its hash in the chain: the record was altered",
                    entry.seq
                ));
            } else if !entry.included {
                report.problems.push(format!(
                    "records.jsonl line {n} (seq {}): the chain says it was left out",
                    entry.seq
                ));
            } else {
                report.records += 1;
            }
            seen_seqs.insert(entry.seq);
            record_lines.insert(line.to_string());
            if let Some(sha) = value["provenance"]["config_sha256"].as_str() {
                config_use.insert(sha.to_string());
            }
        }
    }
    for e in by_id
        .values()
        .filter(|e| e.included && !seen_seqs.contains(&e.seq))
    {
        report.problems.push(format!(
            "records.jsonl: the record of seq {} ({}) is missing",
            e.seq, e.id
        ));
    }

    // 4. Gaps are records of the package.
    if let Some(text) = read(dir, "gaps.jsonl", &mut report) {
        for (i, line) in text.lines().enumerate() {
            if !record_lines.contains(line) {
                report.problems.push(format!(
                    "gaps.jsonl line {}: not one of the package's records",
                    i + 1
                ));
            }
        }
    }

    // 5. Configurations against their hashes.
    if let Some(text) = read(dir, "configs.json", &mut report) {
        match serde_json::from_str::<Vec<ConfigEntry>>(&text) {
            Ok(configs) => {
                for sha in &config_use {
                    if !configs.iter().any(|c| &c.sha256 == sha) {
                        report.problems.push(format!(
                            "configs.json: configuration {sha}, named by records, is not listed"
                        ));
                    }
                }
                for c in configs {
                    match (&c.file, c.secrets_removed) {
                        (Some(file), 0) => {
                            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                            if config_hash(&text).as_deref() == Some(c.sha256.as_str()) {
                                report.configs_checked += 1;
                            } else {
                                report.problems.push(format!(
                                    "{file}: does not hash to {}: the configuration was altered",
                                    c.sha256
                                ));
                            }
                        }
                        _ => report.configs_unchecked += 1,
                    }
                }
            }
            Err(e) => report
                .problems
                .push(format!("configs.json: not readable ({e})")),
        }
    }
    report
}
