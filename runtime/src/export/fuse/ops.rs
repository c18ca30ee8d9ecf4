//! What each FUSE request does to the block node, as QEMU 10.0's FUSE
//! export does it. Results are errno values, which the kernel hands to
//! the caller of the system call.
//!
//! - Reads and writes are clipped at the end of the node (short reads and
//!   writes); a growable export first grows the node to hold a write.
//! - `fallocate`: mode 0 only grows the file at its end (with allocation,
//!   EOPNOTSUPP inside the file); `PUNCH_HOLE|KEEP_SIZE` writes zeroes that
//!   may unmap and must not fall back to writing buffers; `ZERO_RANGE`
//!   writes zeroes, growing the node first without `KEEP_SIZE`; every other
//!   mode is EOPNOTSUPP.
//! - Attributes: the node's size; blocks from the image's allocated size
//!   (or the size when unknown); block size the node's request alignment;
//!   mode 0400 (0600 when writable) and the daemon's uid/gid until
//!   `setattr` changes them; all times are the current second.
//! - `setattr` accepts a size (writable exports only) and a mode (no group
//!   or other bits without `allow_other`, no write bits on a read-only
//!   export); uid/gid only with `allow_other`; anything else (times) is
//!   ENOTSUP.
//!
//! Resizes are serialised, and a growing write re-reads the size under
//! that lock, so concurrent writes past the end never shrink the node.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::errno;
use crate::block::{BlockNode, IoBuf, WriteFlags, ZeroFlags};

/// QEMU's `BDRV_REQUEST_MAX_BYTES`.
pub const REQUEST_MAX_BYTES: i64 = (i32::MAX as i64 >> 9) << 9;

/// QEMU's `FUSE_MAX_BOUNCE_BYTES`: the largest read served.
pub const MAX_BOUNCE_BYTES: u64 = 64 * 1024 * 1024;

/// How long the kernel may cache attributes (libfuse's 1.0 s).
pub const ATTR_TTL: Duration = Duration::from_secs(1);

/// The result of an operation: a value or an errno.
pub type OpResult<T> = Result<T, i32>;

/// The attributes `stat` shows (QEMU's `fuse_getattr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub size: u64,
    /// In 512-byte units.
    pub blocks: u64,
    pub blksize: u32,
    /// Permission bits (without the file type).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// atime = mtime = ctime: the current second.
    pub time: SystemTime,
}

/// What `setattr` asks to change (the kernel's `FATTR_*` bits the export
/// sees, as libfuse passes them on).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// Any of atime, mtime, ctime (set or "now").
    pub times: bool,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The state every request of one export shares.
pub struct Shared {
    node: Arc<BlockNode>,
    writable: bool,
    growable: bool,
    writethrough: bool,
    allow_other: AtomicBool,
    owner: Mutex<Owner>,
    shut_down: AtomicBool,
    /// Requests being served, and a wake-up when the last one ends.
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Serialises resizes.
    resize: tokio::sync::Mutex<()>,
}

/// A request being served; the export waits for it when shutting down.
pub struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Shared {
    /// The state of a new export of `node`, mode 0400 (0600 when
    /// writable), owned by the daemon's user.
    pub fn new(node: Arc<BlockNode>, writable: bool, growable: bool, writethrough: bool) -> Shared {
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut mode = libc::S_IFREG | libc::S_IRUSR;
        if writable {
            mode |= libc::S_IWUSR;
        }
        Shared {
            node,
            writable,
            growable,
            writethrough,
            allow_other: AtomicBool::new(false),
            owner: Mutex::new(Owner { mode, uid, gid }),
            shut_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            resize: tokio::sync::Mutex::new(()),
        }
    }

    /// Alignment of the node's I/O buffers.
    pub(crate) fn mem_alignment(&self) -> usize {
        self.node.mem_alignment()
    }

    pub(crate) fn set_allow_other(&self, on: bool) {
        self.allow_other.store(on, Ordering::Release);
    }

    /// Whether the mount uses `allow_other`.
    pub fn allow_other(&self) -> bool {
        self.allow_other.load(Ordering::Acquire)
    }

    /// Refuses new requests from now on.
    pub(crate) fn shut_down(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
    }

    /// Enters a request, or `None` once the export is shutting down (the
    /// request then fails with ENOTCONN, as it does on QEMU's unmounted
    /// export).
    pub(crate) fn enter(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        if self.shut_down.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Waits until no request is being served.
    pub(crate) async fn idle(&self) {
        loop {
            let wake = self.idle.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            wake.await;
        }
    }

    fn owner(&self) -> Owner {
        *self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node's length as QEMU's `blk_getlength` reports it.
    fn length(&self) -> u64 {
        self.node.size()
    }

    fn write_flags(&self) -> WriteFlags {
        WriteFlags {
            fua: self.writethrough,
        }
    }

    /// `getattr`.
    pub fn getattr(&self) -> Attr {
        let size = self.length();
        let blocks = match crate::block::info::allocated_size(&self.node) {
            Some(a) if a > 0 => a.div_ceil(512),
            _ => size.div_ceil(512),
        };
        // QEMU reports the exported node's request alignment: 1 for
        // format and filter nodes, the probed one for protocol nodes.
        let blksize = if self.node.driver().protocol_name().is_some() {
            self.node.request_alignment()
        } else {
            1
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let o = self.owner();
        Attr {
            size,
            blocks,
            blksize: u32::try_from(blksize).unwrap_or(u32::MAX),
            perm: (o.mode & 0o7777) as u16,
            uid: o.uid,
            gid: o.gid,
            time: UNIX_EPOCH + Duration::from_secs(now),
        }
    }

    /// `read`: clipped at the end of the node.
    pub async fn read(&self, offset: u64, size: u32) -> OpResult<IoBuf> {
        let mut size = u64::from(size);
        if size > MAX_BOUNCE_BYTES {
            return Err(libc::EINVAL);
        }
        let length = self.length();
        if offset.saturating_add(size) > length {
            if offset > length {
                // QEMU's size becomes negative and the bounce buffer
                // cannot be allocated.
                return Err(libc::ENOMEM);
            }
            size = length - offset;
        }
        self.node
            .read(offset, size as usize)
            .await
            .map_err(|e| errno(&e))
    }

    /// `write`: returns the number of bytes written. A growable export
    /// grows the node to hold the data; others write up to its end.
    pub async fn write(&self, offset: u64, mut data: IoBuf) -> OpResult<u32> {
        if data.len() as i64 > REQUEST_MAX_BYTES {
            return Err(libc::EINVAL);
        }
        if !self.writable {
            return Err(libc::EACCES);
        }
        let size = data.len() as u64;
        let end = offset.checked_add(size).ok_or(libc::EIO)?;
        if end > self.length() {
            if self.growable {
                let _g = self.resize.lock().await;
                if end > self.length() {
                    self.truncate(end, true, false).await?;
                }
            } else {
                let length = self.length();
                if offset > length {
                    return Err(libc::EIO);
                }
                data.truncate((length - offset) as usize);
            }
        }
        let n = data.len() as u32;
        self.node
            .write(offset, data, self.write_flags())
            .await
            .map_err(|e| errno(&e))?;
        Ok(n)
    }

    /// QEMU's `fuse_do_truncate`: resizes the node. `zero_write` asks for
    /// the new area to read as zeroes (which only drivers that guarantee
    /// it accept), `falloc` for it to be allocated. Every caller needs a
    /// writable export, which holds `resize` for good (QEMU would take it
    /// for the duration otherwise; that cannot happen).
    async fn truncate(&self, size: u64, zero_write: bool, falloc: bool) -> OpResult<()> {
        if !self.growable && !self.writable {
            return Err(libc::EPERM);
        }
        self.do_truncate(size, zero_write, falloc).await
    }

    async fn do_truncate(&self, size: u64, zero_write: bool, falloc: bool) -> OpResult<()> {
        if size > i64::MAX as u64 {
            return Err(libc::EINVAL);
        }
        if self.node.is_read_only() {
            return Err(libc::EACCES);
        }
        if (zero_write || falloc) && !zero_write_supported(&self.node) {
            // "Block driver does not support requested flags"
            return Err(libc::ENOTSUP);
        }
        if falloc {
            return self.node.truncate_falloc(size).await.map_err(|e| errno(&e));
        }
        self.node
            .co_truncate_flags(size, zero_write)
            .await
            .map_err(|e| {
                if e.desc == "Cannot resize fixed-size raw disks"
                    || e.desc == "Image format driver does not support resize"
                {
                    libc::ENOTSUP
                } else if e.desc == "Image is read-only" {
                    libc::EACCES
                } else {
                    libc::EIO
                }
            })
    }

    /// `blk_pwrite_zeroes` with QEMU's range checks.
    async fn write_zeroes(&self, offset: i64, bytes: i64, flags: ZeroFlags) -> OpResult<()> {
        if offset < 0 || bytes < 0 {
            return Err(libc::EIO);
        }
        let length = self.length() as i64;
        if offset > length || length - offset < bytes {
            return Err(libc::EIO);
        }
        if bytes == 0 {
            return Ok(());
        }
        self.node
            .write_zeroes(offset as u64, bytes as u64, flags)
            .await
            .map_err(|e| errno(&e))
    }

    /// `fallocate`.
    pub async fn fallocate(&self, offset: u64, length: u64, mode: i32) -> OpResult<()> {
        if !self.writable {
            return Err(libc::EACCES);
        }
        let _g = self.resize.lock().await;
        let blk_len = self.length() as i64;
        let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
        let mut length = i64::try_from(length).map_err(|_| libc::EINVAL)?;
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            length = length.min(blk_len - offset);
        }
        let fua = self.writethrough;
        if mode == 0 {
            if offset < blk_len {
                return Err(libc::EOPNOTSUPP);
            }
            if offset > blk_len {
                self.truncate(offset as u64, true, false).await?;
            }
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            return self.truncate(end as u64, true, true).await;
        }
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
                return Err(libc::EINVAL);
            }
            let flags = ZeroFlags {
                fua,
                may_unmap: true,
                no_fallback: true,
            };
            return self.zero_loop(offset, length, flags).await.map_err(|e| {
                if e == libc::ENOTSUP {
                    libc::EOPNOTSUPP
                } else {
                    e
                }
            });
        }
        if mode & libc::FALLOC_FL_ZERO_RANGE != 0 {
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
                let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
                if end > blk_len {
                    self.truncate(end as u64, false, false).await?;
                }
            }
            let flags = ZeroFlags {
                fua,
                ..Default::default()
            };
            return self.zero_loop(offset, length, flags).await;
        }
        Err(libc::EOPNOTSUPP)
    }

    /// QEMU's loop of write-zeroes requests of at most
    /// `REQUEST_MAX_BYTES`; runs once even for an empty (or negative)
    /// length.
    async fn zero_loop(&self, mut offset: i64, mut length: i64, flags: ZeroFlags) -> OpResult<()> {
        loop {
            let size = length.min(REQUEST_MAX_BYTES);
            self.write_zeroes(offset, size, flags).await?;
            offset += size;
            length -= size;
            if length <= 0 {
                return Ok(());
            }
        }
    }

    /// `fsync` and `flush`.
    pub async fn flush(&self) -> OpResult<()> {
        self.node.flush().await.map_err(|e| errno(&e))
    }

    /// `setattr`: returns the new attributes.
    pub async fn setattr(&self, a: SetAttr) -> OpResult<Attr> {
        let allow_other = self.allow_other();
        if a.times || (!allow_other && (a.uid.is_some() || a.gid.is_some())) {
            return Err(libc::ENOTSUP);
        }
        if let Some(mode) = a.mode {
            if !allow_other && mode & (libc::S_IRWXG | libc::S_IRWXO) != 0 {
                return Err(libc::EPERM);
            }
            if !self.writable && mode & (libc::S_IWUSR | libc::S_IWGRP | libc::S_IWOTH) != 0 {
                return Err(libc::EROFS);
            }
        }
        if let Some(size) = a.size {
            if !self.writable {
                return Err(libc::EACCES);
            }
            let _g = self.resize.lock().await;
            self.truncate(size, true, false).await?;
        }
        {
            let mut o = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(mode) = a.mode {
                o.mode = (mode & 0o7777) | libc::S_IFREG;
            }
            if let Some(uid) = a.uid {
                o.uid = uid;
            }
            if let Some(gid) = a.gid {
                o.gid = gid;
            }
        }
        Ok(self.getattr())
    }

    /// `lseek` with SEEK_DATA or SEEK_HOLE, from the node's block status.
    pub async fn lseek(&self, offset: i64, whence: i32) -> OpResult<i64> {
        if whence != libc::SEEK_HOLE && whence != libc::SEEK_DATA {
            return Err(libc::EINVAL);
        }
        let mut offset = offset;
        loop {
            let length = self.length() as i64;
            if offset < 0 {
                return Err(libc::ENXIO);
            }
            if offset >= length {
                // End of file: a hole up to the client-visible end.
                if offset > length || whence == libc::SEEK_DATA {
                    return Err(libc::ENXIO);
                }
                return Ok(offset);
            }
            let e = self
                .node
                .block_status(offset as u64, (length - offset) as u64)
                .await
                .map_err(|e| errno(&e))?;
            if e.data == (whence == libc::SEEK_DATA) {
                return Ok(offset);
            }
            if e.len == 0 {
                return Err(libc::ENXIO);
            }
            offset += e.len as i64;
        }
    }
}

/// Whether a resize of `node` can promise that the new area reads as
/// zeroes (QEMU's `BDRV_REQ_ZERO_WRITE` in `supported_truncate_flags`):
/// regular files, raw nodes over them, and qcow2.
fn zero_write_supported(node: &Arc<BlockNode>) -> bool {
    match node.driver_name() {
        "file" | "qcow2" => true,
        "raw" => node.child("file").is_some_and(|c| zero_write_supported(&c)),
        _ => false,
    }
}
