//! Thin, safe wrappers of the system calls the file driver uses. Each
//! `unsafe` block passes a file descriptor the caller owns and buffers
//! borrowed for the duration of the call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `open(2)` with `flags` | O_CLOEXEC.
pub fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string; the returned fd is
    // fresh and owned by the OwnedFd.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by open and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(2)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer for the call.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `fstatfs(2)`'s file system type.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero `statfs` is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer for the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// The size of a block device (`BLKGETSIZE64`).
pub fn blk_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut size) })?;
    Ok(size)
}

/// `lseek(2)`; `SEEK_DATA`/`SEEK_HOLE` report ENXIO past the data.
pub fn lseek(fd: BorrowedFd<'_>, off: u64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: plain system call on a valid fd.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// `preadv2(2)` of one buffer with `flags` (e.g. RWF_NOWAIT).
pub fn preadv2(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    off: u64,
    flags: libc::c_int,
) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, valid and exclusively borrowed for
    // the duration of the call.
    cvt_size(unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, off as libc::off_t, flags) })
}

/// `pwritev2(2)` of one buffer with `flags` (RWF_NOWAIT, RWF_DSYNC).
pub fn pwritev2(fd: BorrowedFd<'_>, buf: &[u8], off: u64, flags: libc::c_int) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `iov` describes `buf`, valid for the duration of the call;
    // the kernel only reads it.
    cvt_size(unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, off as libc::off_t, flags) })
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: libc::c_int, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain system call on a valid fd.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) })?;
    Ok(())
}

/// `posix_fallocate(3)`: allocates the range, growing the file if it ends
/// before; the C library writes zeroes where the file system cannot
/// allocate.
pub fn posix_fallocate(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain library call on a valid fd; it returns the error
    // number instead of setting errno.
    let r =
        unsafe { libc::posix_fallocate(fd.as_raw_fd(), off as libc::off_t, len as libc::off_t) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// `fdatasync(2)`.
pub fn fdatasync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain system call on a valid fd.
    cvt(unsafe { libc::fdatasync(fd.as_raw_fd()) })?;
    Ok(())
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    // SAFETY: plain system call on a valid fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    Ok(())
}

/// `fcntl(F_GETFL)` / `fcntl(F_SETFL)`.
pub fn set_status_flags(
    fd: BorrowedFd<'_>,
    set: libc::c_int,
    clear: libc::c_int,
) -> io::Result<()> {
    // SAFETY: plain system calls on a valid fd.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, (fl | set) & !clear) })?;
    Ok(())
}

/// A block-device range ioctl (`BLKDISCARD`, `BLKZEROOUT`).
pub fn blk_range_ioctl(
    fd: BorrowedFd<'_>,
    req: libc::c_ulong,
    off: u64,
    len: u64,
) -> io::Result<()> {
    let range: [u64; 2] = [off, len];
    // SAFETY: these ioctls read two u64 from the pointer given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, range.as_ptr()) })?;
    Ok(())
}

pub const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
pub const BLKDISCARD: libc::c_ulong = 0x1277;
pub const BLKZEROOUT: libc::c_ulong = 0x127f;
pub const BLKSSZGET: libc::c_ulong = 0x1268;

/// Logical sector size of a block device.
pub fn blk_sector_size(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to the pointer given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), BLKSSZGET, &mut n) })?;
    Ok(n as u32)
}

/// Sets (`lock`) a shared lock or removes (`!lock`) the lock on byte
/// `off` with an open file description lock (`F_OFD_SETLK`).
pub fn ofd_lock(fd: BorrowedFd<'_>, off: u64, lock: bool) -> io::Result<()> {
    let mut fl = flock(off, if lock { libc::F_RDLCK } else { libc::F_UNLCK });
    // SAFETY: `fl` is a valid flock for F_OFD_SETLK.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) })?;
    Ok(())
}

/// Whether another open file description holds a lock on byte `off` that
/// conflicts with an exclusive lock (`F_OFD_GETLK` with F_WRLCK).
pub fn ofd_lock_conflicts(fd: BorrowedFd<'_>, off: u64) -> io::Result<bool> {
    let mut fl = flock(off, libc::F_WRLCK);
    // SAFETY: `fl` is a valid flock for F_OFD_GETLK, which writes to it.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

fn flock(off: u64, ty: libc::c_int) -> libc::flock {
    // SAFETY: an all-zero flock is valid; OFD locks need l_pid == 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = off as libc::off_t;
    fl.l_len = 1;
    fl
}

/// `eventfd(2)`, non-blocking.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the fd returned is fresh.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads (and resets) an eventfd counter; `Ok(None)` if it was zero.
pub fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into `v`.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(v))
}

pub const TMPFS_MAGIC: i64 = 0x0102_1994;
