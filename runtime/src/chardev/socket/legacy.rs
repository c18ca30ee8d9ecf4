//! The interface the temporary command line uses: bind a listening socket,
//! then turn it into a chardev with [`crate::chardev::Chardev::new`].
//!
//! It builds the same server as a `socket` chardev with `server=on,wait=off`
//! (one client at a time, QEMU's `query-chardev` names). New code uses
//! [`crate::chardev::create`].

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qapi::types::InetSocketAddress;
use socket2::Socket;
use tokio::io::unix::AsyncFd;

use super::addr::{self, Addr};
use super::{serve, Cfg};
use crate::chardev::fd::register;
use crate::chardev::report::Origin;
use crate::chardev::session::{Sessions, Slot};
use crate::chardev::{set_filename, Driver, Filename};

/// A bound, listening socket not yet serving.
pub struct SocketServer {
    socks: Vec<Socket>,
    addr: Addr,
}

/// A server that is accepting clients, ready to become a chardev.
pub struct Serving {
    pub(crate) driver: Driver,
    pub(crate) conns: Slot,
    pub(crate) filename: Filename,
}

fn io_err(e: String) -> std::io::Error {
    std::io::Error::other(e)
}

impl SocketServer {
    /// Binds a UNIX socket at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &str) -> std::io::Result<SocketServer> {
        Self::bind(Addr::Unix {
            path: path.to_string(),
            abstract_: false,
            tight: true,
        })
    }

    /// Binds a TCP socket (every address `host` resolves to).
    pub async fn bind_tcp(host: &str, port: &str) -> std::io::Result<SocketServer> {
        Self::bind(Addr::Inet(InetSocketAddress {
            host: host.to_string(),
            port: port.to_string(),
            numeric: None,
            to: None,
            ipv4: None,
            ipv6: None,
            keep_alive: None,
            mptcp: None,
        }))
    }

    /// Adopts an inherited socket, putting it in listening state.
    pub fn from_fd(fd: RawFd) -> std::io::Result<SocketServer> {
        // SAFETY: the caller passes a descriptor it owns and does not use
        // otherwise (an inherited socket named on the command line).
        let sock = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        sock.listen(1)?;
        let addr = addr::local_address(&sock).map_err(io_err)?;
        Ok(SocketServer {
            socks: vec![sock],
            addr,
        })
    }

    fn bind(a: Addr) -> std::io::Result<SocketServer> {
        let socks = addr::listen(&a, &Origin::Cli { location: None }).map_err(io_err)?;
        let addr = match socks.first() {
            Some(s) => addr::local_address(s).map_err(io_err)?,
            None => a,
        };
        Ok(SocketServer { socks, addr })
    }

    /// Starts accepting clients, one at a time.
    pub fn serve(self) -> Serving {
        let cfg = Cfg {
            id: String::new(),
            addr: self.addr,
            listen: true,
            telnet: false,
            tn3270: false,
            nodelay: false,
            proto: "tcp",
            reconnect: Duration::ZERO,
        };
        let filename: Filename = Arc::new(Mutex::new(String::new()));
        set_filename(&filename, cfg.disconnected());
        let (sessions, conns) = Sessions::new(None, true);
        let mut driver = Driver::default();
        if let Addr::Unix { path, .. } = &cfg.addr {
            let path = path.clone();
            driver.on_drop(Box::new(move || {
                let _ = std::fs::remove_file(&path);
            }));
        }
        let listeners: Vec<AsyncFd<Socket>> = self
            .socks
            .into_iter()
            .filter_map(|s| {
                s.set_nonblocking(true).ok()?;
                register(s).ok()
            })
            .collect();
        driver.spawn(serve(cfg, listeners, None, sessions, filename.clone()));
        Serving {
            driver,
            conns,
            filename,
        }
    }
}
