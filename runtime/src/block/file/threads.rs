//! The `aio=threads` engine, made cheaper than QEMU's.
//!
//! QEMU hands every request to a thread pool. A request that hits the page
//! cache then costs two context switches for a memory copy. We first try
//! the system call on the calling task with `RWF_NOWAIT`, which fails with
//! EAGAIN instead of blocking; only then does the request go to tokio's
//! blocking pool. On tmpfs nothing ever waits for a disk, so calls are
//! always made inline there. A file system that rejects `RWF_NOWAIT`
//! (EOPNOTSUPP) makes the file use the pool from then on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::sys;
use crate::block::IoBuf;

/// How a file's requests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Inline {
    /// Try `RWF_NOWAIT` inline, fall back to the pool.
    TryNowait = 0,
    /// Always inline (tmpfs: never blocks on a disk).
    Always = 1,
    /// Always in the pool.
    Never = 2,
}

/// Inline policy for reads and writes, learnt per file.
#[derive(Debug)]
pub struct Policy {
    read: AtomicU8,
    write: AtomicU8,
}

impl Policy {
    pub fn new(p: Inline) -> Policy {
        Policy {
            read: AtomicU8::new(p as u8),
            write: AtomicU8::new(p as u8),
        }
    }

    fn get(a: &AtomicU8) -> Inline {
        match a.load(Ordering::Relaxed) {
            0 => Inline::TryNowait,
            1 => Inline::Always,
            _ => Inline::Never,
        }
    }

    /// Starts over with policy `p` (after a reopen changed O_DIRECT).
    pub fn reset(&self, p: Inline) {
        self.read.store(p as u8, Ordering::Relaxed);
        self.write.store(p as u8, Ordering::Relaxed);
    }

    pub fn read_mode(&self) -> Inline {
        Self::get(&self.read)
    }

    pub fn write_mode(&self) -> Inline {
        Self::get(&self.write)
    }
}

fn is_nowait_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

/// Reads into `buf[done..]` at `off + done` until full or end of file
/// (the rest keeps its zeroes).
pub fn pread_loop(fd: &OwnedFd, buf: &mut [u8], off: u64, mut done: usize) -> io::Result<()> {
    while done < buf.len() {
        match sys::preadv2(fd.as_fd(), &mut buf[done..], off + done as u64, 0) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `buf[done..]` at `off + done` completely.
pub fn pwrite_loop(
    fd: &OwnedFd,
    buf: &[u8],
    off: u64,
    mut done: usize,
    flags: libc::c_int,
) -> io::Result<()> {
    while done < buf.len() {
        match sys::pwritev2(fd.as_fd(), &buf[done..], off + done as u64, flags) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Ok(n) => done += n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `f` in the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Reads `buf.len()` bytes at `off`.
pub async fn read(
    policy: &Policy,
    fd: Arc<OwnedFd>,
    mut buf: IoBuf,
    off: u64,
) -> io::Result<IoBuf> {
    let mut done = 0;
    match policy.read_mode() {
        Inline::Always => {
            pread_loop(&fd, &mut buf, off, 0)?;
            return Ok(buf);
        }
        Inline::TryNowait => match sys::preadv2(fd.as_fd(), &mut buf, off, libc::RWF_NOWAIT) {
            Ok(n) if n == buf.len() || n == 0 => return Ok(buf),
            Ok(n) => done = n,
            Err(e) if would_block(&e) => {}
            Err(e) if is_nowait_unsupported(&e) => {
                policy.read.store(Inline::Never as u8, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        },
        Inline::Never => {}
    }
    blocking(move || {
        pread_loop(&fd, &mut buf, off, done)?;
        Ok(buf)
    })
    .await
}

/// Writes `buf` at `off`; `dsync` makes it reach stable storage (FUA).
pub async fn write(
    policy: &Policy,
    fd: Arc<OwnedFd>,
    buf: IoBuf,
    off: u64,
    dsync: bool,
) -> io::Result<()> {
    let flags = if dsync { libc::RWF_DSYNC } else { 0 };
    let mut done = 0;
    match policy.write_mode() {
        Inline::Always => return pwrite_loop(&fd, &buf, off, 0, flags),
        Inline::TryNowait if !dsync => {
            match sys::pwritev2(fd.as_fd(), &buf, off, libc::RWF_NOWAIT) {
                Ok(n) if n == buf.len() => return Ok(()),
                Ok(n) => done = n,
                Err(e) if would_block(&e) => {}
                Err(e) if is_nowait_unsupported(&e) => {
                    policy.write.store(Inline::Never as u8, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        _ => {}
    }
    blocking(move || pwrite_loop(&fd, &buf, off, done, flags)).await
}

/// Runs a short control call (fallocate, fdatasync, lseek) inline if the
/// file never blocks, else in the pool.
pub async fn control<T: Send + 'static>(
    inline: bool,
    fd: Arc<OwnedFd>,
    f: impl FnOnce(&OwnedFd) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if inline {
        f(&fd)
    } else {
        blocking(move || f(&fd)).await
    }
}
