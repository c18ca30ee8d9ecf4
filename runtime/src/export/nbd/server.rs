//! The built-in NBD server (`nbd-server-start`, `--nbd-server`,
//! `nbd-server-stop`).
//!
//! The server listens on the sockets of one address (UNIX, TCP over IPv4
//! and IPv6, vsock, or a passed listening descriptor) and runs each client
//! in its own task on one of the worker threads: handshake, then
//! transmission with the export it chose. As in QEMU:
//! - with `max-connections` N > 0, at most N clients are connected; the
//!   next ones wait in the listen backlog until one leaves; N = 1 also
//!   makes new exports stop advertising `CAN_MULTI_CONN`;
//! - a client that has not finished the handshake after
//!   `handshake-max-seconds` (default 10, 0 = no limit) is dropped;
//! - stopping the server removes every NBD export and disconnects every
//!   client.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use qapi::types::{NbdServerOptions, NbdServerOptionsLegacy, SocketAddress, SocketAddressBranch};
use qapi::QmpError;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::chardev::socket::Addr;
use crate::chardev::Origin;
use crate::daemon::{Daemon, WeakDaemon};

use super::handshake::{negotiate, ExportSource};
use super::listen::{self, Listener};
use super::ops::Session;
use super::stream::{Sock, Stream};
use super::transmit::Conn;
use super::NbdExport;

/// QEMU's default for `max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// QEMU's default for `handshake-max-seconds`.
pub const DEFAULT_HANDSHAKE_MAX_SECONDS: u32 = 10;

/// A running NBD server.
pub struct NbdServer {
    max_connections: u32,
    handshake_max: u32,
    /// Set to stop: listeners and connections end.
    stop: watch::Sender<bool>,
    /// Number of connected clients (handshake or transmission).
    conns: watch::Sender<usize>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for NbdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer")
            .field("max_connections", &self.max_connections)
            .field("handshake_max", &self.handshake_max)
            .finish()
    }
}

impl NbdServer {
    /// The connection limit (0: none).
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// Number of clients connected now.
    pub fn connections(&self) -> usize {
        *self.conns.borrow()
    }

    /// Stops listening and disconnects every client; returns when all
    /// connections have ended.
    pub(crate) async fn shutdown(&self) {
        for h in self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            h.abort();
        }
        self.stop.send_replace(true);
        let mut rx = self.conns.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// The settings shared by `nbd-server-start` and `--nbd-server`.
struct Settings {
    addr: Addr,
    tls_creds: Option<String>,
    tls_authz: Option<String>,
    max_connections: Option<u32>,
    handshake_max_seconds: Option<u32>,
}

/// Starts the NBD server as `--nbd-server` does (a `fd` address may name
/// an inherited descriptor by number). Must run inside the runtime.
pub fn nbd_server_start(d: &Daemon, opts: NbdServerOptions) -> Result<(), QmpError> {
    let s = Settings {
        addr: flat_addr(&opts.addr),
        tls_creds: opts.tls_creds,
        tls_authz: opts.tls_authz,
        max_connections: opts.max_connections,
        handshake_max_seconds: opts.handshake_max_seconds,
    };
    start(d, s, &Origin::Cli { location: None })
}

/// `nbd-server-start`.
pub fn qmp_nbd_server_start(d: &Daemon, opts: NbdServerOptionsLegacy) -> Result<(), QmpError> {
    let addr = Addr::from_legacy(&opts.addr);
    let s = Settings {
        addr,
        tls_creds: opts.tls_creds,
        tls_authz: opts.tls_authz,
        max_connections: opts.max_connections,
        handshake_max_seconds: opts.handshake_max_seconds,
    };
    start(d, s, &Origin::Qmp)
}

/// `nbd-server-stop`: removes the NBD exports (their events come before
/// the reply), then stops the server.
pub async fn qmp_nbd_server_stop(d: &Daemon) -> Result<(), QmpError> {
    let Some(server) = d.exports.take_nbd_server() else {
        return Err(QmpError::generic("NBD server not running"));
    };
    crate::export::close_all_nbd(d, &server).await;
    Ok(())
}

fn flat_addr(a: &SocketAddress) -> Addr {
    match &a.u {
        SocketAddressBranch::Inet(i) => Addr::Inet(i.clone()),
        SocketAddressBranch::Unix(u) => Addr::Unix {
            path: u.path.clone(),
            abstract_: u.abstract_.unwrap_or(false),
            tight: u.tight.unwrap_or(true),
        },
        SocketAddressBranch::Vsock(v) => Addr::Vsock {
            cid: v.cid.clone(),
            port: v.port.clone(),
        },
        SocketAddressBranch::Fd(f) => Addr::Fd(f.str.clone()),
    }
}

fn start(d: &Daemon, s: Settings, origin: &Origin) -> Result<(), QmpError> {
    if d.exports.nbd_server().is_some() {
        return Err(QmpError::generic("NBD server already running"));
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let backlog = match max_connections {
        0 => libc::SOMAXCONN,
        n => i32::try_from(n).unwrap_or(i32::MAX).min(libc::SOMAXCONN),
    };
    let listeners = listen::open(&s.addr, origin, backlog).map_err(QmpError::generic)?;
    if let Some(id) = &s.tls_creds {
        if d.objects.get(id).is_none() {
            return Err(QmpError::generic(format!(
                "No TLS credentials with id '{id}'"
            )));
        }
        return Err(QmpError::generic(
            "TLS (tls-creds) is not implemented by qsd's NBD server yet",
        ));
    }
    // tls-authz only matters with TLS; QEMU accepts it alone.
    let _ = &s.tls_authz;
    let (stop, _) = watch::channel(false);
    let (conns, _) = watch::channel(0usize);
    let server = Arc::new(NbdServer {
        max_connections,
        handshake_max: s
            .handshake_max_seconds
            .unwrap_or(DEFAULT_HANDSHAKE_MAX_SECONDS),
        stop,
        conns,
        listeners: Mutex::new(Vec::new()),
    });
    let limit = (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections as usize)));
    let handles = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(d.downgrade(), server.clone(), l, limit.clone())))
        .collect();
    *server
        .listeners
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = handles;
    d.exports.set_nbd_server(server);
    Ok(())
}

async fn accept_loop(
    d: WeakDaemon,
    server: Arc<NbdServer>,
    l: Listener,
    limit: Option<Arc<Semaphore>>,
) {
    loop {
        let permit = match &limit {
            Some(sem) => match sem.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => return,
            },
            None => None,
        };
        let sock = match l.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("NBD server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        server.conns.send_modify(|n| *n += 1);
        let count = ConnCount(server.clone());
        super::workers::spawn(client(d.clone(), server.clone(), sock, permit, count));
    }
}

/// Counts a connection until it ends.
struct ConnCount(Arc<NbdServer>);

impl Drop for ConnCount {
    fn drop(&mut self) {
        self.0.conns.send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct Source(WeakDaemon);

impl ExportSource for Source {
    fn exports(&self) -> Vec<Arc<NbdExport>> {
        self.0
            .upgrade()
            .map(|d| d.exports.nbd_exports())
            .unwrap_or_default()
    }
}

async fn client(
    d: WeakDaemon,
    server: Arc<NbdServer>,
    sock: Sock,
    _permit: Option<OwnedSemaphorePermit>,
    _count: ConnCount,
) {
    // Registered with the reactor of the thread that serves it.
    let stream = match Stream::new(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("NBD server: new client: {e}");
            return;
        }
    };
    let mut stop = server.stop.subscribe();
    if *stop.borrow() {
        return;
    }
    let src = Source(d);
    let hs = negotiate(&stream, &src);
    let limit = server.handshake_max;
    let chosen = tokio::select! {
        r = async {
            if limit == 0 {
                Ok(hs.await)
            } else {
                tokio::time::timeout(Duration::from_secs(u64::from(limit)), hs).await
            }
        } => match r {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!("NBD handshake: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("NBD handshake: time limit reached");
                return;
            }
        },
        _ = stop.wait_for(|s| *s) => return,
    };
    let exp = chosen.export;
    let _member = chosen.member;
    let sess = Arc::new(Session {
        node: exp.node.clone(),
        mode: chosen.t.mode,
        writethrough: exp.writethrough,
        contexts: chosen.t.contexts,
    });
    let closing = exp.closing();
    let mut stop_rx = server.stop.subscribe();
    let closing = Box::pin(async move {
        tokio::select! {
            _ = closing => {}
            _ = stop_rx.wait_for(|s| *s) => {}
        }
    });
    let read_only = !exp.writable;
    Conn::new(
        &stream,
        sess,
        exp.desc.size,
        read_only,
        &chosen.leftover,
        closing,
    )
    .run()
    .await;
}
