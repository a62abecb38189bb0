//! A watched folder: which result files are complete and ready to read, and where a file goes
//! once read (`processed/`) or refused (`failed/`, with `<name>.reason.txt`).
//!
//! A measuring machine writes a file over seconds, and a network share shows it growing. A file is
//! taken only once it is complete, by the folder's rule ([`Completion`]):
//!
//! - `stable`: its size and modification time have not changed for the settle time (the default;
//!   works for every writer, and on network mounts, where no file event arrives);
//! - `rename`: the writer writes elsewhere (or under a temporary name) and renames the file in,
//!   so a file that is there is complete; names starting with `.` or `~`, or ending in `.tmp` or
//!   `.part`, are the temporary names and are not taken;
//! - `marker`: the writer puts `<name><suffix>` (say `part.qif.done`) beside the file when done.
//!
//! A folder that disappears (a share unmounted) is an error of that scan, not of the source: the
//! next scan finds it again.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where read files go.
pub const PROCESSED: &str = "processed";
/// Where refused files go, each with `<name>.reason.txt`.
pub const FAILED: &str = "failed";

/// How a folder tells that a file is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Size and modification time unchanged for the settle time.
    #[default]
    Stable,
    /// Files are renamed in when complete.
    Rename,
    /// A marker file `<name><suffix>` appears when the file is complete.
    Marker,
}

/// What the scan remembers of a file it is waiting for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

/// One watched folder.
#[derive(Debug)]
pub struct Folder {
    dir: PathBuf,
    completion: Completion,
    settle: Duration,
    marker: String,
    accept: fn(&Path) -> bool,
    waiting: HashMap<PathBuf, Seen>,
}

impl Folder {
    /// A folder at `dir` whose files are taken by `completion` (`settle` for `stable`, `marker`
    /// the suffix for `marker`); `accept` says which names are result files.
    pub fn new(
        dir: PathBuf,
        completion: Completion,
        settle: Duration,
        marker: &str,
        accept: fn(&Path) -> bool,
    ) -> Folder {
        Folder {
            dir,
            completion,
            settle,
            marker: marker.to_string(),
            accept,
            waiting: HashMap::new(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files still waiting to be complete.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The files that are complete now, oldest first (by modification time, then name).
    pub fn ready(&mut self, now: Instant) -> std::io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        let mut present = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Gone between listing and looking: the next scan sees.
                Err(_) => continue,
            };
            if !meta.is_file() || !(self.accept)(&path) || temporary(&path) {
                continue;
            }
            present.push(path.clone());
            let modified = meta.modified().ok();
            let complete = match self.completion {
                Completion::Rename => true,
                Completion::Marker => marker_of(&path, &self.marker).exists(),
                Completion::Stable => {
                    let now_seen = Seen {
                        len: meta.len(),
                        modified,
                        since: now,
                    };
                    match self.waiting.get(&path) {
                        Some(s) if s.len == now_seen.len && s.modified == modified => {
                            now.duration_since(s.since) >= self.settle
                        }
                        _ => {
                            self.waiting.insert(path.clone(), now_seen);
                            false
                        }
                    }
                }
            };
            if complete {
                self.waiting.remove(&path);
                found.push((modified, path));
            } else if self.completion != Completion::Stable {
                self.waiting.entry(path).or_insert(Seen {
                    len: meta.len(),
                    modified,
                    since: now,
                });
            }
        }
        // Forget what is no longer there (moved away by hand, or taken).
        self.waiting.retain(|p, _| present.contains(p));
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// Moves a read file to `processed/` (and its marker, if any); returns where it went.
    pub fn processed(&self, file: &Path) -> std::io::Result<PathBuf> {
        self.remove_marker(file);
        move_into(&self.dir.join(PROCESSED), file)
    }

    /// Moves a refused file to `failed/` with `<name>.reason.txt` beside it; returns where it went.
    pub fn failed(&self, file: &Path, reason: &str) -> std::io::Result<PathBuf> {
        self.remove_marker(file);
        let to = move_into(&self.dir.join(FAILED), file)?;
        let mut name = to.clone().into_os_string();
        name.push(".reason.txt");
        std::fs::write(PathBuf::from(name), format!("{reason}\n"))?;
        Ok(to)
    }

    fn remove_marker(&self, file: &Path) {
        if self.completion == Completion::Marker {
            let _ = std::fs::remove_file(marker_of(file, &self.marker));
        }
    }
}

/// `<file><suffix>`.
fn marker_of(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A name writers use while a file is not complete yet.
fn temporary(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.starts_with('.')
        || name.starts_with('~')
        || name.ends_with(".tmp")
        || name.ends_with(".part")
}

/// Moves `file` into `dir` (created if needed), keeping its name, or `<name>.<n>` if that is
/// taken: a file dropped twice is never overwritten.
fn move_into(dir: &Path, file: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", file.display())))?;
    let mut to = dir.join(name);
    let mut n = 1;
    while to.exists() {
        let mut numbered = name.to_owned();
        numbered.push(format!(".{n}"));
        to = dir.join(numbered);
        n += 1;
    }
    std::fs::rename(file, &to)?;
    Ok(to)
}

/// The SHA-256 (hex) and length of a file, read in one pass.
pub fn sha256(path: &Path) -> std::io::Result<(String, u64)> {
    sha256_of(std::slice::from_ref(&path.to_path_buf()))
}

/// The SHA-256 (hex) and length of files read one after the other (a `.dfd` and its `.dfx`).
pub fn sha256_of(paths: &[PathBuf]) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    for path in paths {
        let mut file = std::fs::File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qif(p: &Path) -> bool {
        p.extension().is_some_and(|e| e.eq_ignore_ascii_case("qif"))
    }

    fn dir() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().expect("dir");
        let p = t.path().to_path_buf();
        (t, p)
    }

    #[test]
    fn a_stable_file_is_taken_after_the_settle_time_and_a_growing_one_is_not() {
        let (_t, d) = dir();
        let settle = Duration::from_secs(2);
        let mut f = Folder::new(d.clone(), Completion::Stable, settle, "", qif);
        std::fs::write(d.join("a.qif"), "<QIFDocument/>").expect("write");
        std::fs::write(d.join("notes.txt"), "not a result").expect("write");
        std::fs::write(d.join("b.qif.part"), "still being copied").expect("write");
        let t0 = Instant::now();
        assert!(
            f.ready(t0).expect("scan").is_empty(),
            "first sight: waiting"
        );
        assert_eq!(f.waiting(), 1);
        assert!(f
            .ready(t0 + Duration::from_secs(1))
            .expect("scan")
            .is_empty());
        // It grows: the settle time starts again.
        std::fs::write(d.join("a.qif"), "<QIFDocument></QIFDocument>").expect("write");
        assert!(f
            .ready(t0 + Duration::from_secs(2))
            .expect("scan")
            .is_empty());
        assert!(f
            .ready(t0 + Duration::from_secs(3))
            .expect("scan")
            .is_empty());
        assert_eq!(
            f.ready(t0 + Duration::from_secs(4)).expect("scan"),
            [d.join("a.qif")]
        );
    }

    #[test]
    fn renamed_and_marked_files_are_taken_when_their_rule_says() {
        let (_t, d) = dir();
        let now = Instant::now();
        let mut renamed = Folder::new(d.clone(), Completion::Rename, Duration::ZERO, "", qif);
        std::fs::write(d.join("~a.qif"), "x").expect("write");
        std::fs::write(d.join(".b.qif"), "x").expect("write");
        assert!(
            renamed.ready(now).expect("scan").is_empty(),
            "temporary names"
        );
        std::fs::rename(d.join("~a.qif"), d.join("a.qif")).expect("rename");
        assert_eq!(renamed.ready(now).expect("scan"), [d.join("a.qif")]);

        let mut marked = Folder::new(d.clone(), Completion::Marker, Duration::ZERO, ".done", qif);
        assert!(marked.ready(now).expect("scan").is_empty(), "no marker yet");
        std::fs::write(d.join("a.qif.done"), "").expect("marker");
        assert_eq!(marked.ready(now).expect("scan"), [d.join("a.qif")]);
        let to = marked.processed(&d.join("a.qif")).expect("moved");
        assert_eq!(to, d.join(PROCESSED).join("a.qif"));
        assert!(!d.join("a.qif.done").exists(), "the marker goes with it");
    }

    #[test]
    fn processed_and_failed_files_keep_their_names_and_never_overwrite() {
        let (_t, d) = dir();
        let f = Folder::new(d.clone(), Completion::Rename, Duration::ZERO, "", qif);
        for _ in 0..2 {
            std::fs::write(d.join("a.qif"), "same name twice").expect("write");
            f.processed(&d.join("a.qif")).expect("moved");
        }
        assert!(d.join(PROCESSED).join("a.qif").exists());
        assert!(d.join(PROCESSED).join("a.qif.1").exists());
        std::fs::write(d.join("bad.qif"), "<x").expect("write");
        let to = f
            .failed(&d.join("bad.qif"), "not well-formed XML at byte 2")
            .expect("failed");
        assert_eq!(to, d.join(FAILED).join("bad.qif"));
        assert_eq!(
            std::fs::read_to_string(d.join(FAILED).join("bad.qif.reason.txt")).expect("reason"),
            "not well-formed XML at byte 2\n"
        );
    }

    #[test]
    fn a_folder_that_disappears_is_an_error_of_the_scan_and_returns() {
        let (_t, d) = dir();
        let mut f = Folder::new(d.clone(), Completion::Rename, Duration::ZERO, "", qif);
        std::fs::remove_dir_all(&d).expect("unmount");
        assert!(f.ready(Instant::now()).is_err());
        std::fs::create_dir_all(&d).expect("mount again");
        std::fs::write(d.join("a.qif"), "x").expect("write");
        assert_eq!(f.ready(Instant::now()).expect("scan"), [d.join("a.qif")]);
    }

    #[test]
    fn the_hash_is_the_files_sha256() {
        let (_t, d) = dir();
        std::fs::write(d.join("a.qif"), "abc").expect("write");
        assert_eq!(
            sha256(&d.join("a.qif")).expect("hash"),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
                3
            )
        );
    }
}
