//! `export`: an evidence package an auditor can check offline, and `verify --package` that checks it.
//!
//! A package is a directory:
//!
//! | file | what |
//! |---|---|
//! | `records.jsonl` | the records, one per line, byte for byte as journaled (RFC 8785 canonical JSON) |
//! | `chain.jsonl` | every seq of the chain segment: `seq`, `id`, `kind`, `prev_hash`, `hash`, `included` |
//! | `gaps.jsonl` | the gap records among them (also in `records.jsonl`) |
//! | `configs.json` | each configuration the records name: hash, seqs, file, secrets removed |
//! | `configs/<sha256>.toml` | those configurations as the journal keeps them: secrets replaced by type (`REDACTED`), references as written; the text hashes to `sha256` |
//! | `agents.json` | the agent versions that made the records, with their seqs |
//! | `README.txt` | what this is and how to check it |
//! | `manifest.json` | the query, the segment's first `prev_hash` and last `hash`, and the SHA-256 of every other file |
//!
//! The segment is every record the agent journaled between `--from` and `--to` (contiguous seqs).
//! With `--work-order`, `records.jsonl` holds that work order's records plus every gap and agent
//! event of the segment; the chain still lists every seq, so the records left out are visible as
//! such and the included ones are still checked against the chain.
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
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::journal::chain::{canonical_json, chain_hash, sha256_hex, GENESIS};
use crate::journal::signing::{verify_signature, Signer};
use crate::journal::{JournalError, Store};

/// The manifest's `format`.
pub const FORMAT: &str = "shopfloor-agent evidence package 1";

/// What goes into a package.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    /// Records journaled from this instant on.
    pub from: time::OffsetDateTime,
    /// Up to this instant.
    pub to: time::OffsetDateTime,
    /// Only this work order's records (plus gaps and agent events).
    pub work_order: Option<String>,
}

/// Why an export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The output directory exists and is not empty.
    #[error("{0} exists and is not empty; name a new directory (a package is never written over another)")]
    NotEmpty(PathBuf),
    /// The output path is a symbolic link or not a directory.
    #[error("{0} is a symbolic link or not a directory; name a new directory")]
    NotADirectory(PathBuf),
    /// Nothing was journaled in the time range.
    #[error("no records were journaled between {from} and {to} (the journal holds {held}); widen --from/--to")]
    Nothing {
        /// Range start.
        from: String,
        /// Range end.
        to: String,
        /// What the journal holds.
        held: String,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The package directory.
    pub dir: PathBuf,
    /// First seq of the segment.
    pub first_seq: i64,
    /// Last seq.
    pub last_seq: i64,
    /// Records in `records.jsonl`.
    pub records: usize,
    /// Gap records among them.
    pub gaps: usize,
    /// Configurations named by the records.
    pub configs: usize,
    /// The segment's last hash.
    pub last_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChainEntry {
    seq: i64,
    id: String,
    kind: String,
    prev_hash: String,
    hash: String,
    included: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfigEntry {
    sha256: String,
    first_seq: i64,
    last_seq: i64,
    records: u64,
    /// `configs/<sha256>.toml`, or None when the journal does not have the text.
    file: Option<String>,
    /// How many literal secret values were replaced by `(removed)`.
    secrets_removed: usize,
    /// Why the text is missing, or what was removed.
    note: Option<String>,
}

/// Key names whose literal values are secrets.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_url") || k.ends_with("_file") || k.ends_with("_dir") {
        return false;
    }
    [
        "password",
        "secret",
        "token",
        "passphrase",
        "api_key",
        "api-key",
        "apikey",
        "authorization",
        "cookie",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// For a configuration kept before secrets were marked by type (no
/// [`crate::config::secret::KEPT_MARK`]): replaces what may be a literal secret by `REDACTED`, as
/// the types would have: values of secret-sounding keys and of every header, URL user info and
/// query values, `${env:X:-default}` defaults. References stay. Returns how many values changed.
fn redact(value: &mut toml::Value, key: &str, in_headers: bool) -> usize {
    use crate::config::secret::{secret_as_written, url_as_written};
    match value {
        toml::Value::String(s) if s.is_empty() => 0,
        toml::Value::String(s) => {
            let new = if in_headers || is_secret_key(key) {
                secret_as_written(s)
            } else if url::Url::parse(s).is_ok_and(|u| {
                u.query().is_some() || !u.username().is_empty() || u.password().is_some()
            }) {
                url_as_written(s)
            } else if s.contains("${env:") && s.contains(":-") {
                secret_as_written(s)
            } else {
                return 0;
            };
            if new == *s {
                0
            } else {
                *s = new;
                1
            }
        }
        toml::Value::Array(items) => items.iter_mut().map(|v| redact(v, key, in_headers)).sum(),
        toml::Value::Table(t) => {
            let headers = key.eq_ignore_ascii_case("headers");
            t.iter_mut().map(|(k, v)| redact(v, k, headers)).sum()
        }
        _ => 0,
    }
}

/// The hash a configuration's records carry: SHA-256 of the canonical JSON of its merged tables.
pub fn config_hash(toml_text: &str) -> Option<String> {
    toml::from_str(toml_text)
        .ok()
        .map(|t| crate::config::hash_of(&t))
}

/// Writes one file of the package: created new (never over an existing file, and never through a
/// symbolic link planted at its name: `O_CREAT | O_EXCL` does not follow one), mode 0600.
fn write(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    files: &mut BTreeMap<String, String>,
) -> Result<(), ExportError> {
    let path = dir.join(name);
    create_new(&path, bytes)?;
    files.insert(name.to_string(), sha256_hex(bytes));
    Ok(())
}

fn create_new(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)
}

/// Whether `out` exists: it may not, or be an empty directory that is not a symbolic link.
fn check_out(out: &Path) -> Result<bool, ExportError> {
    let Ok(m) = std::fs::symlink_metadata(out) else {
        return Ok(false);
    };
    if m.file_type().is_symlink() || !m.is_dir() {
        return Err(ExportError::NotADirectory(out.to_path_buf()));
    }
    if std::fs::read_dir(out)
        .map(|mut d| d.next().is_some())
        .unwrap_or(true)
    {
        return Err(ExportError::NotEmpty(out.to_path_buf()));
    }
    Ok(true)
}

/// Makes the package directory (and `configs/` in it), mode 0700: `out` must not exist, or be an
/// empty directory that is not a symbolic link.
fn make_out(out: &Path) -> Result<(), ExportError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    if !check_out(out)? {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(out)
            .map_err(err(out))?;
    }
    let configs = out.join("configs");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&configs)
        .map_err(err(&configs))
}

fn ms(t: time::OffsetDateTime) -> i64 {
    crate::time::unix_ms(t)
}

/// Writes the package for `query` into `out` (created; must not exist or be empty).
pub fn export(store: &Store, query: &ExportQuery, out: &Path) -> Result<Exported, ExportError> {
    check_out(out)?;
    let (first, last): (Option<i64>, Option<i64>) = store
        .connection()
        .query_row(
            "SELECT min(seq), max(seq) FROM records WHERE appended_at >= ?1 AND appended_at <= ?2",
            [ms(query.from), ms(query.to)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(JournalError::from)?;
    let (Some(first), Some(last)) = (first, last) else {
        let held: (Option<i64>, Option<i64>) = store
            .connection()
            .query_row(
                "SELECT min(appended_at), max(appended_at) FROM records",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(JournalError::from)?;
        let fmt = |v: Option<i64>| v.map(|m| crate::time::format(crate::time::from_unix_ms(m)));
        return Err(ExportError::Nothing {
            from: crate::time::format(query.from),
            to: crate::time::format(query.to),
            held: match (fmt(held.0), fmt(held.1)) {
                (Some(a), Some(b)) => format!("records journaled from {a} to {b}"),
                _ => "no records".into(),
            },
        });
    };
    make_out(out)?;

    let mut records = String::new();
    let mut gaps = String::new();
    let mut chain = String::new();
    let mut included = 0usize;
    let mut gap_count = 0usize;
    let mut first_prev_hash = None;
    let mut last_hash = GENESIS.to_string();
    let mut configs: BTreeMap<String, ConfigEntry> = BTreeMap::new();
    let mut agents: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
    let mut gateway = None;
    let mut after = first - 1;
    loop {
        let rows = store.read_range(after, last, 5_000)?;
        let Some(tail) = rows.last() else { break };
        after = tail.seq;
        for row in rows {
            first_prev_hash.get_or_insert_with(|| row.prev_hash.clone());
            last_hash = row.hash.clone();
            let body: Value = serde_json::from_str(&row.body).map_err(|e| {
                JournalError::Unreadable(format!("record at seq {} is not JSON: {e}", row.seq))
            })?;
            let wanted = match &query.work_order {
                None => true,
                Some(w) => {
                    body["subject"]["work_order"].as_str() == Some(w.as_str())
                        || matches!(row.kind.as_str(), "gap" | "agent_event")
                }
            };
            let entry = ChainEntry {
                seq: row.seq,
                id: row.id.clone(),
                kind: row.kind.clone(),
                prev_hash: row.prev_hash.clone(),
                hash: row.hash.clone(),
                included: wanted,
                signature: row.signature.clone(),
            };
            chain.push_str(&serde_json::to_string(&entry).unwrap_or_default());
            chain.push('\n');
            if !wanted {
                continue;
            }
            included += 1;
            records.push_str(&row.body);
            records.push('\n');
            if row.kind == "gap" {
                gap_count += 1;
                gaps.push_str(&row.body);
                gaps.push('\n');
            }
            let p = &body["provenance"];
            if gateway.is_none() {
                gateway = p["gateway_id"].as_str().map(str::to_string);
            }
            if let Some(sha) = p["config_sha256"].as_str() {
                let c = configs
                    .entry(sha.to_string())
                    .or_insert_with(|| ConfigEntry {
                        sha256: sha.to_string(),
                        first_seq: row.seq,
                        last_seq: row.seq,
                        records: 0,
                        file: None,
                        secrets_removed: 0,
                        note: None,
                    });
                c.last_seq = row.seq;
                c.records += 1;
            }
            if let Some(v) = p["agent_version"].as_str() {
                let a = agents.entry(v.to_string()).or_insert((row.seq, row.seq, 0));
                a.1 = row.seq;
                a.2 += 1;
            }
        }
    }

    let mut files = BTreeMap::new();
    for c in configs.values_mut() {
        match store.config(&c.sha256)? {
            Some(text) => {
                let mut value: toml::Value =
                    toml::from_str(&text).unwrap_or(toml::Value::Table(toml::Table::new()));
                c.secrets_removed = if text.starts_with(crate::config::secret::KEPT_MARK) {
                    0
                } else {
                    redact(&mut value, "", false)
                };
                let shown = toml::to_string(&value).unwrap_or_default();
                let name = format!("configs/{}.toml", c.sha256);
                let header = format!(
                    "# shopfloor-agent configuration {} (secret references as written{})\n",
                    c.sha256,
                    if c.secrets_removed > 0 {
                        format!("; {} literal secret value(s) removed", c.secrets_removed)
                    } else {
                        String::new()
                    }
                );
                write(
                    out,
                    &name,
                    format!("{header}{shown}").as_bytes(),
                    &mut files,
                )?;
                c.file = Some(name);
                if c.secrets_removed > 0 {
                    c.note = Some("literal secret values were removed, so this text no longer hashes to sha256; the records carry the hash of the original".into());
                }
            }
            None => {
                c.note = Some("the journal does not hold this configuration's text (it ran before configurations were kept)".into());
            }
        }
    }
    let configs: Vec<ConfigEntry> = configs.into_values().collect();
    let agents: Vec<Value> = agents
        .into_iter()
        .map(|(v, (f, l, n))| json!({ "agent_version": v, "first_seq": f, "last_seq": l, "records": n }))
        .collect();
    write(out, "records.jsonl", records.as_bytes(), &mut files)?;
    write(out, "chain.jsonl", chain.as_bytes(), &mut files)?;
    write(out, "gaps.jsonl", gaps.as_bytes(), &mut files)?;
    write(out, "configs.json", pretty(&configs).as_bytes(), &mut files)?;
    write(out, "agents.json", pretty(&agents).as_bytes(), &mut files)?;
    let first_prev_hash = first_prev_hash.unwrap_or_else(|| GENESIS.to_string());
    let readme = readme(first, last, &first_prev_hash, &last_hash);
    write(out, "README.txt", readme.as_bytes(), &mut files)?;
    let manifest = json!({
        "format": FORMAT,
        "created_at": crate::time::now_rfc3339(),
        "created_by": format!("shopfloor-agent {}", crate::AGENT_VERSION),
        "gateway_id": gateway,
        "journal_id": store.meta("journal_id")?,
        "signing_public_key": store
            .path()
            .parent()
            .and_then(|d| Signer::load(d).ok().flatten())
            .map(|k| k.public_key_hex()),
        "query": {
            "from": crate::time::format(query.from),
            "to": crate::time::format(query.to),
            "work_order": query.work_order,
        },
        "chain": {
            "first_seq": first,
            "last_seq": last,
            "first_prev_hash": first_prev_hash,
            "last_hash": last_hash,
            "records_in_segment": last - first + 1,
            "records_included": included,
        },
        "files": files,
    });
    create_new(&out.join("manifest.json"), pretty(&manifest).as_bytes())?;
    Ok(Exported {
        dir: out.to_path_buf(),
        first_seq: first,
        last_seq: last,
        records: included,
        gaps: gap_count,
        configs: configs.len(),
        last_hash,
    })
}

fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn readme(first: i64, last: i64, first_prev: &str, last_hash: &str) -> String {
    format!(
        "Evidence package written by shopfloor-agent {version}.\n\n\
         records.jsonl holds quality records exactly as the agent journaled them (canonical JSON), \
         each chained to the one before: hash = SHA-256(prev_hash || record). chain.jsonl lists \
         every seq from {first} to {last}; records left out by the query are listed there with \
         included = false.\n\n\
         The chain starts from prev_hash {first_prev}\n\
         and ends at hash {last_hash}.\n\
         Compare that last hash with `shopfloor-agent verify` on the gateway (or with a copy \
         published at the time) to tie this package to the journal.\n\n\
         Check the package on any machine:  shopfloor-agent verify --package <this directory>\n\
         manifest.json holds the SHA-256 of every file.\n",
        version = crate::AGENT_VERSION
    )
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_configuration_text_hashes_to_the_hash_records_carry() {
        let config = crate::config::Config::from_texts(
            &[(
                PathBuf::from("agent.toml"),
                crate::config::REFERENCE.to_string(),
            )],
            Path::new("/"),
            crate::config::LoadOptions { environment: false },
        )
        .expect("reference config");
        assert_eq!(
            config_hash(&config.effective_toml()).as_deref(),
            Some(config.sha256.as_str())
        );
    }

    #[test]
    fn configurations_kept_before_typed_secrets_are_redacted_by_name() {
        let mut v: toml::Value = toml::from_str(
            r#"
            [sources.erp]
            auth = { type = "oauth2", token_url = "https://login/t", client_secret = "s3cret" }
            [sinks.qms]
            auth = { type = "basic", username = "gw", password = "${credential:qms_password}" }
            headers = { Authorization = "Bearer abc", X-Plant = "p1", Ocp-Apim-Subscription-Key = "sub-1", X-Auth = "xa-2" }
            [sinks.api]
            url = "https://fn.example/api?code=code-3"
            [sinks.mqtt]
            password = "hunter2"
            username = "${env:USER_NAME:-dflt-4}"
            client_key_file = "/etc/key.pem"
            "#,
        )
        .expect("toml");
        assert_eq!(redact(&mut v, "", false), 8);
        let text = toml::to_string(&v).expect("toml");
        for gone in [
            "s3cret",
            "Bearer abc",
            "hunter2",
            "p1",
            "sub-1",
            "xa-2",
            "code-3",
            "dflt-4",
        ] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        for kept in [
            "https://login/t",
            "${credential:qms_password}",
            "${env:USER_NAME:-REDACTED}",
            "/etc/key.pem",
            "gw",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
    }
}
