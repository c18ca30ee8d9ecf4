//! The NBD export and the built-in NBD server.
//!
//! - [`proto`]: the NBD wire protocol as a pure, I/O-free codec (handshake,
//!   transmission, and a handshake state machine that decides like QEMU's
//!   server does).
//! - [`server`]: `nbd-server-start`/`nbd-server-stop`: listening sockets,
//!   the connection limit, the handshake time limit.
//! - `handshake`, `transmit`, `ops`, `outq`, `stream`: one connection,
//!   from the greeting to the last reply (see each module); `workers`:
//!   the threads connections run on.
//!
//! An [`NbdExport`] is what `block-export-add type=nbd` creates: a block
//! node attached like QEMU's export block backend (consistent read, write
//! if writable, sharing everything but resize), with the description the
//! handshake gives out. Clients that chose it in the handshake are counted:
//! a `safe` removal is refused while any is connected, a `hard` one
//! disconnects them, and the export is gone (`BLOCK_EXPORT_DELETED`) when
//! the last one has left.

mod handshake;
mod listen;
mod ops;
mod outq;
pub mod proto;
pub mod server;
mod stream;
mod transmit;
mod workers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use qapi::types::BlockExportOptionsNbd;
use qapi::QmpError;
use tokio::sync::watch;

use crate::block::{Attachment, BlockNode, Perm};
use crate::daemon::{Daemon, WeakDaemon};

use proto::{ExportDesc, MAX_STRING_SIZE};

pub use server::{nbd_server_start, NbdServer};

/// Clients of an export and whether it is being removed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clients {
    /// Connections in transmission with this export.
    pub count: usize,
    /// Removal was requested: no new client may join, present ones are
    /// being disconnected.
    pub shutting_down: bool,
}

/// An NBD export.
pub struct NbdExport {
    /// The block export id.
    pub id: String,
    /// What the handshake tells clients.
    pub desc: ExportDesc,
    /// The exported node.
    pub node: Arc<BlockNode>,
    /// Whether clients may write.
    pub writable: bool,
    /// Whether every write is forced to stable storage.
    pub writethrough: bool,
    attachment: Mutex<Option<Attachment>>,
    clients: watch::Sender<Clients>,
    finalized: AtomicBool,
    daemon: WeakDaemon,
}

impl std::fmt::Debug for NbdExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdExport")
            .field("id", &self.id)
            .field("name", &self.desc.name)
            .finish()
    }
}

/// A client's membership of an export; leaving may complete a removal.
pub(crate) struct ClientGuard {
    exp: Arc<NbdExport>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut last = false;
        self.exp.clients.send_modify(|c| {
            c.count = c.count.saturating_sub(1);
            last = c.count == 0 && c.shutting_down;
        });
        if last {
            // As QEMU's deferred deletion: the event follows the reply of
            // the command that asked for the removal.
            let exp = self.exp.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Some(d) = exp.daemon.upgrade() {
                        let _g = d.command_lock.lock().await;
                        crate::export::finalize(&d, &exp);
                    }
                });
            }
        }
    }
}

impl NbdExport {
    /// Joins a client, unless the export is being removed.
    pub(crate) fn join(self: &Arc<Self>) -> Option<ClientGuard> {
        let mut ok = false;
        self.clients.send_if_modified(|c| {
            if c.shutting_down {
                return false;
            }
            c.count += 1;
            ok = true;
            true
        });
        ok.then(|| ClientGuard { exp: self.clone() })
    }

    /// The number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.borrow().count
    }

    /// Whether removal was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.clients.borrow().shutting_down
    }

    /// Marks the export as being removed and disconnects its clients.
    /// Returns whether no client is connected (then it can go at once);
    /// `None` if removal was requested before.
    pub(crate) fn request_shutdown(&self) -> Option<bool> {
        let mut idle = None;
        self.clients.send_if_modified(|c| {
            if c.shutting_down {
                return false;
            }
            c.shutting_down = true;
            idle = Some(c.count == 0);
            true
        });
        idle
    }

    /// Waits until every client has left.
    pub(crate) async fn wait_idle(&self) {
        let mut rx = self.clients.subscribe();
        let _ = rx.wait_for(|c| c.count == 0).await;
    }

    /// Waits until removal is requested.
    pub(crate) fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.clients.subscribe();
        async move {
            let _ = rx.wait_for(|c| c.shutting_down).await;
        }
    }

    /// Releases the node; `false` if that was done before.
    pub(crate) fn finalize(&self) -> bool {
        if self.finalized.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.attachment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        true
    }
}

/// The NBD part of `block-export-add` (QEMU's `nbd_export_create`), after
/// the generic checks: `att` holds the node with the export's
/// permissions. Checks in QEMU's order: server running, name and
/// description lengths, name unused, then resize is unshared (the export
/// size is fixed), then the bitmaps.
pub(crate) fn create(
    d: &Daemon,
    id: &str,
    att: Attachment,
    writable: bool,
    writethrough: bool,
    args: &BlockExportOptionsNbd,
) -> Result<Arc<NbdExport>, QmpError> {
    let Some(server) = d.exports.nbd_server() else {
        return Err(QmpError::generic("NBD server not running"));
    };
    let node = att.node().clone();
    let name = args.name.clone().unwrap_or_else(|| node.name().to_string());
    if name.len() > MAX_STRING_SIZE {
        return Err(QmpError::generic(format!("export name '{name}' too long")));
    }
    if let Some(desc) = &args.description {
        if desc.len() > MAX_STRING_SIZE {
            return Err(QmpError::generic(format!("description '{desc}' too long")));
        }
    }
    if d.exports.nbd_find(&name).is_some() {
        return Err(QmpError::generic(format!(
            "NBD server already has export named '{name}'"
        )));
    }
    let (perm, shared) = att.perm();
    att.set_perm(perm, shared & !Perm::RESIZE)?;
    if let Some(b) = args.bitmaps.as_ref().and_then(|v| v.first()) {
        // The block layer has no dirty bitmaps yet, so none can be found.
        let name = match b {
            qapi::types::BlockDirtyBitmapOrStr::Local(s) => s.clone(),
            qapi::types::BlockDirtyBitmapOrStr::External(x) => x.name.clone(),
        };
        return Err(QmpError::generic(format!("Bitmap '{name}' is not found")));
    }
    let multi_conn = server.max_connections() != 1;
    let desc = ExportDesc {
        name,
        description: args.description.clone(),
        size: node.size() & !511,
        flags: ExportDesc::qemu_flags(writable, multi_conn),
        request_alignment: u32::try_from(node.request_alignment().max(1)).unwrap_or(u32::MAX),
        max_transfer: u32::MAX,
        allocation_depth: args.allocation_depth.unwrap_or(false),
        bitmaps: Vec::new(),
    };
    let (clients, _) = watch::channel(Clients::default());
    Ok(Arc::new(NbdExport {
        id: id.to_string(),
        desc,
        node,
        writable,
        writethrough,
        attachment: Mutex::new(Some(att)),
        clients,
        finalized: AtomicBool::new(false),
        daemon: d.downgrade(),
    }))
}
