//! QEMU's block-status cache of protocol nodes: the last data region the
//! driver reported.
//!
//! Every sparse NBD READ asks for the block status of its range, from
//! every connection, so the cache is read far more often than it changes.
//! Reads take no lock and write nothing shared (a sequence lock: a reader
//! retries if a writer was active meanwhile), so connections served by
//! different threads don't bounce a lock's cache line between CPUs.
//! Writers (a new region, an invalidation) serialise on a mutex.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A cached data region `[start, end)`; empty when `start == end`.
#[derive(Debug, Default)]
pub(crate) struct StatusCache {
    /// Odd while a writer is changing the region.
    seq: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
    /// Counts invalidations: a region found by a query that overlapped
    /// one is not stored.
    epoch: AtomicU64,
    writer: Mutex<()>,
}

impl StatusCache {
    /// The cached region.
    pub fn get(&self) -> (u64, u64) {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let start = self.start.load(Ordering::Relaxed);
                let end = self.end.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return (start, end);
                }
            }
            std::hint::spin_loop();
        }
    }

    /// The invalidation count, to pass to [`StatusCache::set`] after a
    /// query started now.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches `[start, end)` unless an invalidation happened since
    /// `epoch` was read (the region may be stale).
    pub fn set(&self, epoch: u64, start: u64, end: u64) {
        let _g = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        self.store(start, end);
    }

    /// Forgets the region if it overlaps `[offset, offset + len)`.
    pub fn invalidate(&self, offset: u64, len: u64) {
        let _g = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let (start, end) = (
            self.start.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        );
        if offset < end && start < offset.saturating_add(len) {
            self.store(0, 0);
        }
    }

    /// Stores a region; the caller holds `writer`.
    fn store(&self, start: u64, end: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_invalidate() {
        let c = StatusCache::default();
        assert_eq!(c.get(), (0, 0));
        let e = c.epoch();
        c.set(e, 4096, 8192);
        assert_eq!(c.get(), (4096, 8192));
        c.invalidate(0, 4096);
        assert_eq!(c.get(), (4096, 8192), "no overlap");
        c.invalidate(8191, 1);
        assert_eq!(c.get(), (0, 0));
        c.set(e, 0, 100);
        assert_eq!(c.get(), (0, 0), "stale: invalidated since the query");
        c.set(c.epoch(), 0, 100);
        assert_eq!(c.get(), (0, 100));
    }

    #[test]
    fn readers_see_whole_regions() {
        let c = std::sync::Arc::new(StatusCache::default());
        let w = c.clone();
        let t = std::thread::spawn(move || {
            for i in 1..20000u64 {
                w.set(w.epoch(), i, i * 2);
            }
        });
        for _ in 0..20000 {
            let (s, e) = c.get();
            assert_eq!(e, s * 2);
        }
        t.join().unwrap();
    }
}
