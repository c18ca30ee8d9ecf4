//! How backends hand connections ("sessions") to their frontend, and the
//! pieces every backend shares: the optional log file that records all
//! frontend output, and a reader for backends that never produce input.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::CharConn;

/// Reader and writer of one session, before they are wrapped for the
/// frontend.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// `logfile`/`logappend`: a copy of everything the frontend writes.
pub(crate) struct LogFile(Mutex<File>);

impl LogFile {
    /// Opens (creating) `path`, truncated unless `append`; errors read as
    /// QEMU's.
    pub fn open(path: &str, append: bool) -> Result<LogFile, String> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).mode(0o666);
        if append {
            o.append(true);
        } else {
            o.truncate(true);
        }
        o.open(path)
            .map(|f| LogFile(Mutex::new(f)))
            .map_err(|e| format!("Could not create '{path}': {}", super::os_error(&e)))
    }

    /// Best effort, like QEMU: errors are ignored.
    fn record(&self, bytes: &[u8]) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(bytes);
        }
    }
}

/// A writer that also copies what it writes to the log file: the bytes the
/// backend accepted, or all of them when the backend failed.
struct LoggedWriter {
    inner: Writer,
    log: Arc<LogFile>,
}

impl AsyncWrite for LoggedWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) => self.log.record(&buf[..*n]),
            Poll::Ready(Err(_)) => self.log.record(buf),
            Poll::Pending => {}
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Input of a backend that never produces any (ring buffer, output-only
/// file): reading waits forever.
pub(crate) struct NoInput;

impl AsyncRead for NoInput {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

/// The receiving side of a chardev's session queue: there until a frontend
/// attaches and takes it.
pub(crate) type Slot = Arc<Mutex<Option<mpsc::Receiver<CharConn>>>>;

/// The sending side of a chardev's session queue, owned by its backend.
#[derive(Clone)]
pub(crate) struct Sessions {
    tx: mpsc::Sender<CharConn>,
    slot: Slot,
    log: Option<Arc<LogFile>>,
    oob_capable: bool,
}

impl Sessions {
    /// A queue holding at most one session not yet taken by a frontend.
    pub fn new(log: Option<Arc<LogFile>>, oob_capable: bool) -> (Sessions, Slot) {
        let (tx, rx) = mpsc::channel(1);
        let slot: Slot = Arc::new(Mutex::new(Some(rx)));
        (
            Sessions {
                tx,
                slot: slot.clone(),
                log,
                oob_capable,
            },
            slot,
        )
    }

    /// Whether a frontend has attached.
    pub fn attached(&self) -> bool {
        self.slot.lock().map(|s| s.is_none()).unwrap_or(true)
    }

    /// Drops the queued session while no frontend has attached (its peer
    /// went away before anyone used it).
    pub fn retract(&self) {
        if let Ok(mut s) = self.slot.lock() {
            if let Some(rx) = s.as_mut() {
                while rx.try_recv().is_ok() {}
            }
        }
    }

    fn conn(&self, reader: Reader, writer: Writer) -> (CharConn, oneshot::Receiver<()>) {
        let writer: Writer = match &self.log {
            Some(log) => Box::new(LoggedWriter {
                inner: writer,
                log: log.clone(),
            }),
            None => writer,
        };
        let (closed, done) = oneshot::channel();
        (
            CharConn {
                reader,
                writer,
                closed,
                oob_capable: self.oob_capable,
            },
            done,
        )
    }

    /// Opens a session at creation time (the queue is empty then).
    pub fn open_now(&self, reader: Reader, writer: Writer) {
        let (conn, _done) = self.conn(reader, writer);
        // Cannot fail: the queue is new and its receiver is alive.
        let _ = self.tx.try_send(conn);
    }

    /// Hands a session to the frontend, waiting while an earlier one is
    /// still queued. Returns what completes when the frontend is done with
    /// it, or `None` if the chardev is gone.
    pub async fn open(&self, reader: Reader, writer: Writer) -> Option<oneshot::Receiver<()>> {
        let (conn, done) = self.conn(reader, writer);
        self.tx.send(conn).await.ok()?;
        Some(done)
    }
}
