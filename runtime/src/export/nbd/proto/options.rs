//! Option data: how much of it to read, and parsers for the options that
//! carry data (`EXPORT_NAME`, `INFO`/`GO`, `LIST_META_CONTEXT`,
//! `SET_META_CONTEXT`), plus encoders for the client side.
//!
//! The parsers check in the order QEMU's server reads the data, so the
//! first problem found is the one QEMU reports, with QEMU's text (see
//! [`OptionError`]).

use thiserror::Error;

use super::consts::*;
use super::wire::{Reader, WireString};

/// Largest `NBD_OPT_INFO`/`NBD_OPT_GO` data that can be valid: name length,
/// a 4096-byte name, request count and 65535 requests.
pub const MAX_INFO_PAYLOAD: u32 = 4 + MAX_STRING_SIZE as u32 + 2 + 2 * 0xffff;

/// A malformed or refused option that is answered with an error reply
/// (the session goes on). `Display` is QEMU's message text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionError {
    /// Data where none is allowed, or left over after a complete request.
    #[error("option '{}' has unexpected length", .0.name())]
    UnexpectedLength(Opt),
    /// A length field runs past the end of the option data.
    #[error("Inconsistent lengths in option {}", .0.name())]
    InconsistentLengths(Opt),
    /// A NUL byte inside a name or query.
    #[error("Unexpected embedded NUL in option {}", .0.name())]
    EmbeddedNul(Opt),
    /// An export name longer than 4096 bytes.
    #[error("Invalid name length: {0}")]
    InvalidNameLength(u32),
    /// An option the server does not implement.
    #[error("Unsupported option {} ({})", .0.raw(), .0.name())]
    Unsupported(Opt),
}

impl OptionError {
    /// The error reply type QEMU sends for this error.
    pub fn reply_type(&self) -> Rep {
        match self {
            OptionError::Unsupported(_) => Rep::ErrUnsup,
            _ => Rep::ErrInvalid,
        }
    }
}

/// How the caller reads an option's data before handing it to a parser:
/// read `keep` bytes into a buffer, then read and discard `skip` bytes.
/// `keep` is bounded per option so a hostile length costs no memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadPlan {
    /// Bytes to buffer and pass to the parser.
    pub keep: u32,
    /// Bytes to discard after those.
    pub skip: u32,
}

/// The read plan for an option with `length` bytes of data (already
/// checked against [`MAX_OPTION_LENGTH`] by the header decoder):
/// - `EXPORT_NAME`: the name, up to 4096 bytes (longer is fatal, see
///   [`super::negotiate`]);
/// - `INFO`/`GO`: up to [`MAX_INFO_PAYLOAD`] (the rest cannot change the
///   verdict, only make it "unexpected length");
/// - `LIST_META_CONTEXT`/`SET_META_CONTEXT`: everything (queries longer than
///   4096 bytes are skipped by the parser, but any number may follow);
/// - every other option: nothing is parsed, everything is skipped.
pub fn payload_plan(opt: Opt, length: u32) -> PayloadPlan {
    let keep = match opt {
        Opt::ExportName => length.min(MAX_STRING_SIZE as u32),
        Opt::Info | Opt::Go => length.min(MAX_INFO_PAYLOAD),
        Opt::ListMetaContext | Opt::SetMetaContext => length,
        _ => 0,
    };
    PayloadPlan {
        keep,
        skip: length - keep,
    }
}

/// Reads a `u32` length + string as QEMU's server does: a short length
/// field or string is "inconsistent", more than 4096 is "invalid name
/// length", a NUL inside is "embedded NUL".
fn read_name(r: &mut Reader<'_>, opt: Opt) -> Result<WireString, OptionError> {
    let len = r.u32().ok_or(OptionError::InconsistentLengths(opt))?;
    if len as usize > MAX_STRING_SIZE {
        return Err(OptionError::InvalidNameLength(len));
    }
    let s = r
        .bytes(len as usize)
        .ok_or(OptionError::InconsistentLengths(opt))?;
    if s.contains(&0) {
        return Err(OptionError::EmbeddedNul(opt));
    }
    Ok(WireString(s.to_vec()))
}

/// The export name of `NBD_OPT_EXPORT_NAME`. QEMU reads it as a C string,
/// so a NUL byte ends the name; we do the same.
pub fn parse_export_name(data: &[u8]) -> WireString {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    WireString(data[..end].to_vec())
}

/// A parsed `NBD_OPT_INFO` / `NBD_OPT_GO` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// The export name (empty: the default export).
    pub name: WireString,
    /// The information types requested, in order, duplicates kept.
    pub requests: Vec<InfoType>,
}

impl InfoRequest {
    /// Whether `NBD_INFO_NAME` was requested.
    pub fn wants_name(&self) -> bool {
        self.requests.contains(&InfoType::Name)
    }
    /// Whether `NBD_INFO_BLOCK_SIZE` was requested.
    pub fn wants_block_size(&self) -> bool {
        self.requests.contains(&InfoType::BlockSize)
    }
}

/// Parses `NBD_OPT_INFO`/`NBD_OPT_GO` data. `data` is the kept prefix of
/// the option (see [`payload_plan`]) and `total` the option's full length:
/// bytes beyond the requests make it "unexpected length".
pub fn parse_info(opt: Opt, data: &[u8], total: u32) -> Result<InfoRequest, OptionError> {
    let mut r = Reader::new(data);
    let name = read_name(&mut r, opt)?;
    let count = r.u16().ok_or(OptionError::InconsistentLengths(opt))?;
    let mut requests = Vec::with_capacity(usize::from(count).min(r.remaining() / 2));
    for _ in 0..count {
        let info = r.u16().ok_or(OptionError::InconsistentLengths(opt))?;
        requests.push(InfoType::from_raw(info));
    }
    if r.position() as u64 != u64::from(total) {
        return Err(OptionError::UnexpectedLength(opt));
    }
    Ok(InfoRequest { name, requests })
}

/// Encodes `NBD_OPT_INFO`/`NBD_OPT_GO` data (client side).
pub fn encode_info(name: &[u8], requests: &[InfoType]) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + name.len() + 2 * requests.len());
    v.extend_from_slice(&(name.len() as u32).to_be_bytes());
    v.extend_from_slice(name);
    v.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        v.extend_from_slice(&r.raw().to_be_bytes());
    }
    v
}

/// The queries of a meta-context option, or the error QEMU reports while
/// reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaQueries {
    /// Queries of at most 4096 bytes, in order (longer ones are skipped,
    /// as QEMU does; they could not match anything).
    pub queries: Vec<WireString>,
    /// Whether the request had zero queries (for `LIST_META_CONTEXT`: list
    /// everything).
    pub none_given: bool,
    /// Bytes of the option data QEMU consumed. QEMU does not read data left
    /// after the last query: those bytes are parsed as the start of the
    /// next option (which then usually fails with "Bad magic received").
    pub consumed: usize,
}

/// A parsed `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`. The
/// export name is checked first; query errors are only reported once the
/// export is known to exist, so they are kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest {
    /// The export the contexts are for.
    pub export: WireString,
    /// The queries, or the error found reading them.
    pub queries: Result<MetaQueries, OptionError>,
}

/// Parses meta-context option data (the whole data, see [`payload_plan`]).
pub fn parse_meta_context(opt: Opt, data: &[u8]) -> Result<MetaContextRequest, OptionError> {
    let mut r = Reader::new(data);
    let export = read_name(&mut r, opt)?;
    let queries = parse_queries(opt, &mut r);
    Ok(MetaContextRequest { export, queries })
}

fn parse_queries(opt: Opt, r: &mut Reader<'_>) -> Result<MetaQueries, OptionError> {
    let count = r.u32().ok_or(OptionError::InconsistentLengths(opt))?;
    let mut queries = Vec::new();
    for _ in 0..count {
        let len = r.u32().ok_or(OptionError::InconsistentLengths(opt))? as usize;
        let q = r.bytes(len).ok_or(OptionError::InconsistentLengths(opt))?;
        if len > MAX_STRING_SIZE {
            continue;
        }
        if q.contains(&0) {
            return Err(OptionError::EmbeddedNul(opt));
        }
        queries.push(WireString(q.to_vec()));
    }
    Ok(MetaQueries {
        queries,
        none_given: count == 0,
        consumed: r.position(),
    })
}

/// Encodes meta-context option data (client side).
pub fn encode_meta_context(export: &[u8], queries: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(export.len() as u32).to_be_bytes());
    v.extend_from_slice(export);
    v.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        v.extend_from_slice(&(q.len() as u32).to_be_bytes());
        v.extend_from_slice(q);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_bound_memory() {
        let max = MAX_OPTION_LENGTH;
        assert_eq!(payload_plan(Opt::List, 7), PayloadPlan { keep: 0, skip: 7 });
        assert_eq!(
            payload_plan(Opt::ExportName, max),
            PayloadPlan {
                keep: 4096,
                skip: max - 4096
            }
        );
        assert_eq!(payload_plan(Opt::Go, max).keep, MAX_INFO_PAYLOAD);
        assert_eq!(
            payload_plan(Opt::Info, 10),
            PayloadPlan { keep: 10, skip: 0 }
        );
        assert_eq!(payload_plan(Opt::SetMetaContext, max).keep, max);
        assert_eq!(payload_plan(Opt::Unknown(99), 3).skip, 3);
    }

    #[test]
    fn info_round_trip() {
        let reqs = [InfoType::Name, InfoType::BlockSize, InfoType::Unknown(77)];
        let data = encode_info(b"disk", &reqs);
        let got = parse_info(Opt::Go, &data, data.len() as u32).unwrap();
        assert_eq!(got.name, "disk");
        assert_eq!(got.requests, reqs);
        assert!(got.wants_name() && got.wants_block_size());
        let empty = encode_info(b"", &[]);
        let got = parse_info(Opt::Info, &empty, 6).unwrap();
        assert!(got.name.is_empty() && got.requests.is_empty());
        assert!(!got.wants_name() && !got.wants_block_size());
    }

    #[test]
    fn info_errors_in_qemu_order() {
        let e = |d: &[u8]| {
            parse_info(Opt::Info, d, d.len() as u32)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(e(b""), "Inconsistent lengths in option info");
        assert_eq!(e(b"\0\0\0\x0ax"), "Inconsistent lengths in option info");
        assert_eq!(e(b"\0\0\x10\x01"), "Invalid name length: 4097");
        assert_eq!(
            e(b"\0\0\0\x01\0\0\0"),
            "Unexpected embedded NUL in option info"
        );
        assert_eq!(e(b"\0\0\0\x01x\0"), "Inconsistent lengths in option info");
        assert_eq!(
            e(b"\0\0\0\x01x\0\x02\0\x01"),
            "Inconsistent lengths in option info"
        );
        assert_eq!(
            e(b"\0\0\0\x01x\0\0extra"),
            "option 'info' has unexpected length"
        );
        // A prefix that is complete but the option is longer: unexpected.
        let d = encode_info(b"x", &[]);
        assert_eq!(
            parse_info(Opt::Go, &d, 1000).unwrap_err(),
            OptionError::UnexpectedLength(Opt::Go)
        );
        assert_eq!(
            OptionError::UnexpectedLength(Opt::Go).reply_type(),
            Rep::ErrInvalid
        );
    }

    #[test]
    fn meta_round_trip_and_skips() {
        let long = vec![b'q'; 5000];
        let data = encode_meta_context(b"x", &[b"base:allocation", &long, b"qemu:"]);
        let got = parse_meta_context(Opt::ListMetaContext, &data).unwrap();
        assert_eq!(got.export, "x");
        let q = got.queries.unwrap();
        assert_eq!(
            q.queries,
            vec![WireString::from("base:allocation"), "qemu:".into()]
        );
        assert!(!q.none_given);
        assert_eq!(q.consumed, data.len());
        let none = encode_meta_context(b"x", &[]);
        let q = parse_meta_context(Opt::ListMetaContext, &none)
            .unwrap()
            .queries
            .unwrap();
        assert!(q.none_given && q.queries.is_empty());
    }

    #[test]
    fn meta_trailing_bytes_are_not_consumed() {
        let mut data = encode_meta_context(b"x", &[b"base:allocation"]);
        let n = data.len();
        data.extend_from_slice(b"zz");
        let q = parse_meta_context(Opt::SetMetaContext, &data)
            .unwrap()
            .queries
            .unwrap();
        assert_eq!(q.consumed, n);
    }

    #[test]
    fn meta_errors() {
        let opt = Opt::SetMetaContext;
        let e = |d: &[u8]| parse_meta_context(opt, d).unwrap_err().to_string();
        assert_eq!(
            e(b"\0\0"),
            "Inconsistent lengths in option set meta context"
        );
        assert_eq!(e(b"\0\0\x10\x01"), "Invalid name length: 4097");
        assert_eq!(
            e(b"\0\0\0\x01\0"),
            "Unexpected embedded NUL in option set meta context"
        );
        let q = |d: &[u8]| parse_meta_context(opt, d).unwrap().queries.unwrap_err();
        // Truncated before the count, query length, query, and short count.
        assert_eq!(q(b"\0\0\0\x01x"), OptionError::InconsistentLengths(opt));
        assert_eq!(
            q(b"\0\0\0\x01x\0\0\0\x01"),
            OptionError::InconsistentLengths(opt)
        );
        assert_eq!(
            q(b"\0\0\0\x01x\0\0\0\x01\0\0\0\x05ba"),
            OptionError::InconsistentLengths(opt)
        );
        assert_eq!(
            q(b"\0\0\0\x01x\0\0\0\x01\0\0\0\x02a\0"),
            OptionError::EmbeddedNul(opt)
        );
        // A skipped long query must still fit the data.
        let mut d = b"\0\0\0\x01x\0\0\0\x01\0\0\x13\x88".to_vec();
        d.extend_from_slice(&[b'q'; 100]);
        assert_eq!(q(&d), OptionError::InconsistentLengths(opt));
    }

    #[test]
    fn export_name_stops_at_nul() {
        assert_eq!(parse_export_name(b"abc"), "abc");
        assert_eq!(parse_export_name(b"x\0yz"), "x");
        assert!(parse_export_name(b"").is_empty());
    }

    #[test]
    fn unsupported_text() {
        assert_eq!(
            OptionError::Unsupported(Opt::Unknown(99)).to_string(),
            "Unsupported option 99 (<unknown>)"
        );
        assert_eq!(
            OptionError::Unsupported(Opt::Unknown(4)).reply_type(),
            Rep::ErrUnsup
        );
    }
}
