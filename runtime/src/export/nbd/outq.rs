//! Replies waiting to be written, and the vectored writer that sends as
//! many of them as the socket takes in one system call.
//!
//! A reply keeps its parts as they were produced: small headers inline,
//! READ data in the [`IoBuf`] the block layer filled (never copied), and
//! variable payloads (error chunks, block status) in a `Vec`. Replies are
//! written whole and in queue order, so chunks of different replies never
//! interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::Context;

use crate::block::IoBuf;

use super::stream::{Io, Stream};

/// Room for the longest fixed reply header: an extended chunk header plus
/// the fixed fields of its payload.
const HEAD_MAX: usize = 48;

/// Reply header bytes kept inline.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    buf: [u8; HEAD_MAX],
    len: u8,
}

impl Head {
    /// Copies `b` (at most 48 bytes; longer input is cut, which no caller
    /// produces).
    pub fn new(b: &[u8]) -> Head {
        let len = b.len().min(HEAD_MAX);
        let mut buf = [0u8; HEAD_MAX];
        buf[..len].copy_from_slice(&b[..len]);
        Head {
            buf,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Head({:02x?})", self.as_bytes())
    }
}

/// One piece of a multi-part reply.
#[derive(Debug)]
pub(crate) enum Part {
    Head(Head),
    Data(IoBuf),
    Bytes(Vec<u8>),
}

impl Part {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Head(h) => h.as_bytes(),
            Part::Data(d) => d,
            Part::Bytes(b) => b,
        }
    }
}

/// A complete reply to one request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A header alone (simple reply, `NONE` chunk).
    Head(Head),
    /// A header followed by data (READ).
    Data(Head, IoBuf),
    /// Encoded bytes (error chunks, block status).
    Bytes(Vec<u8>),
    /// Several parts (sparse READ).
    Parts(Vec<Part>),
    /// These parts (possibly none), then nothing more: the connection
    /// closes when the queue reaches this point (QEMU drops a client
    /// whose reply failed half-way).
    Close(Vec<Part>),
}

impl Reply {
    /// Calls `f` on each non-empty byte slice of the reply, in order,
    /// until it returns `false`.
    fn slices<'a>(&'a self, mut f: impl FnMut(&'a [u8]) -> bool) {
        let mut emit = |s: &'a [u8]| s.is_empty() || f(s);
        match self {
            Reply::Head(h) => {
                emit(h.as_bytes());
            }
            Reply::Data(h, d) => {
                let _ = emit(h.as_bytes()) && emit(d);
            }
            Reply::Bytes(b) => {
                emit(b);
            }
            Reply::Parts(parts) | Reply::Close(parts) => {
                for p in parts {
                    if !emit(p.bytes()) {
                        break;
                    }
                }
            }
        }
    }

    /// Total length in bytes.
    fn len(&self) -> usize {
        let mut n = 0;
        self.slices(|s| {
            n += s.len();
            true
        });
        n
    }
}

/// How many iovecs one `writev` carries at most.
const MAX_IOV: usize = 128;

/// What [`OutQueue::write`] achieved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The queue is empty.
    All,
    /// The socket is full; the waker is registered.
    Blocked,
    /// A [`Reply::Close`] was reached: the connection must close.
    Close,
}

/// Replies not yet (completely) written.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    q: VecDeque<Reply>,
    /// Bytes of the first reply already written.
    done: usize,
    /// Bytes queued, not yet written.
    bytes: usize,
}

impl OutQueue {
    pub fn push(&mut self, r: Reply) {
        self.bytes += r.len();
        self.q.push_back(r);
    }

    /// Bytes not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Writes queued replies until the queue is empty or the socket is
    /// full; each system call carries as many replies as fit in
    /// [`MAX_IOV`] slices.
    pub fn write(&mut self, stream: &Stream, cx: &mut Context<'_>) -> io::Result<Written> {
        loop {
            match self.q.front() {
                None => return Ok(Written::All),
                Some(r @ Reply::Close(_)) if r.len() == self.done => return Ok(Written::Close),
                Some(_) => {}
            }
            let n = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut cnt = 0;
                let mut skip = self.done;
                for r in &self.q {
                    let mut full = false;
                    r.slices(|s| {
                        let s = if skip >= s.len() {
                            skip -= s.len();
                            return true;
                        } else {
                            let t = &s[skip..];
                            skip = 0;
                            t
                        };
                        if cnt == MAX_IOV {
                            full = true;
                            return false;
                        }
                        iov[cnt] = IoSlice::new(s);
                        cnt += 1;
                        true
                    });
                    if full || matches!(r, Reply::Close(_)) {
                        break;
                    }
                }
                match stream.poll_write(cx, &iov[..cnt])? {
                    Io::Done(n) => n,
                    Io::Pending => return Ok(Written::Blocked),
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
    }

    /// Drops what `n` more written bytes completed.
    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while let Some(r) = self.q.front() {
            let left = r.len() - self.done;
            if n < left || matches!(r, Reply::Close(_)) {
                self.done += n.min(left);
                return;
            }
            n -= left;
            self.done = 0;
            self.q.pop_front();
            if n == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_advance() {
        let mut q = OutQueue::default();
        q.push(Reply::Head(Head::new(&[1; 16])));
        q.push(Reply::Data(
            Head::new(&[2; 20]),
            IoBuf::from_slice(&[3; 100], 1),
        ));
        q.push(Reply::Parts(vec![
            Part::Head(Head::new(&[4; 28])),
            Part::Bytes(vec![]),
            Part::Data(IoBuf::from_slice(&[5; 10], 1)),
        ]));
        assert_eq!(q.q[1].len(), 120);
        assert_eq!(q.q[2].len(), 38);
        q.advance(10);
        assert_eq!((q.len(), q.done), (3, 10));
        q.advance(6 + 119);
        assert_eq!((q.len(), q.done), (2, 119));
        q.advance(1 + 38);
        assert!(q.is_empty());
    }

    #[test]
    fn writes_everything_in_order_through_a_socket() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let a = Stream::new(super::super::stream::Sock::Unix(a)).unwrap();
            b.set_nonblocking(true).unwrap();
            let b = tokio::net::UnixStream::from_std(b).unwrap();
            let mut q = OutQueue::default();
            let mut want = Vec::new();
            for i in 0..200u32 {
                let h = Head::new(&i.to_be_bytes());
                want.extend_from_slice(&i.to_be_bytes());
                let data = vec![i as u8; (i as usize * 37) % 5000];
                want.extend_from_slice(&data);
                q.push(Reply::Data(h, IoBuf::from_slice(&data, 1)));
            }
            q.push(Reply::Close(vec![Part::Bytes(b"end".to_vec())]));
            want.extend_from_slice(b"end");
            let reader = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut b = b;
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                got
            });
            std::future::poll_fn(|cx| match q.write(&a, cx).unwrap() {
                Written::Close => std::task::Poll::Ready(()),
                Written::Blocked => std::task::Poll::Pending,
                Written::All => unreachable!(),
            })
            .await;
            assert_eq!(q.bytes(), 0);
            a.shutdown();
            drop(a);
            assert_eq!(reader.await.unwrap(), want);
        });
    }
}
