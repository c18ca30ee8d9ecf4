//! Socket chardevs in server mode: a listening UNIX or TCP socket (or one
//! passed in as a file descriptor) serving one client at a time.

use std::os::fd::{FromRawFd, RawFd};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::CharConn;

/// A listening socket.
pub enum SocketServer {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl SocketServer {
    /// Binds a UNIX socket at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &str) -> std::io::Result<SocketServer> {
        let _ = std::fs::remove_file(path);
        Ok(SocketServer::Unix(UnixListener::bind(path)?))
    }

    /// Binds a TCP socket.
    pub async fn bind_tcp(host: &str, port: &str) -> std::io::Result<SocketServer> {
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        Ok(SocketServer::Tcp(
            TcpListener::bind(format!("{host}:{port}")).await?,
        ))
    }

    /// Adopts an inherited listening socket.
    pub fn from_fd(fd: RawFd) -> std::io::Result<SocketServer> {
        // SAFETY: the caller passes a descriptor it owns and does not use
        // otherwise (an inherited listening socket named on the command line).
        let std_sock = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        std_sock.set_nonblocking(true)?;
        let family = socket_family(fd)?;
        if family == libc::AF_UNIX {
            Ok(SocketServer::Unix(UnixListener::from_std(std_sock)?))
        } else {
            let fd = std::os::fd::IntoRawFd::into_raw_fd(std_sock);
            // SAFETY: `fd` was just released by the UNIX wrapper above.
            let tcp = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            Ok(SocketServer::Tcp(TcpListener::from_std(tcp)?))
        }
    }

    /// Accepts clients one at a time, handing each to the frontend and
    /// waiting until it is closed before accepting the next.
    pub fn serve(self) -> mpsc::Receiver<CharConn> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let accepted = match &self {
                    SocketServer::Unix(l) => l.accept().await.map(|(s, _)| {
                        let (r, w) = s.into_split();
                        (Box::new(r) as Box<_>, Box::new(w) as Box<_>)
                    }),
                    SocketServer::Tcp(l) => l.accept().await.map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        let (r, w) = s.into_split();
                        (Box::new(r) as Box<_>, Box::new(w) as Box<_>)
                    }),
                };
                let (reader, writer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("chardev accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (closed, done) = oneshot::channel();
                if tx
                    .send(CharConn {
                        reader,
                        writer,
                        closed,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = done.await;
            }
        });
        rx
    }
}

fn socket_family(fd: RawFd) -> std::io::Result<libc::c_int> {
    // SAFETY: getsockname writes at most `len` bytes into `addr`, which is a
    // properly sized, zeroed sockaddr_storage.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(libc::c_int::from(addr.ss_family))
    }
}
