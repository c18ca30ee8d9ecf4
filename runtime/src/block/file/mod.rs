//! The `file` and `host_device` protocol drivers: an image in a POSIX
//! file or a block device.
//!
//! - Access mode follows the node: O_RDWR, or O_RDONLY for read-only nodes
//!   (and as a fallback with `auto-read-only`). `cache.direct` adds
//!   O_DIRECT: request and memory alignment are probed as QEMU does, and
//!   unaligned requests go through aligned bounce buffers.
//! - I/O runs on the engine chosen by `aio`: [`threads`] (default, and
//!   `native`, which QEMU implements with Linux AIO) tries each call inline
//!   with `RWF_NOWAIT` first; [`uring`] submits to an io_uring.
//! - `locking` takes QEMU's image locks ([`lock`]) so that QEMU processes
//!   and we see each other's use of an image.
//! - Write-zeroes and discard use `fallocate` (ZERO_RANGE, PUNCH_HOLE) on
//!   files and `BLKZEROOUT`/`BLKDISCARD` on block devices; block status
//!   uses SEEK_DATA/SEEK_HOLE.

pub mod lock;
pub mod sys;
pub mod threads;
pub mod uring;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qapi::types::{
    BlockStatsSpecific, BlockStatsSpecificBranch, BlockStatsSpecificFile, BlockdevAioOptions,
    BlockdevOptionsFile, ImageInfoSpecific, ImageInfoSpecificBranch, ImageInfoSpecificFile,
    ImageInfoSpecificFileWrapper, OnOffAuto,
};
use qapi::QmpError;

use super::{
    user_error, AllocatedSize, BlockDriver, Extent, IoBuf, IoFuture, Perm, ReopenRequest,
    ReopenState, WriteFlags, ZeroFlags,
};
use threads::{Inline, Policy};

/// The C library's text for an errno, as QEMU prints it.
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let mut buf = [0 as libc::c_char; 256];
            // SAFETY: `buf` is writable for its length; the GNU
            // strerror_r variant in libc's binding is the XSI one, which
            // fills `buf` with a NUL-terminated string.
            let r = unsafe { libc::strerror_r(n, buf.as_mut_ptr(), buf.len()) };
            if r != 0 {
                return format!("Unknown error {n}");
            }
            // SAFETY: strerror_r NUL-terminated the buffer.
            unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        }
        None => e.to_string(),
    }
}

enum Engine {
    Threads,
    Uring(uring::Uring),
}

/// The descriptor in use, replaced by a reopen.
struct FdState {
    fd: Arc<OwnedFd>,
    direct: bool,
    writable: bool,
}

struct LockState {
    held: lock::Held,
    /// Permissions committed (QEMU's `s->perm`, `s->shared_perm`).
    perm: Perm,
    shared: Perm,
    /// A check is pending (between `check_perm` and set/abort).
    pending: bool,
}

/// An open image file or block device.
pub struct FileDriver {
    name: &'static str,
    filename: String,
    device: bool,
    fd: RwLock<Arc<FdState>>,
    size: AtomicU64,
    engine: Engine,
    policy: Policy,
    /// Control calls (fallocate, lseek) run inline: tmpfs.
    inline_control: bool,
    use_lock: bool,
    locks: Mutex<LockState>,
    req_align: AtomicU64,
    mem_align: AtomicU64,
    /// Serialises read-modify-write cycles of unaligned O_DIRECT writes
    /// against aligned writes.
    rmw: tokio::sync::RwLock<()>,
    discard_nb_ok: AtomicU64,
    discard_nb_failed: AtomicU64,
    discard_bytes_ok: AtomicU64,
}

/// Node-level settings the driver opens with.
#[derive(Debug, Clone, Copy)]
pub struct OpenFlags {
    pub read_only: bool,
    pub auto_read_only: bool,
    pub direct: bool,
}

fn open_flags(writable: bool, direct: bool) -> libc::c_int {
    let mut f = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    if direct {
        f |= libc::O_DIRECT;
    }
    f
}

fn open_error(filename: &str, e: &io::Error) -> QmpError {
    QmpError::generic(format!("Could not open '{filename}': {}", strerror(e)))
}

impl FileDriver {
    /// Opens `opts` for driver `name` (`file` or `host_device`). Returns
    /// the driver and whether it fell back to read-only.
    pub fn open(
        name: &'static str,
        opts: &BlockdevOptionsFile,
        flags: OpenFlags,
    ) -> Result<(FileDriver, bool), QmpError> {
        let device = name != "file";
        if opts.filename.is_empty() {
            return Err(QmpError::generic(format!(
                "The '{name}' block driver requires a file name"
            )));
        }
        let aio = opts.aio.unwrap_or(BlockdevAioOptions::Threads);
        if aio == BlockdevAioOptions::Native && !flags.direct {
            return Err(QmpError::generic(
                "aio=native was specified, but it requires cache.direct=on, which was not specified.",
            ));
        }
        let use_lock = !matches!(opts.locking, Some(OnOffAuto::Off));
        let mut writable = !flags.read_only;
        let fd = match sys::open(&opts.filename, open_flags(writable, flags.direct)) {
            Ok(fd) => fd,
            Err(e)
                if writable
                    && flags.auto_read_only
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES) | Some(libc::EROFS) | Some(libc::EPERM)
                    ) =>
            {
                writable = false;
                sys::open(&opts.filename, open_flags(false, flags.direct))
                    .map_err(|_| open_error(&opts.filename, &e))?
            }
            Err(e) => return Err(open_error(&opts.filename, &e)),
        };
        let st = sys::fstat(fd.as_fd()).map_err(|e| {
            QmpError::generic(format!(
                "Could not stat '{}': {}",
                opts.filename,
                strerror(&e)
            ))
        })?;
        let fmt = st.st_mode & libc::S_IFMT;
        if !device && fmt != libc::S_IFREG {
            return Err(QmpError::generic(format!(
                "'{name}' driver requires '{}' to be a regular file",
                opts.filename
            )));
        }
        if device && fmt != libc::S_IFBLK && fmt != libc::S_IFCHR {
            return Err(QmpError::generic(format!(
                "'{name}' driver requires '{}' to be either a character or block device",
                opts.filename
            )));
        }
        let tmpfs = sys::fs_type(fd.as_fd())
            .map(|t| t == sys::TMPFS_MAGIC)
            .unwrap_or(false);
        // QSD_BLOCK_INLINE=0 sends every request to the pool, as QEMU's
        // aio=threads does (for benchmarks comparing the two).
        let never = std::env::var_os("QSD_BLOCK_INLINE").is_some_and(|v| v == "0");
        let policy = if never {
            Inline::Never
        } else if tmpfs {
            Inline::Always
        } else if flags.direct {
            Inline::Never
        } else {
            Inline::TryNowait
        };
        let engine = match aio {
            BlockdevAioOptions::IoUring => Engine::Uring(uring::Uring::new().map_err(|e| {
                QmpError::generic(format!("Unable to use io_uring: {}", strerror(&e)))
            })?),
            _ => Engine::Threads,
        };
        let size = if fmt == libc::S_IFBLK {
            sys::blk_size(fd.as_fd()).unwrap_or(0)
        } else {
            st.st_size as u64
        };
        let drv = FileDriver {
            name,
            filename: opts.filename.clone(),
            device,
            fd: RwLock::new(Arc::new(FdState {
                fd: Arc::new(fd),
                direct: flags.direct,
                writable,
            })),
            size: AtomicU64::new(size),
            engine,
            policy: Policy::new(policy),
            inline_control: tmpfs && !never,
            use_lock,
            locks: Mutex::new(LockState {
                held: lock::Held::default(),
                perm: Perm::NONE,
                shared: Perm::ALL,
                pending: false,
            }),
            req_align: AtomicU64::new(1),
            mem_align: AtomicU64::new(1),
            rmw: tokio::sync::RwLock::new(()),
            discard_nb_ok: AtomicU64::new(0),
            discard_nb_failed: AtomicU64::new(0),
            discard_bytes_ok: AtomicU64::new(0),
        };
        drv.probe_alignment();
        Ok((drv, !writable && !flags.read_only))
    }

    fn state(&self) -> Arc<FdState> {
        self.fd
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// QEMU's `raw_probe_alignment`: without O_DIRECT any alignment works;
    /// with it, the smallest read size (and buffer alignment) accepted.
    fn probe_alignment(&self) {
        let st = self.state();
        if !st.direct {
            self.req_align.store(1, Ordering::Relaxed);
            self.mem_align.store(1, Ordering::Relaxed);
            return;
        }
        let page = 4096u64;
        let fd = st.fd.as_fd();
        let mut req = 0u64;
        if self.device {
            if let Ok(n) = sys::blk_sector_size(fd) {
                req = u64::from(n);
            }
        }
        let mut probe = IoBuf::new(2 * page as usize, page as usize);
        if req == 0 {
            for a in [1u64, 512, 1024, 2048, 4096] {
                match sys::preadv2(fd, &mut probe[..a as usize], 0, 0) {
                    Ok(_) => {
                        req = if a == 1 { page } else { a };
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(_) => {
                        req = if a == 1 { page } else { a };
                        break;
                    }
                }
            }
        }
        if req == 0 {
            req = page;
        }
        let mut mem = 0u64;
        for a in [512u64, 1024, 2048, 4096] {
            let start = a as usize;
            let end = start + req as usize;
            if end > probe.len() {
                break;
            }
            if sys::preadv2(fd, &mut probe[start..end], 0, 0).is_ok() {
                mem = a;
                break;
            }
        }
        if mem == 0 {
            mem = req;
        }
        self.req_align.store(req, Ordering::Relaxed);
        self.mem_align.store(mem.max(page), Ordering::Relaxed);
    }

    fn aligned(&self, offset: u64, len: u64) -> bool {
        let a = self.req_align.load(Ordering::Relaxed);
        a <= 1 || (offset.is_multiple_of(a) && len.is_multiple_of(a))
    }

    fn align_out(&self, offset: u64, len: u64) -> (u64, u64) {
        let a = self.req_align.load(Ordering::Relaxed).max(1);
        let start = offset / a * a;
        let end = (offset + len).div_ceil(a) * a;
        (start, end - start)
    }

    async fn raw_read(&self, st: &FdState, buf: IoBuf, off: u64) -> io::Result<IoBuf> {
        match &self.engine {
            Engine::Uring(u) => u.read(st.fd.clone(), buf, off).await,
            Engine::Threads => threads::read(&self.policy, st.fd.clone(), buf, off).await,
        }
    }

    async fn raw_write(&self, st: &FdState, buf: IoBuf, off: u64, fua: bool) -> io::Result<()> {
        match &self.engine {
            Engine::Uring(u) => u.write(st.fd.clone(), buf, off, fua).await,
            Engine::Threads => threads::write(&self.policy, st.fd.clone(), buf, off, fua).await,
        }
    }

    fn note_end(&self, end: u64) {
        if !self.device {
            self.size.fetch_max(end, Ordering::Relaxed);
        }
    }

    async fn do_read(&self, offset: u64, len: usize) -> io::Result<IoBuf> {
        let st = self.state();
        let mem = self.mem_align.load(Ordering::Relaxed) as usize;
        if st.direct && !self.aligned(offset, len as u64) {
            let (start, alen) = self.align_out(offset, len as u64);
            let b = self
                .raw_read(&st, IoBuf::new(alen as usize, mem), start)
                .await?;
            let skip = (offset - start) as usize;
            return Ok(IoBuf::from_slice(&b[skip..skip + len], mem));
        }
        self.raw_read(&st, IoBuf::new(len, mem), offset).await
    }

    async fn do_write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> io::Result<()> {
        let st = self.state();
        let len = data.len() as u64;
        let mem = self.mem_align.load(Ordering::Relaxed) as usize;
        if st.direct {
            if !self.aligned(offset, len) {
                let _g = self.rmw.write().await;
                let (start, alen) = self.align_out(offset, len);
                let mut b = self
                    .raw_read(&st, IoBuf::new(alen as usize, mem), start)
                    .await?;
                let skip = (offset - start) as usize;
                b[skip..skip + data.len()].copy_from_slice(&data);
                self.raw_write(&st, b, start, flags.fua).await?;
            } else {
                let _g = self.rmw.read().await;
                let data = if !(data.as_ptr() as usize).is_multiple_of(mem) {
                    IoBuf::from_slice(&data, mem)
                } else {
                    data
                };
                self.raw_write(&st, data, offset, flags.fua).await?;
            }
        } else {
            self.raw_write(&st, data, offset, flags.fua).await?;
        }
        self.note_end(offset + len);
        Ok(())
    }

    async fn fallocate(&self, mode: libc::c_int, off: u64, len: u64) -> io::Result<()> {
        let st = self.state();
        match &self.engine {
            Engine::Uring(u) => u.fallocate(st.fd.clone(), mode, off, len).await,
            Engine::Threads => {
                threads::control(self.inline_control, st.fd.clone(), move |fd| {
                    sys::fallocate(fd.as_fd(), mode, off, len)
                })
                .await
            }
        }
    }

    async fn blk_ioctl(&self, req: libc::c_ulong, off: u64, len: u64) -> io::Result<()> {
        let st = self.state();
        threads::control(false, st.fd.clone(), move |fd| {
            sys::blk_range_ioctl(fd.as_fd(), req, off, len)
        })
        .await
    }

    async fn do_write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()> {
        let unsupported = |e: &io::Error| {
            matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL)
            )
        };
        if self.device {
            if flags.may_unmap {
                let r = self
                    .fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        offset,
                        len,
                    )
                    .await;
                if r.is_ok() {
                    return Ok(());
                }
            }
            match self.blk_ioctl(sys::BLKZEROOUT, offset, len).await {
                Ok(()) => return Ok(()),
                Err(e) if !unsupported(&e) => return Err(e),
                Err(_) => {}
            }
        } else {
            if flags.may_unmap {
                let r = self
                    .fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        offset,
                        len,
                    )
                    .await;
                if r.is_ok() {
                    return Ok(());
                }
            }
            match self
                .fallocate(libc::FALLOC_FL_ZERO_RANGE, offset, len)
                .await
            {
                Ok(()) => {
                    self.note_end(offset + len);
                    return Ok(());
                }
                Err(e) if !unsupported(&e) => return Err(e),
                Err(_) => {}
            }
            if !flags.may_unmap {
                // QEMU's fallback without ZERO_RANGE (tmpfs): punch the
                // range, then allocate it again.
                let r = self
                    .fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        offset,
                        len,
                    )
                    .await;
                if r.is_ok() {
                    match self.fallocate(0, offset, len).await {
                        Ok(()) => {
                            self.note_end(offset + len);
                            return Ok(());
                        }
                        Err(e) if e.raw_os_error() != Some(libc::EOPNOTSUPP) => return Err(e),
                        Err(_) if offset + len <= self.size.load(Ordering::Relaxed) => {
                            return Ok(())
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        if flags.no_fallback {
            return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
        }
        // Write zero buffers, 1 MiB at a time.
        let chunk = 1u64 << 20;
        let mem = self.mem_align.load(Ordering::Relaxed) as usize;
        let mut off = offset;
        while off < offset + len {
            let n = chunk.min(offset + len - off);
            self.do_write(
                off,
                IoBuf::new(n as usize, mem),
                WriteFlags { fua: flags.fua },
            )
            .await?;
            off += n;
        }
        Ok(())
    }

    async fn do_discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = if self.device {
            self.blk_ioctl(sys::BLKDISCARD, offset, len).await
        } else {
            self.fallocate(
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
            .await
        };
        match &r {
            Ok(()) => {
                self.discard_nb_ok.fetch_add(1, Ordering::Relaxed);
                self.discard_bytes_ok.fetch_add(len, Ordering::Relaxed);
            }
            Err(_) => {
                self.discard_nb_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        match r {
            // Discard is advisory: an unsupported one succeeds.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)
                ) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    async fn do_block_status(&self, offset: u64, len: u64) -> io::Result<Extent> {
        let data = Extent {
            len,
            zero: false,
            data: true,
            depth: 1,
        };
        if self.device {
            return Ok(data);
        }
        let st = self.state();
        let r = threads::control(
            self.inline_control,
            st.fd.clone(),
            move |fd| match sys::lseek(fd.as_fd(), offset, libc::SEEK_DATA) {
                Ok(d) if d == offset => {
                    let h = sys::lseek(fd.as_fd(), offset, libc::SEEK_HOLE)?;
                    Ok(Some((true, h.saturating_sub(offset))))
                }
                Ok(d) => Ok(Some((false, d - offset))),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(Some((false, len))),
                Err(_) => Ok(None),
            },
        )
        .await?;
        Ok(match r {
            Some((true, n)) => Extent {
                len: n.clamp(1, len),
                ..data
            },
            Some((false, n)) => Extent {
                len: n.clamp(1, len),
                zero: true,
                data: false,
                depth: 1,
            },
            None => data,
        })
    }

    async fn do_flush(&self) -> io::Result<()> {
        let st = self.state();
        match &self.engine {
            Engine::Uring(u) => u.fdatasync(st.fd.clone()).await,
            Engine::Threads => {
                threads::control(self.inline_control, st.fd.clone(), |fd| {
                    sys::fdatasync(fd.as_fd())
                })
                .await
            }
        }
    }

    async fn do_truncate(&self, size: u64) -> io::Result<()> {
        let st = self.state();
        if self.device {
            let cur = self.refresh_size();
            if size != cur {
                return Err(user_error("Cannot resize device files"));
            }
            return Ok(());
        }
        let r = threads::control(self.inline_control, st.fd.clone(), move |fd| {
            sys::ftruncate(fd.as_fd(), size)
        })
        .await;
        if let Err(e) = r {
            return Err(user_error(format!(
                "Could not resize file: {}",
                strerror(&e)
            )));
        }
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }

    /// QEMU's `preallocation=falloc` resize of a regular file
    /// (`handle_aiocb_truncate`): the new area is allocated with
    /// `posix_fallocate`; shrinking is refused with ENOTSUP. A file that
    /// was empty gets its first block written, as QEMU does to keep
    /// alignment probing cheap.
    async fn do_truncate_falloc(&self, size: u64) -> io::Result<()> {
        let enotsup = || io::Error::from_raw_os_error(libc::ENOTSUP);
        if self.device {
            return Err(enotsup());
        }
        let st = self.state();
        let cur = threads::control(self.inline_control, st.fd.clone(), |fd| {
            Ok(std::fs::File::from(fd.try_clone()?).metadata()?.len())
        })
        .await?;
        if cur > size {
            return Err(enotsup());
        }
        if cur != size {
            threads::control(self.inline_control, st.fd.clone(), move |fd| {
                sys::posix_fallocate(fd.as_fd(), cur, size - cur)
            })
            .await?;
            self.size.store(size, Ordering::Relaxed);
            if cur == 0 {
                let mem = self.mem_align.load(Ordering::Relaxed) as usize;
                let n = if size < 4096 { 512 } else { 4096 };
                // Failures only cost speed later.
                let _ = self.raw_write(&st, IoBuf::new(n, mem), 0, false).await;
            }
        }
        Ok(())
    }
}

impl BlockDriver for FileDriver {
    fn driver_name(&self) -> &'static str {
        self.name
    }

    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Only block devices are re-measured: QEMU keeps the size of a
    /// regular file from open (or its own resize) on.
    fn refresh_size(&self) -> u64 {
        if !self.device {
            return self.size();
        }
        let st = self.state();
        let fd = st.fd.as_fd();
        let size = match sys::fstat(fd) {
            Ok(s) if s.st_mode & libc::S_IFMT == libc::S_IFBLK => sys::blk_size(fd).ok(),
            Ok(s) => Some(s.st_size as u64),
            Err(_) => None,
        };
        if let Some(s) = size {
            self.size.store(s, Ordering::Relaxed);
        }
        self.size()
    }

    fn read(&self, offset: u64, len: usize) -> IoFuture<'_, IoBuf> {
        Box::pin(self.do_read(offset, len))
    }

    fn write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> IoFuture<'_, ()> {
        Box::pin(self.do_write(offset, data, flags))
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> IoFuture<'_, ()> {
        Box::pin(self.do_write_zeroes(offset, len, flags))
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_discard(offset, len))
    }

    fn flush(&self) -> IoFuture<'_, ()> {
        Box::pin(self.do_flush())
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, Extent> {
        Box::pin(self.do_block_status(offset, len))
    }

    fn truncate(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_truncate(size))
    }

    fn truncate_falloc(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_truncate_falloc(size))
    }

    fn mem_alignment(&self) -> usize {
        self.mem_align.load(Ordering::Relaxed) as usize
    }

    fn request_alignment(&self) -> u64 {
        self.req_align.load(Ordering::Relaxed)
    }

    fn protocol_name(&self) -> Option<&'static str> {
        Some(self.name)
    }

    /// QEMU's `raw_check_perm` (the PREPARE step of
    /// `raw_handle_perm_lock`): takes the union of the old and new lock
    /// bytes, then tests the new permissions against other processes.
    fn check_perm(&self, perm: Perm, shared: Perm) -> Result<(), QmpError> {
        if !self.use_lock {
            return Ok(());
        }
        let st = self.state();
        let mut ls = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        ls.pending = true;
        if (ls.perm | perm) == ls.perm && (ls.shared & shared) == ls.shared {
            return Ok(());
        }
        let (old_perm, old_shared) = (ls.perm, ls.shared);
        let r = lock::apply(
            st.fd.as_fd(),
            &mut ls.held,
            old_perm | perm,
            !old_shared | !shared,
            false,
        )
        .and_then(|()| lock::check(st.fd.as_fd(), perm, shared));
        if r.is_err() {
            let _ = lock::apply(st.fd.as_fd(), &mut ls.held, old_perm, !old_shared, true);
            ls.pending = false;
        }
        r
    }

    fn set_perm(&self, perm: Perm, shared: Perm) {
        if !self.use_lock {
            return;
        }
        let st = self.state();
        let mut ls = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = lock::apply(st.fd.as_fd(), &mut ls.held, perm, !shared, true) {
            tracing::warn!("{}: {}", self.filename, e.desc);
        }
        ls.perm = perm;
        ls.shared = shared;
        ls.pending = false;
    }

    fn abort_perm(&self) {
        if !self.use_lock {
            return;
        }
        let st = self.state();
        let mut ls = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if ls.pending {
            let (p, s) = (ls.perm, ls.shared);
            let _ = lock::apply(st.fd.as_fd(), &mut ls.held, p, !s, true);
            ls.pending = false;
        }
    }

    fn has_info(&self) -> bool {
        true
    }

    fn allocated_size(&self) -> AllocatedSize {
        let st = self.state();
        match sys::fstat(st.fd.as_fd()) {
            Ok(s) if s.st_mode & libc::S_IFMT == libc::S_IFREG => {
                AllocatedSize::Known(s.st_blocks as u64 * 512)
            }
            Ok(_) => AllocatedSize::Known(0),
            Err(_) => AllocatedSize::Unknown,
        }
    }

    fn format_specific(&self) -> Option<ImageInfoSpecific> {
        Some(ImageInfoSpecific {
            u: ImageInfoSpecificBranch::File(ImageInfoSpecificFileWrapper {
                data: ImageInfoSpecificFile {
                    extent_size_hint: None,
                },
            }),
        })
    }

    fn specific_stats(&self) -> Option<BlockStatsSpecific> {
        let s = BlockStatsSpecificFile {
            discard_nb_ok: self.discard_nb_ok.load(Ordering::Relaxed),
            discard_nb_failed: self.discard_nb_failed.load(Ordering::Relaxed),
            discard_bytes_ok: self.discard_bytes_ok.load(Ordering::Relaxed),
        };
        Some(BlockStatsSpecific {
            u: if self.device {
                BlockStatsSpecificBranch::HostDevice(s)
            } else {
                BlockStatsSpecificBranch::File(s)
            },
        })
    }

    /// Changing `read-only` reopens the file with the other access mode;
    /// changing `cache.direct` toggles O_DIRECT. The held image locks move
    /// to the new descriptor. `filename`, `locking` and `aio` cannot
    /// change.
    fn reopen_prepare(&self, req: &ReopenRequest) -> Result<Option<ReopenState>, QmpError> {
        let cur = self.state();
        let writable = !req.read_only;
        if cur.writable == writable && cur.direct == req.direct {
            return Ok(None);
        }
        let fd = sys::open(&self.filename, open_flags(writable, req.direct))
            .map_err(|e| open_error(&self.filename, &e))?;
        let mut held = lock::Held::default();
        if self.use_lock {
            let ls = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            lock::apply(fd.as_fd(), &mut held, ls.held.perm, ls.held.unshared, false)?;
        }
        let new = Arc::new(FdState {
            fd: Arc::new(fd),
            direct: req.direct,
            writable,
        });
        Ok(Some(Box::new((new, held))))
    }

    fn reopen_commit(&self, state: ReopenState) {
        let Ok(b) = state.downcast::<(Arc<FdState>, lock::Held)>() else {
            return;
        };
        let (new, held) = *b;
        let direct = new.direct;
        *self.fd.write().unwrap_or_else(PoisonError::into_inner) = new;
        if !self.inline_control {
            self.policy.reset(if direct {
                Inline::Never
            } else {
                Inline::TryNowait
            });
        }
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .held = held;
        self.probe_alignment();
    }
}
