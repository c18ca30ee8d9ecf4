//! The `pty` backend: a new pseudo-terminal whose slave side the user opens
//! (its name is printed, returned by `chardev-add` and optionally linked
//! from `path`). A session runs while a process has the slave open; the
//! master is checked once a second while nobody has.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use qapi::types::ChardevPty;

use super::fd::fd_io;
use super::os_error;
use super::session::Sessions;
use super::{set_filename, Driver, Filename};

/// Opens a raw-mode pseudo-terminal; returns the master and the slave's
/// name.
fn openpty_raw() -> std::io::Result<(OwnedFd, String)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors; the name and settings
    // arguments may be NULL.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // SAFETY: termios is plain data filled by tcgetattr; cfmakeraw edits it.
    unsafe {
        let mut tty: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut tty) == 0 {
            libc::cfmakeraw(&mut tty);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSAFLUSH, &tty);
        }
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most buf.len().
    let r = unsafe { libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r succeeded, so `buf` holds a C string.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    drop(slave);
    Ok((master, name))
}

/// Whether nobody has the slave side open (the master reports a hangup).
fn hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: polling one valid pollfd without waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r >= 0 && p.revents & libc::POLLHUP != 0
}

/// Creates the pty; returns the driver and the slave's name.
pub(crate) fn open(
    id: &str,
    p: &ChardevPty,
    sessions: Sessions,
    filename: &Filename,
) -> Result<(Driver, String), String> {
    let (master, name) =
        openpty_raw().map_err(|e| format!("Failed to create PTY: {}", os_error(&e)))?;
    set_filename(filename, format!("pty:{name}"));
    println!("char device redirected to {name} (label {id})");
    let mut driver = Driver::default();
    if let Some(path) = &p.path {
        std::os::unix::fs::symlink(&name, path)
            .map_err(|e| format!("Failed to create PTY symlink: {}", os_error(&e)))?;
        let path = path.clone();
        driver.on_drop(Box::new(move || {
            let _ = std::fs::remove_file(&path);
        }));
    }
    let raw = master.as_raw_fd();
    let io = fd_io(master);
    driver.spawn(async move {
        loop {
            while hung_up(raw) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            match sessions.open(io.reader(), io.writer()).await {
                Some(done) => {
                    let _ = done.await;
                }
                None => return,
            }
            // The slave was closed (the read failed); poll again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok((driver, name))
}
