//! One agent per data directory: `run` holds an exclusive `flock` on `<data_dir>/agent.lock` (with
//! its PID in it) for as long as it runs, reloads included. A second `run` on the same directory
//! stops at once, naming the PID that holds it. The lock goes with the process however it ends
//! (kill -9 included), so a stale lock file never blocks a restart. Read-only commands (`status`,
//! `verify`, `trace`, `export`) take no lock; `status` asks it who runs ([`holder`]).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file, relative to the data directory.
pub const LOCK_FILE: &str = "agent.lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent runs on this data directory.
    #[error("another shopfloor-agent{} is running on the data directory {path}; stop it first (systemctl stop shopfloor-agent), or give this one its own agent.data_dir", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held {
        /// The data directory.
        path: PathBuf,
        /// The holder's PID, if it wrote one.
        pid: Option<u32>,
    },
    /// The lock file could not be made or locked.
    #[error(
        "cannot use the data directory {path}: {message}; give the agent's user write access to it (or set agent.data_dir)"
    )]
    Io {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn io(path: &Path, what: &str, e: impl std::fmt::Display) -> LockError {
    LockError::Io {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

/// Creates `data_dir` (mode 0700, like everything the agent keeps there) if needed and takes its
/// lock.
pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| io(data_dir, "cannot create it", e))?;
    }
    let path = data_dir.join(LOCK_FILE);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(data_dir, "cannot open the lock file", e))?
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(LockError::Held {
                path: data_dir.to_path_buf(),
                pid: pid_in(&mut file),
            })
        }
        Err(e) => return Err(io(data_dir, "cannot lock", e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| io(data_dir, "cannot write the lock file", e))?;
    Ok(DataDirLock { _file: file })
}

/// The PID of the agent running on `data_dir`, if one is.
pub fn holder(data_dir: &Path) -> Option<u32> {
    let mut file = std::fs::File::open(data_dir.join(LOCK_FILE)).ok()?;
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = flock(&file, FlockOperation::Unlock);
            None
        }
        // Held: say by whom (a holder that wrote no PID yet is still a holder).
        Err(_) => Some(pid_in(&mut file).unwrap_or(0)),
    }
}

fn pid_in(file: &mut std::fs::File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let lock = acquire(&data).expect("first");
        assert_eq!(holder(&data), Some(std::process::id()));
        match acquire(&data) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(lock);
        assert_eq!(holder(&data), None);
        let _again = acquire(&data).expect("free again");
    }
}
