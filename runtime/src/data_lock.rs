//! One node per data directory: the ledger and the job journal in it belong
//! to one identity, and two processes writing them would mix two books.
//! The lock is an OS file lock on `<data_dir>/LOCK`, so it goes away with
//! the process however it ends (SIGKILL included); the file keeps the pid
//! of the holder for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// Held for the life of the node; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum DataLockError {
    #[error("cannot create the data directory {0}: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("{} is in use by another node{} (one node per node.data_dir)", .dir.display(), .holder.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        dir: PathBuf,
        holder: Option<String>,
    },
    #[error("cannot lock {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it for this process.
    pub fn acquire(dir: &Path) -> Result<Self, DataLockError> {
        // A missing directory is made the node's only; an existing one
        // keeps the mode the node gave it (0710 with a control group).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::private::DIR_MODE)
            .create(dir)
            .map_err(|e| DataLockError::Create(dir.to_path_buf(), e))?;
        let path = dir.join("LOCK");
        let mut file = crate::private::open(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .map_err(|e| DataLockError::Io(path.clone(), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataLockError::InUse {
                    dir: dir.to_path_buf(),
                    holder: (!holder.is_empty() && holder.len() < 32).then(|| holder.to_string()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(DataLockError::Io(path, e)),
        }
        // The pid is only a hint for the message above; failing to write it
        // does not matter.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        let err = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(err.contains("in use by another node"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains("data"), "{err}");
        drop(first);
        DataDirLock::acquire(&data).unwrap();
    }
}
