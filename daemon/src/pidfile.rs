//! `--pidfile PATH`: the daemon's process id in a locked file.
//!
//! As QSD does it: the file is opened (created with mode 0600 if needed),
//! locked with a POSIX write lock (`fcntl(F_SETLK)`, held as long as the
//! process lives), checked to still be the file at PATH (another daemon may
//! have replaced it meanwhile; then everything starts over), truncated and
//! given `PID\n`. It is written once start-up is complete and before clients
//! are served, and removed at a clean exit through its resolved absolute
//! path (so a change of directory by `--daemonize` does not matter).
//!
//! Errors, printed by the caller as `PROG: cannot create PID file: MESSAGE`:
//!
//! | situation | MESSAGE |
//! |---|---|
//! | open fails | `Could not create 'PATH': STRERROR` |
//! | another process holds the lock | `Cannot lock pid file: Resource temporarily unavailable` |
//! | `fstat` fails | `Cannot stat file: STRERROR` |
//! | truncating fails | `Failed to truncate pid file: STRERROR` (file removed) |
//! | writing fails | `Failed to write pid file` (file removed) |

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::report::strerror;

/// A written, locked pid file. The lock lasts as long as this value (and
/// the process) does.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

/// Why a pid file could not be written; `Display` is QEMU's text.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("Could not create '{}': {}", .path.display(), strerror(.source))]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Cannot stat file: {}", strerror(.0))]
    Stat(std::io::Error),
    #[error("Cannot lock pid file: {}", strerror(.0))]
    Lock(std::io::Error),
    #[error("Failed to truncate pid file: {}", strerror(.0))]
    Truncate(std::io::Error),
    #[error("Failed to write pid file")]
    Write,
}

/// Takes a POSIX write lock on the whole of `file`, failing at once if
/// another process holds one.
fn lock(file: &File) -> std::io::Result<()> {
    // SAFETY: `flock` is a plain C struct for which all-zero is a valid
    // value; the fields that matter are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: the descriptor is open for the lifetime of `file`, and `fl` is
    // a valid, initialised struct that fcntl only reads.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl PidFile {
    /// Creates, locks and writes the pid file at `path` (QEMU's
    /// `qemu_write_pidfile()`).
    pub fn write(path: &Path) -> Result<PidFile, PidFileError> {
        let file = loop {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|source| PidFileError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
            let ours = file.metadata().map_err(PidFileError::Stat)?;
            lock(&file).map_err(PidFileError::Lock)?;
            // The file we locked must still be the one at `path`; if it was
            // removed or replaced meanwhile, someone else is racing us.
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => break file,
                _ => continue,
            }
        };
        let remove = |e| {
            let _ = std::fs::remove_file(path);
            e
        };
        file.set_len(0)
            .map_err(|e| remove(PidFileError::Truncate(e)))?;
        let text = format!("{}\n", std::process::id());
        (&file)
            .write_all(text.as_bytes())
            .map_err(|_| remove(PidFileError::Write))?;
        Ok(PidFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The absolute path the file is removed through at exit; on failure
    /// QSD removes the file and stops (`cannot resolve PID file path: PATH:
    /// STRERROR`), which the caller does with the message returned here.
    pub fn resolve(&mut self) -> Result<(), String> {
        match std::fs::canonicalize(&self.path) {
            Ok(p) => {
                self.path = p;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                Err(format!(
                    "cannot resolve PID file path: {}: {}",
                    String::from_utf8_lossy(self.path.as_os_str().as_bytes()),
                    strerror(&e)
                ))
            }
        }
    }

    /// Removes the file (at a clean exit) and releases the lock.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// The path given on the command line, as the OS sees it.
pub fn path_from_arg(arg: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pid_and_locks() {
        let dir = tempfile_dir();
        let p = dir.join("pid");
        std::fs::write(&p, "a much longer previous content\n").unwrap();
        let mut f = PidFile::write(&p).unwrap();
        f.resolve().unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        // POSIX locks belong to the process, so a second attempt from the
        // same process succeeds; the cross-process case is a black-box test.
        f.remove();
        assert!(!p.exists());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn create_error_text() {
        let e = PidFile::write(Path::new("/nonexistent/dir/p")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not create '/nonexistent/dir/p': No such file or directory"
        );
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "qsd-pidfile-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
