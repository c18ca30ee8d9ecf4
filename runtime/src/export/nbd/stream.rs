//! A client connection of the NBD server: a nonblocking UNIX or TCP
//! stream socket registered with the reactor.
//!
//! The transmission loop polls readiness itself and reads or writes
//! without waiting. A short read or write (less than asked for) proves the
//! socket drained or full, so readiness is cleared right away instead of
//! paying for a system call that would only answer `EAGAIN`. The
//! handshake uses the simple [`Stream::read_exact`] and
//! [`Stream::write_all`].

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;

/// The send buffer asked for on UNIX sockets (the kernel caps it at
/// `net.core.wmem_max`). The default (about 200 KiB) holds a fifth of a
/// 1 MiB READ reply: the writer then sleeps and wakes about five times
/// per reply while the client drains the socket; with room for several
/// replies, a 1 MiB sequential read (queue depth 8) measured about 25 %
/// faster and with a quarter less server CPU per request. TCP keeps its
/// auto-tuning (setting the size would switch it off).
const UNIX_SNDBUF: usize = 4 << 20;

/// The socket of an accepted client.
#[derive(Debug)]
pub(crate) enum Sock {
    Unix(UnixStream),
    Tcp(std::net::TcpStream),
    /// Another stream socket (vsock).
    Other(socket2::Socket),
}

impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Other(s) => s.as_raw_fd(),
        }
    }
}

impl Sock {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Other(s) => (&*s).read(buf),
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).write_vectored(bufs),
            Sock::Tcp(s) => (&*s).write_vectored(bufs),
            Sock::Other(s) => (&*s).write_vectored(bufs),
        }
    }

    fn shutdown(&self) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.shutdown(Shutdown::Both),
            Sock::Tcp(s) => s.shutdown(Shutdown::Both),
            Sock::Other(s) => s.shutdown(Shutdown::Both),
        }
    }
}

/// A client socket registered with the reactor.
#[derive(Debug)]
pub(crate) struct Stream {
    fd: AsyncFd<Sock>,
}

/// The outcome of a nonblocking transfer.
pub(crate) enum Io {
    /// This many bytes moved (0 on a read: end of stream).
    Done(usize),
    /// Not ready: the waker of the context is registered.
    Pending,
}

impl Stream {
    /// Registers `sock` (switching it to nonblocking mode); TCP sockets
    /// get `TCP_NODELAY`, as replies are small and must not wait; UNIX
    /// sockets a send buffer of [`UNIX_SNDBUF`].
    pub fn new(sock: Sock) -> io::Result<Stream> {
        match &sock {
            Sock::Unix(s) => {
                s.set_nonblocking(true)?;
                if let Err(e) = socket2::SockRef::from(s).set_send_buffer_size(UNIX_SNDBUF) {
                    tracing::debug!("NBD client: SO_SNDBUF: {e}");
                }
            }
            Sock::Tcp(s) => {
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
            }
            Sock::Other(s) => s.set_nonblocking(true)?,
        }
        // SAFETY: `sock` owns its descriptor, which stays open and
        // unchanged while the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| e.into_parts().1)?;
        Ok(Stream { fd })
    }

    /// Reads into `buf` if data is available, else registers `cx`.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> io::Result<Io> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Pending => return Ok(Io::Pending),
                Poll::Ready(r) => r?,
            };
            match guard.get_inner().read(buf) {
                Ok(n) => {
                    if n > 0 && n < buf.len() {
                        guard.clear_ready();
                    }
                    return Ok(Io::Done(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads into `buf` whatever the socket holds right now, whatever the
    /// reactor last said about readiness (`Ok(None)`: nothing there).
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.fd.get_ref().read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes from `bufs` if the socket has room, else registers `cx`.
    pub fn poll_write(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> io::Result<Io> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            let mut guard = match self.fd.poll_write_ready(cx) {
                Poll::Pending => return Ok(Io::Pending),
                Poll::Ready(r) => r?,
            };
            match guard.get_inner().write_vectored(bufs) {
                Ok(n) => {
                    if n < total {
                        guard.clear_ready();
                    }
                    return Ok(Io::Done(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match std::future::poll_fn(|cx| match self.poll_read(cx, &mut buf[done..]) {
                Ok(Io::Pending) => Poll::Pending,
                Ok(Io::Done(n)) => Poll::Ready(Ok(n)),
                Err(e) => Poll::Ready(Err(e)),
            })
            .await?
            {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = std::future::poll_fn(|cx| {
                match self.poll_write(cx, &[IoSlice::new(&buf[done..])]) {
                    Ok(Io::Pending) => Poll::Pending,
                    Ok(Io::Done(n)) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(e)),
                }
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }

    /// Shuts both directions down: the peer sees the end of the stream at
    /// once, and our own pending reads and writes end too.
    pub fn shutdown(&self) {
        if let Err(e) = self.fd.get_ref().shutdown() {
            tracing::debug!("NBD client shutdown: {e}");
        }
    }
}
