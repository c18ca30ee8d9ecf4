//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`nbd`]: the NBD (Network Block Device) export.
//! - [`vhost_user_blk`]: the vhost-user-blk back end.
//!
//! This module also holds the export registry behind `block-export-add`,
//! `block-export-del` and `query-block-exports` (QEMU's `block/export`):
//! the checks every export type shares, in QEMU's order, then the type's
//! own creation. An export type implements [`ExportDriver`] for what the
//! registry needs afterwards (is it in use, shut it down).
//!
//! Life cycle, as QEMU's: an export is listed from its creation until it
//! is completely gone; `block-export-del` marks it `shutting-down` and
//! asks the driver to stop; `BLOCK_EXPORT_DELETED` is sent once the
//! driver has stopped and the node was released. Exports are listed
//! newest first.

pub mod nbd;
pub mod vhost_user_blk;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qapi::events::Event;
use qapi::types::{
    BlockExportDeletedData, BlockExportInfo, BlockExportOptions, BlockExportOptionsBranch,
    BlockExportRemoveMode, BlockExportType, BlockdevSetActiveArgs,
};
use qapi::QmpError;

use crate::block::{Attachment, BlockNode, ParentKind, Perm};
use crate::chardev::Origin;
use crate::Daemon;

/// A future the registry waits for.
pub type ExportFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the registry needs from a running export.
pub trait ExportDriver: Send + Sync {
    /// Whether clients hold the export (a `safe` delete is then refused
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
    /// `writable` (false by default; checked against the node).
    pub writable: bool,
    /// `writethrough` (false by default).
    pub writethrough: bool,
    /// The runtime of the requested iothread, if any.
    pub iothread: Option<tokio::runtime::Handle>,
    /// Who asked: the command line can pass descriptors by number, QMP
    /// cannot (QSD has no descriptor passing).
    pub origin: &'a Origin,
}

struct Entry {
    id: String,
    type_: BlockExportType,
    node_name: String,
    shutting_down: bool,
    driver: Arc<dyn ExportDriver>,
    /// Holds the node (released when the export is gone).
    attachment: Option<Attachment>,
}

/// The exports of the daemon (in `Daemon::exports`).
#[derive(Default)]
pub struct Registry {
    entries: Mutex<Vec<Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an export (shutting down or not) has id `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().iter().any(|e| e.id == id)
    }

    /// Number of exports.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn generic(msg: impl Into<String>) -> QmpError {
    QmpError::generic(msg.into())
}

/// `block-export-add` (and `--export`).
pub async fn block_export_add(
    d: &Daemon,
    opts: BlockExportOptions,
    origin: &Origin,
) -> Result<(), QmpError> {
    if !crate::objects::id_wellformed(&opts.id) {
        return Err(generic("Invalid block export id"));
    }
    if d.exports.contains(&opts.id) {
        return Err(generic(format!(
            "Block export id '{}' is already in use",
            opts.id
        )));
    }
    let type_ = opts.u.discriminator();
    if !matches!(opts.u, BlockExportOptionsBranch::VhostUserBlk(_)) {
        return Err(generic(format!(
            "qsd does not implement '{}' exports yet",
            type_.as_str()
        )));
    }
    let Some(node) = d.block.node(&opts.node_name) else {
        return Err(generic(format!(
            "Cannot find device='' nor node-name='{}'",
            opts.node_name
        )));
    };
    let writable = opts.writable.unwrap_or(false);
    if node.is_read_only() && writable {
        return Err(generic("Cannot export read-only node as writable"));
    }
    let iothread = match &opts.iothread {
        None => None,
        Some(name) => {
            let Some(t) = d.objects.iothread(name) else {
                return Err(generic(format!("iothread \"{name}\" not found")));
            };
            // The export's queues run there; our nodes are not bound to a
            // thread, so moving always succeeds (`fixed-iothread` changes
            // nothing).
            Some(
                t.handle()
                    .ok_or_else(|| generic(format!("IOThread '{name}' is not running")))?,
            )
        }
    };
    if opts.allow_inactive == Some(true) {
        // Only NBD exports work on inactive nodes.
        return Err(generic("Export type does not support inactive exports"));
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
        opts: &opts,
        node: node.clone(),
        writable,
        writethrough: opts.writethrough.unwrap_or(false),
        iothread,
        origin,
    };
    let driver: Arc<dyn ExportDriver> = match &opts.u {
        BlockExportOptionsBranch::VhostUserBlk(v) => vhost_user_blk::create(&cx, v)?,
        _ => unreachable!("checked above"),
    };
    d.exports.lock().insert(
        0,
        Entry {
            id: opts.id.clone(),
            type_,
            node_name: node.name().to_string(),
            shutting_down: false,
            driver,
            attachment: Some(attachment),
        },
    );
    Ok(())
}

/// `block-export-del`. Without connected clients the export is gone (and
/// `BLOCK_EXPORT_DELETED` sent) when the command returns, as in QEMU;
/// otherwise (`hard`) the clients are disconnected and the event follows.
pub async fn block_export_del(
    d: &Daemon,
    id: &str,
    mode: Option<BlockExportRemoveMode>,
) -> Result<(), QmpError> {
    let driver = {
        let mut entries = d.exports.lock();
        let Some(e) = entries.iter_mut().find(|e| e.id == id) else {
            return Err(generic(format!("Export '{id}' is not found")));
        };
        if e.shutting_down {
            return Err(generic(format!("Export '{id}' is already shutting down")));
        }
        let mode = mode.unwrap_or(BlockExportRemoveMode::Safe);
        if mode == BlockExportRemoveMode::Safe && e.driver.in_use() {
            return Err(generic(format!("export '{id}' still in use")));
        }
        e.shutting_down = true;
        e.driver.clone()
    };
    let busy = driver.in_use();
    let stop = finish_shutdown(d.clone(), id.to_string(), driver);
    if busy {
        tokio::spawn(stop);
    } else {
        stop.await;
    }
    Ok(())
}

/// Waits for the driver to stop, then removes the export, releases the
/// node and announces it.
async fn finish_shutdown(d: Daemon, id: String, driver: Arc<dyn ExportDriver>) {
    driver.shutdown().await;
    let entry = {
        let mut entries = d.exports.lock();
        let pos = entries.iter().position(|e| e.id == id);
        pos.map(|p| entries.remove(p))
    };
    if let Some(mut e) = entry {
        drop(e.attachment.take());
        d.emit(Event::BlockExportDeleted(BlockExportDeletedData {
            id: e.id,
        }));
    }
}

/// `query-block-exports`.
pub fn query_block_exports(d: &Daemon) -> Vec<BlockExportInfo> {
    d.exports
        .lock()
        .iter()
        .map(|e| BlockExportInfo {
            id: e.id.clone(),
            type_: e.type_,
            node_name: e.node_name.clone(),
            shutting_down: e.shutting_down,
        })
        .collect()
}

/// Shuts every export down (daemon exit): clients are disconnected,
/// requests in flight finish, the nodes are released.
pub async fn close_all(d: &Daemon) {
    let todo: Vec<(String, Arc<dyn ExportDriver>)> = {
        let mut entries = d.exports.lock();
        entries
            .iter_mut()
            .filter(|e| !e.shutting_down)
            .map(|e| {
                e.shutting_down = true;
                (e.id.clone(), e.driver.clone())
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for (id, driver) in todo {
        tasks.push(tokio::spawn(finish_shutdown(d.clone(), id, driver)));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Exports already shutting down finish on their own; wait for them.
    while !d.exports.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
