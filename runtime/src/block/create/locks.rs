//! QEMU's image locking protocol (file-posix), so that we do not truncate
//! an image another QEMU process (or qsd) is using, and they see us.
//!
//! A user of an image holds shared OFD read locks on byte `100 + bit` for
//! each permission it uses and on byte `200 + bit` for each permission it
//! does not let others use. The permission bits are QEMU's
//! `BLK_PERM_*` bits.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::strerror;

/// Byte of the first "uses permission" lock.
const PERM_BASE: i64 = 100;
/// Byte of the first "does not share permission" lock.
const SHARED_BASE: i64 = 200;

pub const PERM_WRITE: u32 = 1 << 1;
pub const PERM_RESIZE: u32 = 1 << 3;
pub const PERM_ALL: u32 = 0xf;

/// QEMU's names of the permission bits, in bit order.
const PERM_NAMES: [&str; 4] = ["consistent read", "write", "write unchanged", "resize"];

/// Set when the kernel does not know OFD locks: fall back to POSIX locks.
static NO_OFD: AtomicBool = AtomicBool::new(false);

/// Runs `F_(OFD_)SETLK`/`F_(OFD_)GETLK` on one byte. Returns the `flock`
/// as the kernel left it, or the errno.
fn fcntl_lock(file: &File, byte: i64, kind: libc::c_int, get: bool) -> Result<libc::flock, i32> {
    loop {
        let no_ofd = NO_OFD.load(Ordering::Relaxed);
        let cmd = match (get, no_ofd) {
            (true, false) => libc::F_OFD_GETLK,
            (false, false) => libc::F_OFD_SETLK,
            (true, true) => libc::F_GETLK,
            (false, true) => libc::F_SETLK,
        };
        // SAFETY: `flock` is a plain C struct of integers; all zeroes is a
        // valid value (and `l_pid` must be 0 for OFD locks).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = byte as libc::off_t;
        fl.l_len = 1;
        // SAFETY: the descriptor belongs to `file`, which outlives the call,
        // and `fl` is a valid, exclusively borrowed `flock`.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if r != -1 {
            return Ok(fl);
        }
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno == libc::EINVAL && !no_ofd {
            NO_OFD.store(true, Ordering::Relaxed);
            continue;
        }
        return Err(errno);
    }
}

/// QEMU's text for a failed lock operation: without the errno text when
/// another process holds the lock.
fn lock_error(errno: i32, what: String) -> String {
    if errno == libc::EAGAIN || errno == libc::EACCES {
        what
    } else {
        format!("{what}: {}", strerror(errno))
    }
}

/// Takes shared locks: "uses" for every bit of `perm`, "does not share"
/// for every bit of `unshared`.
pub fn apply(file: &File, perm: u32, unshared: u32) -> Result<(), String> {
    for (base, bits) in [(PERM_BASE, perm), (SHARED_BASE, unshared)] {
        for i in 0..PERM_NAMES.len() {
            if bits & (1 << i) != 0 {
                let byte = base + i as i64;
                fcntl_lock(file, byte, libc::F_RDLCK, false)
                    .map_err(|e| lock_error(e, format!("Failed to lock byte {byte}")))?;
            }
        }
    }
    Ok(())
}

/// Whether some other user holds a lock on `byte`.
fn held_by_other(file: &File, byte: i64) -> Result<bool, i32> {
    let fl = fcntl_lock(file, byte, libc::F_WRLCK, true)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Checks that nobody else refuses to share a permission in `perm`, or
/// uses a permission we do not share (outside `shared`).
pub fn check(file: &File, perm: u32, shared: u32) -> Result<(), String> {
    for (i, name) in PERM_NAMES.iter().enumerate() {
        if perm & (1 << i) != 0 {
            match held_by_other(file, SHARED_BASE + i as i64) {
                Ok(false) => {}
                Ok(true) => return Err(format!("Failed to get \"{name}\" lock")),
                Err(e) => return Err(lock_error(e, format!("Failed to get \"{name}\" lock"))),
            }
        }
    }
    for (i, name) in PERM_NAMES.iter().enumerate() {
        if shared & (1 << i) == 0 {
            let what = || format!("Failed to get shared \"{name}\" lock");
            match held_by_other(file, PERM_BASE + i as i64) {
                Ok(false) => {}
                Ok(true) => return Err(what()),
                Err(e) => return Err(lock_error(e, what())),
            }
        }
    }
    Ok(())
}
