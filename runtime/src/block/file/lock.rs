//! QEMU-compatible image locking.
//!
//! QEMU (file-posix) expresses block permissions as shared OFD locks on
//! single bytes of the image file: byte `100 + i` is locked while the
//! process *holds* permission bit `i`, byte `200 + i` while it does *not
//! share* bit `i` (bits: 0 consistent read, 1 write, 2 write unchanged,
//! 3 resize). Another process that wants bit `i` tests byte `200 + i`;
//! one that refuses to share bit `i` tests byte `100 + i`. Using the same
//! bytes makes our locks and qemu-img's, QEMU's and QSD's see each other.

use std::io;
use std::os::fd::BorrowedFd;

use qapi::QmpError;

use super::sys;
use crate::block::Perm;

pub const PERM_BASE: u64 = 100;
pub const SHARED_BASE: u64 = 200;

/// The lock bytes held on one file descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Bits whose byte `100 + i` we lock.
    pub perm: Perm,
    /// Bits whose byte `200 + i` we lock (those we do not share).
    pub unshared: Perm,
}

fn lock_err(what: &str, off: u64, e: io::Error) -> QmpError {
    if e.raw_os_error() == Some(libc::EAGAIN) {
        QmpError::generic(format!("{what} {off}"))
    } else {
        QmpError::generic(format!(
            "{what} {off}: {}",
            crate::block::file::strerror(&e)
        ))
    }
}

/// QEMU's `raw_apply_lock_bytes`: takes the bytes for `perm` and
/// `unshared` not held yet and, if `unlock`, releases the others.
pub fn apply(
    fd: BorrowedFd<'_>,
    held: &mut Held,
    perm: Perm,
    unshared: Perm,
    unlock: bool,
) -> Result<(), QmpError> {
    for i in 0..Perm::COUNT {
        let bit = Perm::bit(i);
        let off = PERM_BASE + i as u64;
        if perm.contains(bit) && !held.perm.contains(bit) {
            sys::ofd_lock(fd, off, true).map_err(|e| lock_err("Failed to lock byte", off, e))?;
            held.perm |= bit;
        } else if unlock && held.perm.contains(bit) && !perm.contains(bit) {
            sys::ofd_lock(fd, off, false).map_err(|e| lock_err("Failed to unlock byte", off, e))?;
            held.perm &= !bit;
        }
    }
    for i in 0..Perm::COUNT {
        let bit = Perm::bit(i);
        let off = SHARED_BASE + i as u64;
        if unshared.contains(bit) && !held.unshared.contains(bit) {
            sys::ofd_lock(fd, off, true).map_err(|e| lock_err("Failed to lock byte", off, e))?;
            held.unshared |= bit;
        } else if unlock && held.unshared.contains(bit) && !unshared.contains(bit) {
            sys::ofd_lock(fd, off, false).map_err(|e| lock_err("Failed to unlock byte", off, e))?;
            held.unshared &= !bit;
        }
    }
    Ok(())
}

/// QEMU's `raw_check_lock_bytes`: fails if another open file description
/// does not share what we want, or holds what we do not share.
pub fn check(fd: BorrowedFd<'_>, perm: Perm, shared: Perm) -> Result<(), QmpError> {
    for i in 0..Perm::COUNT {
        let bit = Perm::bit(i);
        if perm.contains(bit) {
            let off = SHARED_BASE + i as u64;
            match sys::ofd_lock_conflicts(fd, off) {
                Ok(false) => {}
                Ok(true) => {
                    return Err(QmpError::generic(format!(
                        "Failed to get \"{}\" lock",
                        bit.names()
                    )))
                }
                Err(e) => {
                    return Err(QmpError::generic(format!(
                        "Failed to get \"{}\" lock: {}",
                        bit.names(),
                        crate::block::file::strerror(&e)
                    )))
                }
            }
        }
    }
    for i in 0..Perm::COUNT {
        let bit = Perm::bit(i);
        if !shared.contains(bit) {
            let off = PERM_BASE + i as u64;
            match sys::ofd_lock_conflicts(fd, off) {
                Ok(false) => {}
                Ok(true) => {
                    return Err(QmpError::generic(format!(
                        "Failed to get shared \"{}\" lock",
                        bit.names()
                    )))
                }
                Err(e) => {
                    return Err(QmpError::generic(format!(
                        "Failed to get shared \"{}\" lock: {}",
                        bit.names(),
                        crate::block::file::strerror(&e)
                    )))
                }
            }
        }
    }
    Ok(())
}
