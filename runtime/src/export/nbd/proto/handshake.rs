//! Handshake framing (fixed newstyle): the greeting, client flags, option
//! request headers, option replies and the `NBD_OPT_EXPORT_NAME` reply.
//!
//! Decoders take fixed-size arrays (the caller reads exactly that many
//! bytes first) or a payload slice whose length the header announced;
//! encoders write into a caller-provided array or append to a `Vec<u8>`.

use thiserror::Error;

use super::consts::*;
use super::wire::{be16, be32, be64, put16, put32, put64, Reader, WireString};

/// A fatal handshake error: the peer broke the protocol and the connection
/// is to be dropped. Texts match QEMU's server where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The greeting does not start with `NBDMAGIC`.
    #[error("bad greeting magic 0x{0:016x}")]
    BadGreetingMagic(u64),
    /// The greeting is oldstyle (or garbage) instead of `IHAVEOPT`.
    #[error("server is not newstyle (magic 0x{0:016x})")]
    NotNewstyle(u64),
    /// The client set flags the server does not know or did not offer.
    #[error("Unknown client flags 0x{0:x} received")]
    UnknownClientFlags(u32),
    /// An option request does not start with `IHAVEOPT`.
    #[error("Bad magic received")]
    BadOptionMagic(u64),
    /// An option announces more data than the server accepts.
    #[error("len ({0}) is larger than max len ({MAX_OPTION_LENGTH})")]
    OptionTooLong(u32),
    /// Another fatal condition of QEMU's negotiation, with its text
    /// (e.g. "export not found", "Bad length received").
    #[error("{0}")]
    Fatal(String),
}

/// An option reply that cannot be decoded (client side).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionReplyError {
    /// The reply does not start with the option reply magic.
    #[error("bad option reply magic 0x{0:016x}")]
    BadMagic(u64),
    /// The reply announces more data than a client accepts.
    #[error("option reply length {0} is larger than max len ({MAX_OPTION_LENGTH})")]
    TooLong(u32),
    /// The payload length does not fit the reply type.
    #[error("option reply {rep:?} has invalid length {len}")]
    BadLength {
        /// The reply type.
        rep: Rep,
        /// The payload length.
        len: usize,
    },
    /// A string inside the reply is longer than 4096 bytes or its length
    /// field runs past the payload.
    #[error("option reply {rep:?} carries a bad string length {len}")]
    BadString {
        /// The reply type.
        rep: Rep,
        /// The announced string length.
        len: usize,
    },
    /// A non-error reply type this decoder does not know.
    #[error("unknown option reply type 0x{0:x}")]
    UnknownType(u32),
}

/// An encoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string is longer than the protocol's 4096-byte limit.
    #[error("{what} is {len} bytes long, more than the 4096 allowed")]
    StringTooLong {
        /// Which string.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A reply payload does not fit its 32-bit length field.
    #[error("payload of {0} bytes does not fit the reply")]
    PayloadTooLong(usize),
}

fn check_string(what: &'static str, s: &[u8]) -> Result<(), EncodeError> {
    if s.len() > MAX_STRING_SIZE {
        return Err(EncodeError::StringTooLong { what, len: s.len() });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Greeting and client flags

/// The server greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags.
pub fn encode_greeting(flags: HandshakeFlags) -> [u8; GREETING_LEN] {
    let mut b = [0u8; GREETING_LEN];
    put64(&mut b, 0, NBD_MAGIC);
    put64(&mut b, 8, IHAVEOPT);
    put16(&mut b, 16, flags.bits());
    b
}

/// Decodes a server greeting (client side); unknown handshake flags are
/// kept (clients ignore them).
pub fn decode_greeting(b: &[u8; GREETING_LEN]) -> Result<HandshakeFlags, HandshakeError> {
    let magic = be64(b, 0);
    if magic != NBD_MAGIC {
        return Err(HandshakeError::BadGreetingMagic(magic));
    }
    let newstyle = be64(b, 8);
    if newstyle != IHAVEOPT {
        return Err(HandshakeError::NotNewstyle(newstyle));
    }
    Ok(HandshakeFlags(be16(b, 16)))
}

/// The client's flags word.
pub fn encode_client_flags(flags: ClientFlags) -> [u8; 4] {
    flags.bits().to_be_bytes()
}

/// Decodes the client flags. Bits the server does not know, or did not
/// offer in `offered`, are fatal (`Unknown client flags 0x.. received`,
/// naming only the offending bits, as QEMU does).
pub fn decode_client_flags(
    b: &[u8; 4],
    offered: HandshakeFlags,
) -> Result<ClientFlags, HandshakeError> {
    let flags = ClientFlags(u32::from_be_bytes(*b));
    let allowed = u32::from(offered.bits()) & ClientFlags::ALL.bits();
    let bad = flags.bits() & !allowed;
    if bad != 0 {
        return Err(HandshakeError::UnknownClientFlags(bad));
    }
    Ok(flags)
}

// ---------------------------------------------------------------------------
// Option requests

/// The fixed part of an option request. The `length` bytes of data that
/// follow are the caller's to read (see [`super::options::payload_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option.
    pub opt: Opt,
    /// Length of the option data that follows.
    pub length: u32,
}

/// Decodes an option request header, rejecting a bad magic and a length
/// above [`MAX_OPTION_LENGTH`] before anything is allocated.
pub fn decode_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, HandshakeError> {
    let magic = be64(b, 0);
    if magic != IHAVEOPT {
        return Err(HandshakeError::BadOptionMagic(magic));
    }
    let opt = Opt::from_raw(be32(b, 8));
    let length = be32(b, 12);
    if length > MAX_OPTION_LENGTH {
        return Err(HandshakeError::OptionTooLong(length));
    }
    Ok(OptionHeader { opt, length })
}

/// Encodes an option request header (client side).
pub fn encode_option_header(opt: Opt, length: u32) -> [u8; OPTION_HEADER_LEN] {
    let mut b = [0u8; OPTION_HEADER_LEN];
    put64(&mut b, 0, IHAVEOPT);
    put32(&mut b, 8, opt.raw());
    put32(&mut b, 12, length);
    b
}

// ---------------------------------------------------------------------------
// Option replies

/// The fixed part of an option reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReplyHeader {
    /// The option this answers (echoed raw, also for unknown options).
    pub opt: u32,
    /// The reply type.
    pub rep: Rep,
    /// Length of the data that follows.
    pub length: u32,
}

/// Encodes an option reply header.
pub fn encode_option_reply_header(
    opt: u32,
    rep: Rep,
    length: u32,
) -> [u8; OPTION_REPLY_HEADER_LEN] {
    let mut b = [0u8; OPTION_REPLY_HEADER_LEN];
    put64(&mut b, 0, REP_MAGIC);
    put32(&mut b, 8, opt);
    put32(&mut b, 12, rep.raw());
    put32(&mut b, 16, length);
    b
}

/// Decodes an option reply header (client side).
pub fn decode_option_reply_header(
    b: &[u8; OPTION_REPLY_HEADER_LEN],
) -> Result<OptionReplyHeader, OptionReplyError> {
    let magic = be64(b, 0);
    if magic != REP_MAGIC {
        return Err(OptionReplyError::BadMagic(magic));
    }
    let length = be32(b, 16);
    if length > MAX_OPTION_LENGTH {
        return Err(OptionReplyError::TooLong(length));
    }
    Ok(OptionReplyHeader {
        opt: be32(b, 8),
        rep: Rep::from_raw(be32(b, 12)),
        length,
    })
}

/// The payload of an `NBD_REP_INFO` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoReply {
    /// `NBD_INFO_EXPORT`: export size and transmission flags.
    Export {
        /// Export size in bytes.
        size: u64,
        /// Transmission flags.
        flags: TransmissionFlags,
    },
    /// `NBD_INFO_NAME`: the canonical export name.
    Name(WireString),
    /// `NBD_INFO_DESCRIPTION`: a description for humans.
    Description(WireString),
    /// `NBD_INFO_BLOCK_SIZE`: block size constraints.
    BlockSize {
        /// Minimum block size (alignment).
        minimum: u32,
        /// Preferred block size.
        preferred: u32,
        /// Maximum request size.
        maximum: u32,
    },
    /// An information type this decoder does not know, with its payload.
    Unknown {
        /// The raw information type.
        info: u16,
        /// The payload after the type.
        data: Vec<u8>,
    },
}

/// A decoded option reply (client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionReply {
    /// `NBD_REP_ACK`
    Ack,
    /// `NBD_REP_SERVER`: one export of a list.
    Server {
        /// Export name.
        name: WireString,
        /// The remaining bytes: a description, possibly empty.
        description: WireString,
    },
    /// `NBD_REP_INFO`
    Info(InfoReply),
    /// `NBD_REP_META_CONTEXT`
    MetaContext {
        /// Context id (0 in replies to `LIST_META_CONTEXT`).
        id: u32,
        /// Context name.
        name: WireString,
    },
    /// An error reply with its (possibly empty) message.
    Error {
        /// The error reply type.
        rep: Rep,
        /// The message.
        message: WireString,
    },
}

/// Appends an option reply with an arbitrary payload.
pub fn put_option_reply(
    out: &mut Vec<u8>,
    opt: u32,
    rep: Rep,
    payload: &[u8],
) -> Result<(), EncodeError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_OPTION_LENGTH)
        .ok_or(EncodeError::PayloadTooLong(payload.len()))?;
    out.extend_from_slice(&encode_option_reply_header(opt, rep, len));
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends `NBD_REP_ACK`.
pub fn put_rep_ack(out: &mut Vec<u8>, opt: u32) {
    out.extend_from_slice(&encode_option_reply_header(opt, Rep::Ack, 0));
}

/// Appends `NBD_REP_SERVER`: name length, name, then the description.
pub fn put_rep_server(
    out: &mut Vec<u8>,
    opt: u32,
    name: &[u8],
    description: &[u8],
) -> Result<(), EncodeError> {
    check_string("export name", name)?;
    check_string("export description", description)?;
    let len = 4 + name.len() + description.len();
    out.extend_from_slice(&encode_option_reply_header(opt, Rep::Server, len as u32));
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(description);
    Ok(())
}

/// Appends `NBD_REP_INFO` with one information item.
pub fn put_rep_info(out: &mut Vec<u8>, opt: u32, info: &InfoReply) -> Result<(), EncodeError> {
    let (typ, body): (u16, Vec<u8>) = match info {
        InfoReply::Export { size, flags } => {
            let mut b = size.to_be_bytes().to_vec();
            b.extend_from_slice(&flags.bits().to_be_bytes());
            (InfoType::Export.raw(), b)
        }
        InfoReply::Name(n) => {
            check_string("export name", n.as_bytes())?;
            (InfoType::Name.raw(), n.0.clone())
        }
        InfoReply::Description(d) => {
            check_string("export description", d.as_bytes())?;
            (InfoType::Description.raw(), d.0.clone())
        }
        InfoReply::BlockSize {
            minimum,
            preferred,
            maximum,
        } => {
            let mut b = Vec::with_capacity(12);
            for v in [minimum, preferred, maximum] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            (InfoType::BlockSize.raw(), b)
        }
        InfoReply::Unknown { info, data } => (*info, data.clone()),
    };
    let len = u32::try_from(2 + body.len())
        .ok()
        .filter(|&l| l <= MAX_OPTION_LENGTH)
        .ok_or(EncodeError::PayloadTooLong(body.len()))?;
    out.extend_from_slice(&encode_option_reply_header(opt, Rep::Info, len));
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Appends `NBD_REP_META_CONTEXT`: context id then name.
pub fn put_rep_meta_context(
    out: &mut Vec<u8>,
    opt: u32,
    id: u32,
    name: &[u8],
) -> Result<(), EncodeError> {
    check_string("meta context name", name)?;
    let len = 4 + name.len() as u32;
    out.extend_from_slice(&encode_option_reply_header(opt, Rep::MetaContext, len));
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(name);
    Ok(())
}

/// Appends an error reply (`rep` should be an `NBD_REP_ERR_*`) with a
/// message for humans (may be empty).
pub fn put_rep_error(
    out: &mut Vec<u8>,
    opt: u32,
    rep: Rep,
    message: &[u8],
) -> Result<(), EncodeError> {
    check_string("error message", message)?;
    out.extend_from_slice(&encode_option_reply_header(opt, rep, message.len() as u32));
    out.extend_from_slice(message);
    Ok(())
}

fn read_string(r: &mut Reader<'_>, rep: Rep) -> Result<WireString, OptionReplyError> {
    let len = r.u32().ok_or(OptionReplyError::BadLength {
        rep,
        len: r.remaining(),
    })? as usize;
    if len > MAX_STRING_SIZE {
        return Err(OptionReplyError::BadString { rep, len });
    }
    let s = r
        .bytes(len)
        .ok_or(OptionReplyError::BadString { rep, len })?;
    Ok(WireString(s.to_vec()))
}

/// Decodes an option reply payload of the type given in `header`.
pub fn decode_option_reply(
    header: &OptionReplyHeader,
    payload: &[u8],
) -> Result<OptionReply, OptionReplyError> {
    let rep = header.rep;
    let bad_len = || OptionReplyError::BadLength {
        rep,
        len: payload.len(),
    };
    if payload.len() != header.length as usize {
        return Err(bad_len());
    }
    let mut r = Reader::new(payload);
    match rep {
        Rep::Ack if payload.is_empty() => Ok(OptionReply::Ack),
        Rep::Ack => Err(bad_len()),
        Rep::Server => {
            let name = read_string(&mut r, rep)?;
            let description = WireString(r.rest().to_vec());
            if description.len() > MAX_STRING_SIZE {
                return Err(OptionReplyError::BadString {
                    rep,
                    len: description.len(),
                });
            }
            Ok(OptionReply::Server { name, description })
        }
        Rep::Info => {
            let info = r.u16().ok_or_else(bad_len)?;
            let body = r.rest();
            let item = match InfoType::from_raw(info) {
                InfoType::Export => {
                    if body.len() != 10 {
                        return Err(bad_len());
                    }
                    let mut b = Reader::new(body);
                    let size = b.u64().ok_or_else(bad_len)?;
                    let flags = TransmissionFlags(b.u16().ok_or_else(bad_len)?);
                    InfoReply::Export { size, flags }
                }
                InfoType::BlockSize => {
                    if body.len() != 12 {
                        return Err(bad_len());
                    }
                    let mut b = Reader::new(body);
                    let mut v = [0u32; 3];
                    for x in &mut v {
                        *x = b.u32().ok_or_else(bad_len)?;
                    }
                    InfoReply::BlockSize {
                        minimum: v[0],
                        preferred: v[1],
                        maximum: v[2],
                    }
                }
                InfoType::Name | InfoType::Description if body.len() > MAX_STRING_SIZE => {
                    return Err(OptionReplyError::BadString {
                        rep,
                        len: body.len(),
                    })
                }
                InfoType::Name => InfoReply::Name(WireString(body.to_vec())),
                InfoType::Description => InfoReply::Description(WireString(body.to_vec())),
                InfoType::Unknown(info) => InfoReply::Unknown {
                    info,
                    data: body.to_vec(),
                },
            };
            Ok(OptionReply::Info(item))
        }
        Rep::MetaContext => {
            let id = r.u32().ok_or_else(bad_len)?;
            let name = r.rest();
            if name.len() > MAX_STRING_SIZE {
                return Err(OptionReplyError::BadString {
                    rep,
                    len: name.len(),
                });
            }
            Ok(OptionReply::MetaContext {
                id,
                name: WireString(name.to_vec()),
            })
        }
        rep if rep.is_error() => Ok(OptionReply::Error {
            rep,
            message: WireString(payload.to_vec()),
        }),
        rep => Err(OptionReplyError::UnknownType(rep.raw())),
    }
}

// ---------------------------------------------------------------------------
// NBD_OPT_EXPORT_NAME reply

/// The reply to `NBD_OPT_EXPORT_NAME`: export size, transmission flags and,
/// unless `NO_ZEROES` was negotiated, 124 zero bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ExportNameReply {
    buf: [u8; EXPORT_NAME_REPLY_LEN],
    len: usize,
}

impl ExportNameReply {
    /// Builds the reply; `no_zeroes` drops the 124 zero bytes.
    pub fn new(size: u64, flags: TransmissionFlags, no_zeroes: bool) -> ExportNameReply {
        let mut buf = [0u8; EXPORT_NAME_REPLY_LEN];
        put64(&mut buf, 0, size);
        put16(&mut buf, 8, flags.bits());
        let len = if no_zeroes {
            EXPORT_NAME_REPLY_SHORT_LEN
        } else {
            EXPORT_NAME_REPLY_LEN
        };
        ExportNameReply { buf, len }
    }

    /// The bytes to send (10 or 134).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for ExportNameReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportNameReply")
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

/// Decodes the first 10 bytes of an `NBD_OPT_EXPORT_NAME` reply: export
/// size and transmission flags (client side; it then skips the zeroes).
pub fn decode_export_name_reply(b: &[u8; EXPORT_NAME_REPLY_SHORT_LEN]) -> (u64, TransmissionFlags) {
    (be64(b, 0), TransmissionFlags(be16(b, 8)))
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
