//! The data directory's lock: one server process at a time on a data directory. Two servers on
//! one SQLite file would each cache accounts and both write; two on one set of key files would
//! race to create them. The lock is an exclusive `flock` on `DATA_DIR/offpay.lock`, held for as
//! long as the [`DataDirLock`] lives (the process's life, for `offpay serve`) and released by the
//! kernel when the process ends however it ends, so a crash leaves no stale lock behind.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE_NAME: &str = "offpay.lock";

/// Most bytes read from a lock file held by another process (its pid and a newline).
const LOCK_FILE_BYTES_MAX: u64 = 64;

/// An exclusive lock on a data directory.
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    /// Kept open: closing the file would release the lock.
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the data directory is in use: {} is locked by another offpay process{}; stop it first, or give another --data-dir",
        path.display(),
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's process id, as it wrote it (absent if it had not yet).
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock the data directory with {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Locks `data_dir` (which must exist), or says who holds it. Writes this process's id into
    /// the lock file once it holds the lock.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = (&file).take(LOCK_FILE_BYTES_MAX).read_to_string(&mut text);
                return Err(LockError::Held {
                    pid: text.trim().parse().ok(),
                    path,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let directory = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(directory.path()).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts as a second process would.
        match DataDirLock::acquire(directory.path()) {
            Err(LockError::Held { pid, path }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, held.path());
            }
            other => panic!("expected the lock to be held: {other:?}"),
        }
        drop(held);
        DataDirLock::acquire(directory.path()).unwrap();
    }
}
