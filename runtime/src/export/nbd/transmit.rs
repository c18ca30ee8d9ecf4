//! The transmission phase of one connection, driven by a single task.
//!
//! The task reads requests from the socket into a buffer, decodes them in
//! place (no allocation per header), starts each command as a future and
//! polls it at once: on tmpfs, or whenever the page cache answers, the
//! block layer completes inline and the reply is queued before the next
//! request is decoded. Commands that wait (thread pool, io_uring) stay in
//! the in-flight set and complete in any order. Replies are written by the
//! same task, several per `writev` ([`FLUSH_REPLIES`] at a time during a
//! burst), so a burst of 32 requests costs one read, 32 block operations
//! and 8 writes.
//!
//! Bounds: at most [`MAX_REQUESTS`] requests in flight or waiting to be
//! written, [`MAX_HELD`] bytes of request data (READ lengths, WRITE
//! payloads) held at once, and [`MAX_BACKLOG`] bytes of replies waiting
//! for the socket; reading from the socket pauses beyond that, so a
//! client that does not read its replies cannot make us allocate without
//! limit. A WRITE payload larger than [`DIRECT_PAYLOAD`] is read
//! straight into the I/O buffer handed to the block layer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::block::IoBuf;
use crate::chardev::report;

use super::ops::{self, Req, Session};
use super::outq::{OutQueue, Reply, Written};
use super::proto::{
    complete_block_status, decode_extended_request, decode_request, plan, Command, Next, Payload,
    Plan, Rejection, ReplyMode, RequestError, RequestHeader, EXTENDED_REQUEST_LEN, REQUEST_LEN,
};
use super::stream::{Io, Stream};

/// Requests in flight plus replies not yet written, at most.
pub(crate) const MAX_REQUESTS: usize = 128;
/// Bytes of request data held at once (one request may exceed it alone).
pub(crate) const MAX_HELD: u64 = 64 << 20;
/// No new request starts while this many reply bytes wait for room in
/// the socket: computing replies the client can't take yet gains nothing
/// and holds their buffers. Bounding them keeps the buffers of a busy
/// connection few and reused: with nbdcopy (64 requests of 256 KiB in
/// flight per connection) an unbounded queue held up to 16 MiB per
/// connection, whose release and reuse cost a page fault every few pages
/// once the allocator gave the memory back (about 10 % of the server's
/// time, and a third less throughput).
pub(crate) const MAX_BACKLOG: usize = 1 << 20;
/// WRITE payloads at least this long are read directly into their buffer.
const DIRECT_PAYLOAD: usize = 64 << 10;
/// Size of the input buffer.
const RBUF: usize = 64 << 10;
/// Replies are written as soon as this many are ready, even in the middle
/// of a burst of requests: the client can then send its next requests
/// while the rest of the burst runs (measured best at 4 with fio, 4 KiB
/// random reads over several connections, against writing once per burst
/// or once per reply).
const FLUSH_REPLIES: usize = 4;
/// ... or as soon as this many bytes are.
const FLUSH_BYTES: usize = 256 << 10;
/// Loop rounds before yielding to other tasks.
const ROUNDS: usize = 64;

/// How long an idle connection polls its socket before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

type ReqFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What comes next on the input.
enum Input {
    /// A request header.
    Header,
    /// WRITE data, read into `buf` up to `filled`, then `cmd` runs.
    WriteData {
        req: Req,
        cmd: Command,
        buf: IoBuf,
        filled: usize,
    },
    /// A BLOCK_STATUS payload (extended headers).
    StatusPayload {
        header: RequestHeader,
        buf: Vec<u8>,
        filled: usize,
    },
    /// Payload bytes to throw away, then `then`; `write` for WRITE data.
    Skip { left: u64, then: After, write: bool },
    /// Nothing more is read: the client disconnected, sent `NBD_CMD_DISC`
    /// or broke the protocol.
    Done,
}

/// What follows a skipped payload.
enum After {
    Reply(Reply),
    Run(Req, Command),
}

/// Prints why the client is dropped, as QEMU does on stderr.
fn disconnect(why: &str) {
    report::error(&format!("Disconnect client, due to: {why}"));
}

/// The state of one connection in transmission.
pub(crate) struct Conn<'a> {
    stream: &'a Stream,
    sess: Arc<Session>,
    export_size: u64,
    read_only: bool,
    rbuf: Box<[u8]>,
    rpos: usize,
    rend: usize,
    input: Input,
    inflight: Vec<(ReqFuture, u64)>,
    held: u64,
    out: OutQueue,
    /// Nothing more may be written (closed by a reply or a write error).
    closed: bool,
    /// Asked to close from outside (export removed, server stopped).
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
}

impl<'a> Conn<'a> {
    /// A connection that starts with `leftover`, bytes the handshake read
    /// beyond its last option.
    pub fn new(
        stream: &'a Stream,
        sess: Arc<Session>,
        export_size: u64,
        read_only: bool,
        leftover: &[u8],
        closing: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    ) -> Conn<'a> {
        let mut rbuf = vec![0u8; RBUF.max(leftover.len())].into_boxed_slice();
        rbuf[..leftover.len()].copy_from_slice(leftover);
        Conn {
            stream,
            sess,
            export_size,
            read_only,
            rbuf,
            rpos: 0,
            rend: leftover.len(),
            input: Input::Header,
            inflight: Vec::new(),
            held: 0,
            out: OutQueue::default(),
            closed: false,
            closing: Some(closing),
        }
    }

    /// Serves requests until the connection ends and every started
    /// command has completed.
    pub async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }

    fn finished(&self) -> bool {
        self.inflight.is_empty()
            && (self.closed || (matches!(self.input, Input::Done) && self.out.is_empty()))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS {
            let mut progress = false;
            if let Some(c) = self.closing.as_mut() {
                if c.as_mut().poll(cx).is_ready() {
                    self.closing = None;
                    self.stream.shutdown();
                    self.input = Input::Done;
                    self.closed = true;
                }
            }
            progress |= self.poll_inflight(cx);
            if !self.closed {
                progress |= self.consume(cx);
                progress |= self.write(cx);
                progress |= self.read(cx);
            }
            if self.finished() {
                return Poll::Ready(());
            }
            if !progress && !self.spin_read() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Before the connection sleeps: polls the socket for a short while
    /// when nothing is in flight and the input buffer is idle, so that a
    /// client that sends its next request right after a reply finds us
    /// awake (QEMU's event loop polls the same way). True if input came.
    fn spin_read(&mut self) -> bool {
        if self.closed
            || !self.inflight.is_empty()
            || !self.out.is_empty()
            || !matches!(self.input, Input::Header)
            || !self.has_room()
        {
            return false;
        }
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rend == self.rbuf.len() {
            return false;
        }
        let start = std::time::Instant::now();
        while start.elapsed() < SPIN {
            match self.stream.read_now(&mut self.rbuf[self.rend..]) {
                Ok(Some(0)) | Err(_) => return false,
                Ok(Some(n)) => {
                    self.rend += n;
                    return true;
                }
                Ok(None) => std::hint::spin_loop(),
            }
        }
        false
    }

    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.inflight.len() {
            if let Poll::Ready(reply) = self.inflight[i].0.as_mut().poll(cx) {
                let (_, cost) = self.inflight.swap_remove(i);
                self.held -= cost;
                self.out.push(reply);
                progress = true;
            } else {
                i += 1;
            }
        }
        progress
    }

    /// Starts a command, polling it once: most complete right away.
    fn start(&mut self, cx: &mut Context<'_>, req: Req, cmd: Command, data: Option<IoBuf>) {
        let cost = match &cmd {
            Command::Read { length, .. } | Command::Write { length, .. } => u64::from(*length),
            _ => 0,
        };
        let mut fut: ReqFuture = Box::pin(ops::run(self.sess.clone(), req, cmd, data));
        match fut.as_mut().poll(cx) {
            Poll::Ready(reply) => {
                self.out.push(reply);
                if self.out.len() >= FLUSH_REPLIES || self.out.bytes() >= FLUSH_BYTES {
                    self.write(cx);
                }
            }
            Poll::Pending => {
                self.held += cost;
                self.inflight.push((fut, cost));
            }
        }
    }

    fn reject(&mut self, req: Req, r: &Rejection) {
        self.out.push(ops::rejected(self.sess.mode, req, r));
    }

    /// Whether another request may be started.
    fn has_room(&self) -> bool {
        self.inflight.len() + self.out.len() < MAX_REQUESTS
            && (self.held + self.out.bytes() as u64) < MAX_HELD
            && self.out.bytes() < MAX_BACKLOG
    }

    fn buffered(&self) -> usize {
        self.rend - self.rpos
    }

    /// Decodes and starts requests from the buffered input.
    fn consume(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            match &mut self.input {
                Input::Done => return progress,
                Input::Header => {
                    let len = if self.sess.mode == ReplyMode::Extended {
                        EXTENDED_REQUEST_LEN
                    } else {
                        REQUEST_LEN
                    };
                    if self.buffered() < len || !self.has_room() {
                        return progress;
                    }
                    let b = &self.rbuf[self.rpos..self.rpos + len];
                    let h = if len == REQUEST_LEN {
                        let mut a = [0u8; REQUEST_LEN];
                        a.copy_from_slice(b);
                        decode_request(&a)
                    } else {
                        let mut a = [0u8; EXTENDED_REQUEST_LEN];
                        a.copy_from_slice(b);
                        decode_extended_request(&a)
                    };
                    self.rpos += len;
                    progress = true;
                    self.header(cx, h);
                }
                Input::WriteData { buf, filled, .. } => {
                    let n = (buf.len() - *filled).min(self.rend - self.rpos);
                    buf[*filled..*filled + n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
                    *filled += n;
                    self.rpos += n;
                    progress |= n > 0;
                    if *filled < buf.len() {
                        return progress;
                    }
                    let Input::WriteData { req, cmd, buf, .. } =
                        std::mem::replace(&mut self.input, Input::Header)
                    else {
                        return progress;
                    };
                    self.start(cx, req, cmd, Some(buf));
                    progress = true;
                }
                Input::StatusPayload { buf, filled, .. } => {
                    let n = (buf.len() - *filled).min(self.rend - self.rpos);
                    buf[*filled..*filled + n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
                    *filled += n;
                    self.rpos += n;
                    progress |= n > 0;
                    if *filled < buf.len() {
                        return progress;
                    }
                    let Input::StatusPayload { header, buf, .. } =
                        std::mem::replace(&mut self.input, Input::Header)
                    else {
                        return progress;
                    };
                    let req = Req {
                        cookie: header.cookie,
                        offset: header.offset,
                    };
                    let s = self.session();
                    match complete_block_status(&header, &buf, &s) {
                        Ok(cmd) => self.start(cx, req, cmd, None),
                        Err(r) => self.reject(req, &r),
                    }
                    progress = true;
                }
                Input::Skip { left, .. } => {
                    let n = (*left).min((self.rend - self.rpos) as u64);
                    *left -= n;
                    self.rpos += n as usize;
                    progress |= n > 0;
                    if *left > 0 {
                        return progress;
                    }
                    let Input::Skip { then, .. } =
                        std::mem::replace(&mut self.input, Input::Header)
                    else {
                        return progress;
                    };
                    match then {
                        After::Reply(r) => self.out.push(r),
                        After::Run(req, cmd) => self.start(cx, req, cmd, None),
                    }
                    progress = true;
                }
            }
        }
    }

    fn session(&self) -> super::proto::Session<'_> {
        super::proto::Session {
            mode: self.sess.mode,
            export_size: self.export_size,
            read_only: self.read_only,
            contexts: &self.sess.contexts,
        }
    }

    /// Acts on a decoded request header.
    fn header(&mut self, cx: &mut Context<'_>, h: Result<RequestHeader, RequestError>) {
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                // A bad magic: EINVAL with what was read, then we drop.
                let header = match e {
                    RequestError::BadMagic { header, .. } => header,
                    RequestError::LengthTooLarge(_) => RequestHeader {
                        flags: Default::default(),
                        cmd: super::proto::Cmd::Read,
                        cookie: 0,
                        offset: 0,
                        length: 0,
                    },
                };
                let req = Req {
                    cookie: header.cookie,
                    offset: header.offset,
                };
                let r = Rejection {
                    errno: super::proto::NbdErrno::Inval,
                    message: e.to_string(),
                };
                self.reject(req, &r);
                self.out.push(Reply::Close(Vec::new()));
                self.input = Input::Done;
                disconnect("Request handling failed in intermediate state");
                return;
            }
        };
        let req = Req {
            cookie: h.cookie,
            offset: h.offset,
        };
        let p = plan(&h, &self.session());
        match p {
            Plan::Disconnect => self.input = Input::Done,
            Plan::RejectAndClose(r) => {
                self.reject(req, &r);
                self.out.push(Reply::Close(Vec::new()));
                self.input = Input::Done;
                disconnect("Request handling failed in intermediate state");
            }
            Plan::Proceed { payload, next } => match (payload, next) {
                (Payload::None, Next::Done(Ok(cmd))) => self.start(cx, req, cmd, None),
                (Payload::None, Next::Done(Err(r))) => self.reject(req, &r),
                (Payload::WriteData(n), Next::Done(Ok(cmd))) => {
                    let buf = IoBuf::new(n as usize, self.sess.node.mem_alignment());
                    self.input = Input::WriteData {
                        req,
                        cmd,
                        buf,
                        filled: 0,
                    };
                }
                (Payload::WriteData(n), Next::Done(Err(r))) => {
                    let reply = ops::rejected(self.sess.mode, req, &r);
                    self.input = Input::Skip {
                        left: u64::from(n),
                        then: After::Reply(reply),
                        write: true,
                    };
                }
                (Payload::Discard(n), Next::Done(Err(r))) => {
                    let reply = ops::rejected(self.sess.mode, req, &r);
                    self.input = Input::Skip {
                        left: u64::from(n),
                        then: After::Reply(reply),
                        write: false,
                    };
                }
                (Payload::Discard(n), Next::Done(Ok(cmd))) => {
                    self.input = Input::Skip {
                        left: u64::from(n),
                        then: After::Run(req, cmd),
                        write: false,
                    };
                }
                (Payload::BlockStatus(n), _) => {
                    self.input = Input::StatusPayload {
                        header: h,
                        buf: vec![0u8; n as usize],
                        filled: 0,
                    };
                }
                (_, Next::DecodeBlockStatus) => {
                    // The codec asks for a payload decode only with a
                    // BLOCK_STATUS payload.
                    let r = Rejection {
                        errno: super::proto::NbdErrno::Inval,
                        message: "CMD_BLOCK_STATUS payload not valid".into(),
                    };
                    self.reject(req, &r);
                }
            },
        }
    }

    /// Writes queued replies while the socket takes them.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        let before = self.out.bytes();
        match self.out.write(self.stream, cx) {
            Ok(Written::All) => true,
            Ok(Written::Blocked) => self.out.bytes() != before,
            Ok(Written::Close) => {
                self.stream.shutdown();
                self.closed = true;
                self.input = Input::Done;
                true
            }
            Err(e) => {
                self.fail("writing a reply", &e);
                true
            }
        }
    }

    fn fail(&mut self, what: &str, e: &io::Error) {
        tracing::debug!("NBD client: {what}: {e}");
        self.stream.shutdown();
        self.closed = true;
        self.input = Input::Done;
    }

    /// Reads more input when the decoder needs it: straight into a large
    /// WRITE buffer, else into `rbuf`.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        let direct = match &self.input {
            Input::Done => return false,
            Input::Header if !self.has_room() => return false,
            Input::WriteData { buf, filled, .. } => {
                self.rpos == self.rend && buf.len() - filled >= DIRECT_PAYLOAD
            }
            _ => false,
        };
        if !direct {
            if self.rpos == self.rend {
                self.rpos = 0;
                self.rend = 0;
            } else if self.rbuf.len() - self.rend < self.rbuf.len() / 4 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            }
            if self.rend == self.rbuf.len() {
                // Full of input not decoded yet: the limits hold it back.
                return false;
            }
        }
        let r = match &mut self.input {
            Input::WriteData { buf, filled, .. } if direct => {
                let r = self.stream.poll_read(cx, &mut buf[*filled..]);
                if let Ok(Io::Done(n)) = r {
                    *filled += n;
                }
                r
            }
            _ => {
                let r = self.stream.poll_read(cx, &mut self.rbuf[self.rend..]);
                if let Ok(Io::Done(n)) = r {
                    self.rend += n;
                }
                r
            }
        };
        match r {
            Ok(Io::Pending) => false,
            Ok(Io::Done(0)) => {
                // The client went away, maybe in the middle of a request.
                let eof = super::handshake::EOF_DATA;
                match &self.input {
                    Input::Header if self.rend > self.rpos => {
                        disconnect("Unexpected end-of-file before all bytes were read")
                    }
                    Input::WriteData { .. } | Input::Skip { write: true, .. } => {
                        disconnect(&format!("Failed to read CMD_WRITE data: {eof}"))
                    }
                    Input::StatusPayload { .. } => {
                        disconnect(&format!("Failed to read CMD_BLOCK_STATUS data: {eof}"))
                    }
                    Input::Skip { write: false, .. } => disconnect(eof),
                    _ => {}
                }
                self.input = Input::Done;
                true
            }
            Ok(Io::Done(_)) => true,
            Err(e) => {
                self.fail("reading a request", &e);
                true
            }
        }
    }
}
