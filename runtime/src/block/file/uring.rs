//! The `aio=io_uring` engine: one ring per file node. Requests are pushed
//! to the submission queue and submitted at once; a completion task wakes
//! when the kernel signals the eventfd registered with the ring (watched
//! by tokio), drains the completion queue and hands each result back to
//! the request waiting for it.
//!
//! A request owns its buffer until the kernel is done with it: the buffer
//! lives in the pending table, not in the request's future, so a request
//! abandoned by its caller cannot free memory the kernel still writes to.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use io_uring::{opcode, squeue, types, IoUring};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::sys;
use crate::block::IoBuf;

struct Pending {
    tx: oneshot::Sender<(i32, Option<IoBuf>)>,
    buf: Option<IoBuf>,
    _fd: Arc<OwnedFd>,
}

struct Shared {
    ring: Mutex<IoUring>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Requests still in the kernel may write to their buffers after
        // the ring is closed: leak them rather than free them.
        let pending = std::mem::take(
            self.pending
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (_, p) in pending {
            std::mem::forget(p.buf);
        }
    }
}

/// A ring and its completion task; dropping it stops the task.
pub struct Uring {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Uring {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Uring {
    /// Creates a ring; needs a tokio runtime (for the completion task).
    pub fn new() -> io::Result<Uring> {
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let ring = IoUring::builder().build(128)?;
        let efd = sys::eventfd()?;
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let shared = Arc::new(Shared {
            ring: Mutex::new(ring),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let afd = {
            let _g = handle.enter();
            // SAFETY: the AsyncFd owns `efd`, an OwnedFd, so the
            // descriptor stays open and the same for the AsyncFd's life.
            unsafe { AsyncFd::register_with_interest(efd, tokio::io::Interest::READABLE) }
                .map_err(|e| io::Error::other(e.to_string()))?
        };
        let s = shared.clone();
        let task = handle.spawn(async move { completion_loop(s, afd).await });
        Ok(Uring { shared, task })
    }

    /// Submits the entry made by `make` (given the request's buffer
    /// pointer, if any); returns the result and the buffer.
    async fn run(
        &self,
        fd: Arc<OwnedFd>,
        mut buf: Option<IoBuf>,
        make: impl FnOnce(Option<&mut IoBuf>) -> squeue::Entry,
    ) -> io::Result<(i32, Option<IoBuf>)> {
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let entry = make(buf.as_mut()).user_data(id);
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Pending { tx, buf, _fd: fd });
        {
            let mut ring = self
                .shared
                .ring
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // SAFETY: the entry points into a buffer owned by the pending
            // table until its completion arrives, and at an fd kept open
            // by the same entry.
            let pushed = unsafe { ring.submission().push(&entry) };
            if pushed.is_err() {
                ring.submit()?;
                // SAFETY: as above.
                unsafe { ring.submission().push(&entry) }
                    .map_err(|_| io::Error::from_raw_os_error(libc::EAGAIN))?;
            }
            if let Err(e) = ring.submit() {
                self.shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                return Err(e);
            }
        }
        rx.await
            .map_err(|_| io::Error::from_raw_os_error(libc::ECANCELED))
    }

    /// Reads `buf.len()` bytes at `off` (zeroes past the end of file).
    pub async fn read(&self, fd: Arc<OwnedFd>, buf: IoBuf, off: u64) -> io::Result<IoBuf> {
        let raw = types::Fd(fd.as_raw_fd());
        let len = buf.len();
        let (res, buf) = self
            .run(fd.clone(), Some(buf), |b| {
                let (ptr, n) = match b {
                    Some(b) => (b.as_mut_ptr(), b.len()),
                    None => (std::ptr::null_mut(), 0),
                };
                opcode::Read::new(raw, ptr, n as u32).offset(off).build()
            })
            .await?;
        let mut buf = buf.ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        let n = res as usize;
        if n == len || n == 0 {
            return Ok(buf);
        }
        super::threads::blocking(move || {
            super::threads::pread_loop(&fd, &mut buf, off, n)?;
            Ok(buf)
        })
        .await
    }

    /// Writes `buf` at `off`.
    pub async fn write(
        &self,
        fd: Arc<OwnedFd>,
        buf: IoBuf,
        off: u64,
        dsync: bool,
    ) -> io::Result<()> {
        let raw = types::Fd(fd.as_raw_fd());
        let len = buf.len();
        let flags = if dsync { libc::RWF_DSYNC } else { 0 };
        let (res, buf) = self
            .run(fd.clone(), Some(buf), |b| {
                let (ptr, n) = match b {
                    Some(b) => (b.as_ptr(), b.len()),
                    None => (std::ptr::null(), 0),
                };
                opcode::Write::new(raw, ptr, n as u32)
                    .offset(off)
                    .rw_flags(flags)
                    .build()
            })
            .await?;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        let n = res as usize;
        if n == len {
            return Ok(());
        }
        let buf = buf.ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        super::threads::blocking(move || super::threads::pwrite_loop(&fd, &buf, off, n, flags))
            .await
    }

    /// `fdatasync`.
    pub async fn fdatasync(&self, fd: Arc<OwnedFd>) -> io::Result<()> {
        let raw = types::Fd(fd.as_raw_fd());
        let (res, _) = self
            .run(fd, None, |_| {
                opcode::Fsync::new(raw)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
            })
            .await?;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(())
    }

    /// `fallocate`.
    pub async fn fallocate(
        &self,
        fd: Arc<OwnedFd>,
        mode: i32,
        off: u64,
        len: u64,
    ) -> io::Result<()> {
        let raw = types::Fd(fd.as_raw_fd());
        let (res, _) = self
            .run(fd, None, |_| {
                opcode::Fallocate::new(raw, len)
                    .offset(off)
                    .mode(mode)
                    .build()
            })
            .await?;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(())
    }
}

async fn completion_loop(shared: Arc<Shared>, efd: AsyncFd<OwnedFd>) {
    loop {
        let mut guard = match efd.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("io_uring eventfd: {e}");
                return;
            }
        };
        // Reset the counter before draining, so a completion arriving
        // during the drain signals again.
        match sys::eventfd_read(std::os::fd::AsFd::as_fd(efd.get_ref())) {
            Ok(None) => guard.clear_ready(),
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::error!("io_uring eventfd: {e}");
                return;
            }
        }
        let done: Vec<(u64, i32)> = {
            let mut ring = shared.ring.lock().unwrap_or_else(PoisonError::into_inner);
            ring.completion()
                .map(|c| (c.user_data(), c.result()))
                .collect()
        };
        if done.is_empty() {
            continue;
        }
        let mut pending = shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ready: Vec<(Pending, i32)> = done
            .into_iter()
            .filter_map(|(id, res)| pending.remove(&id).map(|p| (p, res)))
            .collect();
        drop(pending);
        for (mut p, res) in ready {
            let buf = p.buf.take();
            let _ = p.tx.send((res, buf));
        }
    }
}
