//! The `qcow2` format driver, written from the qcow2 specification.
//!
//! Layout of the driver:
//! - [`header`]: the header and its extensions (parse, checks, create);
//! - [`meta`]: L1/L2 lookup, refcounts, allocation, the write-back order
//!   that keeps the image consistent at every instant;
//! - [`cache`]: the bounded metadata caches;
//! - [`io`]: the request paths (read, write with copy-on-write, zeroes,
//!   discard, block status);
//! - [`open`]: options, opening, backing files, queries;
//! - [`locks`]: guest-cluster range locks;
//! - [`compress`]: compressed clusters (deflate, zstd).
//!
//! Concurrency: metadata lives behind one asynchronous mutex, held while
//! tables are looked up or changed (and while metadata is read or written
//! back), never across guest data I/O. Reads take no other lock; writes
//! lock the guest clusters they touch (shared for in-place writes,
//! exclusive for allocations, zeroing and discards).

pub mod bitmaps;
pub mod cache;
pub mod chain;
pub mod child;
pub mod compress;
pub mod create;
#[doc(hidden)]
pub mod fuzz;
pub mod header;
mod io;
pub mod locks;
pub mod meta;
pub mod open;
pub mod refcount;
mod repair;
mod resize;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qapi::events::Event;
use qapi::types::{BlockImageCorruptedData, ImageInfoSpecific};

use crate::block::{BlockNode, IoBuf};
use crate::daemon::WeakDaemon;

pub use open::open;

/// Errors of opening an image (texts are QEMU's).
#[derive(Debug, thiserror::Error)]
pub enum QError {
    #[error("{0}")]
    Open(String),
}

/// Immutable geometry of an open image.
#[derive(Debug, Clone, Copy)]
pub struct Geo {
    pub version: u32,
    pub cluster_bits: u32,
    pub cs: u64,
    pub ext_l2: bool,
    /// Entries per L2 table.
    pub l2_entries: u64,
    /// Bytes per L2 entry (8 or 16).
    pub l2_entry_size: u64,
    /// Entries per L2 cache entry (`l2-cache-entry-size`).
    pub slice_entries: u64,
    pub refcount_order: u32,
    /// Refcounts per refcount block.
    pub rb_entries: u64,
    pub external_data: bool,
    pub data_raw: bool,
    pub compression: u8,
}

impl Geo {
    /// Host offset and length of the compressed data of an L2 entry.
    pub fn compressed_range(&self, raw: u64) -> (u64, u64) {
        let shift = 62 - (self.cluster_bits - 8);
        let off = raw & ((1u64 << shift) - 1);
        let sectors = ((raw >> shift) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
        (off, sectors * 512 - (off & 511))
    }
}

/// Metadata corruption found by an access: reported as
/// `BLOCK_IMAGE_CORRUPTED`, then the request fails.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Corruption {
    pub msg: String,
    pub range: Option<(u64, u64)>,
}

/// C's `%#x`: hexadecimal with `0x`, except zero, which is plain `0`.
pub fn hx(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// An I/O error carrying a [`Corruption`].
pub fn corruption(msg: String, range: Option<(u64, u64)>) -> std::io::Error {
    std::io::Error::other(Corruption { msg, range })
}

/// What the queries show, fixed at open.
#[derive(Debug, Clone)]
pub struct Info {
    pub version: u32,
    pub lazy_refcounts: bool,
    pub refcount_bits: u64,
    pub data_file: Option<String>,
    pub data_raw: bool,
    pub compression: u8,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// Persistent bitmaps (v3 images).
    pub bitmaps: Vec<bitmaps::Bitmap>,
}

/// An open qcow2 image.
pub struct Qcow2 {
    /// Weak: the daemon owns the graph that owns this driver.
    daemon: WeakDaemon,
    node_name: String,
    file: RwLock<Arc<BlockNode>>,
    data: RwLock<Option<Arc<BlockNode>>>,
    backing: RwLock<Option<Arc<BlockNode>>>,
    geo: Geo,
    size: AtomicU64,
    meta: Arc<tokio::sync::Mutex<meta::Meta>>,
    locks: locks::RangeLocks,
    /// A fatal corruption made the image unusable.
    broken: AtomicBool,
    /// A corruption was reported already (later ones are not).
    signaled: AtomicBool,
    /// The corrupt bit as it is in the header.
    corrupt_bit: AtomicBool,
    writable: AtomicBool,
    discard_no_unref: bool,
    /// The image has internal snapshots (no shrinking).
    has_snapshots: bool,
    info: Mutex<Info>,
    /// Stops the cache cleaner when the driver goes away.
    cleaner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Qcow2 {
    fn file(&self) -> Arc<BlockNode> {
        self.file
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node holding guest data (the external data file, or `file`).
    fn data(&self) -> Arc<BlockNode> {
        match &*self.data.read().unwrap_or_else(PoisonError::into_inner) {
            Some(d) => d.clone(),
            None => self.file(),
        }
    }

    fn backing(&self) -> Option<Arc<BlockNode>> {
        self.backing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn align(&self) -> usize {
        self.data().mem_alignment()
    }

    /// QEMU's `qcow2_signal_corruption`: reports `c` once; a fatal one
    /// (on a writable image) sets the corrupt bit and makes the image
    /// unusable.
    async fn signal(&self, c: &Corruption) {
        let fatal = self.writable.load(Ordering::Acquire);
        let already = self.signaled.swap(true, Ordering::AcqRel);
        if already && (!fatal || self.corrupt_bit.load(Ordering::Acquire)) {
            return;
        }
        if fatal {
            tracing::error!(
                "Marking image as corrupt: {}; further corruption events will be suppressed",
                c.msg
            );
        } else {
            tracing::error!(
                "qcow2: Image is corrupt: {}; further non-fatal corruption events will be suppressed",
                c.msg
            );
        }
        if let Some(d) = self.daemon.upgrade() {
            d.emit(Event::BlockImageCorrupted(BlockImageCorruptedData {
                device: String::new(),
                node_name: Some(self.node_name.clone()),
                msg: c.msg.clone(),
                offset: c.range.map(|r| r.0 as i64),
                size: c.range.map(|r| r.1 as i64),
                fatal,
            }));
        }
        if fatal {
            self.broken.store(true, Ordering::Release);
            self.corrupt_bit.store(true, Ordering::Release);
            let f = self.file();
            let mut m = self.meta.lock().await;
            m.incompat |= header::INCOMPAT_CORRUPT;
            let v = m.incompat;
            drop(m);
            let _ = child::pwrite(&f, header::OFF_INCOMPAT, &v.to_be_bytes()).await;
            let _ = child::pflush(&f).await;
        }
    }

    /// Turns a corruption error into its report and EIO.
    async fn check<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        match r {
            Err(e) => {
                if let Some(c) = e.get_ref().and_then(|i| i.downcast_ref::<Corruption>()) {
                    self.signal(c).await;
                    return Err(std::io::Error::from_raw_os_error(libc::EIO));
                }
                Err(e)
            }
            ok => ok,
        }
    }

    fn usable(&self) -> std::io::Result<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOMEDIUM));
        }
        Ok(())
    }

    /// `format-specific` of the image info.
    fn specific(&self) -> ImageInfoSpecific {
        open::format_specific(
            &self.info.lock().unwrap_or_else(PoisonError::into_inner),
            self.corrupt_bit.load(Ordering::Acquire),
            self.geo.ext_l2,
        )
    }

    /// Writes back cached metadata (used on close).
    fn flush_sync(&self) {
        if !self.writable.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire) {
            return;
        }
        let (f, d, meta) = (self.file(), self.data(), self.meta.clone());
        let r = open::run_sync(async move {
            let mut m = meta.lock().await;
            m.flush(&f, &d).await
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("qcow2: flushing metadata on close failed: {e}"),
            Err(e) => tracing::warn!("qcow2: flushing metadata on close failed: {e}"),
        }
    }
}

impl Drop for Qcow2 {
    fn drop(&mut self) {
        if let Some(h) = self
            .cleaner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
        self.flush_sync();
    }
}

/// A zero-filled buffer for `len` bytes.
fn zero_buf(len: usize, align: usize) -> IoBuf {
    IoBuf::new(len, align)
}
