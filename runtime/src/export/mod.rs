//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`nbd`]: the NBD export and the built-in NBD server.
//!
//! This module keeps the exports of a daemon and implements the QMP
//! commands common to every export type, with QEMU's checks and texts:
//! `block-export-add`, `block-export-del`, `query-block-exports`, and the
//! deprecated `nbd-server-add`/`nbd-server-remove`. Only NBD exports are
//! implemented; `vhost-user-blk`, `fuse` and `vduse-blk` are refused with
//! an error saying so, after the checks every export type shares.
//!
//! Life of an export (as QEMU's `BlockExport`): it is listed (newest
//! first) from its creation until it is gone. Removal (`block-export-del`,
//! `nbd-server-stop`, quitting) first marks it as shutting down and
//! disconnects its clients; it is gone, and `BLOCK_EXPORT_DELETED` sent,
//! when the last client has left: at once when there is none (the event
//! then comes before the command's reply), else later (after the reply).

pub mod nbd;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qapi::events::Event;
use qapi::types::{
    BlockExportDelArgs, BlockExportDeletedData, BlockExportInfo, BlockExportOptions,
    BlockExportOptionsBranch, BlockExportOptionsNbd, BlockExportRemoveMode, BlockExportType,
    BlockdevSetActiveArgs, NbdServerAddOptions, NbdServerRemoveArgs,
};
use qapi::QmpError;

use crate::block::{ParentKind, Perm};
use crate::daemon::Daemon;

use nbd::{NbdExport, NbdServer};

/// The exports of a daemon and its NBD server.
#[derive(Default)]
pub struct Exports {
    /// Every export, newest first (QEMU's list order).
    list: Mutex<Vec<Arc<NbdExport>>>,
    nbd_server: Mutex<Option<Arc<NbdServer>>>,
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

    /// Every export, newest first.
    pub fn all(&self) -> Vec<Arc<NbdExport>> {
        lock(&self.list).clone()
    }
}

/// Removes `exp` for good (it has no client left): releases its node and
/// sends `BLOCK_EXPORT_DELETED`. Does nothing the second time.
pub(crate) fn finalize(d: &Daemon, exp: &Arc<NbdExport>) {
    if !exp.finalize() {
        return;
    }
    lock(&d.exports.list).retain(|e| !Arc::ptr_eq(e, exp));
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
    if !crate::block::graph::id_wellformed(&opts.id) {
        return Err(QmpError::generic("Invalid block export id"));
    }
    if d.exports.find(&opts.id).is_some() {
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
    if let Some(io) = &opts.iothread {
        if d.objects.iothread(io).is_none() {
            return Err(QmpError::generic(format!("iothread \"{io}\" not found")));
        }
        // Exports run on the shared runtime; an iothread changes nothing.
    }
    let nbd_args = match &opts.u {
        BlockExportOptionsBranch::Nbd(n) => n,
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
    Ok(())
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
    Ok(d.exports
        .all()
        .iter()
        .map(|e| BlockExportInfo {
            id: e.id.clone(),
            type_: BlockExportType::Nbd,
            node_name: e.node.name().to_string(),
            shutting_down: e.is_shutting_down(),
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
