//! The block layer: a graph of nodes, each a driver instance (file, raw,
//! null-co, qcow2, ...), with children referenced by role.
//!
//! This module defines the contract between the node graph, its drivers and
//! its users (NBD, vhost-user-blk and FUSE exports, block jobs):
//!
//! - [`BlockDriver`]: what a driver implements. I/O is asynchronous and works
//!   on owned buffers ([`IoBuf`]), so a request can be handed to a thread
//!   pool or io_uring without copying and survive the caller going away.
//! - [`BlockNode`]: a node in the graph: its name, its driver, and the
//!   bookkeeping every node shares (read-only state, statistics, write
//!   threshold). Users hold `Arc<BlockNode>`.
//!
//! Data flows one way: export → node → driver → child node → ... → kernel.
//! Drivers never know which export serves them. No lock is held across an
//! `.await` on the data path.

pub mod buf;
pub mod create;

use std::future::Future;
use std::io;
use std::pin::Pin;

pub use buf::IoBuf;

/// The future type returned by driver operations.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Flags of a write request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// Force unit access: the data is on stable storage when the request
    /// completes.
    pub fua: bool,
}

/// Flags of a write-zeroes request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZeroFlags {
    pub fua: bool,
    /// The range may be deallocated (punched) instead of written.
    pub may_unmap: bool,
    /// Fail with `ENOTSUP` rather than fall back to writing zero buffers
    /// (NBD_CMD_FLAG_FAST_ZERO).
    pub no_fallback: bool,
}

/// What block status reports about a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// Length of the range with this status, starting at the queried offset;
    /// at least 1 and at most the queried length.
    pub len: u64,
    /// The range reads as zeroes.
    pub zero: bool,
    /// The range is allocated in this node or a node below it (`false`
    /// means a hole: NBD `base:allocation` reports NBD_STATE_HOLE).
    pub data: bool,
    /// Depth at which the range is allocated in a backing chain: 0 if
    /// unallocated anywhere, 1 for this node, 2 for its backing node, ...
    /// (NBD `qemu:allocation-depth`).
    pub depth: u32,
}

/// A block driver instance.
///
/// All offsets and lengths are in bytes; the node checks bounds and
/// permissions before calling, so drivers see only requests inside
/// [`BlockDriver::size`] (except `truncate`).
pub trait BlockDriver: Send + Sync + 'static {
    /// The driver name, as in QAPI's `BlockdevDriver` (`file`, `raw`, ...).
    fn driver_name(&self) -> &'static str;

    /// Current size in bytes.
    fn size(&self) -> u64;

    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: usize) -> IoFuture<'_, IoBuf>;

    /// Writes `data` at `offset`.
    fn write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> IoFuture<'_, ()>;

    /// Makes `len` bytes at `offset` read as zeroes.
    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> IoFuture<'_, ()>;

    /// Tells the driver that `len` bytes at `offset` are no longer needed
    /// (their content becomes unspecified unless the driver guarantees zero).
    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, ()>;

    /// Writes cached data to stable storage.
    fn flush(&self) -> IoFuture<'_, ()>;

    /// Status of the range starting at `offset`, at most `len` bytes long.
    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, Extent>;

    /// Changes the size (`block_resize`).
    fn truncate(&self, size: u64) -> IoFuture<'_, ()>;

    /// Preferred alignment of I/O buffers (for O_DIRECT), a power of two.
    fn mem_alignment(&self) -> usize {
        1
    }

    /// Minimum request alignment in bytes, a power of two.
    fn request_alignment(&self) -> u64 {
        1
    }
}
