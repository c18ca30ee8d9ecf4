//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`fuse`]: the FUSE export (the node's content as a regular file);
//! - [`nbd`]: the NBD (Network Block Device) export.
//!
//! # The registry
//!
//! [`Registry`] (in `Daemon::exports`) holds every export by id and
//! implements `block-export-add`, `block-export-del`,
//! `query-block-exports` and the shutdown at exit, following QEMU's
//! generic export layer:
//!
//! - `add` makes the generic checks (id, node, read-only node, iothread,
//!   activation), attaches to the node as an unnamed block backend with
//!   `consistent-read` (plus `write` for writable exports) sharing
//!   everything, and hands that [`Attachment`] to the type's constructor in
//!   a [`NewExport`]. The constructor returns an [`ExportDriver`].
//! - An export is reference counted like QEMU's `BlockExport`: the user
//!   (QMP) owns one reference; the export takes more while it works (a
//!   FUSE request in flight, an NBD client) with [`ExportRefs::acquire`].
//! - `del` asks the driver to shut down ([`ExportDriver::request_shutdown`])
//!   and drops the user's reference. When the last reference goes, the
//!   export is deleted: removed from the registry, [`ExportDriver::delete`]
//!   runs (unmount, close), the driver is dropped (which must release the
//!   node) and `BLOCK_EXPORT_DELETED` is emitted. With no request in flight
//!   this happens inside `del`, so the event precedes the command's reply
//!   as in QEMU.
//!
//! An export type plugs in by adding a branch to `create` below.

pub mod fuse;
pub mod nbd;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use qapi::events::Event;
use qapi::types::{
    BlockExportDelArgs, BlockExportDeletedData, BlockExportInfo, BlockExportOptions,
    BlockExportOptionsBranch, BlockExportRemoveMode, BlockExportType, BlockdevSetActiveArgs,
};
use qapi::QmpError;

use crate::block::{graph::id_wellformed, Attachment, BlockNode, ParentKind, Perm};
use crate::daemon::{Daemon, WeakDaemon};

/// The type-specific part of an export.
pub trait ExportDriver: Send + Sync + 'static {
    /// QEMU's `request_shutdown`: stop taking new work (clients,
    /// requests). Called at most once, by `block-export-del` or at exit.
    fn request_shutdown(&self);

    /// QEMU's `delete`: the last reference is gone; release the outside
    /// resources (unmount, close sockets). The registry drops the driver
    /// right after, which must release the node's [`Attachment`].
    fn delete(&self);

    /// Whether `block-export-del` in `safe` mode must refuse because of
    /// the `extra` references the export holds besides the user's (QEMU:
    /// any, e.g. connected NBD clients).
    fn in_use(&self, extra: usize) -> bool {
        extra > 0
    }

    /// Whether `block-export-del` waits until the export is gone before
    /// it replies. QEMU's FUSE export serves requests in the monitor's
    /// thread, so a removal there only runs once the requests in flight
    /// are done, and the deletion event precedes the reply.
    fn removal_waits(&self) -> bool {
        false
    }
}

/// What the registry hands an export type's constructor.
pub struct NewExport {
    /// The export id.
    pub id: String,
    /// The exported node.
    pub node: Arc<BlockNode>,
    /// The export's hold on the node: `consistent-read`, plus `write` for
    /// writable exports, sharing everything. The driver may change it
    /// ([`Attachment::set_perm`]) and must keep it until it is dropped.
    pub attachment: Attachment,
    /// `writable` (default false).
    pub writable: bool,
    /// `writethrough` (default false): writes must be on stable storage
    /// before they complete (QEMU disables the backend's write cache).
    pub writethrough: bool,
    /// Where the export's work runs: the iothread's runtime when one was
    /// given, else the daemon's.
    pub runtime: tokio::runtime::Handle,
    /// Lets the export take references while it works.
    pub refs: ExportRefs,
}

/// One export in the registry.
struct Entry {
    id: String,
    kind: BlockExportType,
    node_name: String,
    core: Arc<Core>,
}

/// The reference-counted part of an export.
struct Core {
    id: String,
    /// References: the user's (until `del`) plus the export's own.
    refs: AtomicUsize,
    /// The user still owns the export (not shutting down).
    user_owned: AtomicBool,
    driver: Mutex<Option<Box<dyn ExportDriver>>>,
    daemon: WeakDaemon,
}

impl Core {
    fn driver(&self) -> MutexGuard<'_, Option<Box<dyn ExportDriver>>> {
        self.driver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops one reference; the last one deletes the export.
    fn release(self: &Arc<Self>) {
        if self.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.delete();
        }
    }

    /// QEMU's `blk_exp_delete_bh`.
    fn delete(self: &Arc<Self>) {
        let daemon = self.daemon.upgrade();
        if let Some(d) = &daemon {
            d.exports.lock().retain(|e| !Arc::ptr_eq(&e.core, self));
        }
        let driver = self.driver().take();
        if let Some(drv) = driver {
            drv.delete();
            drop(drv);
        }
        tracing::debug!(id = %self.id, "block export deleted");
        if let Some(d) = &daemon {
            d.emit(Event::BlockExportDeleted(BlockExportDeletedData {
                id: self.id.clone(),
            }));
            d.exports.changed.notify_waiters();
        }
    }
}

/// A source of references on one export, for the export itself.
#[derive(Clone)]
pub struct ExportRefs(Weak<Core>);

impl ExportRefs {
    /// Takes a reference (QEMU's `blk_exp_ref`), unless the export is
    /// already being deleted (every reference was dropped).
    pub fn acquire(&self) -> Option<ExportRef> {
        let core = self.0.upgrade()?;
        let mut n = core.refs.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return None;
            }
            match core
                .refs
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(ExportRef(core)),
                Err(cur) => n = cur,
            }
        }
    }
}

/// A reference on an export; dropping the last one deletes it.
pub struct ExportRef(Arc<Core>);

impl Drop for ExportRef {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The daemon's exports, newest first (QEMU lists them so).
#[derive(Default)]
pub struct Registry {
    list: Mutex<Vec<Entry>>,
    /// Woken when an export is deleted.
    changed: tokio::sync::Notify,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an export with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().iter().any(|e| e.id == id)
    }

    /// Number of exports (shutting down ones included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there is no export.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The export types this daemon implements.
fn implemented(kind: BlockExportType) -> bool {
    matches!(kind, BlockExportType::Fuse)
}

/// `block-export-add` (and `--export`): QEMU's `blk_exp_add`.
pub async fn add(d: &Daemon, o: BlockExportOptions) -> Result<(), QmpError> {
    if !id_wellformed(&o.id) {
        return Err(QmpError::generic("Invalid block export id"));
    }
    if d.exports.contains(&o.id) {
        return Err(QmpError::generic(format!(
            "Block export id '{}' is already in use",
            o.id
        )));
    }
    let kind = o.type_();
    if !implemented(kind) {
        return Err(QmpError::generic(format!(
            "Block export type '{}' is not implemented by this daemon yet",
            kind.as_str()
        )));
    }
    let Some(node) = d.block.node(&o.node_name) else {
        return Err(QmpError::generic(format!(
            "Cannot find device='' nor node-name='{}'",
            o.node_name
        )));
    };
    let writable = o.writable.unwrap_or(false);
    if node.is_read_only() && writable {
        return Err(QmpError::generic(
            "Cannot export read-only node as writable",
        ));
    }
    let mut runtime = tokio::runtime::Handle::current();
    if let Some(name) = &o.iothread {
        let Some(t) = d.objects.iothread(name) else {
            return Err(QmpError::generic(format!("iothread \"{name}\" not found")));
        };
        // Nodes have no home thread here, so moving the node always
        // succeeds: the export runs in the iothread.
        if let Some(h) = t.handle() {
            runtime = h;
        }
    }
    if o.allow_inactive.unwrap_or(false) {
        // No export type implemented here works on inactive nodes.
        return Err(QmpError::generic(
            "Export type does not support inactive exports",
        ));
    }
    if !node.is_active() {
        crate::block::qmp::blockdev_set_active(
            d,
            BlockdevSetActiveArgs {
                node_name: Some(o.node_name.clone()),
                active: true,
            },
        )?;
    }
    let mut perm = Perm::CONSISTENT_READ;
    if writable {
        perm |= Perm::WRITE;
    }
    let attachment = d.block.attach(
        &node,
        ParentKind::Backend {
            name: String::new(),
        },
        "root",
        perm,
        Perm::ALL,
    )?;
    let core = Arc::new(Core {
        id: o.id.clone(),
        refs: AtomicUsize::new(1),
        user_owned: AtomicBool::new(true),
        driver: Mutex::new(None),
        daemon: d.downgrade(),
    });
    let new = NewExport {
        id: o.id.clone(),
        node: node.clone(),
        attachment,
        writable,
        writethrough: o.writethrough.unwrap_or(false),
        runtime,
        refs: ExportRefs(Arc::downgrade(&core)),
    };
    let driver: Box<dyn ExportDriver> = match &o.u {
        BlockExportOptionsBranch::Fuse(f) => Box::new(fuse::FuseExport::create(new, f).await?),
        _ => unreachable!("only implemented types get here"),
    };
    *core.driver() = Some(driver);
    d.exports.lock().insert(
        0,
        Entry {
            id: o.id,
            kind,
            node_name: node.name().to_string(),
            core,
        },
    );
    Ok(())
}

/// Asks the export to shut down and drops the user's reference (QEMU's
/// `blk_exp_request_shutdown`).
fn request_shutdown(core: &Arc<Core>) {
    if !core.user_owned.swap(false, Ordering::AcqRel) {
        return;
    }
    // The driver is only taken by `delete`, which needs the user's
    // reference to be gone first.
    let drv = core.driver();
    if let Some(drv) = drv.as_ref() {
        drv.request_shutdown();
    }
    drop(drv);
    core.release();
}

/// `block-export-del`.
pub async fn del(d: &Daemon, args: BlockExportDelArgs) -> Result<(), QmpError> {
    let core = d
        .exports
        .lock()
        .iter()
        .find(|e| e.id == args.id)
        .map(|e| e.core.clone());
    let Some(core) = core else {
        return Err(QmpError::generic(format!(
            "Export '{}' is not found",
            args.id
        )));
    };
    if !core.user_owned.load(Ordering::Acquire) {
        return Err(QmpError::generic(format!(
            "Export '{}' is already shutting down",
            args.id
        )));
    }
    let mode = args.mode.unwrap_or(BlockExportRemoveMode::Safe);
    let extra = core.refs.load(Ordering::Acquire).saturating_sub(1);
    let (in_use, waits) = match core.driver().as_ref() {
        Some(drv) => (drv.in_use(extra), drv.removal_waits()),
        None => (extra > 0, false),
    };
    if mode == BlockExportRemoveMode::Safe && in_use {
        return Err(QmpError::generic(format!(
            "export '{}' still in use",
            args.id
        )));
    }
    request_shutdown(&core);
    if waits {
        wait_gone(d, &core).await;
    }
    Ok(())
}

/// Waits until `core` left the registry.
async fn wait_gone(d: &Daemon, core: &Arc<Core>) {
    loop {
        let waiter = d.exports.changed.notified();
        if !d.exports.lock().iter().any(|e| Arc::ptr_eq(&e.core, core)) {
            return;
        }
        // Deletions notify; the timeout only guards against a missed
        // wake-up.
        let _ = tokio::time::timeout(Duration::from_millis(100), waiter).await;
    }
}

/// `query-block-exports`.
pub fn query(d: &Daemon) -> Vec<BlockExportInfo> {
    d.exports
        .lock()
        .iter()
        .map(|e| BlockExportInfo {
            id: e.id.clone(),
            type_: e.kind,
            node_name: e.node_name.clone(),
            shutting_down: !e.core.user_owned.load(Ordering::Acquire),
        })
        .collect()
}

/// Shuts every export down and waits until they are gone (QEMU's
/// `blk_exp_close_all`, at exit and on `quit`).
pub async fn close_all(d: &Daemon) {
    let cores: Vec<Arc<Core>> = d.exports.lock().iter().map(|e| e.core.clone()).collect();
    for c in &cores {
        request_shutdown(c);
    }
    drop(cores);
    loop {
        let waiter = d.exports.changed.notified();
        if d.exports.is_empty() {
            return;
        }
        // Deletions notify; the timeout only guards against a missed
        // wake-up.
        let _ = tokio::time::timeout(Duration::from_millis(100), waiter).await;
    }
}
