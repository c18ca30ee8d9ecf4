//! The vhost-user-blk export: the daemon is the vhost-user back end of a
//! virtio-blk device whose frontend (a VMM such as QEMU with
//! `-device vhost-user-blk-pci`, or libblkio) connects over a UNIX socket
//! and shares the guest's memory with it.
//!
//! Built on rust-vmm: `vhost` decodes and checks the vhost-user messages
//! and sends the backend's requests (config change), `vhost-user-backend`
//! keeps each vring's state, `virtio-queue` reads the split rings and
//! `vm-memory` maps the guest memory the frontend passes. This module
//! adds the virtio-blk device ([`config`], [`request`]), the message
//! semantics ([`device`]), the queue tasks ([`queue`]), descriptor chain
//! walking ([`chain`]) and inflight tracking ([`inflight`]).
//!
//! # Behaviour (QSD 10.0 unless said otherwise)
//!
//! - Options: `addr` (`unix`, or `fd` from the command line), `writable`,
//!   `logical-block-size` (power of two, 512 B to 2 MiB), `num-queues`
//!   (at least 1), `writethrough`, `iothread` (the queues run on that
//!   iothread's event loop; otherwise, or once it was deleted, on the main
//!   runtime's worker threads), `fixed-iothread` (accepted; our nodes are
//!   not tied to a thread, so moving them never fails).
//! - One frontend at a time; further connections wait in the listen
//!   backlog until it disconnects, then the next one is served (a VMM may
//!   reconnect without restarting the daemon).
//! - Requests: IN, OUT, FLUSH, GET_ID (`vhost_user_blk`), DISCARD and
//!   WRITE_ZEROES (with UNMAP), others UNSUPP; writes to a read-only
//!   export and requests outside the disk or not aligned to the logical
//!   block size fail with IOERR. The used length is the size of all
//!   device-writable buffers, as QSD reports it.
//! - `block_resize` of the node updates the capacity and sends a
//!   config-change message to the frontend.
//! - Beyond QSD: `INFLIGHT_SHMFD`, so requests in flight survive a
//!   reconnection; a malformed chain is completed with used length 0
//!   instead of being dropped.
//!
//! # Shutdown
//!
//! `block-export-del` (safe or hard alike: as in QSD a connected frontend
//! does not keep the export in use) and daemon exit stop accepting, close
//! the connection, let the requests in flight complete, and release the
//! node; the command returns once all that is done.

mod chain;
mod channel;
mod config;
mod device;
mod inflight;
mod queue;
mod request;

#[cfg(test)]
mod tests;

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qapi::types::{BlockExportOptionsVhostUserBlk, SocketAddressBranch};
use qapi::QmpError;
use tokio::sync::watch;
use tracing::{debug, warn};
use vhost::vhost_user::BackendReqHandler;

use super::{ExportContext, ExportDriver, ExportFuture};
use crate::block::node::Subscription;
use crate::block::NodeEvent;
use crate::objects::IoThread;
use config::BlkConfig;
pub use device::protocol_features;
use device::Device;
use request::Disk;

/// Default and smallest logical block size.
const MIN_BLOCK_SIZE: u64 = 512;
/// Largest logical block size (QEMU's `check_block_size`).
const MAX_BLOCK_SIZE: u64 = 2 << 20;

/// State shared by the export, its connection and its queues.
pub(crate) struct Shared {
    pub disk: Arc<Disk>,
    pub num_queues: u16,
    /// Capacity in sectors (follows resizes).
    capacity: AtomicU64,
    /// The iothread the queues run on, if any.
    iothread: Option<Arc<IoThread>>,
    /// The main runtime: queues run there without an iothread, or once it
    /// was deleted.
    main: tokio::runtime::Handle,
    /// The frontend's channel for our requests (config change).
    backend: Mutex<Option<UnixStream>>,
    /// The connected frontend's socket, to disconnect it.
    conn: Mutex<Option<UnixStream>>,
    /// The export is shutting down: a connection just accepted ends at
    /// once.
    stopping: AtomicBool,
}

impl Shared {
    fn lock_backend(&self) -> MutexGuard<'_, Option<UnixStream>> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_conn(&self) -> MutexGuard<'_, Option<UnixStream>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where a queue starting now runs.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.iothread
            .as_ref()
            .and_then(|t| t.handle())
            .unwrap_or_else(|| self.main.clone())
    }

    /// The configuration space as the guest sees it now.
    pub fn config(&self) -> BlkConfig {
        BlkConfig {
            capacity: self.capacity.load(Ordering::Acquire),
            blk_size: self.disk.blk_size,
            num_queues: self.num_queues,
            wce: self.disk.write_cache.load(Ordering::Relaxed),
        }
    }

    /// The guest wrote `wce`.
    pub fn set_wce(&self, on: bool) {
        self.disk.write_cache.store(on, Ordering::Relaxed);
    }

    /// The back-end channel of the connected frontend.
    pub fn set_backend(&self, b: Option<UnixStream>) {
        *self.lock_backend() = b;
    }

    /// The node was resized: new capacity, and tell the frontend.
    fn resized(self: &Arc<Self>, size: u64) {
        self.capacity.store(size >> 9, Ordering::Release);
        let chan = self.lock_backend().as_ref().map(UnixStream::try_clone);
        match chan {
            Some(Ok(c)) => {
                if let Err(e) = channel::send_config_change(&c) {
                    debug!("vhost-user-blk: config change not sent: {e}");
                }
            }
            Some(Err(e)) => debug!("vhost-user-blk: config change not sent: {e}"),
            None => {}
        }
    }
}

/// A vhost-user-blk export (see the module documentation).
pub struct VhostUserBlkExport {
    shared: Arc<Shared>,
    /// Set to stop accepting connections.
    stop: watch::Sender<bool>,
    /// Becomes true when the accept task and any session have ended.
    stopped: watch::Receiver<bool>,
    _resize: Subscription,
}

/// QEMU's `check_block_size`.
fn check_block_size(v: u64) -> Result<(), QmpError> {
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&v) || !v.is_power_of_two() {
        return Err(QmpError::generic(format!(
            "parameter logical-block-size must be a power of 2 between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
        )));
    }
    Ok(())
}

/// Creates the export: checks the options like QSD (in its order), opens
/// the socket and starts accepting frontends.
pub fn create(
    cx: &ExportContext<'_>,
    o: &BlockExportOptionsVhostUserBlk,
) -> Result<Arc<dyn ExportDriver>, QmpError> {
    let blk_size = o.logical_block_size.unwrap_or(MIN_BLOCK_SIZE);
    check_block_size(blk_size)?;
    let num_queues = o.num_queues.unwrap_or(1);
    if num_queues == 0 {
        return Err(QmpError::generic("num-queues must be greater than 0"));
    }
    if !matches!(
        o.addr.u,
        SocketAddressBranch::Unix(_) | SocketAddressBranch::Fd(_)
    ) {
        return Err(QmpError::generic(
            "Only socket address types 'unix' and 'fd' are supported",
        ));
    }
    let mut socks = crate::chardev::listen_flat(&o.addr, cx.origin).map_err(QmpError::generic)?;
    let listener = match socks.pop() {
        Some(s) => {
            s.set_nonblocking(true)
                .map_err(|e| QmpError::generic(format!("Failed to listen on socket: {e}")))?;
            let std: std::os::unix::net::UnixListener = std::os::fd::OwnedFd::from(s).into();
            tokio::net::UnixListener::from_std(std)
                .map_err(|e| QmpError::generic(format!("Failed to listen on socket: {e}")))?
        }
        None => return Err(QmpError::generic("no socket to listen on")),
    };
    let shared = Arc::new(Shared {
        disk: Arc::new(Disk {
            node: cx.node.clone(),
            writable: cx.writable,
            blk_size: blk_size as u32,
            write_cache: AtomicBool::new(!cx.writethrough),
        }),
        num_queues,
        capacity: AtomicU64::new(cx.node.size() >> 9),
        iothread: cx.iothread.clone(),
        main: tokio::runtime::Handle::current(),
        backend: Mutex::new(None),
        conn: Mutex::new(None),
        stopping: AtomicBool::new(false),
    });
    let weak = Arc::downgrade(&shared);
    let resize = cx.node.subscribe(move |ev| {
        let NodeEvent::Resized(size) = ev;
        if let Some(s) = weak.upgrade() {
            s.resized(*size);
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, shared.clone(), stop_rx, stopped_tx));
    Ok(Arc::new(VhostUserBlkExport {
        shared,
        stop: stop_tx,
        stopped: stopped_rx,
        _resize: resize,
    }))
}

/// Serves one frontend after another until told to stop.
async fn accept_loop(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("vhost-user-blk: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let std = match stream.into_std().and_then(|s| {
            s.set_nonblocking(false)?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                warn!("vhost-user-blk: {e}");
                continue;
            }
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("vhost-blk-conn".into())
            .spawn(move || {
                session(std, &sh);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            warn!("vhost-user-blk: cannot start a connection thread: {e}");
        } else {
            let _ = done_rx.await;
        }
        if *stop.borrow() {
            break;
        }
    }
    drop(listener);
    let _ = stopped.send(true);
}

/// Handles the messages of one frontend until it disconnects (or is
/// disconnected), then stops its queues.
fn session(stream: UnixStream, shared: &Arc<Shared>) {
    debug!("vhost-user-blk: frontend connected");
    let dev = match Device::new(shared.clone()) {
        Ok(d) => Arc::new(Mutex::new(d)),
        Err(e) => {
            warn!("vhost-user-blk: {e}");
            return;
        }
    };
    match stream.try_clone() {
        Ok(c) => *shared.lock_conn() = Some(c),
        Err(e) => warn!("vhost-user-blk: {e}"),
    }
    if shared.stopping.load(Ordering::Acquire) {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let raw = channel::raw(&stream);
    let mut handler = BackendReqHandler::from_stream(stream, dev.clone());
    loop {
        if let Some(chan) = channel::peek_backend_channel(raw) {
            shared.set_backend(Some(chan));
        }
        if let Err(e) = handler.handle_request() {
            debug!("vhost-user-blk: connection ends: {e}");
            break;
        }
    }
    if let Some(c) = shared.lock_conn().take() {
        let _ = c.shutdown(Shutdown::Both);
    }
    shared.set_backend(None);
    dev.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .stop_all();
    debug!("vhost-user-blk: frontend disconnected");
}

impl ExportDriver for VhostUserBlkExport {
    /// Never: as in QSD, a connected frontend does not hold the export;
    /// even a `safe` delete disconnects it.
    fn in_use(&self) -> bool {
        false
    }

    fn shutdown(&self) -> ExportFuture {
        let _ = self.stop.send(true);
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(c) = self.shared.lock_conn().as_ref() {
            let _ = c.shutdown(Shutdown::Both);
        }
        let mut stopped = self.stopped.clone();
        Box::pin(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
    }
}
