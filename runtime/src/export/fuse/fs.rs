//! The [`fuser::Filesystem`] of an export: decodes kernel requests on the
//! session thread and runs each as a task on the export's runtime, which
//! replies when the block layer is done. The file system has one inode,
//! the root, which is the regular file.
//!
//! Requests the export does not handle get fuser's defaults, which are
//! libfuse's for a file system without those operations (ENOSYS; `statfs`
//! answers an empty file system with 512-byte blocks; `release` succeeds).

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyWrite, Request, Session, SessionACL, TimeOrNow, WriteFlags,
};

use super::ops::{Attr, SetAttr, Shared, ATTR_TTL};
use crate::block::IoBuf;

/// libfuse's `max_write` for QSD: its 1 MiB request buffer (QEMU keeps
/// it, being below `BDRV_REQUEST_MAX_BYTES`).
const MAX_WRITE: u32 = 1 << 20;

/// Readers of `/dev/fuse`: they only decode and copy, the work runs on
/// the runtime.
const READER_THREADS: usize = 2;

/// What libfuse 3 asks the kernel for by default, for a file system with
/// QEMU's operations (no locks, no `readdirplus`, no splice): among them
/// atomic `O_TRUNC` (an `open` with `O_TRUNC` does not truncate),
/// invalidation of cached data when the size or mtime changes, and
/// asynchronous direct I/O.
fn wanted_capabilities() -> InitFlags {
    InitFlags::FUSE_ASYNC_READ
        | InitFlags::FUSE_PARALLEL_DIROPS
        | InitFlags::FUSE_AUTO_INVAL_DATA
        | InitFlags::FUSE_HANDLE_KILLPRIV
        | InitFlags::FUSE_ASYNC_DIO
        | InitFlags::FUSE_HAS_IOCTL_DIR
        | InitFlags::FUSE_ATOMIC_O_TRUNC
        | InitFlags::FUSE_BIG_WRITES
}

struct ExportFs {
    sh: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

fn file_attr(ino: INodeNo, a: &Attr) -> FileAttr {
    FileAttr {
        ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.time,
        mtime: a.time,
        ctime: a.time,
        crtime: a.time,
        kind: FileType::RegularFile,
        perm: a.perm,
        nlink: 1,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: a.blksize,
        flags: 0,
    }
}

/// Fails requests that arrive after shutdown.
const GONE: Errno = Errno::ENOTCONN;

impl ExportFs {
    /// Runs `f` on the runtime with a reference on the export, or fails
    /// the request with `fail` once the export shuts down.
    fn spawn<R: Send + 'static>(
        &self,
        reply: R,
        fail: impl FnOnce(R, Errno),
        f: impl FnOnce(
            Arc<Shared>,
            R,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) {
        let Some(guard) = self.sh.enter() else {
            fail(reply, GONE);
            return;
        };
        let fut = f(self.sh.clone(), reply);
        self.rt.spawn(async move {
            fut.await;
            drop(guard);
        });
    }
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Filesystem for ExportFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.add_capabilities(wanted_capabilities() & config.capabilities());
        // libfuse leaves these to the kernel's defaults.
        let _ = config.set_max_background(12);
        let _ = config.set_congestion_threshold(9);
        Ok(())
    }

    /// Only the root exists (QEMU answers every lookup ENOENT).
    fn lookup(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::ENOENT);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(_guard) = self.sh.enter() else {
            reply.error(GONE);
            return;
        };
        reply.attr(&ATTR_TTL, &file_attr(ino, &self.sh.getattr()));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            times: atime.is_some() || mtime.is_some() || ctime.is_some(),
        };
        self.spawn(
            reply,
            |r, e| r.error(e),
            move |sh, reply| {
                Box::pin(async move {
                    match sh.setattr(a).await {
                        Ok(attr) => reply.attr(&ATTR_TTL, &file_attr(ino, &attr)),
                        Err(e) => reply.error(err(e)),
                    }
                })
            },
        );
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.sh.enter().is_none() {
            reply.error(GONE);
            return;
        }
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(
            reply,
            |r, e| r.error(e),
            move |sh, reply| {
                Box::pin(async move {
                    match sh.read(offset, size).await {
                        Ok(buf) => reply.data(&buf),
                        Err(e) => reply.error(err(e)),
                    }
                })
            },
        );
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The request buffer is reused for the next request: copy first
        // (QEMU copies too).
        let buf = IoBuf::from_slice(data, self.sh.mem_alignment());
        self.spawn(
            reply,
            |r, e| r.error(e),
            move |sh, reply| {
                Box::pin(async move {
                    match sh.write(offset, buf).await {
                        Ok(n) => reply.written(n),
                        Err(e) => reply.error(err(e)),
                    }
                })
            },
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(reply, |r, e| r.error(e), flush);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(reply, |r, e| r.error(e), flush);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.spawn(
            reply,
            |r, e| r.error(e),
            move |sh, reply| {
                Box::pin(async move {
                    match sh.fallocate(offset, length, mode).await {
                        Ok(()) => reply.ok(),
                        Err(e) => reply.error(err(e)),
                    }
                })
            },
        );
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.spawn(
            reply,
            |r, e| r.error(e),
            move |sh, reply| {
                Box::pin(async move {
                    match sh.lseek(offset, whence).await {
                        Ok(o) => reply.offset(o),
                        Err(e) => reply.error(err(e)),
                    }
                })
            },
        );
    }
}

fn flush(
    sh: Arc<Shared>,
    reply: ReplyEmpty,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        match sh.flush().await {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    })
}

/// Completes the FUSE handshake on the mounted connection `fd` and
/// serves it on a thread of its own until the file system is unmounted.
pub(super) fn run(
    sh: Arc<Shared>,
    rt: tokio::runtime::Handle,
    fd: OwnedFd,
    mountpoint: &str,
) -> io::Result<()> {
    let mut config = Config::default();
    config.n_threads = Some(READER_THREADS);
    let fs = ExportFs { sh, rt };
    // Access control is the kernel's (`allow_other` or not), as with
    // libfuse: the session filters nothing.
    let session = Session::from_fd(fs, fd, SessionACL::All, config)?;
    let name = format!("fuse {mountpoint}");
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::debug!("FUSE session ended: {e}");
            }
        })?;
    Ok(())
}
