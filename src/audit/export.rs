//! `export`: an evidence package an auditor can check offline (`verify --package`, [`super::package`]).
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
//! The package is checked by [`super::package`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::journal::chain::{sha256_hex, GENESIS};
use crate::journal::signing::Signer;
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
/// One entry of the package's `chain.jsonl`.
pub(crate) struct ChainEntry {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    pub(crate) included: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
/// One entry of the package's `configs.json`.
pub(crate) struct ConfigEntry {
    pub(crate) sha256: String,
    pub(crate) first_seq: i64,
    pub(crate) last_seq: i64,
    pub(crate) records: u64,
    /// `configs/<sha256>.toml`, or None when the journal does not have the text.
    pub(crate) file: Option<String>,
    /// How many literal secret values were replaced by `(removed)`.
    pub(crate) secrets_removed: usize,
    /// Why the text is missing, or what was removed.
    pub(crate) note: Option<String>,
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
    let (first, last) = store.seqs_appended_between(ms(query.from), ms(query.to))?;
    let (Some(first), Some(last)) = (first, last) else {
        let held = store.appended_span()?;
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
