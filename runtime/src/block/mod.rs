//! The block layer: a graph of nodes, each a driver instance (file, raw,
//! null-co, qcow2, ...), with children referenced by role.
//!
//! Data flows one way: export → [`BlockNode`] → [`BlockDriver`] → child
//! node → ... → kernel. Drivers never know which export serves them. No
//! lock is held across an `.await` on the data path.
//!
//! # Modules
//!
//! - [`node`] holds [`BlockNode`], the data path every user goes through;
//! - [`graph`] holds [`BlockGraph`], the registry in `Daemon::block`
//!   (names, users, permissions in QEMU's model, op blockers, deletion);
//! - [`open`] implements `blockdev-add` and the driver factory
//!   [`open::DRIVERS`];
//! - [`reopen`] implements `blockdev-reopen`;
//! - [`info`] and [`qmp`] hold what the queries show and the QMP commands;
//! - the drivers are [`mod@file`] (`file`, `host_device`), [`raw`] and
//!   [`null`].
//!
//! # Using nodes (exports, jobs)
//!
//! ```ignore
//! // Create nodes (also what --blockdev does):
//! block::blockdev_add(&daemon, opts)?;
//! // Find one:
//! let node: Arc<BlockNode> = daemon.block.node("disk0").ok_or(..)?;
//! // Attach as a user with QEMU-like permissions. Fails with QEMU's
//! // texts: "Block node is read-only", "Permission conflict on node ...",
//! // "Failed to get \"write\" lock" (another process holds the image).
//! let att: Attachment = daemon.block.attach(
//!     &node,
//!     ParentKind::Backend { name: String::new() }, // an export's backend
//!     "root",
//!     Perm::CONSISTENT_READ | Perm::WRITE,          // what we do
//!     Perm::ALL & !Perm::RESIZE,                    // what others may do
//! )?;
//! // I/O, with owned buffers (aligned to node.mem_alignment() for
//! // O_DIRECT nodes; unaligned ones are bounced):
//! let buf = node.read(offset, len).await?;          // io::Result<IoBuf>
//! node.write(offset, buf, WriteFlags { fua: false }).await?;
//! node.write_zeroes(offset, len, ZeroFlags { may_unmap: true, ..Default::default() }).await?;
//! node.discard(offset, len).await?;
//! node.flush().await?;
//! let extent = node.block_status(offset, len).await?;
//! // Learn about resizes (block_resize) while attached:
//! let _sub = node.subscribe(|ev| match ev { NodeEvent::Resized(size) => ... });
//! drop(att); // detaches and releases the permissions (and image locks)
//! ```
//!
//! Errors of the data path are `io::Error`s with an errno, as QEMU's
//! block layer returns them: EIO for a range outside the node, EPERM for a
//! write without the `write` permission or on a read-only or inactive
//! node. A node's size is the driver's rounded up to 512 bytes, as QEMU
//! counts sectors. `blockdev-del` refuses a node with users ("Node X is in
//! use" for a backend, "Block device X is in use" for other users).
//!
//! Jobs attach with `ParentKind::Job { job_type, id }` (one attachment per
//! node they use; the edge name is the job's child name) and can forbid
//! operations with [`OpBlocker`] ([`BlockNode::add_blocker`]); errors then
//! read "Node 'X' is busy: REASON".
//!
//! # Adding a driver (qcow2)
//!
//! Implement [`BlockDriver`] (I/O on owned buffers, plus the graph and
//! query hooks whose defaults fit a protocol driver: a format sets
//! [`BlockDriver::allocated_size`] to `SumOfChildren`, its
//! [`BlockDriver::strong_runtime_opts`], [`BlockDriver::has_info`]...),
//! write an [`open::OpenFn`] that builds it from its `BlockdevOptions`
//! branch (the `file` child is opened before it and passed in
//! [`open::OpenCx::file`]; other children open with
//! [`open::OpenCx::open_child`]) and returns the children with their
//! [`ChildRole`] (`IMAGE_PRIMARY` for qcow2's `file`), and add a line to
//! [`open::DRIVERS`]. Drivers not in that table answer "driver 'X' is not
//! implemented yet" after the generic checks. The `file` child of such a
//! format is found generically from the options.

mod bsc;
pub mod buf;
pub mod create;
pub mod file;
pub mod graph;
pub mod info;
pub mod node;
pub mod null;
pub mod open;
pub mod perm;
pub mod qcow2;
pub mod qmp;
pub mod raw;
pub mod reopen;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::pin::Pin;

use qapi::types::{BlockStatsSpecific, ImageInfoSpecific};
use qapi::QmpError;

pub use buf::IoBuf;
pub use graph::{Attachment, BlockGraph, OpBlocker, ParentKind};
pub use node::{BlockNode, NodeEvent};
pub use open::blockdev_add;
pub use perm::Perm;

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

/// An I/O error whose text is meant for the user as it is (a driver's
/// refusal rather than a failed system call), e.g. raw's "Cannot resize
/// fixed-size raw disks".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// An `io::Error` carrying a [`UserError`] text.
pub fn user_error(msg: impl Into<String>) -> io::Error {
    io::Error::other(UserError(msg.into()))
}

/// The user-facing text of `e` if it was made by [`user_error`].
pub fn user_error_text(e: &io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<UserError>())
        .map(|u| u.0.clone())
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

/// The role a child plays for its parent (QEMU's `BdrvChildRole`), which
/// decides the default permissions the parent takes on it and how queries
/// walk the graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildRole {
    /// The child holds the guest-visible data.
    pub data: bool,
    /// The child holds metadata of the parent's format.
    pub metadata: bool,
    /// The parent is a filter over this child (same content).
    pub filtered: bool,
    /// The child is a backing file (copy-on-write source).
    pub cow: bool,
    /// The child is the parent's primary child (`file` of a format).
    pub primary: bool,
}

impl ChildRole {
    /// A filtered primary child (raw without offset or size).
    pub const FILTERED_PRIMARY: ChildRole = ChildRole {
        data: false,
        metadata: false,
        filtered: true,
        cow: false,
        primary: true,
    };
    /// A primary data child (raw with offset or size).
    pub const DATA_PRIMARY: ChildRole = ChildRole {
        data: true,
        metadata: false,
        filtered: false,
        cow: false,
        primary: true,
    };
    /// The `file` child of a format with metadata and data in one image
    /// (qcow2).
    pub const IMAGE_PRIMARY: ChildRole = ChildRole {
        data: true,
        metadata: true,
        filtered: false,
        cow: false,
        primary: true,
    };
}

/// What a node's driver needs to know to compute the permissions it takes
/// on a child: the cumulative permissions its own parents hold on it, and
/// its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildPermCx {
    /// Union of the permissions of the node's parents.
    pub perm: Perm,
    /// Intersection of what the node's parents share.
    pub shared: Perm,
    /// The node is (or will be, after the reopen in progress) writable.
    pub writable: bool,
    /// The node is inactive.
    pub inactive: bool,
}

/// QEMU's default permissions on a child of role `role`
/// (`bdrv_default_perms`): filters pass their parents' permissions
/// through; storage children additionally take what the format needs.
pub fn default_child_perm(role: ChildRole, cx: ChildPermCx) -> (Perm, Perm) {
    let mut perm = cx.perm;
    let mut shared = cx.shared;
    if role.filtered || !(role.data || role.metadata) {
        return (perm, shared);
    }
    if role.metadata {
        if cx.writable {
            perm |= Perm::WRITE | Perm::RESIZE;
        }
        perm |= Perm::CONSISTENT_READ;
        shared &= !(Perm::WRITE | Perm::RESIZE);
    }
    if role.data {
        shared &= !Perm::RESIZE;
        if perm.contains(Perm::WRITE_UNCHANGED) {
            perm |= Perm::WRITE;
        }
        if perm.contains(Perm::WRITE) {
            perm |= Perm::RESIZE;
        }
    }
    if cx.inactive {
        shared |= Perm::WRITE | Perm::RESIZE;
    }
    (perm, shared)
}

/// How `actual-size` of a node is found (QEMU's
/// `bdrv_get_allocated_file_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatedSize {
    /// The driver knows.
    Known(u64),
    /// The driver cannot tell: `actual-size` is left out.
    Unknown,
    /// The sum over the node's children (format drivers).
    SumOfChildren,
}

/// What a format driver adds to the image information: QEMU's
/// `bdrv_get_info` cluster size and the backing file recorded in the
/// image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatInfo {
    pub cluster_size: Option<u64>,
    /// The backing file name as recorded.
    pub backing_filename: Option<String>,
    /// The backing format as recorded.
    pub backing_format: Option<String>,
}

/// Node options that `blockdev-reopen` may change, as the driver sees
/// them.
#[derive(Debug, Clone)]
pub struct ReopenRequest {
    /// The node's complete new options.
    pub options: qapi::types::BlockdevOptions,
    /// Whether the node will be read-only.
    pub read_only: bool,
    /// Whether the node will use O_DIRECT.
    pub direct: bool,
}

/// What a driver prepared for a reopen, handed back to
/// [`BlockDriver::reopen_commit`]; dropping it aborts the reopen.
pub type ReopenState = Box<dyn std::any::Any + Send>;

/// A block driver instance.
///
/// All offsets and lengths are in bytes; the node checks bounds and
/// permissions before calling, so drivers see only requests inside
/// [`BlockDriver::size`] rounded up to 512 bytes (except `truncate`).
/// A driver whose image ends before that rounded size reads zeroes there.
///
/// Besides I/O, a driver answers the questions of the graph (which
/// permissions it takes on its children, whether it can take those its
/// parents want) and of the queries (`query-named-block-nodes`). Every
/// such method has a default matching a plain protocol driver.
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

    /// Changes the size (`block_resize`). An error made with
    /// [`user_error`] carries the text QMP reports; any other error is
    /// reported by the caller with its errno.
    fn truncate(&self, size: u64) -> IoFuture<'_, ()>;

    /// [`BlockDriver::truncate`] where a grown area must read as zeroes
    /// (QEMU's `BDRV_REQ_ZERO_WRITE`). The default suits drivers whose
    /// grown area reads as zeroes anyway (regular files, raw over them);
    /// callers ask only drivers that support the flag (see the FUSE
    /// export's list).
    fn truncate_zero_write(&self, size: u64) -> IoFuture<'_, ()> {
        self.truncate(size)
    }

    /// Grows the image to `size`, allocating the new area (QEMU's resize
    /// with `preallocation=falloc`); errors carry the errno QEMU returns
    /// (ENOTSUP where the driver cannot preallocate, or for shrinking).
    /// Used by the FUSE export's `fallocate`.
    fn truncate_falloc(&self, _size: u64) -> IoFuture<'_, ()> {
        Box::pin(async { Err(io::Error::from_raw_os_error(libc::ENOTSUP)) })
    }

    /// Preferred alignment of I/O buffers (for O_DIRECT), a power of two.
    fn mem_alignment(&self) -> usize {
        1
    }

    /// Minimum request alignment in bytes, a power of two.
    fn request_alignment(&self) -> u64 {
        1
    }

    /// Re-reads the size from the image (queries do this, so a file grown
    /// behind our back shows its new size).
    fn refresh_size(&self) -> u64 {
        self.size()
    }

    // Graph and permissions.

    /// The protocol name of a protocol driver (`file`, `null-co`); `None`
    /// for format and filter drivers.
    fn protocol_name(&self) -> Option<&'static str> {
        None
    }

    /// The permissions this node takes on its child `child`, and what it
    /// shares, given its own parents' (`bdrv_child_perm`).
    fn child_perm(&self, _child: &str, role: ChildRole, cx: ChildPermCx) -> (Perm, Perm) {
        default_child_perm(role, cx)
    }

    /// Checks that the node can be used with cumulative permissions `perm`
    /// by its parents while sharing `shared` (a file takes its locks here).
    /// On success either [`BlockDriver::set_perm`] or
    /// [`BlockDriver::abort_perm`] follows.
    fn check_perm(&self, _perm: Perm, _shared: Perm) -> Result<(), QmpError> {
        Ok(())
    }

    /// Commits the permissions last checked.
    fn set_perm(&self, _perm: Perm, _shared: Perm) {}

    /// Returns to the permissions held before the last check.
    fn abort_perm(&self) {}

    // Queries.

    /// Whether the driver answers QEMU's `bdrv_get_info` (which makes
    /// `dirty-flag` appear in the image info).
    fn has_info(&self) -> bool {
        false
    }

    /// `actual-size` of the image.
    fn allocated_size(&self) -> AllocatedSize {
        AllocatedSize::Unknown
    }

    /// `format-specific` of the image info.
    fn format_specific(&self) -> Option<ImageInfoSpecific> {
        None
    }

    /// Cluster size and recorded backing file of a format.
    fn format_info(&self) -> FormatInfo {
        FormatInfo::default()
    }

    /// `driver-specific` of `query-blockstats`.
    fn specific_stats(&self) -> Option<BlockStatsSpecific> {
        None
    }

    /// Options that change what the node shows, so that they appear in a
    /// `json:{...}` file name (QEMU's `strong_runtime_opts`).
    fn strong_runtime_opts(&self) -> &'static [&'static str] {
        &[]
    }

    /// The node's own exact file name, computed from its gathered options
    /// (QEMU's `bdrv_refresh_filename` of the driver); `None` to use the
    /// generic rules.
    fn refresh_filename(
        &self,
        _full_open_options: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Option<String>> {
        None
    }

    // State changes.

    /// Prepares a `blockdev-reopen` of the node with new options; the
    /// generic options and the unchangeable driver options were checked
    /// already. `None`: nothing to do.
    fn reopen_prepare(&self, _req: &ReopenRequest) -> Result<Option<ReopenState>, QmpError> {
        Ok(None)
    }

    /// Applies what [`BlockDriver::reopen_prepare`] prepared.
    fn reopen_commit(&self, _state: ReopenState) {}

    /// Makes `node` the driver's child `name` (a reopen replaced it).
    fn replace_child(&self, _name: &str, _node: std::sync::Arc<BlockNode>) {}
}
