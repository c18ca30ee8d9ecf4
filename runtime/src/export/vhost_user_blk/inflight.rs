//! Inflight I/O tracking (`VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`), which
//! QSD does not offer: a shared memory area, kept by the frontend across
//! reconnections, where the export notes which requests it took from the
//! available ring and has not completed yet. When a frontend reconnects
//! (after it or the daemon restarted), those requests are run again
//! instead of being lost.
//!
//! Layout (the split-ring format of the vhost-user specification), per
//! queue, each queue's area aligned to 64 bytes:
//!
//! ```text
//! u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx;
//! desc[desc_num] { u8 inflight; u8 pad[5]; u16 next; u64 counter; }
//! ```
//!
//! A request is marked (counter, then `inflight = 1`) when popped; when
//! completed, `last_batch_head` names it before the used ring is updated,
//! then `inflight = 0` and `used_idx` follows the used ring. If the
//! daemon died between the two, `used_idx` differs from the used ring's
//! index and `last_batch_head` is known to be complete.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Header bytes of a queue area.
const HEADER: usize = 16;
/// Bytes per descriptor state.
const DESC: usize = 16;
const VERSION: u16 = 1;

/// Bytes one queue of `queue_size` descriptors needs.
pub fn queue_area(queue_size: u16) -> usize {
    (HEADER + DESC * usize::from(queue_size)).next_multiple_of(64)
}

/// A mapped inflight area.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    num_queues: u16,
    queue_size: u16,
    _file: File,
}

// SAFETY: the mapping is shared memory accessed only through atomics (see
// the accessors); the pointer stays valid until `Drop` unmaps it.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A new zeroed area for the frontend (`GET_INFLIGHT_FD`).
    pub fn create(num_queues: u16, queue_size: u16) -> std::io::Result<(File, u64)> {
        let len = queue_area(queue_size) * usize::from(num_queues);
        // SAFETY: memfd_create with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"vhost-blk-inflight".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        Ok((file, len as u64))
    }

    /// Maps the area the frontend passes with `SET_INFLIGHT_FD`.
    pub fn map(
        file: File,
        offset: u64,
        size: u64,
        num_queues: u16,
        queue_size: u16,
    ) -> std::io::Result<Arc<Region>> {
        let need = queue_area(queue_size) * usize::from(num_queues);
        let len = usize::try_from(size).map_err(|_| einval())?;
        if len < need || len == 0 || queue_size == 0 {
            return Err(einval());
        }
        // Mapping past the end of the file would fault on access.
        let flen = file.metadata()?.len();
        if offset.checked_add(size).is_none_or(|end| end > flen) {
            return Err(einval());
        }
        let off = libc::off_t::try_from(offset).map_err(|_| einval())?;
        // SAFETY: mapping a file we own, shared, at a fresh address; the
        // result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(einval)?;
        Ok(Arc::new(Region {
            ptr,
            len,
            num_queues,
            queue_size,
            _file: file,
        }))
    }

    /// The tracking of queue `q`, if the area has it.
    pub fn queue(self: &Arc<Self>, q: u16, queue_size: u16) -> Option<QueueTrack> {
        if q >= self.num_queues || queue_size > self.queue_size {
            return None;
        }
        Some(QueueTrack {
            region: self.clone(),
            base: usize::from(q) * queue_area(self.queue_size),
            size: queue_size,
            counter: 0,
        })
    }

    fn at<T>(&self, off: usize) -> Option<&T> {
        let align = std::mem::align_of::<T>();
        if !off.is_multiple_of(align) || off.checked_add(std::mem::size_of::<T>())? > self.len {
            return None;
        }
        // SAFETY: `off` is inside the mapping and aligned for `T`, an
        // atomic type valid for any bit pattern; the mapping lives as long
        // as `self`.
        Some(unsafe { &*self.ptr.as_ptr().add(off).cast::<T>() })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn einval() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EINVAL)
}

/// One queue's part of the area.
pub struct QueueTrack {
    region: Arc<Region>,
    base: usize,
    size: u16,
    counter: u64,
}

impl QueueTrack {
    fn u16_at(&self, off: usize) -> Option<&AtomicU16> {
        self.region.at(self.base + off)
    }

    fn desc_inflight(&self, head: u16) -> Option<&AtomicU8> {
        if head >= self.size {
            return None;
        }
        self.region
            .at(self.base + HEADER + DESC * usize::from(head))
    }

    fn desc_counter(&self, head: u16) -> Option<&AtomicU64> {
        if head >= self.size {
            return None;
        }
        self.region
            .at(self.base + HEADER + DESC * usize::from(head) + 8)
    }

    /// Prepares the queue when it starts, given the used ring's index;
    /// returns the heads to run again (oldest first) — empty for a fresh
    /// area, which is initialised instead.
    pub fn recover(&mut self, used_idx: u16) -> Vec<u16> {
        let Some(version) = self.u16_at(8) else {
            return Vec::new();
        };
        if version.load(Ordering::Acquire) != VERSION {
            for h in 0..self.size {
                if let Some(d) = self.desc_inflight(h) {
                    d.store(0, Ordering::Relaxed);
                }
            }
            if let Some(n) = self.u16_at(10) {
                n.store(self.size, Ordering::Relaxed);
            }
            if let Some(u) = self.u16_at(14) {
                u.store(used_idx, Ordering::Relaxed);
            }
            version.store(VERSION, Ordering::Release);
            return Vec::new();
        }
        if let (Some(last), Some(u)) = (self.u16_at(12), self.u16_at(14)) {
            if u.load(Ordering::Acquire) != used_idx {
                // Died after updating the used ring, before noting it.
                if let Some(d) = self.desc_inflight(last.load(Ordering::Relaxed)) {
                    d.store(0, Ordering::Relaxed);
                }
                u.store(used_idx, Ordering::Release);
            }
        }
        let mut heads: Vec<(u64, u16)> = (0..self.size)
            .filter(|h| {
                self.desc_inflight(*h)
                    .is_some_and(|d| d.load(Ordering::Acquire) == 1)
            })
            .map(|h| {
                (
                    self.desc_counter(h)
                        .map_or(0, |c| c.load(Ordering::Relaxed)),
                    h,
                )
            })
            .collect();
        heads.sort_unstable();
        self.counter = heads.last().map_or(0, |(c, _)| *c);
        heads.into_iter().map(|(_, h)| h).collect()
    }

    /// Notes that `head` was taken from the available ring.
    pub fn start(&mut self, head: u16) {
        self.counter += 1;
        if let Some(c) = self.desc_counter(head) {
            c.store(self.counter, Ordering::Relaxed);
        }
        if let Some(d) = self.desc_inflight(head) {
            d.store(1, Ordering::Release);
        }
    }

    /// Before `head` goes into the used ring.
    pub fn before_used(&self, head: u16) {
        if let Some(l) = self.u16_at(12) {
            l.store(head, Ordering::Release);
        }
    }

    /// After the used ring's index became `used_idx` with `head` in it.
    pub fn after_used(&self, head: u16, used_idx: u16) {
        if let Some(d) = self.desc_inflight(head) {
            d.store(0, Ordering::Release);
        }
        fence(Ordering::SeqCst);
        if let Some(u) = self.u16_at(14) {
            u.store(used_idx, Ordering::Release);
        }
    }
}
