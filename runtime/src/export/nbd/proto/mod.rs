//! The NBD wire protocol as a pure codec: no I/O, no async, no allocation
//! on the per-request hot path.
//!
//! Layout:
//! - [`consts`]: magics, limits, option/reply/info/command codes, flag sets;
//! - [`handshake`]: greeting, client flags, option headers and replies, the
//!   `NBD_OPT_EXPORT_NAME` reply;
//! - [`options`]: option data (`INFO`/`GO`, meta-context queries), read
//!   plans that bound memory, QEMU's option error texts;
//! - [`meta`]: metadata contexts (`base:allocation`,
//!   `qemu:allocation-depth`, `qemu:dirty-bitmap:NAME`) and query matching;
//! - [`negotiate`]: the handshake state machine deciding like QEMU's server;
//! - [`request`]: request headers (compact and extended), the checks QEMU
//!   applies before running a command, BLOCK_STATUS payloads;
//! - [`reply`]: simple replies, structured and extended chunks;
//! - [`errno`]: wire error codes and the errno mapping.
//!
//! Reading and writing sockets is the server's job: decoders take
//! fixed-size arrays or payload slices whose length was validated first,
//! encoders fill stack buffers (for vectored writes next to untouched data
//! buffers) or append to a `Vec<u8>`.
//!
//! Behaviour follows QEMU 10.0's NBD server where the protocol leaves a
//! choice; `golden/` holds byte sequences captured from
//! `qemu-storage-daemon` and the script that captured them. Choices worth
//! knowing when writing the server on top:
//! - every refused request is answered `NBD_EINVAL` (also read-only and
//!   past-EOF writes), with QEMU's message in structured/extended sessions;
//!   a refusal that leaves a WRITE payload unread closes the connection;
//! - structured sessions answer successful non-READ commands with a simple
//!   reply, extended sessions with a `NONE` chunk carrying the offset;
//! - `LIST_META_CONTEXT` works without structured replies and, with no
//!   query, lists every context; `SET_META_CONTEXT` needs them;
//! - QEMU leaves bytes after the last meta-context query unread (see
//!   [`Outcome::unread_tail`]); `EXPORT_NAME` stops at a NUL byte;
//! - a BLOCK_STATUS payload in an extended session without contexts makes
//!   QEMU abort; we refuse it with "CMD_BLOCK_STATUS not negotiated".

pub mod consts;
pub mod errno;
pub mod handshake;
pub mod meta;
pub mod negotiate;
pub mod options;
pub mod reply;
pub mod request;
mod wire;

pub use consts::*;
pub use errno::NbdErrno;
pub use handshake::{
    decode_client_flags, decode_export_name_reply, decode_greeting, decode_option_header,
    decode_option_reply, decode_option_reply_header, encode_client_flags, encode_greeting,
    encode_option_header, encode_option_reply_header, put_option_reply, put_rep_ack, put_rep_error,
    put_rep_info, put_rep_meta_context, put_rep_server, EncodeError, ExportNameReply,
    HandshakeError, InfoReply, OptionHeader, OptionReply, OptionReplyError, OptionReplyHeader,
};
pub use meta::{Context, ContextSet, ExportContexts};
pub use negotiate::{ExportDesc, Negotiation, Outcome, Step, Transmission};
pub use options::{InfoRequest, MetaContextRequest, MetaQueries, OptionError, PayloadPlan};
pub use reply::{
    chunk_none, chunk_offset_data, chunk_offset_hole, decode_chunk_payload, decode_extended_chunk,
    decode_simple_reply, decode_structured_chunk, encode_chunk_header, encode_simple_reply,
    put_block_status, put_chunk_error, put_generic_reply, ChunkError, ChunkForm, ChunkHeader,
    ChunkPayload, Extent, HeaderBuf, ReplyError, SimpleReply,
};
pub use request::{
    complete_block_status, decode_extended_request, decode_request, encode_extended_request,
    encode_request, plan, Command, Next, Payload, Plan, Rejection, ReplyMode, RequestError,
    RequestHeader, Session,
};
pub use wire::WireString;

#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_golden;
#[cfg(test)]
mod tests_interop;
