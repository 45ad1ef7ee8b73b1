//! The files of `DATA_DIR`: private whatever the umask, written without following a planted
//! link, and owned by one `serve` at a time.
//!
//! - [`private_dir`] makes the directory 0700, [`private_file`] a file 0600 (created when
//!   missing), so a umask of 022 (the default outside systemd and Docker) leaves the referees'
//!   phone numbers readable by no other user.
//! - [`write_atomic`] replaces a file through a temporary file with a random name, created with
//!   `create_new` (`O_EXCL`: a symlink planted under that name is never followed), synced,
//!   renamed over the target (a symlink at the target is replaced, not followed), and the
//!   directory synced, so the rename survives a crash.
//! - [`ServeLock`] is an exclusive lock on the directory held by `serve` for its whole life: a
//!   second `serve` on the same state stops with a clear error naming the first, instead of
//!   writing every sink twice. The CLI (`sync`, `held`, `purge`) does not take it and keeps
//!   working beside a running service. The lock is SQLite's own (an exclusive transaction on
//!   `serve.lock`, never committed), so it is released by the operating system when the process
//!   dies, however it dies.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode};

/// Makes `dir` (created when missing) readable by its owner only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Makes `path` (created empty when missing) readable and writable by its owner only.
///
/// An existing file is never opened, only its mode changed: closing any descriptor of a file
/// drops every POSIX lock this process holds on it, SQLite's included (the state file of a
/// running engine, the lock file of [`ServeLock`]).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        // New: nobody can hold a lock on it yet.
        Ok(file) => drop(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    set_mode(path, 0o600)
}

/// [`private_file`] for `path` when it exists.
pub fn private_if_exists(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        set_mode(path, 0o600)?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never half of
/// one, and the new one is 0600. See the module documentation.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // A random name: nobody can plant anything under it in advance (and create_new refuses
    // whatever is there, a symlink included).
    let (tmp, mut file) = {
        let mut attempt = 0;
        loop {
            let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
            match options.open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 3 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    };
    let result = (|| {
        set_mode(&tmp, 0o600)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Syncs a directory, so that a rename in it is on disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Why `serve` may not use a directory.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another `serve` holds it.
    #[error(
        "DATA_DIR {dir} is in use by another `serve` ({owner}): stop that one first, or give this one another DATA_DIR \
         (the CLI commands sync, held and purge work beside it)"
    )]
    Held { dir: String, owner: String },
    /// The lock file cannot be made or opened.
    #[error("DATA_DIR {dir}: the lock file cannot be used: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused otherwise.
    #[error("DATA_DIR {dir}: the lock file cannot be used: {source}")]
    Sqlite {
        dir: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// The exclusive lock of one `serve` on its `DATA_DIR`; released on drop (and by the operating
/// system when the process ends).
#[derive(Debug)]
pub struct ServeLock {
    _conn: Connection,
}

const LOCK_FILE: &str = "serve.lock";
const OWNER_FILE: &str = "serve.owner";

impl ServeLock {
    /// Takes the lock of `dir` (created 0700 when missing), or says who holds it. Blocking.
    ///
    /// # Errors
    /// [`LockError::Held`] when another `serve` runs on `dir`.
    pub fn acquire(dir: &Path) -> Result<ServeLock, LockError> {
        let shown = dir.display().to_string();
        let io = |source| LockError::Io {
            dir: shown.clone(),
            source,
        };
        private_dir(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        private_file(&path).map_err(io)?;
        let sqlite = |source| LockError::Sqlite {
            dir: shown.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(sqlite)?;
        match conn.execute_batch("BEGIN EXCLUSIVE") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "owner unknown".into());
                return Err(LockError::Held { dir: shown, owner });
            }
            Err(e) => return Err(sqlite(e)),
        }
        let owner = format!(
            "pid {}, started {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        write_atomic(&dir.join(OWNER_FILE), owner.as_bytes()).map_err(io)?;
        Ok(ServeLock { _conn: conn })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = ServeLock::acquire(&data).unwrap();
        let err = ServeLock::acquire(&data).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "in use by another `serve` (pid {}",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        ServeLock::acquire(&data).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_replaces_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let target = dir.path().join("token.json");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600);
        // Nothing left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn private_means_owner_only_whatever_was_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = d.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        private_dir(&d).unwrap();
        private_file(&f).unwrap();
        assert_eq!((mode(&d), mode(&f)), (0o700, 0o600));
        assert_eq!(std::fs::read(&f).unwrap(), b"x", "content kept");
    }
}
