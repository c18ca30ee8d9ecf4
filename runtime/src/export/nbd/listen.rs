//! Listening sockets of the NBD server and accepting clients.
//!
//! UNIX and TCP addresses (and passed descriptors) are opened like socket
//! chardevs, with QEMU's errors; vsock addresses are opened here with
//! QEMU's `vsock_listen_saddr` texts. Every socket listens with QEMU's
//! backlog: `max-connections` (at most `SOMAXCONN`), or `SOMAXCONN`.

use std::io;
use std::os::fd::OwnedFd;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::chardev::socket::{listen, Addr};
use crate::chardev::{os_error, Origin};

use super::stream::Sock;

/// A socket the server accepts clients on.
pub(crate) enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
    Vsock(AsyncFd<Socket>),
}

/// Opens the listening sockets for `addr`; the error is QEMU's text.
pub(crate) fn open(addr: &Addr, origin: &Origin, backlog: i32) -> Result<Vec<Listener>, String> {
    let socks = match addr {
        Addr::Vsock { cid, port } => vec![vsock(cid, port, backlog)?],
        _ => listen(addr, origin).map_err(|e| match e.split_once(crate::chardev::HINT) {
            Some((m, _)) => m.to_string(),
            None => e,
        })?,
    };
    socks
        .into_iter()
        .map(|s| {
            s.listen(backlog)
                .and_then(|()| Listener::new(s))
                .map_err(|e| format!("Failed to listen on socket: {}", os_error(&e)))
        })
        .collect()
}

/// QEMU's `parse_uint_full` in base 10, limited to 32 bits.
fn parse_u32(s: &str) -> Option<u32> {
    let t = s.trim_start();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn vsock(cid: &str, port: &str, backlog: i32) -> Result<Socket, String> {
    let Some(cid) = parse_u32(cid) else {
        return Err(format!("Failed to parse cid '{cid}'"));
    };
    let Some(port) = parse_u32(port) else {
        return Err(format!("Failed to parse port '{port}'"));
    };
    let err = |what: &str, e: io::Error| format!("{what}: {}", os_error(&e));
    let sock = Socket::new(Domain::from(libc::AF_VSOCK), Type::STREAM, None)
        .map_err(|e| err("Failed to create socket", e))?;
    // SAFETY: a zeroed sockaddr_vm is filled in inside the storage, and the
    // length reported is exactly its size.
    let ((), sa) = unsafe {
        SockAddr::try_init(|storage, len| {
            let vm = storage.cast::<libc::sockaddr_vm>();
            (*vm).svm_family = libc::AF_VSOCK as libc::sa_family_t;
            (*vm).svm_cid = cid;
            (*vm).svm_port = port;
            *len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
            Ok(())
        })
    }
    .map_err(|e| err("Failed to bind socket", e))?;
    sock.bind(&sa)
        .map_err(|e| err("Failed to bind socket", e))?;
    sock.listen(backlog)
        .map_err(|e| err("Failed to listen on socket", e))?;
    Ok(sock)
}

impl Listener {
    fn new(sock: Socket) -> io::Result<Listener> {
        sock.set_nonblocking(true)?;
        let family = sock.local_addr()?.family();
        if family == libc::AF_VSOCK as libc::sa_family_t {
            // SAFETY: `sock` owns its descriptor, which stays open while
            // the AsyncFd holds it.
            let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| e.into_parts().1)?;
            return Ok(Listener::Vsock(fd));
        }
        let fd = OwnedFd::from(sock);
        Ok(if family == libc::AF_UNIX as libc::sa_family_t {
            Listener::Unix(tokio::net::UnixListener::from_std(fd.into())?)
        } else {
            Listener::Tcp(tokio::net::TcpListener::from_std(fd.into())?)
        })
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<Sock> {
        Ok(match self {
            Listener::Unix(l) => Sock::Unix(l.accept().await?.0.into_std()?),
            Listener::Tcp(l) => Sock::Tcp(l.accept().await?.0.into_std()?),
            Listener::Vsock(l) => loop {
                let mut guard = l.readable().await?;
                match guard.try_io(|s| s.get_ref().accept()) {
                    Ok(r) => break Sock::Other(r?.0),
                    Err(_would_block) => continue,
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsock_address_checks_follow_qemu() {
        assert_eq!(parse_u32(" 12"), Some(12));
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32(""), None);
        assert_eq!(parse_u32("1x"), None);
        assert_eq!(vsock("x", "1", 1).unwrap_err(), "Failed to parse cid 'x'");
        assert_eq!(
            vsock("2", "-3", 1).unwrap_err(),
            "Failed to parse port '-3'"
        );
    }
}
