//! The `socket` backend: a stream socket, listening (`server`, the QMP
//! default) or connecting out, over UNIX, TCP or a passed descriptor.
//!
//! A server serves one client at a time: the next client is accepted only
//! after the frontend is done with the current one, as QEMU's listener
//! stops accepting while connected. A client connects once at creation, or
//! with `reconnect`/`reconnect-ms` keeps reconnecting in the background.
//! Telnet (and TN3270) servers negotiate options with each client and hide
//! telnet commands from the frontend.

mod addr;
mod legacy;
mod telnet;

use std::future::poll_fn;
use std::os::fd::{AsRawFd, OwnedFd};
use std::task::Poll;
use std::time::Duration;

use qapi::types::ChardevSocket;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tracing::warn;

use super::fd::{fd_io, register, FdIo};
use super::report::{self, Origin};
use super::session::{Reader, Sessions};
use super::{set_filename, Driver, Filename};

pub(crate) use addr::{inet_family, listen, resolve, Addr};
pub use legacy::{Serving, SocketServer};

/// Opens the listening sockets of a flat `SocketAddress` as QEMU's
/// `socket_listen` does (a UNIX path is unlinked first; a passed descriptor
/// must be a socket and is put in listening state), with QEMU's error texts.
/// `origin` decides how a `fd` address is resolved: from QMP, QSD cannot
/// receive descriptors.
pub fn listen_flat(
    addr: &qapi::types::SocketAddress,
    origin: &Origin,
) -> Result<Vec<Socket>, String> {
    addr::listen(&Addr::from_flat(addr), origin)
}

/// The settings of an opened socket chardev.
#[derive(Clone)]
struct Cfg {
    id: String,
    addr: Addr,
    listen: bool,
    /// Telnet negotiation on accepted connections (telnet or tn3270 server).
    telnet: bool,
    tn3270: bool,
    nodelay: bool,
    /// `tcp`, `telnet` or `websocket`, as shown in the chardev's filename.
    proto: &'static str,
    reconnect: Duration,
}

impl Cfg {
    fn disconnected(&self) -> String {
        format!(
            "disconnected:{}",
            self.addr.describe(self.proto, self.listen)
        )
    }
}

/// QEMU's checks of option combinations, in its order.
fn validate(s: &ChardevSocket, addr: &Addr) -> Result<(), String> {
    match addr {
        Addr::Fd(_) => {
            if s.reconnect.is_some() {
                return Err("'reconnect' option is incompatible with 'fd' address type".into());
            }
            if s.tls_creds.is_some() && s.server != Some(true) {
                return Err(
                    "'tls_creds' option is incompatible with 'fd' address type as client".into(),
                );
            }
        }
        Addr::Unix { .. } if s.tls_creds.is_some() => {
            return Err("'tls_creds' option is incompatible with 'unix' address type".into());
        }
        Addr::Vsock { .. } if s.tls_creds.is_some() => {
            return Err("'tls_creds' option is incompatible with 'vsock' address type".into());
        }
        _ => {}
    }
    if s.tls_authz.is_some() && s.tls_creds.is_none() {
        return Err("'tls_authz' option requires 'tls_creds' option".into());
    }
    if s.server.unwrap_or(true) {
        if s.reconnect.is_some() {
            return Err(
                "'reconnect' option is incompatible with socket in server listen mode".into(),
            );
        }
    } else {
        if s.websocket == Some(true) {
            return Err("Websocket client is not implemented".into());
        }
        if s.wait.is_some() {
            return Err("'wait' option is incompatible with socket in client connect mode".into());
        }
    }
    if s.reconnect.is_some() && s.reconnect_ms.is_some() {
        return Err("'reconnect' and 'reconnect-ms' are mutually exclusive".into());
    }
    Ok(())
}

/// Opens a socket chardev: checks, then listens (waiting for the first
/// client with `wait`) or connects.
pub(crate) fn open(
    id: &str,
    s: &ChardevSocket,
    origin: &Origin,
    sessions: Sessions,
    filename: &Filename,
) -> Result<Driver, String> {
    if let Some(creds) = &s.tls_creds {
        // No object can be TLS credentials in this daemon yet.
        return Err(format!("No TLS credentials with id '{creds}'"));
    }
    let addr = Addr::from_legacy(&s.addr);
    validate(s, &addr)?;
    let telnet = s.telnet == Some(true);
    let tn3270 = s.tn3270 == Some(true);
    let websocket = s.websocket == Some(true);
    let listen = s.server.unwrap_or(true);
    let reconnect_ms = match (s.reconnect, s.reconnect_ms) {
        (Some(r), _) => r.saturating_mul(1000),
        (_, Some(ms)) => ms,
        _ => 0,
    };
    let mut cfg = Cfg {
        id: id.to_string(),
        addr,
        listen,
        telnet: listen && (telnet || tn3270),
        tn3270,
        nodelay: s.nodelay == Some(true),
        proto: if telnet {
            "telnet"
        } else if websocket {
            "websocket"
        } else {
            "tcp"
        },
        reconnect: Duration::from_millis(reconnect_ms.max(0) as u64),
    };
    set_filename(filename, cfg.disconnected());
    let mut driver = Driver::default();
    if listen {
        if websocket {
            return Err("qsd does not implement websocket chardevs".into());
        }
        let socks = addr::listen(&cfg.addr, origin)?;
        if let Some(first) = socks.first() {
            cfg.addr = addr::local_address(first)?;
        }
        set_filename(filename, cfg.disconnected());
        for sock in &socks {
            if let Ok(Addr::Unix {
                path,
                abstract_: false,
                ..
            }) = addr::local_address(sock)
            {
                if !path.is_empty() {
                    driver.on_drop(Box::new(move || {
                        let _ = std::fs::remove_file(&path);
                    }));
                }
            }
        }
        let first = if s.wait == Some(true) && !socks.is_empty() {
            let shown = filename.lock().map(|f| f.clone()).unwrap_or_default();
            origin.info(&format!("QEMU waiting for connection on: {shown}"));
            Some(blocking(|| accept_blocking(&socks)).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let listeners = socks
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true)?;
                register(s).map_err(|_| std::io::Error::other("cannot poll the listening socket"))
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        if let (Some(c), false) = (&first, cfg.telnet) {
            // Connected before returning, as in QEMU.
            set_filename(
                filename,
                addr::connected_filename(c.as_raw_fd(), cfg.proto, true),
            );
        }
        driver.socket_addr = Some(cfg.addr.to_socket_address());
        let filename = filename.clone();
        driver.spawn(serve(cfg, listeners, first, sessions, filename));
    } else {
        let first = if reconnect_ms > 0 {
            None
        } else {
            let a = cfg.addr.clone();
            let o = origin.clone();
            let c = blocking(move || addr::connect(&a, &o))?;
            set_filename(
                filename,
                addr::connected_filename(c.as_raw_fd(), cfg.proto, false),
            );
            Some(c)
        };
        driver.socket_addr = Some(cfg.addr.to_socket_address());
        let filename = filename.clone();
        driver.spawn(connect_loop(cfg, first, sessions, filename));
    }
    Ok(driver)
}

/// Runs `f`, which blocks, without starving the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Waits for a client on any of `socks` (blocking).
fn accept_blocking(socks: &[Socket]) -> std::io::Result<Socket> {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is a valid array of fds.len() pollfd entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (i, p) in fds.iter().enumerate() {
            if p.revents != 0 {
                if let Ok((c, _)) = socks[i].accept() {
                    return Ok(c);
                }
            }
        }
    }
}

/// Accepts the next client on any listener.
async fn accept_any(listeners: &[AsyncFd<Socket>]) -> std::io::Result<Socket> {
    poll_fn(|cx| {
        for l in listeners {
            loop {
                match l.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        match guard.try_io(|s| s.get_ref().accept().map(|(c, _)| c)) {
                            Ok(r) => return Poll::Ready(r),
                            Err(_would_block) => continue,
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// The server: one client at a time, for as long as the chardev exists.
async fn serve(
    cfg: Cfg,
    listeners: Vec<AsyncFd<Socket>>,
    mut first: Option<Socket>,
    sessions: Sessions,
    filename: Filename,
) {
    if listeners.is_empty() && first.is_none() {
        // A server on an empty descriptor name never accepts.
        return std::future::pending().await;
    }
    loop {
        let client = match first.take() {
            Some(c) => c,
            None => match accept_any(&listeners).await {
                Ok(c) => c,
                Err(e) => {
                    warn!("chardev '{}': accept failed: {e}", cfg.id);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !run_session(&cfg, client, &sessions, &filename).await {
            return;
        }
    }
}

/// The client: connect (again, with `reconnect`), serve, repeat.
async fn connect_loop(cfg: Cfg, mut first: Option<Socket>, sessions: Sessions, filename: Filename) {
    let mut reported = false;
    loop {
        let sock = match first.take() {
            Some(s) => s,
            None => {
                let a = cfg.addr.clone();
                let attempt = tokio::task::spawn_blocking(move || {
                    addr::connect(&a, &Origin::Cli { location: None })
                })
                .await;
                match attempt {
                    Ok(Ok(s)) => {
                        reported = false;
                        s
                    }
                    Ok(Err(e)) => {
                        if !reported {
                            report::error(&format!(
                                "Unable to connect character device {}: {e}",
                                cfg.id
                            ));
                            reported = true;
                        }
                        tokio::time::sleep(cfg.reconnect).await;
                        continue;
                    }
                    Err(_) => return,
                }
            }
        };
        if !run_session(&cfg, sock, &sessions, &filename).await || cfg.reconnect.is_zero() {
            return;
        }
        tokio::time::sleep(cfg.reconnect).await;
    }
}

/// Serves one connection: negotiation, the session with the frontend, and
/// the chardev's name while it lasts. Returns false when the chardev is
/// gone.
async fn run_session(cfg: &Cfg, sock: Socket, sessions: &Sessions, filename: &Filename) -> bool {
    if cfg.nodelay {
        let _ = sock.set_tcp_nodelay(true);
    }
    let name = addr::connected_filename(sock.as_raw_fd(), cfg.proto, cfg.listen);
    let io: FdIo = fd_io(OwnedFd::from(sock));
    if cfg.telnet {
        let mut w = io.writer();
        if w.write_all(telnet::init_bytes(cfg.tn3270)).await.is_err() {
            set_filename(filename, cfg.disconnected());
            return true;
        }
    }
    set_filename(filename, name);
    let reader: Reader = if cfg.telnet {
        Box::new(telnet::TelnetReader {
            inner: io.reader(),
            filter: telnet::IacFilter::new(cfg.tn3270),
        })
    } else {
        io.reader()
    };
    let raw = sock_fd(&io);
    let done = sessions.open(reader, io.writer()).await;
    let alive = match done {
        Some(done) => {
            tokio::select! {
                _ = done => {}
                _ = hangup_unattached(raw, sessions) => {}
            }
            true
        }
        None => false,
    };
    // `io` kept the descriptor open while it was polled above.
    drop(io);
    set_filename(filename, cfg.disconnected());
    alive
}

fn sock_fd(io: &FdIo) -> std::os::fd::RawFd {
    match io {
        FdIo::Poll(a) => a.get_ref().as_raw_fd(),
        FdIo::Direct(f) => f.as_raw_fd(),
    }
}

/// Completes when the peer hangs up before any frontend attached, dropping
/// the queued session: QEMU watches for hang-ups even without a frontend
/// (a hang-up proper: a UNIX peer closing, not a TCP half-close).
async fn hangup_unattached(fd: std::os::fd::RawFd, sessions: &Sessions) {
    loop {
        if sessions.attached() {
            return std::future::pending().await;
        }
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: polling one valid pollfd without waiting; the caller
        // keeps the descriptor open.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r > 0 && p.revents & libc::POLLHUP != 0 {
            sessions.retract();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether two chardevs of these backends would both register a yank
/// instance under the same name (both are sockets).
pub(crate) fn registers_yank(kind: qapi::types::ChardevBackendKind) -> bool {
    kind == qapi::types::ChardevBackendKind::Socket
}
