//! What the node keeps is its owner's: `node.data_dir` is 0700 (0710 with
//! `control.group`, so that the group's members can reach the control
//! socket in it but not list it), and every file the node creates there
//! (the ledger and its WAL, the job journal and results, LOCK) is 0600.
//! Modes are set explicitly after creation, so they do not depend on the
//! umask the node was started with; SQLite creates the ledger's `-wal` and
//! `-shm` files with the mode of the database file, which is made here
//! first. At start the node also warns about a key, data_dir or config
//! file others could read or change.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;

use tracing::warn;

/// Files the node creates.
pub const FILE_MODE: u32 = 0o600;
/// Folders the node creates, and data_dir without a control group.
pub const DIR_MODE: u32 = 0o700;
/// data_dir with a control group: the group may pass through to the socket.
pub const GROUP_DIR_MODE: u32 = 0o710;

/// Creates `dir` (and missing parents) and gives it exactly `mode`.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// Prepares data_dir: created if missing, mode 0700, or 0710 and owned by
/// group `gid` when the control endpoint admits a group.
pub fn prepare_data_dir(dir: &Path, gid: Option<u32>) -> io::Result<()> {
    match gid {
        None => create_dir(dir, DIR_MODE),
        Some(gid) => {
            create_dir(dir, GROUP_DIR_MODE)?;
            std::os::unix::fs::chown(dir, None, Some(gid))
        }
    }
}

/// Opens (creating if missing) a file of the node's with mode 0600,
/// whatever the umask and whatever mode an older file had.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options.mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates `path` empty with mode 0600 unless it exists (a file another
/// library then opens, such as the SQLite ledger).
pub fn precreate(path: &Path) -> io::Result<()> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(false),
    )
    .map(drop)
}

/// Files and folders under data_dir that group or others may use, made
/// the node's only (files 0600, folders 0700); data_dir itself is left to
/// [`prepare_data_dir`]. Each change is logged. Symbolic links are not
/// followed; the walk goes `depth` levels down.
pub fn tighten(dir: &Path, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        let want = if meta.is_dir() {
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            // A socket (the control endpoint, whose mode is set where it
            // is bound) or anything else the node did not make.
            continue;
        };
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&path, Permissions::from_mode(want)) {
                Ok(()) => warn!(
                    path = %path.display(), mode = %format!("{mode:04o}"), now = %format!("{want:04o}"),
                    "a file in node.data_dir was readable by others; made it the node's only"
                ),
                Err(e) => warn!(
                    path = %path.display(), mode = %format!("{mode:04o}"), error = %e,
                    "a file in node.data_dir is readable by others and its mode cannot be changed"
                ),
            }
        }
        if meta.is_dir() && depth > 0 {
            tighten(&path, depth - 1);
        }
    }
}

/// What a file is to the node, for [`exposure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A private key or token: nobody else should read or change it. A
    /// group may read it when the node reads it through that group (a
    /// service user given the key's group), not when the node owns it.
    Secret,
    /// The config: others may read it, nobody else should change it.
    Config,
    /// data_dir: others should neither list nor change it; `allowed` are
    /// the bits the control group needs.
    DataDir { allowed: u32 },
}

/// What is wrong with a file of `kind` whose mode is `mode` and which the
/// node owns (`owned`), or `None`.
pub fn exposure(kind: Kind, mode: u32, owned: bool) -> Option<&'static str> {
    let mode = mode & 0o777;
    match kind {
        Kind::Secret if mode & 0o007 != 0 => Some("other users can read or change it"),
        Kind::Secret if mode & 0o020 != 0 => Some("its group can change it"),
        Kind::Secret if mode & 0o040 != 0 && owned => {
            Some("its group can read it, and the node does not need that")
        }
        Kind::Config if mode & 0o022 != 0 => Some("users other than its owner can change it"),
        Kind::DataDir { allowed } if mode & 0o077 & !allowed != 0 => {
            Some("users other than the node's can list or change it")
        }
        _ => None,
    }
}

/// Logs a warning when `path`, a file of `kind`, is open to others (its
/// path, its mode and why); `what` says what the file is. Silent when the
/// file cannot be read: the node reports that where it uses the file.
pub fn warn_if_exposed(path: &Path, kind: Kind, what: &str) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let owned = meta.uid() == effective_uid();
    if let Some(why) = exposure(kind, meta.mode(), owned) {
        warn!(
            path = %path.display(), mode = %format!("{:04o}", meta.mode() & 0o7777),
            "{what}: {why}"
        );
    }
}

/// The uid the node runs as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes every file the process creates from now on private by default
/// (umask 077), as a second line behind the explicit modes above.
pub fn restrict_umask() {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_config_and_data_dir_each_have_their_rule() {
        use Kind::*;
        assert_eq!(exposure(Secret, 0o600, true), None);
        assert!(exposure(Secret, 0o640, true).is_some());
        // A service user reading the key through its group.
        assert_eq!(exposure(Secret, 0o640, false), None);
        assert!(exposure(Secret, 0o660, false).is_some());
        assert!(exposure(Secret, 0o604, false).is_some());
        assert_eq!(exposure(Config, 0o644, true), None);
        assert!(exposure(Config, 0o664, true).is_some());
        assert!(exposure(Config, 0o646, true).is_some());
        assert_eq!(exposure(DataDir { allowed: 0 }, 0o700, true), None);
        assert!(exposure(DataDir { allowed: 0 }, 0o710, true).is_some());
        assert_eq!(exposure(DataDir { allowed: 0o010 }, 0o710, true), None);
        assert!(exposure(DataDir { allowed: 0o010 }, 0o750, true).is_some());
        assert!(exposure(DataDir { allowed: 0o010 }, 0o711, true).is_some());
    }

    #[test]
    fn modes_are_exact_whatever_was_there_before() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a").join("data");
        prepare_data_dir(&data, None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        prepare_data_dir(&data, None).unwrap();
        assert_eq!(mode(&data), 0o700);

        let file = data.join("ledger.sqlite");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        precreate(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "kept its content");

        let jobs = data.join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        std::fs::set_permissions(&jobs, Permissions::from_mode(0o755)).unwrap();
        let old = jobs.join("old.json");
        std::fs::write(&old, b"{}").unwrap();
        std::fs::set_permissions(&old, Permissions::from_mode(0o664)).unwrap();
        tighten(&data, 2);
        assert_eq!(mode(&jobs), 0o700);
        assert_eq!(mode(&old), 0o600);
    }
}
