//! Running validated NBD commands against the exported node and building
//! their replies, as QEMU's server does:
//! - READ in a structured session without `DF` is sparse: the range is
//!   walked by block status, ranges that read as zeroes become
//!   `OFFSET_HOLE` chunks, the rest `OFFSET_DATA` chunks; the last chunk
//!   carries `DONE`. With `DF` (or simple replies) the data goes in one
//!   piece. `FUA` on READ flushes first.
//! - WRITE/WRITE_ZEROES add `FUA` when the export is writethrough;
//!   WRITE_ZEROES may punch holes unless `NO_HOLE`, and fails fast with
//!   `ENOTSUP` under `FAST_ZERO`; TRIM with `FUA` flushes after.
//! - CACHE succeeds without doing anything (QEMU's prefetch has no effect
//!   without copy-on-read).
//! - BLOCK_STATUS sends one chunk per selected context (base, depth, in
//!   id order); extents with equal flags are merged (in compact sessions
//!   as long as the sum fits 32 bits), at most 131072 per chunk, one with
//!   `REQ_ONE`.
//! - Failures carry QEMU's messages ("reading from file failed", ...).

use std::io;
use std::sync::Arc;

use crate::block::{BlockNode, IoBuf, WriteFlags, ZeroFlags};

use super::outq::{Head, Part, Reply};
use super::proto::meta::{ID_ALLOCATION_DEPTH, ID_BASE_ALLOCATION};
use super::proto::{
    chunk_none, chunk_offset_data, chunk_offset_hole, encode_simple_reply, put_block_status,
    put_chunk_error, state, ChunkError, ChunkForm, Command, ContextSet, Extent, NbdErrno,
    Rejection, ReplyMode,
};

/// QEMU's cap on extents per block status chunk (1 MiB of 32-bit extents).
pub(crate) const MAX_EXTENTS: usize = 1024 * 1024 / 8;

/// What the commands of one connection share.
pub(crate) struct Session {
    pub node: Arc<BlockNode>,
    pub mode: ReplyMode,
    /// Every write is forced to stable storage (`writethrough=on`).
    pub writethrough: bool,
    /// Contexts negotiated with `SET_META_CONTEXT`.
    pub contexts: ContextSet,
}

/// One request: its cookie and header offset (echoed by extended chunks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Req {
    pub cookie: u64,
    pub offset: u64,
}

/// The reply to a request that returns no data: success, or an error
/// with a message (sent only in structured sessions).
pub(crate) fn generic(mode: ReplyMode, req: Req, result: Result<(), (NbdErrno, &str)>) -> Reply {
    match (mode.chunk_form(), result) {
        (Some(form), Err((errno, msg))) => error_chunk(form, req, errno, msg),
        (Some(ChunkForm::Extended), Ok(())) => Reply::Head(Head::new(
            chunk_none(ChunkForm::Extended, req.cookie, req.offset).as_bytes(),
        )),
        (_, r) => Reply::Head(Head::new(&encode_simple_reply(
            r.err().map(|e| e.0),
            req.cookie,
        ))),
    }
}

/// A refused request.
pub(crate) fn rejected(mode: ReplyMode, req: Req, r: &Rejection) -> Reply {
    generic(mode, req, Err((r.errno, &r.message)))
}

fn error_chunk(form: ChunkForm, req: Req, errno: NbdErrno, msg: &str) -> Reply {
    let mut out = Vec::with_capacity(64 + msg.len());
    let err = ChunkError {
        errno,
        message: msg.as_bytes(),
        offset: None,
    };
    if put_chunk_error(&mut out, form, true, req.cookie, req.offset, &err).is_err() {
        // Only an overlong message fails; send the error without it.
        out.clear();
        let err = ChunkError {
            message: b"",
            ..err
        };
        let _ = put_chunk_error(&mut out, form, true, req.cookie, req.offset, &err);
    }
    Reply::Bytes(out)
}

fn errno(e: &io::Error) -> NbdErrno {
    NbdErrno::from_io_error(e)
}

fn status(mode: ReplyMode, req: Req, r: io::Result<()>, what: &str) -> Reply {
    match r {
        Ok(()) => generic(mode, req, Ok(())),
        Err(e) => generic(mode, req, Err((errno(&e), what))),
    }
}

/// Runs `cmd` (with `data`, the payload of a WRITE) and returns its reply.
pub(crate) async fn run(s: Arc<Session>, req: Req, cmd: Command, data: Option<IoBuf>) -> Reply {
    let node = &s.node;
    let mode = s.mode;
    match cmd {
        Command::Read {
            offset,
            length,
            fua,
            df,
        } => read(&s, req, offset, length, fua, df).await,
        Command::Write { offset, fua, .. } => {
            let Some(buf) = data else {
                return generic(mode, req, Err((NbdErrno::Inval, "writing to file failed")));
            };
            let flags = WriteFlags {
                fua: fua || s.writethrough,
            };
            status(
                mode,
                req,
                node.write(offset, buf, flags).await,
                "writing to file failed",
            )
        }
        Command::WriteZeroes {
            offset,
            length,
            fua,
            no_hole,
            fast_zero,
        } => {
            let flags = ZeroFlags {
                fua: fua || s.writethrough,
                may_unmap: !no_hole,
                no_fallback: fast_zero,
            };
            status(
                mode,
                req,
                node.write_zeroes(offset, length, flags).await,
                "writing to file failed",
            )
        }
        Command::Trim {
            offset,
            length,
            fua,
        } => {
            let mut r = node.discard(offset, length).await;
            if r.is_ok() && fua {
                r = node.flush().await;
            }
            status(mode, req, r, "discard failed")
        }
        Command::Flush { .. } => status(mode, req, node.flush().await, "flush failed"),
        Command::Cache { .. } => generic(mode, req, Ok(())),
        Command::BlockStatus {
            offset,
            length,
            req_one,
            contexts,
            ..
        } => {
            let sel = contexts.as_ref().unwrap_or(&s.contexts);
            block_status(&s, req, sel, offset, length, req_one).await
        }
    }
}

async fn read(s: &Session, req: Req, offset: u64, length: u32, fua: bool, df: bool) -> Reply {
    let mode = s.mode;
    if fua {
        if let Err(e) = s.node.flush().await {
            return generic(mode, req, Err((errno(&e), "flush failed")));
        }
    }
    let form = mode.chunk_form();
    if let Some(form) = form {
        if !df && length > 0 {
            return sparse_read(s, form, req, offset, u64::from(length)).await;
        }
    }
    let buf = match s.node.read(offset, length as usize).await {
        Ok(b) => b,
        Err(e) => return generic(mode, req, Err((errno(&e), "reading from file failed"))),
    };
    match form {
        None => Reply::Data(Head::new(&encode_simple_reply(None, req.cookie)), buf),
        Some(form) if length == 0 => Reply::Head(Head::new(
            chunk_none(form, req.cookie, req.offset).as_bytes(),
        )),
        Some(form) => data_chunk(form, true, req, offset, buf),
    }
}

fn data_chunk(form: ChunkForm, last: bool, req: Req, at: u64, buf: IoBuf) -> Reply {
    match chunk_offset_data(form, last, req.cookie, req.offset, at, buf.len() as u64) {
        Ok(h) => Reply::Data(Head::new(h.as_bytes()), buf),
        // Data is at most 32 MiB: the header always fits.
        Err(_) => Reply::Close(Vec::new()),
    }
}

/// QEMU's `nbd_co_send_sparse_read`.
async fn sparse_read(s: &Session, form: ChunkForm, req: Req, offset: u64, len: u64) -> Reply {
    let mut parts: Vec<Part> = Vec::new();
    let mut done = 0u64;
    while done < len {
        let at = offset + done;
        let ext = match s.node.block_status(at, len - done).await {
            Ok(e) => e,
            Err(e) => {
                let msg = format!(
                    "unable to check for holes: {}",
                    crate::chardev::os_error(&e)
                );
                let Reply::Bytes(b) = error_chunk(form, req, errno(&e), &msg) else {
                    return Reply::Close(parts);
                };
                parts.push(Part::Bytes(b));
                return Reply::Parts(parts);
            }
        };
        let n = ext.len.clamp(1, len - done);
        let last = done + n == len;
        if ext.zero {
            let h = chunk_offset_hole(form, last, req.cookie, req.offset, at, n as u32);
            parts.push(Part::Head(Head::new(h.as_bytes())));
        } else {
            let buf = match s.node.read(at, n as usize).await {
                Ok(b) => b,
                Err(e) => {
                    // QEMU gives up on the client here, after the chunks
                    // already sent.
                    tracing::debug!("NBD read at {at}: {e}");
                    return Reply::Close(parts);
                }
            };
            if last && parts.is_empty() {
                return data_chunk(form, true, req, at, buf);
            }
            match chunk_offset_data(form, last, req.cookie, req.offset, at, n) {
                Ok(h) => {
                    parts.push(Part::Head(Head::new(h.as_bytes())));
                    parts.push(Part::Data(buf));
                }
                Err(_) => return Reply::Close(parts),
            }
        }
        done += n;
    }
    if parts.len() == 1 {
        if let Some(Part::Head(h)) = parts.pop() {
            return Reply::Head(h);
        }
    }
    Reply::Parts(parts)
}

/// QEMU's extent array: merges equal neighbours, refuses more than `max`.
struct Extents {
    v: Vec<Extent>,
    max: usize,
    extended: bool,
}

impl Extents {
    /// Adds an extent; `false` once the array is full (the walk stops).
    fn add(&mut self, length: u64, flags: u64) -> bool {
        if length == 0 {
            return true;
        }
        if let Some(last) = self.v.last_mut() {
            if last.flags == flags {
                let sum = last.length + length;
                if sum <= u64::from(u32::MAX) || self.extended {
                    last.length = sum;
                    return true;
                }
            }
        }
        if self.v.len() >= self.max {
            return false;
        }
        self.v.push(Extent { length, flags });
        true
    }
}

/// The extents of one context over `[offset, offset + len)`.
async fn extents(
    node: &BlockNode,
    id: u32,
    mut offset: u64,
    mut len: u64,
    ea: &mut Extents,
) -> io::Result<()> {
    while len > 0 {
        let e = node.block_status(offset, len).await?;
        let n = e.len.clamp(1, len);
        let flags = if id == ID_BASE_ALLOCATION {
            let mut f = 0;
            if !e.data {
                f |= state::HOLE;
            }
            if e.zero {
                f |= state::ZERO;
            }
            u64::from(f)
        } else {
            u64::from(e.depth)
        };
        if !ea.add(n, flags) {
            return Ok(());
        }
        offset += n;
        len -= n;
    }
    Ok(())
}

async fn block_status(
    s: &Session,
    req: Req,
    sel: &ContextSet,
    offset: u64,
    len: u64,
    req_one: bool,
) -> Reply {
    let Some(form) = s.mode.chunk_form() else {
        // The request checks refuse BLOCK_STATUS without contexts, which
        // need structured replies.
        return generic(
            s.mode,
            req,
            Err((NbdErrno::Inval, "CMD_BLOCK_STATUS not negotiated")),
        );
    };
    let mut ids = Vec::with_capacity(2);
    if sel.base_allocation {
        ids.push(ID_BASE_ALLOCATION);
    }
    if sel.allocation_depth {
        ids.push(ID_ALLOCATION_DEPTH);
    }
    let mut out = Vec::new();
    let mut remaining = ids.len();
    for id in ids {
        remaining -= 1;
        let mut ea = Extents {
            v: Vec::new(),
            max: if req_one { 1 } else { MAX_EXTENTS },
            extended: form == ChunkForm::Extended,
        };
        if let Err(e) = extents(&s.node, id, offset, len, &mut ea).await {
            let Reply::Bytes(b) = error_chunk(form, req, errno(&e), "can't get block status")
            else {
                return Reply::Close(Vec::new());
            };
            out.extend_from_slice(&b);
            continue;
        }
        if put_block_status(
            &mut out,
            form,
            remaining == 0,
            req.cookie,
            req.offset,
            id,
            &ea.v,
        )
        .is_err()
        {
            return Reply::Close(Vec::new());
        }
    }
    Reply::Bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_like_qemu() {
        let mut ea = Extents {
            v: Vec::new(),
            max: 2,
            extended: false,
        };
        assert!(ea.add(10, 0));
        assert!(ea.add(0, 3));
        assert!(ea.add(5, 0));
        assert!(ea.add(u64::from(u32::MAX) - 15, 0));
        assert_eq!(ea.v.len(), 1);
        assert!(ea.add(1, 0), "overflowing 32 bits starts a new extent");
        assert_eq!(ea.v.len(), 2);
        assert!(!ea.add(1, 3), "full");
        let mut one = Extents {
            v: Vec::new(),
            max: 1,
            extended: true,
        };
        assert!(one.add(u64::from(u32::MAX), 1) && one.add(u64::from(u32::MAX), 1));
        assert_eq!(one.v[0].length, 2 * u64::from(u32::MAX));
        assert!(!one.add(1, 0));
    }

    #[test]
    fn generic_replies_by_mode() {
        let req = Req {
            cookie: 7,
            offset: 512,
        };
        let Reply::Head(h) = generic(ReplyMode::Simple, req, Err((NbdErrno::Io, "x"))) else {
            panic!()
        };
        assert_eq!(h.as_bytes(), &encode_simple_reply(Some(NbdErrno::Io), 7));
        let Reply::Head(h) = generic(ReplyMode::Structured, req, Ok(())) else {
            panic!()
        };
        assert_eq!(h.as_bytes(), &encode_simple_reply(None, 7));
        let Reply::Head(h) = generic(ReplyMode::Extended, req, Ok(())) else {
            panic!()
        };
        assert_eq!(
            h.as_bytes(),
            chunk_none(ChunkForm::Extended, 7, 512).as_bytes()
        );
        let Reply::Bytes(b) = generic(ReplyMode::Structured, req, Err((NbdErrno::Inval, "m")))
        else {
            panic!()
        };
        assert_eq!(b.len(), 20 + 6 + 1);
    }
}
