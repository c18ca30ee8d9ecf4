//! `--daemonize`: detach from the terminal once start-up is complete.
//!
//! As QSD does it (`os_daemonize()` / `os_setup_post()`):
//!
//! 1. [`detach`], before any thread exists: the process forks; the parent
//!    waits on a pipe and exits with 0 only if the daemon reports a complete
//!    start-up (one zero byte), with 1 otherwise (the daemon died or failed:
//!    it printed its error on the still inherited stderr itself). The child
//!    starts a new session (`setsid`) and forks again, so the daemon is not
//!    a session leader and never gets a controlling terminal back; the
//!    middle process exits. The daemon sets its umask to 027 and ignores
//!    SIGTSTP, SIGTTOU and SIGTTIN.
//! 2. [`Detached::finish`], once the pid file is written: the daemon changes
//!    to `/`, points stdin, stdout and (unless trace output goes to a file)
//!    stderr to `/dev/null`, and tells the waiting parent that start-up
//!    succeeded.
//!
//! Relative paths given on the command line are used before the change to
//! `/`, like QSD; a UNIX socket created with a relative path is therefore
//! not found to be removed at exit, like QSD.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The daemon's end of the start-up pipe.
pub struct Detached {
    pipe: File,
}

/// `fork()`; returns the child's pid in the parent and 0 in the child.
///
/// Only called while the process has a single thread (before the tokio
/// runtime starts), so the child's copy of the address space is consistent.
fn fork() -> std::io::Result<libc::pid_t> {
    // SAFETY: the process is single-threaded here (see above), so no lock
    // can be held by another thread across the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid)
}

/// A pipe whose ends are closed on exec.
fn pipe() -> std::io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody
    // else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// Detaches the process (step 1 above). Returns in the daemon only; the
/// original process and the middle one exit here.
pub fn detach() -> Detached {
    let Ok((mut read_end, write_end)) = pipe() else {
        std::process::exit(1)
    };
    match fork() {
        Err(_) => std::process::exit(1),
        Ok(0) => {}
        Ok(_) => {
            drop(write_end);
            let mut status = [0u8; 1];
            // EOF means the daemon went away without reporting success.
            let n = loop {
                match read_end.read(&mut status) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let ok = matches!(n, Ok(1)) && status[0] == 0;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
    drop(read_end);
    // SAFETY: setsid has no memory-safety preconditions; it fails only if
    // the caller already leads a process group, which a fresh child does
    // not.
    unsafe { libc::setsid() };
    match fork() {
        Err(_) => std::process::exit(1),
        Ok(0) => {}
        Ok(_) => std::process::exit(0),
    }
    // SAFETY: umask and signal take plain values and have no
    // memory-safety preconditions; SIG_IGN is a valid disposition.
    unsafe {
        libc::umask(0o027);
        libc::signal(libc::SIGTSTP, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
    }
    Detached { pipe: write_end }
}

/// Makes `target` (0, 1 or 2) refer to the same file as `src`.
fn redirect(src: &File, target: libc::c_int) -> std::io::Result<()> {
    // SAFETY: both descriptors are valid; dup2 atomically replaces
    // `target`, which the standard library only uses through its number.
    if unsafe { libc::dup2(src.as_raw_fd(), target) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Detached {
    /// Step 2 above. `keep_stderr`: trace output goes to a file, so stderr
    /// stays (QSD keeps it when its log is enabled). On error the message to
    /// print (with `PROG: `) and exit with 1 is returned.
    pub fn finish(mut self, keep_stderr: bool) -> Result<(), String> {
        if let Err(e) = std::env::set_current_dir("/") {
            return Err(format!(
                "not able to chdir to /: {}",
                crate::report::strerror(&e)
            ));
        }
        let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") else {
            std::process::exit(1)
        };
        let _ = std::io::stdout().flush();
        let mut targets = vec![0, 1];
        if !keep_stderr {
            targets.push(2);
        }
        for t in targets {
            if redirect(&null, t).is_err() {
                std::process::exit(1);
            }
        }
        if self.pipe.write_all(&[0]).is_err() {
            std::process::exit(1);
        }
        Ok(())
    }
}
