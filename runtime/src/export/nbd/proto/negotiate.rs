//! The handshake as a pure state machine that decides like QEMU 10.0's
//! server: it is fed the client's flags and options and returns the bytes
//! to send and what to do next. It does no I/O.
//!
//! ```text
//! server                                  Negotiation
//! send greeting()
//! read 4 bytes           ───────────────▶ client_flags()
//! loop:
//!   read 16 bytes        ───────────────▶ decode_option_header()
//!                        ───────────────▶ plan_option()   (fatal? how much to read)
//!   read keep, skip skip ───────────────▶ handle_option() → Outcome
//!   send outcome.reply; act on outcome.step
//! ```

use super::consts::*;
use super::handshake::{
    encode_greeting, put_rep_ack, put_rep_error, put_rep_info, put_rep_meta_context,
    put_rep_server, ExportNameReply, HandshakeError, InfoReply, OptionHeader,
};
use super::meta::{select, ContextSet, ExportContexts};
use super::options::{
    parse_export_name, parse_info, parse_meta_context, payload_plan, OptionError, PayloadPlan,
};
use super::request::ReplyMode;
use super::wire::WireString;

/// What the handshake needs to know about one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDesc {
    /// Export name.
    pub name: String,
    /// Description (sent in `NBD_REP_SERVER` and `NBD_INFO_DESCRIPTION`).
    pub description: Option<String>,
    /// Size in bytes (QEMU rounds the node size down to 512).
    pub size: u64,
    /// Transmission flags of the export, without the per-session
    /// `SEND_DF` and `BLOCK_STAT_PAYLOAD` (see [`ExportDesc::qemu_flags`]).
    pub flags: TransmissionFlags,
    /// Request alignment of the block node (1 if none).
    pub request_alignment: u32,
    /// Maximum transfer of the block node (`u32::MAX` if none).
    pub max_transfer: u32,
    /// Whether `qemu:allocation-depth` is exported.
    pub allocation_depth: bool,
    /// Names of exported dirty bitmaps.
    pub bitmaps: Vec<String>,
}

impl ExportDesc {
    /// The flags QEMU gives an export: `HAS_FLAGS | SEND_FLUSH | SEND_FUA |
    /// SEND_CACHE`, `CAN_MULTI_CONN` unless the server allows only one
    /// connection, and `READ_ONLY` or `SEND_TRIM | SEND_WRITE_ZEROES |
    /// SEND_FAST_ZERO`.
    pub fn qemu_flags(writable: bool, multi_conn: bool) -> TransmissionFlags {
        type F = TransmissionFlags;
        let base = F::HAS_FLAGS | F::SEND_FLUSH | F::SEND_FUA | F::SEND_CACHE;
        let base = base.with(F::CAN_MULTI_CONN, multi_conn);
        if writable {
            base | F::SEND_TRIM | F::SEND_WRITE_ZEROES | F::SEND_FAST_ZERO
        } else {
            base | F::READ_ONLY
        }
    }

    fn contexts(&self) -> ExportContexts<'_> {
        ExportContexts {
            allocation_depth: self.allocation_depth,
            bitmaps: &self.bitmaps,
        }
    }
}

/// The result of the handshake: what the transmission phase runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    /// Index of the export in the slice given to [`Negotiation::handle_option`].
    pub export: usize,
    /// Reply/header form.
    pub mode: ReplyMode,
    /// Transmission flags as sent to the client.
    pub flags: TransmissionFlags,
    /// Metadata contexts selected for this export (empty if none).
    pub contexts: ContextSet,
    /// The minimum block size the client agreed to (via `NBD_OPT_GO` with
    /// `NBD_INFO_BLOCK_SIZE`), or 0 if it did not.
    pub check_align: u32,
}

/// What to do after sending [`Outcome::reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the next option.
    Continue,
    /// Perform the TLS handshake, then call [`Negotiation::tls_established`].
    StartTls,
    /// The client aborted: close the connection.
    Abort,
    /// Enter the transmission phase.
    Transmission(Transmission),
    /// Close the connection (after sending the reply, if any).
    Close(HandshakeError),
}

/// The server's answer to one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes to send (option replies, or the `EXPORT_NAME` reply).
    pub reply: Vec<u8>,
    /// What to do next.
    pub step: Step,
    /// Trailing option bytes QEMU leaves unread after a meta-context
    /// option; it parses them as the start of the next option. To behave
    /// the same, feed these last bytes of the option data back in front of
    /// the input.
    pub unread_tail: usize,
}

impl Outcome {
    fn new(reply: Vec<u8>, step: Step) -> Outcome {
        Outcome {
            reply,
            step,
            unread_tail: 0,
        }
    }
}

impl HandshakeError {
    fn fatal(text: String) -> HandshakeError {
        HandshakeError::Fatal(text)
    }
}

/// Handshake state of one connection.
#[derive(Debug, Clone)]
pub struct Negotiation {
    tls_configured: bool,
    tls_active: bool,
    fixed: bool,
    no_zeroes: bool,
    mode: ReplyMode,
    /// Contexts chosen by the last `SET_META_CONTEXT`, and for which export.
    contexts: Option<(String, ContextSet)>,
}

/// QEMU shortens export names in error messages to 80 bytes plus "...".
fn sanitize_name(name: &[u8]) -> Vec<u8> {
    if name.len() < 80 {
        name.to_vec()
    } else {
        let mut v = name[..80].to_vec();
        v.extend_from_slice(b"...");
        v
    }
}

fn not_present(name: &[u8]) -> Vec<u8> {
    let mut m = b"export '".to_vec();
    m.extend_from_slice(&sanitize_name(name));
    m.extend_from_slice(b"' not present");
    m
}

impl Negotiation {
    /// A new connection; `tls_configured` if the server has TLS credentials
    /// (then every option but `STARTTLS` is refused until TLS runs).
    pub fn new(tls_configured: bool) -> Negotiation {
        Negotiation {
            tls_configured,
            tls_active: false,
            fixed: false,
            no_zeroes: false,
            mode: ReplyMode::Simple,
            contexts: None,
        }
    }

    /// The greeting QEMU sends: `FIXED_NEWSTYLE | NO_ZEROES`.
    pub fn greeting(&self) -> [u8; GREETING_LEN] {
        encode_greeting(Self::handshake_flags())
    }

    /// The handshake flags this server offers.
    pub fn handshake_flags() -> HandshakeFlags {
        HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES
    }

    /// Takes the client flags; unknown ones are fatal.
    pub fn client_flags(&mut self, b: &[u8; 4]) -> Result<ClientFlags, HandshakeError> {
        let flags = super::handshake::decode_client_flags(b, Self::handshake_flags())?;
        self.fixed = flags.contains(ClientFlags::FIXED_NEWSTYLE);
        self.no_zeroes = flags.contains(ClientFlags::NO_ZEROES);
        Ok(flags)
    }

    /// The reply mode negotiated so far.
    pub fn mode(&self) -> ReplyMode {
        self.mode
    }

    /// Whether the option must be refused fatally before its data is read
    /// (QEMU drops the connection without a reply), and otherwise how to
    /// read its data.
    pub fn plan_option(&self, h: &OptionHeader) -> Result<PayloadPlan, HandshakeError> {
        let raw = h.opt.raw();
        let before_tls = self.tls_configured && !self.tls_active;
        if before_tls && !self.fixed {
            return Err(HandshakeError::fatal(format!(
                "Unsupported option 0x{raw:x}"
            )));
        }
        if before_tls && h.opt == Opt::ExportName {
            return Err(HandshakeError::fatal(format!(
                "Option 0x{raw:x} not permitted before TLS"
            )));
        }
        if !before_tls && !self.fixed && h.opt != Opt::ExportName {
            return Err(HandshakeError::fatal(
                OptionError::Unsupported(h.opt).to_string(),
            ));
        }
        if h.opt == Opt::ExportName && h.length as usize > MAX_STRING_SIZE {
            return Err(HandshakeError::fatal("Bad length received".into()));
        }
        if before_tls && h.opt != Opt::StartTls {
            return Ok(PayloadPlan {
                keep: 0,
                skip: h.length,
            });
        }
        Ok(payload_plan(h.opt, h.length))
    }

    /// The TLS handshake after `STARTTLS` succeeded.
    pub fn tls_established(&mut self) {
        self.tls_active = true;
    }

    /// Answers one option. `data` is the kept part of the option data
    /// (see [`Negotiation::plan_option`]); `exports` are the exports
    /// visible to this connection.
    pub fn handle_option<E: AsRef<ExportDesc>>(
        &mut self,
        h: &OptionHeader,
        data: &[u8],
        exports: &[E],
    ) -> Outcome {
        let opt = h.opt;
        let raw = opt.raw();
        let mut out = Vec::new();
        let error = |out: &mut Vec<u8>, rep: Rep, msg: &[u8]| {
            // Messages are built from bounded names; an overlong one is cut.
            let msg = &msg[..msg.len().min(MAX_STRING_SIZE)];
            let _ = put_rep_error(out, raw, rep, msg);
        };
        if self.tls_configured && !self.tls_active {
            if opt == Opt::StartTls {
                if h.length != 0 {
                    let e = OptionError::UnexpectedLength(opt);
                    error(&mut out, e.reply_type(), e.to_string().as_bytes());
                    return Outcome::new(out, Step::Close(HandshakeError::fatal(e.to_string())));
                }
                put_rep_ack(&mut out, raw);
                return Outcome::new(out, Step::StartTls);
            }
            let msg = format!("Option 0x{raw:x} not permitted before TLS");
            error(&mut out, Rep::ErrTlsReqd, msg.as_bytes());
            let step = if opt == Opt::Abort {
                Step::Abort
            } else {
                Step::Continue
            };
            return Outcome::new(out, step);
        }
        let simple_option = |out: &mut Vec<u8>| {
            if h.length != 0 {
                let e = OptionError::UnexpectedLength(opt);
                error(out, e.reply_type(), e.to_string().as_bytes());
                return false;
            }
            true
        };
        match opt {
            Opt::List => {
                if simple_option(&mut out) {
                    for e in exports {
                        let e = e.as_ref();
                        let desc = e.description.as_deref().unwrap_or("");
                        let _ = put_rep_server(&mut out, raw, e.name.as_bytes(), desc.as_bytes());
                    }
                    put_rep_ack(&mut out, raw);
                }
            }
            Opt::Abort => {
                put_rep_ack(&mut out, raw);
                return Outcome::new(out, Step::Abort);
            }
            Opt::ExportName => {
                let name = parse_export_name(data);
                let Some(idx) = find(exports, name.as_bytes()) else {
                    return Outcome::new(
                        out,
                        Step::Close(HandshakeError::fatal("export not found".into())),
                    );
                };
                let exp = exports[idx].as_ref();
                let flags = self.flags_for(exp, false);
                let reply = ExportNameReply::new(exp.size, flags, self.no_zeroes);
                out.extend_from_slice(reply.as_bytes());
                let t = self.enter(idx, exp, flags, 0);
                return Outcome::new(out, Step::Transmission(t));
            }
            Opt::Info | Opt::Go => return self.info(h, data, exports),
            Opt::StartTls => {
                if simple_option(&mut out) {
                    if self.tls_configured {
                        error(&mut out, Rep::ErrInvalid, b"TLS already enabled");
                    } else {
                        error(&mut out, Rep::ErrPolicy, b"TLS not configured");
                    }
                }
            }
            Opt::StructuredReply => {
                if simple_option(&mut out) {
                    if self.mode >= ReplyMode::Extended {
                        error(
                            &mut out,
                            Rep::ErrExtHeaderReqd,
                            b"extended headers already negotiated",
                        );
                    } else if self.mode >= ReplyMode::Structured {
                        error(
                            &mut out,
                            Rep::ErrInvalid,
                            b"structured reply already negotiated",
                        );
                    } else {
                        put_rep_ack(&mut out, raw);
                        self.mode = ReplyMode::Structured;
                    }
                }
            }
            Opt::ExtendedHeaders => {
                if simple_option(&mut out) {
                    if self.mode >= ReplyMode::Extended {
                        error(
                            &mut out,
                            Rep::ErrInvalid,
                            b"extended headers already negotiated",
                        );
                    } else {
                        put_rep_ack(&mut out, raw);
                        self.mode = ReplyMode::Extended;
                    }
                }
            }
            Opt::ListMetaContext | Opt::SetMetaContext => {
                return self.meta(h, data, exports);
            }
            Opt::Unknown(_) => {
                let e = OptionError::Unsupported(opt);
                error(&mut out, e.reply_type(), e.to_string().as_bytes());
            }
        }
        Outcome::new(out, Step::Continue)
    }

    /// Transmission flags of `exp` for this session: plus `SEND_DF` with
    /// structured replies, plus `BLOCK_STAT_PAYLOAD` with extended headers
    /// once contexts were selected for `exp`, or always in answer to
    /// `NBD_OPT_INFO` (`info`), as QEMU does.
    fn flags_for(&self, exp: &ExportDesc, info: bool) -> TransmissionFlags {
        let has_contexts = info
            || self
                .contexts
                .as_ref()
                .is_some_and(|(name, s)| *name == exp.name && !s.is_empty());
        exp.flags
            .with(
                TransmissionFlags::SEND_DF,
                self.mode >= ReplyMode::Structured,
            )
            .with(
                TransmissionFlags::BLOCK_STAT_PAYLOAD,
                self.mode >= ReplyMode::Extended && has_contexts,
            )
    }

    fn enter(
        &mut self,
        idx: usize,
        exp: &ExportDesc,
        flags: TransmissionFlags,
        check_align: u32,
    ) -> Transmission {
        let contexts = match self.contexts.take() {
            Some((name, set)) if name == exp.name => set,
            _ => ContextSet::empty(&exp.contexts()),
        };
        Transmission {
            export: idx,
            mode: self.mode,
            flags,
            contexts,
            check_align,
        }
    }

    fn info<E: AsRef<ExportDesc>>(
        &mut self,
        h: &OptionHeader,
        data: &[u8],
        exports: &[E],
    ) -> Outcome {
        let opt = h.opt;
        let raw = opt.raw();
        let mut out = Vec::new();
        let req = match parse_info(opt, data, h.length) {
            Ok(r) => r,
            Err(e) => {
                let _ = put_rep_error(&mut out, raw, e.reply_type(), e.to_string().as_bytes());
                return Outcome::new(out, Step::Continue);
            }
        };
        let Some(idx) = find(exports, req.name.as_bytes()) else {
            let _ = put_rep_error(
                &mut out,
                raw,
                Rep::ErrUnknown,
                &not_present(req.name.as_bytes()),
            );
            return Outcome::new(out, Step::Continue);
        };
        let exp = exports[idx].as_ref();
        let blocksize = req.wants_block_size();
        if req.wants_name() {
            let _ = put_rep_info(&mut out, raw, &InfoReply::Name(req.name.clone()));
        }
        if let Some(d) = &exp.description {
            let _ = put_rep_info(
                &mut out,
                raw,
                &InfoReply::Description(WireString::from(d.as_str())),
            );
        }
        let (minimum, preferred, maximum) = block_sizes(exp, opt == Opt::Info || blocksize);
        let _ = put_rep_info(
            &mut out,
            raw,
            &InfoReply::BlockSize {
                minimum,
                preferred,
                maximum,
            },
        );
        let flags = self.flags_for(exp, opt == Opt::Info);
        let _ = put_rep_info(
            &mut out,
            raw,
            &InfoReply::Export {
                size: exp.size,
                flags,
            },
        );
        if opt == Opt::Info && !blocksize && exp.request_alignment > 1 {
            let _ = put_rep_error(
                &mut out,
                raw,
                Rep::ErrBlockSizeReqd,
                b"request NBD_INFO_BLOCK_SIZE to use this export",
            );
            return Outcome::new(out, Step::Continue);
        }
        put_rep_ack(&mut out, raw);
        if opt == Opt::Go {
            let align = if blocksize { minimum } else { 0 };
            let t = self.enter(idx, exp, flags, align);
            return Outcome::new(out, Step::Transmission(t));
        }
        Outcome::new(out, Step::Continue)
    }

    fn meta<E: AsRef<ExportDesc>>(
        &mut self,
        h: &OptionHeader,
        data: &[u8],
        exports: &[E],
    ) -> Outcome {
        let opt = h.opt;
        let raw = opt.raw();
        let list = opt == Opt::ListMetaContext;
        let mut out = Vec::new();
        let fail = |mut out: Vec<u8>, e: OptionError| {
            let _ = put_rep_error(&mut out, raw, e.reply_type(), e.to_string().as_bytes());
            Outcome::new(out, Step::Continue)
        };
        if !list && self.mode < ReplyMode::Structured {
            let msg = format!(
                "request option '{}' when structured reply is not negotiated",
                opt.name()
            );
            let _ = put_rep_error(&mut out, raw, Rep::ErrInvalid, msg.as_bytes());
            return Outcome::new(out, Step::Continue);
        }
        if !list {
            // SET replaces the selection even when it then fails.
            self.contexts = None;
        }
        let req = match parse_meta_context(opt, data) {
            Ok(r) => r,
            Err(e) => return fail(out, e),
        };
        let Some(idx) = find(exports, req.export.as_bytes()) else {
            let _ = put_rep_error(
                &mut out,
                raw,
                Rep::ErrUnknown,
                &not_present(req.export.as_bytes()),
            );
            return Outcome::new(out, Step::Continue);
        };
        let queries = match req.queries {
            Ok(q) => q,
            Err(e) => return fail(out, e),
        };
        let exp = exports[idx].as_ref();
        let ctx = exp.contexts();
        let set = select(
            &ctx,
            queries.queries.iter().map(|q| q.as_bytes()),
            queries.none_given,
            list,
        );
        for c in set.contexts(&ctx) {
            let id = if list { 0 } else { c.id };
            let _ = put_rep_meta_context(&mut out, raw, id, c.name.as_bytes());
        }
        put_rep_ack(&mut out, raw);
        if !list {
            self.contexts = Some((exp.name.clone(), set));
        }
        Outcome {
            reply: out,
            step: Step::Continue,
            unread_tail: data.len() - queries.consumed,
        }
    }
}

/// QEMU's block size info: minimum is the request alignment when the
/// client will honour it (INFO, or GO asking for block sizes), else 1;
/// preferred is at least 4096; maximum is the node's maximum transfer,
/// capped at 32 MiB.
pub fn block_sizes(exp: &ExportDesc, honour_alignment: bool) -> (u32, u32, u32) {
    let minimum = if honour_alignment {
        exp.request_alignment.max(1)
    } else {
        1
    };
    (
        minimum,
        minimum.max(4096),
        exp.max_transfer.min(MAX_BUFFER_SIZE),
    )
}

fn find<E: AsRef<ExportDesc>>(exports: &[E], name: &[u8]) -> Option<usize> {
    exports
        .iter()
        .position(|e| e.as_ref().name.as_bytes() == name)
}

impl AsRef<ExportDesc> for ExportDesc {
    fn as_ref(&self) -> &ExportDesc {
        self
    }
}

#[cfg(test)]
#[path = "negotiate_tests.rs"]
mod tests;
