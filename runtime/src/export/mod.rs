//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`nbd`]: the NBD export and the built-in NBD server;
//! - [`fuse`]: the FUSE export (the node's content as a regular file).
//!
//! This module keeps the exports of a daemon and implements the QMP
//! commands common to every export type, with QEMU's checks and texts:
//! `block-export-add`, `block-export-del`, `query-block-exports`, the
//! deprecated `nbd-server-add`/`nbd-server-remove`, and the shutdown at
//! exit. `vhost-user-blk` and `vduse-blk` are refused with an error saying
//! so, after the checks every export type shares.
//!
//! Life of an export (as QEMU's `BlockExport`): it is listed (newest
//! first) from its creation until it is gone. Removal (`block-export-del`,
//! `nbd-server-stop` for NBD exports, quitting) first marks it as shutting
//! down; it is gone, and `BLOCK_EXPORT_DELETED` sent, when its last user
//! has left: at once when there is none (the event then comes before the
//! command's reply), else later.
//!
//! # Adding an export type
//!
//! NBD exports have their own client bookkeeping ([`nbd::NbdExport`]).
//! Other types implement [`ExportDriver`], get what QEMU's generic layer
//! prepares in a [`NewExport`] (the node attached as an unnamed block
//! backend with `consistent-read`, plus `write` for writable exports,
//! sharing everything) and are reference counted like QEMU's
//! `BlockExport`: the user (QMP) owns one reference, the export takes more
//! while it works ([`ExportRefs::acquire`]); when the last one goes the
//! export is removed from the list, [`ExportDriver::delete`] runs, the
//! driver is dropped (releasing the node) and the event is sent. A type
//! plugs in with a branch in [`block_export_add`].

pub mod fuse;
pub mod nbd;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use qapi::events::Event;
use qapi::types::{
    BlockExportDelArgs, BlockExportDeletedData, BlockExportInfo, BlockExportOptions,
    BlockExportOptionsBranch, BlockExportOptionsNbd, BlockExportRemoveMode, BlockExportType,
    BlockdevSetActiveArgs, NbdServerAddOptions, NbdServerRemoveArgs,
};
use qapi::QmpError;

use crate::block::{Attachment, BlockNode, ParentKind, Perm};
use crate::daemon::{Daemon, WeakDaemon};

use nbd::{NbdExport, NbdServer};

/// The type-specific part of an export other than NBD.
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
    /// any, e.g. connected clients).
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

/// The reference-counted part of a driver-based export.
struct Core {
    id: String,
    kind: BlockExportType,
    node_name: String,
    /// References: the user's (until removal) plus the export's own.
    refs: AtomicUsize,
    /// The user still owns the export (not shutting down).
    user_owned: AtomicBool,
    driver: Mutex<Option<Box<dyn ExportDriver>>>,
    daemon: WeakDaemon,
}

impl Core {
    fn driver(&self) -> MutexGuard<'_, Option<Box<dyn ExportDriver>>> {
        lock(&self.driver)
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
            lock(&d.exports.list)
                .retain(|e| !matches!(e, Listed::Driver(c) if Arc::ptr_eq(c, self)));
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

    /// Asks the export to shut down and drops the user's reference (QEMU's
    /// `blk_exp_request_shutdown`).
    fn request_shutdown(self: &Arc<Self>) {
        if !self.user_owned.swap(false, Ordering::AcqRel) {
            return;
        }
        // The driver is only taken by `delete`, which needs the user's
        // reference to be gone first.
        let drv = self.driver();
        if let Some(drv) = drv.as_ref() {
            drv.request_shutdown();
        }
        drop(drv);
        self.release();
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

/// One export of the list.
#[derive(Clone)]
enum Listed {
    Nbd(Arc<NbdExport>),
    Driver(Arc<Core>),
}

impl Listed {
    fn id(&self) -> &str {
        match self {
            Listed::Nbd(e) => &e.id,
            Listed::Driver(c) => &c.id,
        }
    }

    fn info(&self) -> BlockExportInfo {
        match self {
            Listed::Nbd(e) => BlockExportInfo {
                id: e.id.clone(),
                type_: BlockExportType::Nbd,
                node_name: e.node.name().to_string(),
                shutting_down: e.is_shutting_down(),
            },
            Listed::Driver(c) => BlockExportInfo {
                id: c.id.clone(),
                type_: c.kind,
                node_name: c.node_name.clone(),
                shutting_down: !c.user_owned.load(Ordering::Acquire),
            },
        }
    }
}

/// The exports of a daemon and its NBD server.
#[derive(Default)]
pub struct Exports {
    /// Every export, newest first (QEMU's list order).
    list: Mutex<Vec<Listed>>,
    nbd_server: Mutex<Option<Arc<NbdServer>>>,
    /// Woken when a driver-based export is deleted.
    changed: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Exports {
    /// The running NBD server.
    pub fn nbd_server(&self) -> Option<Arc<NbdServer>> {
        lock(&self.nbd_server).clone()
    }

    pub(crate) fn set_nbd_server(&self, s: Arc<NbdServer>) {
        *lock(&self.nbd_server) = Some(s);
    }

    pub(crate) fn take_nbd_server(&self) -> Option<Arc<NbdServer>> {
        lock(&self.nbd_server).take()
    }

    /// Whether an export (of any type) has the id `id`.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.list).iter().any(|e| e.id() == id)
    }

    fn find(&self, id: &str) -> Option<Listed> {
        lock(&self.list).iter().find(|e| e.id() == id).cloned()
    }

    /// The NBD export that clients know as `name` (not being removed).
    pub fn nbd_find(&self, name: &str) -> Option<Arc<NbdExport>> {
        self.all_nbd()
            .into_iter()
            .find(|e| e.desc.name == name && !e.is_shutting_down())
    }

    /// The NBD exports clients may choose, oldest first (QEMU's order in
    /// `NBD_OPT_LIST`).
    pub fn nbd_exports(&self) -> Vec<Arc<NbdExport>> {
        let mut v: Vec<_> = self
            .all_nbd()
            .into_iter()
            .filter(|e| !e.is_shutting_down())
            .collect();
        v.reverse();
        v
    }

    /// Every NBD export, newest first.
    pub fn all_nbd(&self) -> Vec<Arc<NbdExport>> {
        lock(&self.list)
            .iter()
            .filter_map(|e| match e {
                Listed::Nbd(n) => Some(n.clone()),
                Listed::Driver(_) => None,
            })
            .collect()
    }

    /// Number of exports (those shutting down included).
    pub fn len(&self) -> usize {
        lock(&self.list).len()
    }

    /// Whether there is no export.
    pub fn is_empty(&self) -> bool {
        lock(&self.list).is_empty()
    }

    fn has_driver_exports(&self) -> bool {
        lock(&self.list)
            .iter()
            .any(|e| matches!(e, Listed::Driver(_)))
    }
}

/// Removes `exp` for good (it has no client left): releases its node and
/// sends `BLOCK_EXPORT_DELETED`. Does nothing the second time.
pub(crate) fn finalize(d: &Daemon, exp: &Arc<NbdExport>) {
    if !exp.finalize() {
        return;
    }
    lock(&d.exports.list).retain(|e| !matches!(e, Listed::Nbd(n) if Arc::ptr_eq(n, exp)));
    d.emit(Event::BlockExportDeleted(BlockExportDeletedData {
        id: exp.id.clone(),
    }));
}

/// Asks `exp` to shut down (QEMU's `blk_exp_request_shutdown`); an export
/// without clients goes at once.
fn request_shutdown(d: &Daemon, exp: &Arc<NbdExport>) {
    if exp.request_shutdown() == Some(true) {
        finalize(d, exp);
    }
}

/// Activates `node` unless `allow_inactive`, then attaches to it as an
/// export's block backend (QEMU's `bdrv_activate`, `blk_new`,
/// `blk_insert_bs`).
fn attach(
    d: &Daemon,
    node: &Arc<BlockNode>,
    writable: bool,
    allow_inactive: bool,
) -> Result<Attachment, QmpError> {
    if !allow_inactive && !node.is_active() {
        crate::block::qmp::blockdev_set_active(
            d,
            BlockdevSetActiveArgs {
                node_name: Some(node.name().to_string()),
                active: true,
            },
        )?;
    }
    let mut perm = Perm::CONSISTENT_READ;
    if writable {
        perm |= Perm::WRITE;
    }
    d.block.attach(
        node,
        ParentKind::Backend {
            name: String::new(),
        },
        "root",
        perm,
        Perm::ALL,
    )
}

/// `block-export-add`, also used by `--export`. The generic checks come
/// first, in QEMU's order: id, node, writable on a read-only node,
/// iothread; then inactive nodes (refused by export types that cannot
/// serve them, else activated unless `allow-inactive`), the attachment,
/// and the type creates the export.
pub async fn block_export_add(d: &Daemon, opts: BlockExportOptions) -> Result<(), QmpError> {
    if !crate::block::graph::id_wellformed(&opts.id) {
        return Err(QmpError::generic("Invalid block export id"));
    }
    if d.exports.contains(&opts.id) {
        return Err(QmpError::generic(format!(
            "Block export id '{}' is already in use",
            opts.id
        )));
    }
    let Some(node) = d.block.node(&opts.node_name) else {
        return Err(QmpError::generic(format!(
            "Cannot find device='' nor node-name='{}'",
            opts.node_name
        )));
    };
    let writable = opts.writable.unwrap_or(false);
    if node.is_read_only() && writable {
        return Err(QmpError::generic(
            "Cannot export read-only node as writable",
        ));
    }
    let mut runtime = tokio::runtime::Handle::current();
    if let Some(io) = &opts.iothread {
        let Some(t) = d.objects.iothread(io) else {
            return Err(QmpError::generic(format!("iothread \"{io}\" not found")));
        };
        // Nodes have no home thread here, so moving one always succeeds.
        // NBD connections run on their own workers; other exports run in
        // the iothread.
        if let Some(h) = t.handle() {
            runtime = h;
        }
    }
    let allow_inactive = opts.allow_inactive.unwrap_or(false);
    let writethrough = opts.writethrough.unwrap_or(false);
    match &opts.u {
        BlockExportOptionsBranch::Nbd(nbd_args) => {
            let att = attach(d, &node, writable, allow_inactive)?;
            let exp = nbd::create(d, &opts.id, att, writable, writethrough, nbd_args)?;
            lock(&d.exports.list).insert(0, Listed::Nbd(exp));
            Ok(())
        }
        BlockExportOptionsBranch::Fuse(f) => {
            if allow_inactive {
                return Err(QmpError::generic(
                    "Export type does not support inactive exports",
                ));
            }
            let att = attach(d, &node, writable, false)?;
            let core = Arc::new(Core {
                id: opts.id.clone(),
                kind: BlockExportType::Fuse,
                node_name: node.name().to_string(),
                refs: AtomicUsize::new(1),
                user_owned: AtomicBool::new(true),
                driver: Mutex::new(None),
                daemon: d.downgrade(),
            });
            let new = NewExport {
                id: opts.id.clone(),
                node: node.clone(),
                attachment: att,
                writable,
                writethrough,
                runtime,
                refs: ExportRefs(Arc::downgrade(&core)),
            };
            let drv = fuse::FuseExport::create(new, f).await?;
            *core.driver() = Some(Box::new(drv));
            lock(&d.exports.list).insert(0, Listed::Driver(core));
            Ok(())
        }
        other => Err(QmpError::generic(format!(
            "Block export type '{}' is not implemented by qsd yet",
            other.discriminator().as_str()
        ))),
    }
}

/// `block-export-del`: `safe` (the default) refuses while clients are
/// connected; `hard` disconnects them.
pub async fn block_export_del(d: &Daemon, args: BlockExportDelArgs) -> Result<(), QmpError> {
    let Some(exp) = d.exports.find(&args.id) else {
        return Err(QmpError::generic(format!(
            "Export '{}' is not found",
            args.id
        )));
    };
    let shutting_down = match &exp {
        Listed::Nbd(e) => e.is_shutting_down(),
        Listed::Driver(c) => !c.user_owned.load(Ordering::Acquire),
    };
    if shutting_down {
        return Err(QmpError::generic(format!(
            "Export '{}' is already shutting down",
            args.id
        )));
    }
    let mode = args.mode.unwrap_or(BlockExportRemoveMode::Safe);
    // QEMU adds the hint "Use mode='hard' to force client disconnect" for
    // humans; QMP does not show it.
    let in_use = || QmpError::generic(format!("export '{}' still in use", args.id));
    match exp {
        Listed::Nbd(e) => {
            if mode == BlockExportRemoveMode::Safe && e.client_count() > 0 {
                return Err(in_use());
            }
            request_shutdown(d, &e);
        }
        Listed::Driver(core) => {
            let extra = core.refs.load(Ordering::Acquire).saturating_sub(1);
            let (busy, waits) = match core.driver().as_ref() {
                Some(drv) => (drv.in_use(extra), drv.removal_waits()),
                None => (extra > 0, false),
            };
            if mode == BlockExportRemoveMode::Safe && busy {
                return Err(in_use());
            }
            core.request_shutdown();
            if waits {
                wait_gone(d, &core).await;
            }
        }
    }
    Ok(())
}

/// Waits until the driver-based export `core` left the list.
async fn wait_gone(d: &Daemon, core: &Arc<Core>) {
    loop {
        let waiter = d.exports.changed.notified();
        let listed = lock(&d.exports.list)
            .iter()
            .any(|e| matches!(e, Listed::Driver(c) if Arc::ptr_eq(c, core)));
        if !listed {
            return;
        }
        // Deletions notify; the timeout only guards against a missed
        // wake-up.
        let _ = tokio::time::timeout(Duration::from_millis(100), waiter).await;
    }
}

/// `query-block-exports`: every export, newest first.
pub fn query_block_exports(d: &Daemon) -> Result<Vec<BlockExportInfo>, QmpError> {
    Ok(lock(&d.exports.list).iter().map(Listed::info).collect())
}

/// `nbd-server-add` (deprecated): an NBD export whose id is its name; a
/// read-only node is exported read-only even if `writable` is asked for.
pub async fn nbd_server_add(d: &Daemon, args: NbdServerAddOptions) -> Result<(), QmpError> {
    let Some(node) = d.block.node(&args.device) else {
        return Err(QmpError::generic(format!(
            "Cannot find device='{0}' nor node-name='{0}'",
            args.device
        )));
    };
    let name = args.name.unwrap_or_else(|| args.device.clone());
    let writable = args.writable.filter(|_| !node.is_read_only());
    let bitmaps = args
        .bitmap
        .map(|b| vec![qapi::types::BlockDirtyBitmapOrStr::Local(b)]);
    let opts = BlockExportOptions {
        id: name.clone(),
        fixed_iothread: None,
        iothread: None,
        node_name: node.name().to_string(),
        writable: if node.is_read_only() {
            Some(false)
        } else {
            writable
        },
        writethrough: None,
        allow_inactive: None,
        u: BlockExportOptionsBranch::Nbd(BlockExportOptionsNbd {
            name: Some(name),
            description: args.description,
            bitmaps,
            allocation_depth: None,
        }),
    };
    block_export_add(d, opts).await
}

/// `nbd-server-remove` (deprecated): `block-export-del` for NBD exports.
pub async fn nbd_server_remove(d: &Daemon, args: NbdServerRemoveArgs) -> Result<(), QmpError> {
    if let Some(Listed::Driver(_)) = d.exports.find(&args.name) {
        return Err(QmpError::generic(format!(
            "Block export '{}' is not an NBD export",
            args.name
        )));
    }
    block_export_del(
        d,
        BlockExportDelArgs {
            id: args.name,
            mode: args.mode,
        },
    )
    .await
}

/// Removes every NBD export and stops `server`, waiting until all
/// clients have left; the events come in list order, before the caller's
/// reply (QEMU's `nbd-server-stop`).
pub(crate) async fn close_all_nbd(d: &Daemon, server: &NbdServer) {
    let exps = d.exports.all_nbd();
    for e in &exps {
        request_shutdown(d, e);
    }
    server.shutdown().await;
    for e in &exps {
        e.wait_idle().await;
        finalize(d, e);
    }
}

/// Removes every export, in list order, stops the NBD server and waits
/// until all are gone (QEMU's `blk_exp_close_all`, on `quit` and at exit).
pub async fn close_all(d: &Daemon) {
    let all: Vec<Listed> = lock(&d.exports.list).clone();
    for e in &all {
        match e {
            Listed::Nbd(n) => request_shutdown(d, n),
            Listed::Driver(c) => c.request_shutdown(),
        }
    }
    if let Some(server) = d.exports.take_nbd_server() {
        server.shutdown().await;
    }
    for e in &all {
        if let Listed::Nbd(n) = e {
            n.wait_idle().await;
            finalize(d, n);
        }
    }
    drop(all);
    loop {
        let waiter = d.exports.changed.notified();
        if !d.exports.has_driver_exports() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), waiter).await;
    }
}
