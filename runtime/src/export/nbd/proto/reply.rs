//! Transmission replies: simple replies, structured chunks (20-byte
//! header) and extended chunks (32-byte header), with encoders that leave
//! data buffers alone and decoders for the client side.
//!
//! Headers (plus the fixed fields of a chunk payload) are built into a
//! [`HeaderBuf`] on the stack, so a READ reply is two iovecs: the header
//! bytes and the untouched data buffer. Variable payloads (block status,
//! error messages) are appended to a caller's `Vec<u8>`.

use thiserror::Error;

use super::consts::*;
use super::errno::NbdErrno;
use super::handshake::EncodeError;
use super::request::{Rejection, ReplyMode};
use super::wire::{be16, be32, be64, put16, put32, put64, Reader};

/// Which chunk header a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkForm {
    /// `NBD_STRUCTURED_REPLY_MAGIC`, 32-bit length.
    Structured,
    /// `NBD_EXTENDED_REPLY_MAGIC`, request offset and 64-bit length.
    Extended,
}

impl ReplyMode {
    /// The chunk form of this mode; `None` for simple replies only.
    pub fn chunk_form(self) -> Option<ChunkForm> {
        match self {
            ReplyMode::Simple => None,
            ReplyMode::Structured => Some(ChunkForm::Structured),
            ReplyMode::Extended => Some(ChunkForm::Extended),
        }
    }
}

/// Room for a chunk header plus the fixed fields of any chunk payload.
const HEADER_BUF_LEN: usize = EXTENDED_REPLY_LEN + 16;

/// A reply header (and fixed payload fields) ready to send.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderBuf {
    buf: [u8; HEADER_BUF_LEN],
    len: usize,
}

impl HeaderBuf {
    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn push(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

impl std::fmt::Debug for HeaderBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HeaderBuf").field(&self.as_bytes()).finish()
    }
}

/// Encodes a simple reply header (`None`: success). For a successful READ
/// the data follows.
pub fn encode_simple_reply(error: Option<NbdErrno>, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut b = [0u8; SIMPLE_REPLY_LEN];
    put32(&mut b, 0, SIMPLE_REPLY_MAGIC);
    put32(&mut b, 4, error.map_or(0, NbdErrno::raw));
    put64(&mut b, 8, cookie);
    b
}

/// The fields of a chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Chunk flags (`DONE`).
    pub flags: ReplyFlags,
    /// Chunk type.
    pub typ: ReplyType,
    /// The request's cookie.
    pub cookie: u64,
    /// Extended chunks: the request's offset (QEMU echoes it); 0 for
    /// structured chunks, which have no such field.
    pub offset: u64,
    /// Payload length.
    pub length: u64,
}

/// Encodes a chunk header announcing `payload_len` bytes of payload.
pub fn encode_chunk_header(form: ChunkForm, h: &ChunkHeader) -> Result<HeaderBuf, EncodeError> {
    let mut out = HeaderBuf {
        buf: [0u8; HEADER_BUF_LEN],
        len: 0,
    };
    match form {
        ChunkForm::Structured => {
            let len = u32::try_from(h.length)
                .map_err(|_| EncodeError::PayloadTooLong(h.length as usize))?;
            let mut b = [0u8; STRUCTURED_REPLY_LEN];
            put32(&mut b, 0, STRUCTURED_REPLY_MAGIC);
            put16(&mut b, 4, h.flags.bits());
            put16(&mut b, 6, h.typ.raw());
            put64(&mut b, 8, h.cookie);
            put32(&mut b, 16, len);
            out.push(&b);
        }
        ChunkForm::Extended => {
            let mut b = [0u8; EXTENDED_REPLY_LEN];
            put32(&mut b, 0, EXTENDED_REPLY_MAGIC);
            put16(&mut b, 4, h.flags.bits());
            put16(&mut b, 6, h.typ.raw());
            put64(&mut b, 8, h.cookie);
            put64(&mut b, 16, h.offset);
            put64(&mut b, 24, h.length);
            out.push(&b);
        }
    }
    Ok(out)
}

fn done(last: bool) -> ReplyFlags {
    ReplyFlags::EMPTY.with(ReplyFlags::DONE, last)
}

/// `NBD_REPLY_TYPE_NONE` with `DONE`: the end of a reply.
pub fn chunk_none(form: ChunkForm, cookie: u64, req_offset: u64) -> HeaderBuf {
    let h = ChunkHeader {
        flags: ReplyFlags::DONE,
        typ: ReplyType::None,
        cookie,
        offset: req_offset,
        length: 0,
    };
    // A zero length always fits.
    encode_chunk_header(form, &h).unwrap_or(HeaderBuf {
        buf: [0u8; HEADER_BUF_LEN],
        len: 0,
    })
}

/// Header and offset of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk; the
/// `data_len` bytes of data are sent after it, untouched.
pub fn chunk_offset_data(
    form: ChunkForm,
    last: bool,
    cookie: u64,
    req_offset: u64,
    data_offset: u64,
    data_len: u64,
) -> Result<HeaderBuf, EncodeError> {
    let h = ChunkHeader {
        flags: done(last),
        typ: ReplyType::OffsetData,
        cookie,
        offset: req_offset,
        length: 8 + data_len,
    };
    let mut out = encode_chunk_header(form, &h)?;
    out.push(&data_offset.to_be_bytes());
    Ok(out)
}

/// A complete `NBD_REPLY_TYPE_OFFSET_HOLE` chunk.
pub fn chunk_offset_hole(
    form: ChunkForm,
    last: bool,
    cookie: u64,
    req_offset: u64,
    hole_offset: u64,
    hole_len: u32,
) -> HeaderBuf {
    let h = ChunkHeader {
        flags: done(last),
        typ: ReplyType::OffsetHole,
        cookie,
        offset: req_offset,
        length: 12,
    };
    let mut out = encode_chunk_header(form, &h).unwrap_or(HeaderBuf {
        buf: [0u8; HEADER_BUF_LEN],
        len: 0,
    });
    out.push(&hole_offset.to_be_bytes());
    out.push(&hole_len.to_be_bytes());
    out
}

/// The content of an error chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError<'a> {
    /// The error.
    pub errno: NbdErrno,
    /// A message for humans (at most 4096 bytes, may be empty).
    pub message: &'a [u8],
    /// For `NBD_REPLY_TYPE_ERROR_OFFSET`: where the error happened.
    pub offset: Option<u64>,
}

/// Appends an `NBD_REPLY_TYPE_ERROR` chunk (or `ERROR_OFFSET` when the
/// error has an offset).
pub fn put_chunk_error(
    out: &mut Vec<u8>,
    form: ChunkForm,
    last: bool,
    cookie: u64,
    req_offset: u64,
    err: &ChunkError<'_>,
) -> Result<(), EncodeError> {
    let message = err.message;
    if message.len() > MAX_STRING_SIZE {
        return Err(EncodeError::StringTooLong {
            what: "error message",
            len: message.len(),
        });
    }
    let extra = if err.offset.is_some() { 8 } else { 0 };
    let h = ChunkHeader {
        flags: done(last),
        typ: if err.offset.is_some() {
            ReplyType::ErrorOffset
        } else {
            ReplyType::Error
        },
        cookie,
        offset: req_offset,
        length: (6 + message.len() + extra) as u64,
    };
    out.extend_from_slice(encode_chunk_header(form, &h)?.as_bytes());
    out.extend_from_slice(&err.errno.raw().to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    if let Some(off) = err.offset {
        out.extend_from_slice(&off.to_be_bytes());
    }
    Ok(())
}

/// One block status extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (nonzero).
    pub length: u64,
    /// Status flags of the context.
    pub flags: u64,
}

/// Appends a block status chunk for one context: type `BLOCK_STATUS`
/// (32-bit extents) for structured chunks, `BLOCK_STATUS_EXT` (64-bit,
/// with a count) for extended ones.
pub fn put_block_status(
    out: &mut Vec<u8>,
    form: ChunkForm,
    last: bool,
    cookie: u64,
    req_offset: u64,
    context_id: u32,
    extents: &[Extent],
) -> Result<(), EncodeError> {
    let (typ, length) = match form {
        ChunkForm::Structured => (ReplyType::BlockStatus, 4 + 8 * extents.len() as u64),
        ChunkForm::Extended => (ReplyType::BlockStatusExt, 8 + 16 * extents.len() as u64),
    };
    let h = ChunkHeader {
        flags: done(last),
        typ,
        cookie,
        offset: req_offset,
        length,
    };
    out.reserve(length as usize + EXTENDED_REPLY_LEN);
    out.extend_from_slice(encode_chunk_header(form, &h)?.as_bytes());
    out.extend_from_slice(&context_id.to_be_bytes());
    match form {
        ChunkForm::Structured => {
            for e in extents {
                let (Ok(len), Ok(flags)) = (u32::try_from(e.length), u32::try_from(e.flags)) else {
                    return Err(EncodeError::PayloadTooLong(e.length as usize));
                };
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
            }
        }
        ChunkForm::Extended => {
            let count = u32::try_from(extents.len())
                .map_err(|_| EncodeError::PayloadTooLong(extents.len()))?;
            out.extend_from_slice(&count.to_be_bytes());
            for e in extents {
                out.extend_from_slice(&e.length.to_be_bytes());
                out.extend_from_slice(&e.flags.to_be_bytes());
            }
        }
    }
    Ok(())
}

/// Appends the reply QEMU sends for a request with no data to return
/// (everything but a successful READ or BLOCK_STATUS): simple replies use a
/// simple reply (no message); structured sessions use a simple reply on
/// success and an `ERROR` chunk with the message on failure; extended
/// sessions use a `NONE` or `ERROR` chunk carrying the request offset.
pub fn put_generic_reply(
    out: &mut Vec<u8>,
    mode: ReplyMode,
    cookie: u64,
    req_offset: u64,
    result: Result<(), &Rejection>,
) -> Result<(), EncodeError> {
    match (mode.chunk_form(), result) {
        (Some(form), Err(r)) => put_chunk_error(
            out,
            form,
            true,
            cookie,
            req_offset,
            &ChunkError {
                errno: r.errno,
                message: r.message.as_bytes(),
                offset: None,
            },
        ),
        (Some(ChunkForm::Extended), Ok(())) => {
            out.extend_from_slice(chunk_none(ChunkForm::Extended, cookie, req_offset).as_bytes());
            Ok(())
        }
        (_, result) => {
            let err = result.err().map(|r| r.errno);
            out.extend_from_slice(&encode_simple_reply(err, cookie));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding (client side)

/// Largest chunk payload a decoder accepts: a 32 MiB read plus room.
pub const MAX_CHUNK_PAYLOAD: u64 = 2 * MAX_BUFFER_SIZE as u64;

/// A reply that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// None of the three reply magics.
    #[error("invalid reply magic 0x{0:x}")]
    BadMagic(u32),
    /// A magic that does not match the negotiated reply form.
    #[error("reply magic 0x{0:x} not expected in this mode")]
    UnexpectedMagic(u32),
    /// The chunk announces more payload than accepted.
    #[error("chunk payload of {0} bytes is too large")]
    TooLong(u64),
    /// The payload length does not fit the chunk type.
    #[error("chunk type {typ:?} has invalid length {len}")]
    BadLength {
        /// The chunk type.
        typ: ReplyType,
        /// The payload length.
        len: usize,
    },
    /// A field has a value the protocol forbids.
    #[error("chunk type {typ:?}: {what}")]
    BadField {
        /// The chunk type.
        typ: ReplyType,
        /// What is wrong.
        what: &'static str,
    },
}

/// The kind of reply a magic announces, and its full header length.
pub fn reply_kind(magic: [u8; 4]) -> Result<(ChunkKind, usize), ReplyError> {
    match u32::from_be_bytes(magic) {
        SIMPLE_REPLY_MAGIC => Ok((ChunkKind::Simple, SIMPLE_REPLY_LEN)),
        STRUCTURED_REPLY_MAGIC => Ok((ChunkKind::Structured, STRUCTURED_REPLY_LEN)),
        EXTENDED_REPLY_MAGIC => Ok((ChunkKind::Extended, EXTENDED_REPLY_LEN)),
        other => Err(ReplyError::BadMagic(other)),
    }
}

/// The three reply forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Simple reply.
    Simple,
    /// Structured chunk.
    Structured,
    /// Extended chunk.
    Extended,
}

/// A decoded simple reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleReply {
    /// The error (`None`: success).
    pub error: Option<NbdErrno>,
    /// The request's cookie.
    pub cookie: u64,
}

/// Decodes a simple reply header.
pub fn decode_simple_reply(b: &[u8; SIMPLE_REPLY_LEN]) -> Result<SimpleReply, ReplyError> {
    let magic = be32(b, 0);
    if magic != SIMPLE_REPLY_MAGIC {
        return Err(ReplyError::UnexpectedMagic(magic));
    }
    Ok(SimpleReply {
        error: NbdErrno::from_raw(be32(b, 4)),
        cookie: be64(b, 8),
    })
}

/// Decodes a structured chunk header.
pub fn decode_structured_chunk(b: &[u8; STRUCTURED_REPLY_LEN]) -> Result<ChunkHeader, ReplyError> {
    let magic = be32(b, 0);
    if magic != STRUCTURED_REPLY_MAGIC {
        return Err(ReplyError::UnexpectedMagic(magic));
    }
    Ok(ChunkHeader {
        flags: ReplyFlags(be16(b, 4)),
        typ: ReplyType::from_raw(be16(b, 6)),
        cookie: be64(b, 8),
        offset: 0,
        length: u64::from(be32(b, 16)),
    })
}

/// Decodes an extended chunk header.
pub fn decode_extended_chunk(b: &[u8; EXTENDED_REPLY_LEN]) -> Result<ChunkHeader, ReplyError> {
    let magic = be32(b, 0);
    if magic != EXTENDED_REPLY_MAGIC {
        return Err(ReplyError::UnexpectedMagic(magic));
    }
    let length = be64(b, 24);
    if length > MAX_CHUNK_PAYLOAD {
        return Err(ReplyError::TooLong(length));
    }
    Ok(ChunkHeader {
        flags: ReplyFlags(be16(b, 4)),
        typ: ReplyType::from_raw(be16(b, 6)),
        cookie: be64(b, 8),
        offset: be64(b, 16),
        length,
    })
}

/// A decoded chunk payload; data borrows the payload buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkPayload<'a> {
    /// `NONE`
    None,
    /// `OFFSET_DATA`: data at an offset.
    OffsetData {
        /// Offset of the data.
        offset: u64,
        /// The data (at least one byte).
        data: &'a [u8],
    },
    /// `OFFSET_HOLE`: zeroes at an offset.
    OffsetHole {
        /// Offset of the hole.
        offset: u64,
        /// Its length (nonzero).
        length: u32,
    },
    /// `BLOCK_STATUS` or `BLOCK_STATUS_EXT`.
    BlockStatus {
        /// Context id.
        context_id: u32,
        /// Extents (at least one).
        extents: Vec<Extent>,
    },
    /// `ERROR`, `ERROR_OFFSET`, or an unknown type with bit 15 set.
    Error {
        /// The error.
        errno: NbdErrno,
        /// The message.
        message: &'a [u8],
        /// The offset of `ERROR_OFFSET`.
        offset: Option<u64>,
    },
}

/// Decodes a chunk payload of the type in `h`.
pub fn decode_chunk_payload<'a>(
    form: ChunkForm,
    h: &ChunkHeader,
    p: &'a [u8],
) -> Result<ChunkPayload<'a>, ReplyError> {
    let typ = h.typ;
    let bad_len = ReplyError::BadLength { typ, len: p.len() };
    if p.len() as u64 != h.length {
        return Err(bad_len);
    }
    let field = |what| ReplyError::BadField { typ, what };
    let mut r = Reader::new(p);
    match typ {
        ReplyType::None if p.is_empty() => {
            if !h.flags.contains(ReplyFlags::DONE) {
                return Err(field("NONE chunk without DONE"));
            }
            Ok(ChunkPayload::None)
        }
        ReplyType::OffsetData if p.len() >= 9 => Ok(ChunkPayload::OffsetData {
            offset: r.u64().ok_or(bad_len)?,
            data: r.rest(),
        }),
        ReplyType::OffsetHole if p.len() == 12 => {
            let offset = r.u64().ok_or(bad_len)?;
            let length = r.u32().ok_or(bad_len)?;
            if length == 0 {
                return Err(field("empty hole"));
            }
            Ok(ChunkPayload::OffsetHole { offset, length })
        }
        ReplyType::BlockStatus
            if form == ChunkForm::Structured && p.len() >= 12 && (p.len() - 4) & 7 == 0 =>
        {
            let context_id = r.u32().ok_or(bad_len)?;
            let mut extents = Vec::with_capacity((p.len() - 4) / 8);
            while r.remaining() > 0 {
                let length = r.u32().ok_or(bad_len)?;
                let flags = r.u32().ok_or(bad_len)?;
                extents.push(Extent {
                    length: u64::from(length),
                    flags: u64::from(flags),
                });
            }
            Ok(ChunkPayload::BlockStatus {
                context_id,
                extents,
            })
        }
        ReplyType::BlockStatusExt if form == ChunkForm::Extended && p.len() >= 24 => {
            let context_id = r.u32().ok_or(bad_len)?;
            let count = r.u32().ok_or(bad_len)? as usize;
            if count == 0 || r.remaining() != count.saturating_mul(16) {
                return Err(field("extent count does not match the length"));
            }
            let mut extents = Vec::with_capacity(count);
            for _ in 0..count {
                let length = r.u64().ok_or(bad_len)?;
                let flags = r.u64().ok_or(bad_len)?;
                extents.push(Extent { length, flags });
            }
            Ok(ChunkPayload::BlockStatus {
                context_id,
                extents,
            })
        }
        t if t.is_error() && p.len() >= 6 => {
            let raw = r.u32().ok_or(bad_len)?;
            let errno = NbdErrno::from_raw(raw).ok_or(field("error chunk with error 0"))?;
            let mlen = usize::from(r.u16().ok_or(bad_len)?);
            if mlen > MAX_STRING_SIZE {
                return Err(field("message longer than 4096 bytes"));
            }
            let message = r.bytes(mlen).ok_or(field("message runs past the chunk"))?;
            let offset = match t {
                ReplyType::ErrorOffset => {
                    if r.remaining() != 8 {
                        return Err(bad_len);
                    }
                    r.u64()
                }
                ReplyType::Error if r.remaining() != 0 => return Err(bad_len),
                _ => None,
            };
            Ok(ChunkPayload::Error {
                errno,
                message,
                offset,
            })
        }
        _ => Err(bad_len),
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
