//! A node of the block graph and its data path.
//!
//! [`BlockNode`] is what exports and jobs use: every request goes through
//! it, which checks bounds and permissions, applies the node's
//! `detect-zeroes` and `discard` settings, fires `BLOCK_WRITE_THRESHOLD`,
//! keeps the statistics QEMU shows, and then calls the driver.
//!
//! The hot path reads only atomics: the options that a request depends on
//! are mirrored into one flag word when they change.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qapi::events::Event;
use qapi::types::{BlockWriteThresholdData, BlockdevDetectZeroesOptions, BlockdevOptions};
use serde_json::{Map, Value};

use super::bsc::StatusCache;
use super::graph::{Edge, OpBlocker, ParentLink};
use super::{BlockDriver, Extent, IoBuf, Perm, WriteFlags, ZeroFlags};

/// Sends an event to the monitors.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// What a node tells the users that subscribed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// The node's size changed (`block_resize`) to this many bytes.
    Resized(u64),
}

type Listener = Box<dyn Fn(&NodeEvent) + Send + Sync>;

/// Node options that requests depend on (mirrored in [`BlockNode`]'s flag
/// word) or that queries show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOpts {
    pub read_only: bool,
    pub auto_read_only: bool,
    pub force_share: bool,
    /// `discard=unmap` (otherwise discard requests are ignored).
    pub discard_unmap: bool,
    pub detect_zeroes: BlockdevDetectZeroesOptions,
    /// `cache.direct`: O_DIRECT.
    pub direct: bool,
    /// `cache.no-flush`: flush requests do nothing.
    pub no_flush: bool,
    /// Active (not handed over to another process).
    pub active: bool,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            read_only: false,
            auto_read_only: false,
            force_share: false,
            discard_unmap: false,
            detect_zeroes: BlockdevDetectZeroesOptions::Off,
            direct: false,
            no_flush: false,
            active: true,
        }
    }
}

const F_READ_ONLY: u32 = 1;
const F_INACTIVE: u32 = 2;
const F_DISCARD_UNMAP: u32 = 4;
const F_NO_FLUSH: u32 = 8;
const F_DZ_ON: u32 = 16;
const F_DZ_UNMAP: u32 = 32;

impl NodeOpts {
    fn flags(&self) -> u32 {
        let mut f = 0;
        if self.read_only {
            f |= F_READ_ONLY;
        }
        if !self.active {
            f |= F_INACTIVE;
        }
        if self.discard_unmap {
            f |= F_DISCARD_UNMAP;
        }
        if self.no_flush {
            f |= F_NO_FLUSH;
        }
        match self.detect_zeroes {
            BlockdevDetectZeroesOptions::Off => {}
            BlockdevDetectZeroesOptions::On => f |= F_DZ_ON,
            BlockdevDetectZeroesOptions::Unmap => f |= F_DZ_ON | F_DZ_UNMAP,
        }
        f
    }
}

/// The mutable, rarely changing part of a node; protected by a mutex that
/// is never held across an `.await`.
pub(crate) struct NodeState {
    pub opts: NodeOpts,
    /// The options the node was opened (or last reopened) with.
    pub options: BlockdevOptions,
    /// Strong runtime options and `filename`, as given (for `json:`
    /// file names), in QEMU's insertion order.
    pub given: Map<String, Value>,
    /// The options as the user gave them, before inheritance from a parent.
    pub explicit: BlockdevOptions,
    /// The parent node whose options this inline child inherits.
    pub inherits_from: Option<String>,
    /// During a reopen: whether the node was writable before it.
    pub writable_before_reopen: Option<bool>,
    /// Children by role, newest first (QEMU's list order).
    pub children: Vec<Edge>,
    /// Users of this node, newest first.
    pub parents: Vec<ParentLink>,
    /// Created by `blockdev-add` at the top level (not inline).
    pub monitor_owned: bool,
    pub blockers: Vec<Arc<OpBlocker>>,
}

/// A node of the block graph. Users hold `Arc<BlockNode>`; see the module
/// documentation of [`crate::block`] for how to attach to one.
pub struct BlockNode {
    name: String,
    driver: Box<dyn BlockDriver>,
    flags: AtomicU32,
    /// Cumulative permissions of the parents.
    perm: AtomicU8,
    wr_highest_offset: AtomicU64,
    write_threshold: AtomicU64,
    events: EventSink,
    pub(crate) state: Mutex<NodeState>,
    listeners: Mutex<Vec<(u64, Arc<Listener>)>>,
    next_listener: AtomicU64,
    /// QEMU's block-status cache: the last data region a protocol driver
    /// reported.
    bsc: StatusCache,
}

impl std::fmt::Debug for BlockNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockNode({}, {})", self.name, self.driver.driver_name())
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn eperm() -> io::Error {
    io::Error::from_raw_os_error(libc::EPERM)
}

/// Rounds up to QEMU's 512-byte sectors (node sizes are sector counts).
pub(crate) fn sector_ceil(n: u64) -> u64 {
    n.div_ceil(512).saturating_mul(512)
}

impl BlockNode {
    pub(crate) fn new(
        name: String,
        driver: Box<dyn BlockDriver>,
        state: NodeState,
        events: EventSink,
    ) -> BlockNode {
        BlockNode {
            name,
            driver,
            flags: AtomicU32::new(state.opts.flags()),
            perm: AtomicU8::new(0),
            wr_highest_offset: AtomicU64::new(0),
            write_threshold: AtomicU64::new(0),
            events,
            state: Mutex::new(state),
            listeners: Mutex::new(Vec::new()),
            next_listener: AtomicU64::new(0),
            bsc: StatusCache::default(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node name (generated ones start with `#block`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver of the node.
    pub fn driver(&self) -> &dyn BlockDriver {
        self.driver.as_ref()
    }

    /// The driver name (`file`, `raw`, ...).
    pub fn driver_name(&self) -> &'static str {
        self.driver.driver_name()
    }

    /// The size in bytes: the driver's, rounded up to 512 bytes as QEMU
    /// counts sectors.
    pub fn size(&self) -> u64 {
        sector_ceil(self.driver.size())
    }

    /// Like [`BlockNode::size`], re-reading the image's size first.
    pub fn refresh_size(&self) -> u64 {
        sector_ceil(self.driver.refresh_size())
    }

    /// The node's options (a copy).
    pub fn opts(&self) -> NodeOpts {
        self.lock().opts.clone()
    }

    pub(crate) fn set_opts(&self, opts: NodeOpts) {
        let mut st = self.lock();
        self.flags.store(opts.flags(), Ordering::Release);
        st.opts = opts;
    }

    fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }

    pub fn is_read_only(&self) -> bool {
        self.flags() & F_READ_ONLY != 0
    }

    pub fn is_active(&self) -> bool {
        self.flags() & F_INACTIVE == 0
    }

    /// Whether users may get write permissions (QEMU's
    /// `bdrv_is_writable`).
    pub fn is_writable(&self) -> bool {
        self.flags() & (F_READ_ONLY | F_INACTIVE) == 0
    }

    /// Memory alignment that I/O buffers should have (O_DIRECT).
    pub fn mem_alignment(&self) -> usize {
        self.driver.mem_alignment()
    }

    /// Request alignment of the driver.
    pub fn request_alignment(&self) -> u64 {
        self.driver.request_alignment()
    }

    /// The union of the permissions its users hold.
    pub fn cumulative_perm(&self) -> Perm {
        Perm::ALL & perm_from_bits(self.perm.load(Ordering::Acquire))
    }

    pub(crate) fn store_perm(&self, p: Perm) {
        self.perm.store(p.bits(), Ordering::Release);
    }

    /// The highest offset written so far (`wr_highest_offset`).
    pub fn wr_highest_offset(&self) -> u64 {
        self.wr_highest_offset.load(Ordering::Relaxed)
    }

    /// The write threshold in bytes (0: none).
    pub fn write_threshold(&self) -> u64 {
        self.write_threshold.load(Ordering::Acquire)
    }

    /// Sets the write threshold (`block-set-write-threshold`); 0 disables.
    pub fn set_write_threshold(&self, offset: u64) {
        self.write_threshold.store(offset, Ordering::Release);
    }

    /// Registers `f` to learn about changes of the node (resize); it is
    /// called until the returned guard is dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        f: impl Fn(&NodeEvent) + Send + Sync + 'static,
    ) -> Subscription {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, Arc::new(Box::new(f))));
        Subscription {
            node: Arc::downgrade(self),
            id,
        }
    }

    pub(crate) fn notify(&self, ev: &NodeEvent) {
        let ls: Vec<Arc<Listener>> = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for l in ls {
            l(ev);
        }
    }

    /// QEMU's `blk_check_byte_request`: the range must lie inside the
    /// node.
    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let size = self.size();
        if offset > size || size - offset < len {
            return Err(eio());
        }
        Ok(())
    }

    /// Checks that a writing request is allowed, and fires the write
    /// threshold.
    fn prepare_write(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        let f = self.flags();
        if f & (F_INACTIVE | F_READ_ONLY) != 0 {
            return Err(eperm());
        }
        if !self
            .cumulative_perm()
            .intersects(Perm::WRITE | Perm::WRITE_UNCHANGED)
        {
            return Err(eperm());
        }
        self.check_write_threshold(offset, len);
        Ok(())
    }

    /// QEMU's `bdrv_write_threshold_check_write`: the first request that
    /// ends past the threshold disables it and sends the event.
    fn check_write_threshold(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        loop {
            let wtr = self.write_threshold.load(Ordering::Acquire);
            if wtr == 0 || wtr >= end {
                return;
            }
            if self
                .write_threshold
                .compare_exchange(wtr, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                (self.events)(Event::BlockWriteThreshold(BlockWriteThresholdData {
                    node_name: self.name.clone(),
                    amount_exceeded: end - wtr,
                    write_threshold: wtr,
                }));
                return;
            }
        }
    }

    fn finish_write(&self, offset: u64, len: u64) {
        if len > 0 {
            self.wr_highest_offset
                .fetch_max(offset + len, Ordering::Relaxed);
        }
    }

    /// Reads `len` bytes at `offset`. Out-of-range requests fail with EIO.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<IoBuf> {
        self.check_range(offset, len as u64)?;
        if len == 0 {
            return Ok(IoBuf::new(0, self.mem_alignment()));
        }
        self.driver.read(offset, len).await
    }

    /// Writes `data` at `offset`. Needs a user holding the `write`
    /// permission; with `detect-zeroes` set, an all-zero buffer becomes a
    /// write-zeroes request.
    pub async fn write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> io::Result<()> {
        let len = data.len() as u64;
        self.prepare_write(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let f = self.flags();
        let r = if f & F_DZ_ON != 0 && is_zero(&data) {
            let zf = ZeroFlags {
                fua: flags.fua,
                may_unmap: f & F_DZ_UNMAP != 0 && f & F_DISCARD_UNMAP != 0,
                no_fallback: false,
            };
            drop(data);
            self.bsc_invalidate(offset, len);
            self.driver.write_zeroes(offset, len, zf).await
        } else {
            self.driver.write(offset, data, flags).await
        };
        self.finish_write(offset, len);
        r
    }

    /// Makes `len` bytes at `offset` read as zeroes. `may_unmap` is
    /// dropped unless the node has `discard=unmap`.
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        mut flags: ZeroFlags,
    ) -> io::Result<()> {
        self.prepare_write(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if self.flags() & F_DISCARD_UNMAP == 0 {
            flags.may_unmap = false;
        }
        self.bsc_invalidate(offset, len);
        let r = self.driver.write_zeroes(offset, len, flags).await;
        self.finish_write(offset, len);
        r
    }

    /// Discards `len` bytes at `offset`; does nothing (successfully) unless
    /// the node has `discard=unmap`.
    pub async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.flags() & F_DISCARD_UNMAP == 0 {
            self.check_range(offset, len)?;
            return Ok(());
        }
        self.prepare_write(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        self.bsc_invalidate(offset, len);
        self.driver.discard(offset, len).await
    }

    /// Flushes the node to stable storage; `cache.no-flush` makes a
    /// protocol node skip it.
    pub async fn flush(&self) -> io::Result<()> {
        if self.flags() & F_NO_FLUSH != 0 && self.driver.protocol_name().is_some() {
            return Ok(());
        }
        if self.flags() & F_INACTIVE != 0 {
            return Ok(());
        }
        self.driver.flush().await
    }

    /// Status of the range at `offset` (at most `len` bytes, clipped to
    /// the node's end).
    pub async fn block_status(&self, offset: u64, len: u64) -> io::Result<Extent> {
        let size = self.size();
        if offset >= size {
            return Err(eio());
        }
        let len = len.min(size - offset);
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if self.driver.protocol_name().is_none() {
            let mut e = self.driver.block_status(offset, len).await?;
            e.len = e.len.clamp(1, len);
            return Ok(e);
        }
        // Protocol drivers may be slow to answer (SEEK_HOLE walks a tmpfs
        // file page by page), so the last data region is cached, as QEMU
        // does; writes never make data read as zeroes, and the requests
        // that may (zeroes, discard, resize) invalidate the cache.
        let (start, end) = self.bsc.get();
        if start <= offset && offset < end {
            return Ok(Extent {
                len: (end - offset).min(len),
                zero: false,
                data: true,
                depth: 1,
            });
        }
        let epoch = self.bsc.epoch();
        if start == end && offset > 0 {
            // Nothing cached: look from the start of the image. A region
            // found from `offset` would begin there, and every later
            // request below it would miss and scan again (random reads:
            // a scan per new lowest offset); on a fully allocated image
            // this one scan covers every request.
            let e = self.driver.block_status(0, size).await?;
            if e.data && !e.zero && offset < e.len {
                self.bsc.set(epoch, 0, e.len);
                return Ok(Extent {
                    len: (e.len - offset).min(len),
                    ..e
                });
            }
        }
        let mut e = self.driver.block_status(offset, size - offset).await?;
        if e.data && !e.zero && e.len > 0 {
            self.bsc.set(epoch, offset, offset + e.len);
        }
        e.len = e.len.clamp(1, len);
        Ok(e)
    }

    /// Forgets the cached data region if it overlaps `[offset, offset +
    /// len)` (QEMU's `bdrv_bsc_invalidate_range`).
    fn bsc_invalidate(&self, offset: u64, len: u64) {
        self.bsc.invalidate(offset, len);
    }

    /// Changes the size as QEMU's `bdrv_co_truncate` does, with its
    /// errors; the caller holds the `resize` permission (see
    /// [`crate::block::qmp`]'s `block_resize`). Tells subscribers.
    pub async fn co_truncate(&self, size: u64) -> Result<(), qapi::QmpError> {
        self.co_truncate_flags(size, false).await
    }

    /// [`BlockNode::co_truncate`]; with `zero_write` a grown area must
    /// read as zeroes (QEMU's `BDRV_REQ_ZERO_WRITE`, which the caller
    /// checked the driver supports).
    pub async fn co_truncate_flags(
        &self,
        size: u64,
        zero_write: bool,
    ) -> Result<(), qapi::QmpError> {
        /// QEMU's BDRV_MAX_LENGTH.
        const MAX_LENGTH: u64 = 9_223_372_035_781_033_984;
        if size > MAX_LENGTH {
            return Err(qapi::QmpError::generic(format!(
                "offset({size}) exceeds maximum({MAX_LENGTH})"
            )));
        }
        if self.is_read_only() {
            return Err(qapi::QmpError::generic("Image is read-only"));
        }
        self.bsc_invalidate(0, u64::MAX);
        let r = if zero_write {
            self.driver.truncate_zero_write(size).await
        } else {
            self.driver.truncate(size).await
        };
        if let Err(e) = r {
            return Err(qapi::QmpError::generic(match super::user_error_text(&e) {
                Some(t) => t,
                None => format!("Failed to resize: {}", super::file::strerror(&e)),
            }));
        }
        self.notify(&NodeEvent::Resized(self.refresh_size()));
        Ok(())
    }

    /// Grows the node to `size` with the new area allocated (QEMU's
    /// `bdrv_co_truncate` with `PREALLOC_MODE_FALLOC`), reporting failures
    /// by errno as QEMU's block layer returns them: EACCES on a read-only
    /// node, ENOTSUP where the driver cannot preallocate. The caller holds
    /// the `resize` permission. Tells subscribers.
    pub async fn truncate_falloc(&self, size: u64) -> io::Result<()> {
        if self.is_read_only() {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        self.bsc_invalidate(0, u64::MAX);
        self.driver.truncate_falloc(size).await?;
        self.notify(&NodeEvent::Resized(self.refresh_size()));
        Ok(())
    }

    /// The children (edges), newest first.
    pub fn children(&self) -> Vec<(String, Arc<BlockNode>)> {
        self.lock()
            .children
            .iter()
            .map(|e| (e.name.clone(), e.node.clone()))
            .collect()
    }

    /// The child of role `name` (`file`, ...).
    pub fn child(&self, name: &str) -> Option<Arc<BlockNode>> {
        self.lock()
            .children
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.node.clone())
    }

    /// Whether any user is attached.
    pub fn has_parents(&self) -> bool {
        !self.lock().parents.is_empty()
    }
}

fn perm_from_bits(b: u8) -> Perm {
    let mut p = Perm::NONE;
    for i in 0..Perm::COUNT {
        if b & (1 << i) != 0 {
            p |= Perm::bit(i);
        }
    }
    p
}

/// Whether every byte of `buf` is zero (word at a time).
pub fn is_zero(buf: &[u8]) -> bool {
    let (head, body, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only
        // reinterprets the aligned middle part of the slice.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|b| *b == 0) && body.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

/// A registration made by [`BlockNode::subscribe`].
pub struct Subscription {
    node: std::sync::Weak<BlockNode>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(n) = self.node.upgrade() {
            n.listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(id, _)| *id != self.id);
        }
    }
}
