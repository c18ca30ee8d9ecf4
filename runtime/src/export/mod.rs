//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`nbd`]: the NBD export and the built-in NBD server.
//! - [`vhost_user_blk`]: the vhost-user-blk back end.
//! - [`fuse`]: the FUSE export (the node's content as a regular file).
//!
//! This module keeps the exports of a daemon and implements the QMP
//! commands common to every export type, with QEMU's checks and texts:
//! `block-export-add`, `block-export-del`, `query-block-exports`, and the
//! deprecated `nbd-server-add`/`nbd-server-remove`. NBD, vhost-user-blk
//! and FUSE exports are implemented; `vduse-blk` is refused with an error
//! saying so, after the checks every export type shares.
//!
//! Export types other than NBD plug in through [`ExportDriver`]: the
//! registry lists them with the NBD exports (one creation order for all)
//! and asks them to shut down.
//!
//! Life of an export (as QEMU's `BlockExport`): it is listed (newest
//! first) from its creation until it is gone. Removal (`block-export-del`,
//! `nbd-server-stop`, quitting) first marks it as shutting down and
//! disconnects its clients; it is gone, and `BLOCK_EXPORT_DELETED` sent,
//! when the last client has left: at once when there is none (the event
//! then comes before the command's reply), else later (after the reply).

pub mod fuse;
pub mod nbd;
pub mod vhost_user_blk;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qapi::events::Event;
use qapi::types::{
    BlockExportDelArgs, BlockExportDeletedData, BlockExportInfo, BlockExportOptions,
    BlockExportOptionsBranch, BlockExportOptionsNbd, BlockExportRemoveMode, BlockExportType,
    BlockdevSetActiveArgs, NbdServerAddOptions, NbdServerRemoveArgs,
};
use qapi::QmpError;

use crate::block::{Attachment, BlockNode, ParentKind, Perm};
use crate::chardev::Origin;
use crate::daemon::Daemon;

use nbd::{NbdExport, NbdServer};

/// A future the registry waits for.
pub type ExportFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What the registry needs from a running export of a type other than
/// NBD.
pub trait ExportDriver: Send + Sync {
    /// Whether users hold the export (a `safe` delete is then refused
    /// with "export 'ID' still in use").
    fn in_use(&self) -> bool;

    /// Stops the export: no new clients, connected ones are disconnected,
    /// requests in flight finish. The future completes when nothing of the
    /// export runs any more.
    fn shutdown(&self) -> ExportFuture;
}

/// Everything an export type's constructor gets from the generic part.
pub struct ExportContext<'a> {
    pub daemon: &'a Daemon,
    pub opts: &'a BlockExportOptions,
    /// The exported node.
    pub node: Arc<BlockNode>,
    /// The export's hold on the node (`consistent-read`, plus `write` when
    /// writable, sharing everything), kept by the registry until the
    /// export is gone; a type may change its permissions (FUSE adds
    /// `resize`).
    pub attachment: &'a Attachment,
    /// `writable` (false by default; checked against the node).
    pub writable: bool,
    /// `writethrough` (false by default).
    pub writethrough: bool,
    /// The requested iothread, if any.
    pub iothread: Option<Arc<crate::objects::IoThread>>,
    /// Who asked: the command line can pass descriptors by number, QMP
    /// cannot (QSD has no descriptor passing).
    pub origin: &'a Origin,
}

/// A listed export of a type other than NBD.
struct OtherExport {
    id: String,
    type_: BlockExportType,
    node_name: String,
    shutting_down: bool,
    driver: Arc<dyn ExportDriver>,
    /// Holds the node until the export is gone.
    attachment: Option<Attachment>,
}

/// The exports of a daemon and its NBD server.
#[derive(Default)]
pub struct Exports {
    /// Every NBD export, newest first (QEMU's list order).
    list: Mutex<Vec<Arc<NbdExport>>>,
    nbd_server: Mutex<Option<Arc<NbdServer>>>,
    /// Exports of the other types.
    others: Mutex<Vec<OtherExport>>,
    /// The ids of all exports, newest first: the order across types.
    order: Mutex<Vec<String>>,
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

    /// The export with id `id`.
    pub fn find(&self, id: &str) -> Option<Arc<NbdExport>> {
        lock(&self.list).iter().find(|e| e.id == id).cloned()
    }

    /// The NBD export that clients know as `name` (not being removed).
    pub fn nbd_find(&self, name: &str) -> Option<Arc<NbdExport>> {
        lock(&self.list)
            .iter()
            .find(|e| e.desc.name == name && !e.is_shutting_down())
            .cloned()
    }

    /// The NBD exports clients may choose, oldest first (QEMU's order in
    /// `NBD_OPT_LIST`).
    pub fn nbd_exports(&self) -> Vec<Arc<NbdExport>> {
        lock(&self.list)
            .iter()
            .rev()
            .filter(|e| !e.is_shutting_down())
            .cloned()
            .collect()
    }

    /// Every NBD export, newest first.
    pub fn all(&self) -> Vec<Arc<NbdExport>> {
        lock(&self.list).clone()
    }

    /// Whether an export of any type has id `id`.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.order).iter().any(|i| i == id)
    }
}

/// Removes `exp` for good (it has no client left): releases its node and
/// sends `BLOCK_EXPORT_DELETED`. Does nothing the second time.
pub(crate) fn finalize(d: &Daemon, exp: &Arc<NbdExport>) {
    if !exp.finalize() {
        return;
    }
    lock(&d.exports.list).retain(|e| !Arc::ptr_eq(e, exp));
    lock(&d.exports.order).retain(|i| *i != exp.id);
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

/// `block-export-add`, also used by `--export`. The generic checks come
/// first, in QEMU's order: id, type, node, writable on a read-only node,
/// iothread; then the node is activated (unless `allow-inactive`) and
/// attached, and the type creates the export.
pub fn block_export_add(d: &Daemon, opts: BlockExportOptions) -> Result<(), QmpError> {
    block_export_add_from(d, opts, &Origin::Qmp)
}

/// [`block_export_add`] on behalf of `origin` (the command line may pass
/// listening sockets by descriptor number).
pub fn block_export_add_from(
    d: &Daemon,
    opts: BlockExportOptions,
    origin: &Origin,
) -> Result<(), QmpError> {
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
    let mut iothread = None;
    if let Some(io) = &opts.iothread {
        let Some(t) = d.objects.iothread(io) else {
            return Err(QmpError::generic(format!("iothread \"{io}\" not found")));
        };
        // NBD exports run on the shared runtime; other types run their
        // queues on the iothread. Nodes are not tied to a thread, so
        // moving never fails and `fixed-iothread` changes nothing.
        iothread = Some(t);
    }
    let nbd_args = match &opts.u {
        BlockExportOptionsBranch::Nbd(n) => n,
        BlockExportOptionsBranch::VhostUserBlk(v) => {
            return add_other(d, &opts, node, writable, iothread, origin, |cx| {
                vhost_user_blk::create(cx, v)
            });
        }
        BlockExportOptionsBranch::Fuse(f) => {
            return add_other(d, &opts, node, writable, iothread, origin, |cx| {
                fuse::create(cx, f)
            });
        }
        other => {
            return Err(QmpError::generic(format!(
                "Block export type '{}' is not implemented by qsd yet",
                other.discriminator().as_str()
            )))
        }
    };
    if !opts.allow_inactive.unwrap_or(false) && !node.is_active() {
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
    let att = d.block.attach(
        &node,
        ParentKind::Backend {
            name: String::new(),
        },
        "root",
        perm,
        Perm::ALL,
    )?;
    let writethrough = opts.writethrough.unwrap_or(false);
    let exp = nbd::create(d, &opts.id, att, writable, writethrough, nbd_args)?;
    lock(&d.exports.list).insert(0, exp);
    lock(&d.exports.order).insert(0, opts.id.clone());
    Ok(())
}

/// The rest of `block-export-add` for an export type other than NBD:
/// such types cannot work on inactive nodes; the node is activated and
/// attached, then `create` makes the export.
fn add_other(
    d: &Daemon,
    opts: &BlockExportOptions,
    node: Arc<BlockNode>,
    writable: bool,
    iothread: Option<Arc<crate::objects::IoThread>>,
    origin: &Origin,
    create: impl FnOnce(&ExportContext<'_>) -> Result<Arc<dyn ExportDriver>, QmpError>,
) -> Result<(), QmpError> {
    if opts.allow_inactive == Some(true) {
        return Err(QmpError::generic(
            "Export type does not support inactive exports",
        ));
    }
    if !node.is_active() {
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
    let attachment = d.block.attach(
        &node,
        ParentKind::Backend {
            name: String::new(),
        },
        "root",
        perm,
        Perm::ALL,
    )?;
    let cx = ExportContext {
        daemon: d,
        opts,
        node: node.clone(),
        attachment: &attachment,
        writable,
        writethrough: opts.writethrough.unwrap_or(false),
        iothread,
        origin,
    };
    let driver = create(&cx)?;
    lock(&d.exports.others).insert(
        0,
        OtherExport {
            id: opts.id.clone(),
            type_: opts.u.discriminator(),
            node_name: node.name().to_string(),
            shutting_down: false,
            driver,
            attachment: Some(attachment),
        },
    );
    lock(&d.exports.order).insert(0, opts.id.clone());
    Ok(())
}

/// `block-export-del` for every export type. An export of another type
/// than NBD is gone (and `BLOCK_EXPORT_DELETED` sent) when this returns if
/// nobody used it, as in QEMU; otherwise (`hard`) the event follows.
pub async fn block_export_del_any(d: &Daemon, args: BlockExportDelArgs) -> Result<(), QmpError> {
    let driver = {
        let mut others = lock(&d.exports.others);
        let Some(e) = others.iter_mut().find(|e| e.id == args.id) else {
            drop(others);
            return block_export_del(d, args);
        };
        if e.shutting_down {
            return Err(QmpError::generic(format!(
                "Export '{}' is already shutting down",
                args.id
            )));
        }
        let mode = args.mode.unwrap_or(BlockExportRemoveMode::Safe);
        if mode == BlockExportRemoveMode::Safe && e.driver.in_use() {
            return Err(QmpError::generic(format!(
                "export '{}' still in use",
                args.id
            )));
        }
        e.shutting_down = true;
        e.driver.clone()
    };
    let busy = driver.in_use();
    let stop = finish_other(d.clone(), args.id.clone(), driver);
    if busy {
        tokio::spawn(stop);
    } else {
        stop.await;
    }
    Ok(())
}

/// Waits for an export of another type to stop, then removes it, releases
/// its node and announces it.
async fn finish_other(d: Daemon, id: String, driver: Arc<dyn ExportDriver>) {
    driver.shutdown().await;
    let entry = {
        let mut others = lock(&d.exports.others);
        let pos = others.iter().position(|e| e.id == id);
        pos.map(|p| others.remove(p))
    };
    if let Some(mut e) = entry {
        lock(&d.exports.order).retain(|i| *i != e.id);
        drop(e.attachment.take());
        d.emit(Event::BlockExportDeleted(BlockExportDeletedData {
            id: e.id,
        }));
    }
}

/// Shuts down every export of another type than NBD.
async fn close_all_others(d: &Daemon) {
    let todo: Vec<(String, Arc<dyn ExportDriver>)> = lock(&d.exports.others)
        .iter_mut()
        .filter(|e| !e.shutting_down)
        .map(|e| {
            e.shutting_down = true;
            (e.id.clone(), e.driver.clone())
        })
        .collect();
    for (id, driver) in todo {
        finish_other(d.clone(), id, driver).await;
    }
    // Those already shutting down finish on their own.
    while !lock(&d.exports.others).is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `block-export-del`: `safe` (the default) refuses while clients are
/// connected; `hard` disconnects them.
pub fn block_export_del(d: &Daemon, args: BlockExportDelArgs) -> Result<(), QmpError> {
    let Some(exp) = d.exports.find(&args.id) else {
        return Err(QmpError::generic(format!(
            "Export '{}' is not found",
            args.id
        )));
    };
    if exp.is_shutting_down() {
        return Err(QmpError::generic(format!(
            "Export '{}' is already shutting down",
            args.id
        )));
    }
    let mode = args.mode.unwrap_or(BlockExportRemoveMode::Safe);
    if mode == BlockExportRemoveMode::Safe && exp.client_count() > 0 {
        // QEMU adds the hint "Use mode='hard' to force client disconnect"
        // for humans; QMP does not show it.
        return Err(QmpError::generic(format!(
            "export '{}' still in use",
            exp.id
        )));
    }
    request_shutdown(d, &exp);
    Ok(())
}

/// `query-block-exports`: every export, newest first.
pub fn query_block_exports(d: &Daemon) -> Result<Vec<BlockExportInfo>, QmpError> {
    let nbd = d.exports.all();
    let others = lock(&d.exports.others);
    let order = lock(&d.exports.order).clone();
    Ok(order
        .iter()
        .filter_map(|id| {
            if let Some(e) = nbd.iter().find(|e| e.id == *id) {
                return Some(BlockExportInfo {
                    id: e.id.clone(),
                    type_: BlockExportType::Nbd,
                    node_name: e.node.name().to_string(),
                    shutting_down: e.is_shutting_down(),
                });
            }
            others
                .iter()
                .find(|e| e.id == *id)
                .map(|e| BlockExportInfo {
                    id: e.id.clone(),
                    type_: e.type_,
                    node_name: e.node_name.clone(),
                    shutting_down: e.shutting_down,
                })
        })
        .collect())
}

/// `nbd-server-add` (deprecated): an NBD export whose id is its name; a
/// read-only node is exported read-only even if `writable` is asked for.
pub fn nbd_server_add(d: &Daemon, args: NbdServerAddOptions) -> Result<(), QmpError> {
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
    block_export_add(d, opts)
}

/// `nbd-server-remove` (deprecated): `block-export-del` for NBD exports.
pub fn nbd_server_remove(d: &Daemon, args: NbdServerRemoveArgs) -> Result<(), QmpError> {
    if lock(&d.exports.others).iter().any(|e| e.id == args.name) {
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
}

/// Removes every NBD export and stops `server`, waiting until all
/// clients have left; the events come in list order, before the caller's
/// reply (QEMU's `nbd-server-stop`).
pub(crate) async fn close_all_nbd(d: &Daemon, server: &NbdServer) {
    let exps = d.exports.all();
    for e in &exps {
        request_shutdown(d, e);
    }
    server.shutdown().await;
    for e in &exps {
        e.wait_idle().await;
        finalize(d, e);
    }
}

/// Removes every export and stops the NBD server (quitting).
pub async fn close_all(d: &Daemon) {
    close_all_others(d).await;
    match d.exports.take_nbd_server() {
        Some(server) => close_all_nbd(d, &server).await,
        None => {
            let exps = d.exports.all();
            for e in &exps {
                request_shutdown(d, e);
            }
            for e in &exps {
                e.wait_idle().await;
                finalize(d, e);
            }
        }
    }
}

#[cfg(test)]
mod tests;
