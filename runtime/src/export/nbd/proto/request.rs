//! Transmission requests: header codecs (compact and extended) and the
//! checks QEMU's server applies before running a command.
//!
//! Flow for a server, per request:
//! 1. read [`REQUEST_LEN`] or [`EXTENDED_REQUEST_LEN`] bytes and decode them
//!    ([`decode_request`] / [`decode_extended_request`]); a bad magic is
//!    answered with `EINVAL` (cookie as read) and the connection closed;
//! 2. [`plan`] the request: it says whether to disconnect, how many
//!    payload bytes follow and what they are, and the verdict;
//! 3. read the payload if any (WRITE data straight into the I/O buffer;
//!    a BLOCK_STATUS payload then goes through [`complete_block_status`]).
//!
//! Every refusal is `NBD_EINVAL` on the wire (QEMU replies `EINVAL` for
//! anything its request checks refuse) with QEMU's message text.

use thiserror::Error;

use super::consts::*;
use super::errno::NbdErrno;
use super::meta::ContextSet;
use super::wire::{be16, be32, be64, put16, put32, put64};

/// Which request/reply headers the session uses, fixed at the end of the
/// handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplyMode {
    /// Simple replies and compact requests (no `STRUCTURED_REPLY`).
    Simple,
    /// Structured replies and compact requests.
    Structured,
    /// Extended headers: 32-byte requests, 64-bit reply chunks.
    Extended,
}

/// A request header, whichever form it came in (`length` is widened to 64
/// bits for compact headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags as sent (unknown bits kept).
    pub flags: CommandFlags,
    /// The command.
    pub cmd: Cmd,
    /// Opaque cookie echoed in every reply.
    pub cookie: u64,
    /// Offset into the export.
    pub offset: u64,
    /// Length (effect length, or payload length with `PAYLOAD_LEN`).
    pub length: u64,
}

/// A request header that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The magic is not the one of the negotiated header form. The header
    /// is decoded anyway so the error reply can carry its cookie (QEMU
    /// replies `EINVAL`, then closes).
    #[error("invalid magic (got 0x{got:x}, expected 0x{expected:x})")]
    BadMagic {
        /// The magic received.
        got: u32,
        /// The magic expected.
        expected: u32,
        /// The rest of the header as received.
        header: RequestHeader,
    },
    /// A compact header cannot carry a length above 32 bits.
    #[error("length {0} does not fit a compact request")]
    LengthTooLarge(u64),
}

/// Decodes a compact (28-byte) request header.
pub fn decode_request(b: &[u8; REQUEST_LEN]) -> Result<RequestHeader, RequestError> {
    let header = RequestHeader {
        flags: CommandFlags(be16(b, 4)),
        cmd: Cmd::from_raw(be16(b, 6)),
        cookie: be64(b, 8),
        offset: be64(b, 16),
        length: u64::from(be32(b, 24)),
    };
    check_magic(be32(b, 0), REQUEST_MAGIC, header)
}

/// Decodes an extended (32-byte) request header.
pub fn decode_extended_request(
    b: &[u8; EXTENDED_REQUEST_LEN],
) -> Result<RequestHeader, RequestError> {
    let header = RequestHeader {
        flags: CommandFlags(be16(b, 4)),
        cmd: Cmd::from_raw(be16(b, 6)),
        cookie: be64(b, 8),
        offset: be64(b, 16),
        length: be64(b, 24),
    };
    check_magic(be32(b, 0), EXTENDED_REQUEST_MAGIC, header)
}

fn check_magic(
    got: u32,
    expected: u32,
    header: RequestHeader,
) -> Result<RequestHeader, RequestError> {
    if got != expected {
        return Err(RequestError::BadMagic {
            got,
            expected,
            header,
        });
    }
    Ok(header)
}

/// Encodes a compact request header (client side).
pub fn encode_request(h: &RequestHeader) -> Result<[u8; REQUEST_LEN], RequestError> {
    let length = u32::try_from(h.length).map_err(|_| RequestError::LengthTooLarge(h.length))?;
    let mut b = [0u8; REQUEST_LEN];
    put32(&mut b, 0, REQUEST_MAGIC);
    put16(&mut b, 4, h.flags.bits());
    put16(&mut b, 6, h.cmd.raw());
    put64(&mut b, 8, h.cookie);
    put64(&mut b, 16, h.offset);
    put32(&mut b, 24, length);
    Ok(b)
}

/// Encodes an extended request header (client side).
pub fn encode_extended_request(h: &RequestHeader) -> [u8; EXTENDED_REQUEST_LEN] {
    let mut b = [0u8; EXTENDED_REQUEST_LEN];
    put32(&mut b, 0, EXTENDED_REQUEST_MAGIC);
    put16(&mut b, 4, h.flags.bits());
    put16(&mut b, 6, h.cmd.raw());
    put64(&mut b, 8, h.cookie);
    put64(&mut b, 16, h.offset);
    put64(&mut b, 24, h.length);
    b
}

/// What the request checks need to know about the session.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// Header/reply form.
    pub mode: ReplyMode,
    /// Export size in bytes.
    pub export_size: u64,
    /// Whether the export is read-only.
    pub read_only: bool,
    /// The metadata contexts negotiated for this export (empty if none).
    pub contexts: &'a ContextSet,
}

/// A refused request: answer with `errno` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The wire error (QEMU: always `EINVAL` for refused requests).
    pub errno: NbdErrno,
    /// QEMU's message, sent in the error chunk of structured replies.
    pub message: String,
}

fn reject(message: impl Into<String>) -> Rejection {
    Rejection {
        errno: NbdErrno::Inval,
        message: message.into(),
    }
}

/// A validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read `length` bytes (at most 32 MiB; may be 0).
    Read {
        /// Offset.
        offset: u64,
        /// Length.
        length: u32,
        /// Force unit access (accepted, no effect on reads).
        fua: bool,
        /// Don't fragment: at most one data chunk.
        df: bool,
    },
    /// Write the `length` payload bytes that followed the header.
    Write {
        /// Offset.
        offset: u64,
        /// Length of the data.
        length: u32,
        /// Persist before replying.
        fua: bool,
    },
    /// Flush to stable storage.
    Flush {
        /// Force unit access (accepted, meaningless).
        fua: bool,
    },
    /// Discard a range.
    Trim {
        /// Offset.
        offset: u64,
        /// Length.
        length: u64,
        /// Persist before replying.
        fua: bool,
    },
    /// Prefetch a range (at most 32 MiB).
    Cache {
        /// Offset.
        offset: u64,
        /// Length.
        length: u32,
        /// Force unit access (accepted).
        fua: bool,
    },
    /// Write zeroes to a range.
    WriteZeroes {
        /// Offset.
        offset: u64,
        /// Length.
        length: u64,
        /// Persist before replying.
        fua: bool,
        /// Do not punch a hole.
        no_hole: bool,
        /// Fail with `ENOTSUP` unless zeroing is fast.
        fast_zero: bool,
    },
    /// Report block status for a range.
    BlockStatus {
        /// Offset.
        offset: u64,
        /// Length of interest (nonzero).
        length: u64,
        /// One extent per context, not longer than `length`.
        req_one: bool,
        /// The contexts to report: `None` for all negotiated ones, or the
        /// subset a payload named.
        contexts: Option<ContextSet>,
        /// Force unit access (accepted).
        fua: bool,
    },
}

/// What follows a request header on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Nothing.
    None,
    /// WRITE data of this many bytes: read it into the I/O buffer (or
    /// discard it if the verdict is a rejection).
    WriteData(u32),
    /// A BLOCK_STATUS payload of this many bytes: read it and pass it to
    /// [`complete_block_status`].
    BlockStatus(u32),
    /// A payload QEMU reads and throws away (`PAYLOAD_LEN` on a command
    /// that takes none).
    Discard(u32),
}

/// The verdict once the payload is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Known from the header alone.
    Done(Result<Command, Rejection>),
    /// Call [`complete_block_status`] with the payload.
    DecodeBlockStatus,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `NBD_CMD_DISC`: no reply; finish in-flight requests, then close.
    Disconnect,
    /// Reply with the rejection, then close: the payload announced cannot
    /// be consumed (QEMU: "Request handling failed in intermediate state").
    RejectAndClose(Rejection),
    /// Handle `payload`, then act on `next`.
    Proceed {
        /// The payload that follows the header.
        payload: Payload,
        /// The verdict.
        next: Next,
    },
}

fn too_long(length: u64) -> Rejection {
    reject(format!(
        "len ({length}) is larger than max len ({MAX_BUFFER_SIZE})"
    ))
}

/// Checks a request header the way QEMU's server does, in its order:
/// disconnect; length limits (32 MiB for READ/WRITE/CACHE and for any
/// payload); payload consumption; read-only export; range past the end;
/// flags not valid for the command; then per-command checks.
pub fn plan(h: &RequestHeader, s: &Session<'_>) -> Plan {
    if h.cmd == Cmd::Disc {
        return Plan::Disconnect;
    }
    let with_payload = s.mode == ReplyMode::Extended && h.flags.contains(CommandFlags::PAYLOAD_LEN);
    let mut valid = CommandFlags::FUA;
    let mut check_length = with_payload;
    let mut check_ro = false;
    let mut payload = Payload::None;
    match h.cmd {
        Cmd::Read => {
            if s.mode >= ReplyMode::Structured {
                valid |= CommandFlags::DF;
            }
            check_length = true;
        }
        Cmd::Write => {
            if s.mode == ReplyMode::Extended {
                // QEMU tolerates a WRITE without PAYLOAD_LEN here.
                valid |= CommandFlags::PAYLOAD_LEN;
            }
            check_length = true;
            check_ro = true;
        }
        Cmd::Trim => check_ro = true,
        Cmd::Cache => check_length = true,
        Cmd::WriteZeroes => {
            valid |= CommandFlags::NO_HOLE | CommandFlags::FAST_ZERO;
            check_ro = true;
        }
        Cmd::BlockStatus if !with_payload => valid |= CommandFlags::REQ_ONE,
        Cmd::BlockStatus => {
            if h.length > u64::from(MAX_BUFFER_SIZE) {
                return Plan::RejectAndClose(too_long(h.length));
            }
            return Plan::Proceed {
                payload: Payload::BlockStatus(h.length as u32),
                next: Next::DecodeBlockStatus,
            };
        }
        _ => {}
    }
    let mut length = h.length;
    if check_length && length > u64::from(MAX_BUFFER_SIZE) {
        let r = too_long(length);
        if with_payload || h.cmd == Cmd::Write {
            return Plan::RejectAndClose(r);
        }
        return Plan::Proceed {
            payload: Payload::None,
            next: Next::Done(Err(r)),
        };
    }
    if h.cmd == Cmd::Write {
        payload = Payload::WriteData(length as u32);
    } else if with_payload {
        payload = Payload::Discard(length as u32);
        length = 0;
    }
    let verdict = check(h, s, length, valid, check_ro);
    Plan::Proceed {
        payload,
        next: Next::Done(verdict),
    }
}

/// The checks after payload handling: read-only, range, flags, command.
fn check(
    h: &RequestHeader,
    s: &Session<'_>,
    length: u64,
    valid: CommandFlags,
    check_ro: bool,
) -> Result<Command, Rejection> {
    if check_ro && s.read_only {
        return Err(reject("Export is read-only"));
    }
    if h.offset > s.export_size || length > s.export_size - h.offset {
        return Err(reject(format!(
            "operation past EOF; From: {}, Len: {}, Size: {}",
            h.offset, length, s.export_size
        )));
    }
    if h.flags.bits() & !valid.bits() != 0 {
        return Err(reject(format!(
            "unsupported flags for command {} (got 0x{:x})",
            h.cmd.name(),
            h.flags.bits()
        )));
    }
    let fua = h.flags.contains(CommandFlags::FUA);
    let offset = h.offset;
    // Lengths of READ/WRITE/CACHE were bounded to 32 MiB above.
    Ok(match h.cmd {
        Cmd::Read => Command::Read {
            offset,
            length: length as u32,
            fua,
            df: h.flags.contains(CommandFlags::DF),
        },
        Cmd::Write => Command::Write {
            offset,
            length: length as u32,
            fua,
        },
        Cmd::Flush => Command::Flush { fua },
        Cmd::Trim => Command::Trim {
            offset,
            length,
            fua,
        },
        Cmd::Cache => Command::Cache {
            offset,
            length: length as u32,
            fua,
        },
        Cmd::WriteZeroes => Command::WriteZeroes {
            offset,
            length,
            fua,
            no_hole: h.flags.contains(CommandFlags::NO_HOLE),
            fast_zero: h.flags.contains(CommandFlags::FAST_ZERO),
        },
        Cmd::BlockStatus => block_status(h, s, length, None, false)?,
        Cmd::Disc | Cmd::Resize | Cmd::Unknown(_) => {
            return Err(reject(format!(
                "invalid request type ({}) received",
                h.cmd.raw()
            )))
        }
    })
}

fn block_status(
    h: &RequestHeader,
    s: &Session<'_>,
    length: u64,
    contexts: Option<ContextSet>,
    bad_payload: bool,
) -> Result<Command, Rejection> {
    if bad_payload || s.contexts.is_empty() {
        return Err(reject(if bad_payload && !s.contexts.is_empty() {
            "CMD_BLOCK_STATUS payload not valid"
        } else {
            "CMD_BLOCK_STATUS not negotiated"
        }));
    }
    if length == 0 {
        return Err(reject("need non-zero length"));
    }
    Ok(Command::BlockStatus {
        offset: h.offset,
        length,
        req_one: h.flags.contains(CommandFlags::REQ_ONE),
        contexts,
        fua: h.flags.contains(CommandFlags::FUA),
    })
}

/// A decoded BLOCK_STATUS payload (extended headers): the effect length
/// and the context ids to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStatusPayload {
    /// Length of the range of interest.
    pub effect_length: u64,
    /// Context ids (at least one).
    pub ids: Vec<u32>,
}

/// Decodes a BLOCK_STATUS payload: 8 bytes of effect length, then one or
/// more 4-byte ids, at most `max_ids` of them. `None` if malformed.
pub fn decode_block_status_payload(p: &[u8], max_ids: usize) -> Option<BlockStatusPayload> {
    if p.len() < 12 || p.len() & 3 != 0 || (p.len() - 8) / 4 > max_ids {
        return None;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&p[..8]);
    let ids = p[8..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(BlockStatusPayload {
        effect_length: u64::from_be_bytes(head),
        ids,
    })
}

/// Encodes a BLOCK_STATUS payload (client side).
pub fn encode_block_status_payload(effect_length: u64, ids: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 4 * ids.len());
    v.extend_from_slice(&effect_length.to_be_bytes());
    for id in ids {
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

/// The verdict for a BLOCK_STATUS with a payload ([`Next::DecodeBlockStatus`]).
/// A valid payload names only negotiated contexts, each once; its effect
/// length replaces the header's length. An invalid one makes the request
/// fail with "CMD_BLOCK_STATUS payload not valid" (after the range and
/// flag checks, with length 0), as in QEMU.
pub fn complete_block_status(
    h: &RequestHeader,
    payload: &[u8],
    s: &Session<'_>,
) -> Result<Command, Rejection> {
    let subset = decode_block_status_payload(payload, s.contexts.count())
        .and_then(|p| s.contexts.subset(&p.ids).map(|set| (p.effect_length, set)));
    let (length, contexts) = match subset {
        Some((len, set)) => (len, Some(set)),
        None => (0, None),
    };
    let valid = CommandFlags::FUA | CommandFlags::REQ_ONE | CommandFlags::PAYLOAD_LEN;
    if h.offset > s.export_size || length > s.export_size - h.offset {
        return Err(reject(format!(
            "operation past EOF; From: {}, Len: {}, Size: {}",
            h.offset, length, s.export_size
        )));
    }
    if h.flags.bits() & !valid.bits() != 0 {
        return Err(reject(format!(
            "unsupported flags for command {} (got 0x{:x})",
            h.cmd.name(),
            h.flags.bits()
        )));
    }
    let bad = contexts.is_none();
    block_status(h, s, length, contexts, bad)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
