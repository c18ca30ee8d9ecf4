//! Magic numbers, limits, codes and flag sets of the NBD protocol.
//!
//! Everything on the wire is big-endian. Codes that a peer may send with
//! values we do not know are enums with an `Unknown(raw)` variant, so a
//! decoder never fails just because a number is new; the raw value is kept
//! for error messages and replies that echo it.

/// `NBDMAGIC`, first 8 bytes of every server greeting.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: second 8 bytes of the newstyle greeting, and the first 8
/// bytes of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every fixed-newstyle option reply.
pub const REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a compact (28-byte) transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of an extended (32-byte) transmission request.
pub const EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk (compact header).
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Magic of an extended reply chunk (64-bit header).
pub const EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

/// Longest string (export name, description, query, message) the protocol
/// allows, in bytes.
pub const MAX_STRING_SIZE: usize = 4096;
/// Largest READ/WRITE data buffer QEMU accepts (32 MiB); also QEMU's limit
/// on the length of one option's data.
pub const MAX_BUFFER_SIZE: u32 = 32 * 1024 * 1024;
/// Largest option data length a server accepts (QEMU drops the connection
/// above this).
pub const MAX_OPTION_LENGTH: u32 = MAX_BUFFER_SIZE;

/// Length of the server greeting: magic, `IHAVEOPT`, handshake flags.
pub const GREETING_LEN: usize = 18;
/// Length of an option request header.
pub const OPTION_HEADER_LEN: usize = 16;
/// Length of an option reply header.
pub const OPTION_REPLY_HEADER_LEN: usize = 20;
/// Length of the reply to `NBD_OPT_EXPORT_NAME` with the 124 zero bytes.
pub const EXPORT_NAME_REPLY_LEN: usize = 134;
/// Length of the reply to `NBD_OPT_EXPORT_NAME` under `NO_ZEROES`.
pub const EXPORT_NAME_REPLY_SHORT_LEN: usize = 10;
/// Length of a compact request header.
pub const REQUEST_LEN: usize = 28;
/// Length of an extended request header.
pub const EXTENDED_REQUEST_LEN: usize = 32;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of a structured reply chunk header.
pub const STRUCTURED_REPLY_LEN: usize = 20;
/// Length of an extended reply chunk header.
pub const EXTENDED_REPLY_LEN: usize = 32;

/// Defines a flag-set newtype over an unsigned integer with named bits.
macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) {
            $( $(#[$fmeta:meta])* $flag:ident = $bit:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$fmeta])* pub const $flag: $name = $name(1 << $bit); )*
            /// Every bit this type knows.
            pub const ALL: $name = $name(0 $(| (1 << $bit))*);
            /// No bit set.
            pub const EMPTY: $name = $name(0);

            /// The raw bits.
            pub const fn bits(self) -> $ty {
                self.0
            }
            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
            /// Whether any bit of `other` is set in `self`.
            pub const fn intersects(self, other: $name) -> bool {
                self.0 & other.0 != 0
            }
            /// The bits of `self` that this type does not know.
            pub const fn unknown(self) -> $ty {
                self.0 & !Self::ALL.0
            }
            /// `self` with the bits of `other` set (`on`) or cleared.
            pub const fn with(self, other: $name, on: bool) -> $name {
                if on {
                    $name(self.0 | other.0)
                } else {
                    $name(self.0 & !other.0)
                }
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: $name) {
                self.0 |= rhs.0;
            }
        }
    };
}

flag_set! {
    /// Handshake flags, sent by the server in its greeting (16 bits).
    HandshakeFlags(u16) {
        /// The server speaks fixed newstyle.
        FIXED_NEWSTYLE = 0;
        /// The server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
        NO_ZEROES = 1;
    }
}

flag_set! {
    /// Client flags, the client's answer to the greeting (32 bits).
    ClientFlags(u32) {
        /// The client speaks fixed newstyle.
        FIXED_NEWSTYLE = 0;
        /// The client wants no zero padding after `NBD_OPT_EXPORT_NAME`.
        NO_ZEROES = 1;
    }
}

flag_set! {
    /// Transmission flags: what an export supports (16 bits), sent in the
    /// `NBD_OPT_EXPORT_NAME` reply and in `NBD_INFO_EXPORT`.
    TransmissionFlags(u16) {
        /// Always set.
        HAS_FLAGS = 0;
        /// The export is read-only.
        READ_ONLY = 1;
        /// `NBD_CMD_FLUSH` is supported.
        SEND_FLUSH = 2;
        /// `NBD_CMD_FLAG_FUA` is supported.
        SEND_FUA = 3;
        /// The export behaves like a rotational medium.
        ROTATIONAL = 4;
        /// `NBD_CMD_TRIM` is supported.
        SEND_TRIM = 5;
        /// `NBD_CMD_WRITE_ZEROES` (and `NO_HOLE`) are supported.
        SEND_WRITE_ZEROES = 6;
        /// `NBD_CMD_FLAG_DF` is supported (structured replies only).
        SEND_DF = 7;
        /// Several connections may be used at once.
        CAN_MULTI_CONN = 8;
        /// `NBD_CMD_RESIZE` (experimental extension) is supported.
        SEND_RESIZE = 9;
        /// `NBD_CMD_CACHE` is supported.
        SEND_CACHE = 10;
        /// `NBD_CMD_FLAG_FAST_ZERO` is supported.
        SEND_FAST_ZERO = 11;
        /// `NBD_CMD_BLOCK_STATUS` accepts a payload (extended headers).
        BLOCK_STAT_PAYLOAD = 12;
    }
}

flag_set! {
    /// Command flags of a transmission request (16 bits).
    CommandFlags(u16) {
        /// Force unit access: persist before replying.
        FUA = 0;
        /// `WRITE_ZEROES`: do not punch a hole.
        NO_HOLE = 1;
        /// `READ`: do not fragment the reply.
        DF = 2;
        /// `BLOCK_STATUS`: one extent per context.
        REQ_ONE = 3;
        /// `WRITE_ZEROES`: fail fast unless zeroing is fast.
        FAST_ZERO = 4;
        /// Extended headers: the length field counts a payload that follows.
        PAYLOAD_LEN = 5;
    }
}

flag_set! {
    /// Flags of a structured or extended reply chunk (16 bits).
    ReplyFlags(u16) {
        /// The last chunk of the reply.
        DONE = 0;
    }
}

/// Block status flags of `base:allocation`.
pub mod state {
    /// The extent is a hole (unallocated).
    pub const HOLE: u32 = 1 << 0;
    /// The extent reads as zeroes.
    pub const ZERO: u32 = 1 << 1;
    /// `qemu:dirty-bitmap:NAME`: the extent is dirty.
    pub const DIRTY: u32 = 1 << 0;
}

/// Defines a code enum: known values plus `Unknown(raw)`, with conversions
/// and QEMU's lookup names (used verbatim in QEMU's error texts).
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr, $text:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this type does not know.
            Unknown($ty),
        }

        impl $name {
            /// The code for a raw wire value.
            pub const fn from_raw(raw: $ty) -> $name {
                match raw {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
            /// The raw wire value.
            pub const fn raw(self) -> $ty {
                match self {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
            /// QEMU's name for the code (`"<unknown>"` when it has none).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                    $name::Unknown(_) => "<unknown>",
                }
            }
        }

        impl From<$ty> for $name {
            fn from(raw: $ty) -> $name {
                $name::from_raw(raw)
            }
        }

        impl From<$name> for $ty {
            fn from(code: $name) -> $ty {
                code.raw()
            }
        }
    };
}

code_enum! {
    /// Option codes (`NBD_OPT_*`). `NBD_OPT_PEEK_EXPORT` (4) is withdrawn
    /// and, as in QEMU, decodes as `Unknown(4)`.
    Opt(u32) {
        /// `NBD_OPT_EXPORT_NAME`: choose an export and enter transmission.
        ExportName = 1, "export name";
        /// `NBD_OPT_ABORT`: end the session.
        Abort = 2, "abort";
        /// `NBD_OPT_LIST`: list exports.
        List = 3, "list";
        /// `NBD_OPT_STARTTLS`: upgrade to TLS.
        StartTls = 5, "starttls";
        /// `NBD_OPT_INFO`: describe an export.
        Info = 6, "info";
        /// `NBD_OPT_GO`: describe an export and enter transmission.
        Go = 7, "go";
        /// `NBD_OPT_STRUCTURED_REPLY`: use structured replies.
        StructuredReply = 8, "structured reply";
        /// `NBD_OPT_LIST_META_CONTEXT`: list metadata contexts.
        ListMetaContext = 9, "list meta context";
        /// `NBD_OPT_SET_META_CONTEXT`: select metadata contexts.
        SetMetaContext = 10, "set meta context";
        /// `NBD_OPT_EXTENDED_HEADERS`: use 64-bit request/reply headers.
        ExtendedHeaders = 11, "extended headers";
    }
}

code_enum! {
    /// Option reply types (`NBD_REP_*`); errors have bit 31 set.
    Rep(u32) {
        /// `NBD_REP_ACK`
        Ack = 1, "ack";
        /// `NBD_REP_SERVER`
        Server = 2, "server";
        /// `NBD_REP_INFO`
        Info = 3, "info";
        /// `NBD_REP_META_CONTEXT`
        MetaContext = 4, "meta context";
        /// `NBD_REP_ERR_UNSUP`: unknown option.
        ErrUnsup = 0x8000_0001, "unsupported";
        /// `NBD_REP_ERR_POLICY`: forbidden by server policy.
        ErrPolicy = 0x8000_0002, "denied by policy";
        /// `NBD_REP_ERR_INVALID`: malformed option.
        ErrInvalid = 0x8000_0003, "invalid";
        /// `NBD_REP_ERR_PLATFORM`: not available on this platform.
        ErrPlatform = 0x8000_0004, "platform lacks support";
        /// `NBD_REP_ERR_TLS_REQD`: TLS required first.
        ErrTlsReqd = 0x8000_0005, "TLS required";
        /// `NBD_REP_ERR_UNKNOWN`: no such export.
        ErrUnknown = 0x8000_0006, "export unknown";
        /// `NBD_REP_ERR_SHUTDOWN`: the server is shutting down.
        ErrShutdown = 0x8000_0007, "server shutting down";
        /// `NBD_REP_ERR_BLOCK_SIZE_REQD`: request `NBD_INFO_BLOCK_SIZE`.
        ErrBlockSizeReqd = 0x8000_0008, "block size required";
        /// `NBD_REP_ERR_TOO_BIG`: request or reply too large.
        ErrTooBig = 0x8000_0009, "option payload too big";
        /// `NBD_REP_ERR_EXT_HEADER_REQD`: extended headers required.
        ErrExtHeaderReqd = 0x8000_000a, "extended headers required";
    }
}

impl Rep {
    /// Whether this is an error reply (bit 31 set).
    pub const fn is_error(self) -> bool {
        self.raw() & 0x8000_0000 != 0
    }
}

code_enum! {
    /// Information types of `NBD_REP_INFO` / requests in `NBD_OPT_INFO`/`GO`.
    InfoType(u16) {
        /// `NBD_INFO_EXPORT`: size and transmission flags.
        Export = 0, "export";
        /// `NBD_INFO_NAME`: canonical name.
        Name = 1, "name";
        /// `NBD_INFO_DESCRIPTION`: human-readable description.
        Description = 2, "description";
        /// `NBD_INFO_BLOCK_SIZE`: block size constraints.
        BlockSize = 3, "block size";
    }
}

code_enum! {
    /// Command types (`NBD_CMD_*`). QEMU's server does not implement
    /// `RESIZE`; its name table has no entry for it either.
    Cmd(u16) {
        /// `NBD_CMD_READ`
        Read = 0, "read";
        /// `NBD_CMD_WRITE`
        Write = 1, "write";
        /// `NBD_CMD_DISC`
        Disc = 2, "disconnect";
        /// `NBD_CMD_FLUSH`
        Flush = 3, "flush";
        /// `NBD_CMD_TRIM`
        Trim = 4, "trim";
        /// `NBD_CMD_CACHE`
        Cache = 5, "cache";
        /// `NBD_CMD_WRITE_ZEROES`
        WriteZeroes = 6, "write zeroes";
        /// `NBD_CMD_BLOCK_STATUS`
        BlockStatus = 7, "block status";
        /// `NBD_CMD_RESIZE` (experimental extension)
        Resize = 8, "<unknown>";
    }
}

code_enum! {
    /// Structured/extended reply chunk types (`NBD_REPLY_TYPE_*`); error
    /// types have bit 15 set.
    ReplyType(u16) {
        /// `NBD_REPLY_TYPE_NONE`: no payload, final chunk.
        None = 0, "none";
        /// `NBD_REPLY_TYPE_OFFSET_DATA`: data at an offset.
        OffsetData = 1, "data";
        /// `NBD_REPLY_TYPE_OFFSET_HOLE`: zeroes at an offset.
        OffsetHole = 2, "hole";
        /// `NBD_REPLY_TYPE_BLOCK_STATUS`: 32-bit extents.
        BlockStatus = 5, "block status (32-bit)";
        /// `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`: 64-bit extents.
        BlockStatusExt = 6, "block status (64-bit)";
        /// `NBD_REPLY_TYPE_ERROR`
        Error = 0x8001, "generic error";
        /// `NBD_REPLY_TYPE_ERROR_OFFSET`
        ErrorOffset = 0x8002, "error at offset";
    }
}

impl ReplyType {
    /// Whether this is an error chunk type (bit 15 set).
    pub const fn is_error(self) -> bool {
        self.raw() & 0x8000 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknowns_survive() {
        for raw in 0..=12u32 {
            assert_eq!(Opt::from_raw(raw).raw(), raw);
        }
        assert_eq!(Opt::from_raw(4), Opt::Unknown(4));
        assert_eq!(Opt::from_raw(4).name(), "<unknown>");
        assert_eq!(Opt::SetMetaContext.name(), "set meta context");
        assert_eq!(Rep::from_raw(0x8000_000a), Rep::ErrExtHeaderReqd);
        assert!(Rep::ErrUnsup.is_error() && !Rep::Ack.is_error());
        assert!(Rep::Unknown(0x8000_0077).is_error());
        assert_eq!(Cmd::from_raw(6).name(), "write zeroes");
        assert_eq!(Cmd::from_raw(9), Cmd::Unknown(9));
        assert!(ReplyType::ErrorOffset.is_error() && !ReplyType::BlockStatusExt.is_error());
        assert_eq!(InfoType::from(3u16), InfoType::BlockSize);
        assert_eq!(u16::from(InfoType::Unknown(77)), 77);
    }

    #[test]
    fn flag_values_match_the_protocol() {
        assert_eq!(TransmissionFlags::BLOCK_STAT_PAYLOAD.bits(), 0x1000);
        assert_eq!(TransmissionFlags::SEND_FAST_ZERO.bits(), 0x800);
        assert_eq!(TransmissionFlags::ALL.bits(), 0x1fff);
        assert_eq!(CommandFlags::PAYLOAD_LEN.bits(), 0x20);
        assert_eq!(CommandFlags::ALL.bits(), 0x3f);
        assert_eq!(ClientFlags(7).unknown(), 4);
        let f = HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES;
        assert_eq!(f.bits(), 3);
        assert!(f.contains(HandshakeFlags::NO_ZEROES));
        assert_eq!(f.with(HandshakeFlags::NO_ZEROES, false), HandshakeFlags(1));
        assert!(!HandshakeFlags::EMPTY.intersects(f));
    }
}
