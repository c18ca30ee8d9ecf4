//! Unit tests of the handshake state machine (the golden replay covers
//! QEMU's bytes; these cover the decisions one by one).

use super::*;
use crate::export::nbd::proto::handshake::{decode_option_reply, decode_option_reply_header};
use crate::export::nbd::proto::options::{encode_info, encode_meta_context};
use crate::export::nbd::proto::OptionReply;

fn exports() -> Vec<ExportDesc> {
    vec![
        ExportDesc {
            name: "x".into(),
            description: Some("desc".into()),
            size: 1 << 30,
            flags: ExportDesc::qemu_flags(true, true),
            request_alignment: 1,
            max_transfer: u32::MAX,
            allocation_depth: true,
            bitmaps: vec!["b0".into()],
        },
        ExportDesc {
            name: "ro".into(),
            description: None,
            size: 1 << 20,
            flags: ExportDesc::qemu_flags(false, false),
            request_alignment: 4096,
            max_transfer: 1 << 16,
            allocation_depth: false,
            bitmaps: vec![],
        },
    ]
}

fn replies(b: &[u8]) -> Vec<OptionReply> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let h = decode_option_reply_header(b[pos..pos + 20].try_into().unwrap()).unwrap();
        let end = pos + 20 + h.length as usize;
        out.push(decode_option_reply(&h, &b[pos + 20..end]).unwrap());
        pos = end;
    }
    out
}

fn err_text(r: &OptionReply) -> (Rep, String) {
    match r {
        OptionReply::Error { rep, message } => (*rep, message.to_string()),
        other => panic!("not an error: {other:?}"),
    }
}

struct T {
    n: Negotiation,
    e: Vec<ExportDesc>,
}

impl T {
    fn new(tls: bool, flags: u32) -> T {
        let mut n = Negotiation::new(tls);
        n.client_flags(&flags.to_be_bytes()).unwrap();
        T { n, e: exports() }
    }
    fn opt(&mut self, opt: Opt, data: &[u8]) -> Outcome {
        let h = OptionHeader {
            opt,
            length: data.len() as u32,
        };
        let p = self.n.plan_option(&h).unwrap();
        self.n.handle_option(&h, &data[..p.keep as usize], &self.e)
    }
}

#[test]
fn greeting_and_flags() {
    let mut n = Negotiation::new(false);
    assert_eq!(&n.greeting()[16..], &[0, 3]);
    assert_eq!(
        n.client_flags(&4u32.to_be_bytes()).unwrap_err().to_string(),
        "Unknown client flags 0x4 received"
    );
    assert_eq!(n.mode(), ReplyMode::Simple);
}

#[test]
fn structured_and_extended_rules() {
    let mut t = T::new(false, 3);
    let o = t.opt(Opt::StructuredReply, b"");
    assert_eq!(replies(&o.reply), vec![OptionReply::Ack]);
    assert_eq!(t.n.mode(), ReplyMode::Structured);
    let o = t.opt(Opt::StructuredReply, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (
            Rep::ErrInvalid,
            "structured reply already negotiated".into()
        )
    );
    let o = t.opt(Opt::ExtendedHeaders, b"q");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (
            Rep::ErrInvalid,
            "option 'extended headers' has unexpected length".into()
        )
    );
    t.opt(Opt::ExtendedHeaders, b"");
    assert_eq!(t.n.mode(), ReplyMode::Extended);
    let o = t.opt(Opt::StructuredReply, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (
            Rep::ErrExtHeaderReqd,
            "extended headers already negotiated".into()
        )
    );
    let o = t.opt(Opt::ExtendedHeaders, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (
            Rep::ErrInvalid,
            "extended headers already negotiated".into()
        )
    );
    assert_eq!(o.step, Step::Continue);
}

#[test]
fn list_abort_starttls_unknown() {
    let mut t = T::new(false, 1);
    let o = t.opt(Opt::List, b"");
    assert_eq!(
        replies(&o.reply),
        vec![
            OptionReply::Server {
                name: "x".into(),
                description: "desc".into()
            },
            OptionReply::Server {
                name: "ro".into(),
                description: "".into()
            },
            OptionReply::Ack
        ]
    );
    let o = t.opt(Opt::StartTls, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (Rep::ErrPolicy, "TLS not configured".into())
    );
    let o = t.opt(Opt::Unknown(4), b"zz");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (Rep::ErrUnsup, "Unsupported option 4 (<unknown>)".into())
    );
    let o = t.opt(Opt::Abort, b"junk");
    assert_eq!(replies(&o.reply), vec![OptionReply::Ack]);
    assert_eq!(o.step, Step::Abort);
}

#[test]
fn not_fixed_newstyle_allows_only_export_name() {
    let t = T::new(false, 0);
    let h = OptionHeader {
        opt: Opt::List,
        length: 0,
    };
    assert_eq!(
        t.n.plan_option(&h).unwrap_err().to_string(),
        "Unsupported option 3 (list)"
    );
    let mut t = T::new(false, 0);
    let o = t.opt(Opt::ExportName, b"x");
    // Without NO_ZEROES: the 134-byte reply, no SEND_DF.
    assert_eq!(o.reply.len(), EXPORT_NAME_REPLY_LEN);
    let Step::Transmission(tr) = o.step else {
        panic!()
    };
    assert_eq!(tr.flags, ExportDesc::qemu_flags(true, true));
    assert_eq!(tr.mode, ReplyMode::Simple);
}

#[test]
fn export_name_paths() {
    let mut t = T::new(false, 3);
    t.opt(Opt::StructuredReply, b"");
    let o = t.opt(Opt::ExportName, b"ro\0ignored");
    assert_eq!(o.reply.len(), EXPORT_NAME_REPLY_SHORT_LEN);
    let Step::Transmission(tr) = o.step else {
        panic!()
    };
    assert_eq!(tr.export, 1);
    assert!(tr
        .flags
        .contains(TransmissionFlags::SEND_DF | TransmissionFlags::READ_ONLY));
    let mut t = T::new(false, 3);
    let o = t.opt(Opt::ExportName, b"nosuch");
    assert!(o.reply.is_empty());
    assert_eq!(
        o.step,
        Step::Close(HandshakeError::Fatal("export not found".into()))
    );
    let h = OptionHeader {
        opt: Opt::ExportName,
        length: 4097,
    };
    assert_eq!(
        t.n.plan_option(&h).unwrap_err().to_string(),
        "Bad length received"
    );
}

#[test]
fn info_and_go() {
    let mut t = T::new(false, 3);
    let o = t.opt(
        Opt::Info,
        &encode_info(b"x", &[InfoType::Name, InfoType::BlockSize]),
    );
    let r = replies(&o.reply);
    assert_eq!(
        r,
        vec![
            OptionReply::Info(InfoReply::Name("x".into())),
            OptionReply::Info(InfoReply::Description("desc".into())),
            OptionReply::Info(InfoReply::BlockSize {
                minimum: 1,
                preferred: 4096,
                maximum: MAX_BUFFER_SIZE
            }),
            OptionReply::Info(InfoReply::Export {
                size: 1 << 30,
                flags: ExportDesc::qemu_flags(true, true)
            }),
            OptionReply::Ack,
        ]
    );
    assert_eq!(o.step, Step::Continue);
    // INFO on an aligned export without asking for block sizes.
    let o = t.opt(Opt::Info, &encode_info(b"ro", &[]));
    let r = replies(&o.reply);
    assert_eq!(
        r[0],
        OptionReply::Info(InfoReply::BlockSize {
            minimum: 4096,
            preferred: 4096,
            maximum: 1 << 16
        })
    );
    assert_eq!(
        err_text(&r[2]),
        (
            Rep::ErrBlockSizeReqd,
            "request NBD_INFO_BLOCK_SIZE to use this export".into()
        )
    );
    // Unknown export, with a long name shortened.
    let long = vec![b'n'; 100];
    let o = t.opt(Opt::Go, &encode_info(&long, &[]));
    let (rep, text) = err_text(&replies(&o.reply)[0]);
    assert_eq!(rep, Rep::ErrUnknown);
    assert_eq!(text, format!("export '{}...' not present", "n".repeat(80)));
    let o = t.opt(Opt::Go, &encode_info(b"short", &[]));
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "export 'short' not present"
    );
    // Malformed.
    let o = t.opt(Opt::Go, b"\0\0\0\x01x");
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "Inconsistent lengths in option go"
    );
    // GO with block sizes: minimum is the alignment, transmission starts.
    let o = t.opt(Opt::Go, &encode_info(b"ro", &[InfoType::BlockSize]));
    let Step::Transmission(tr) = o.step else {
        panic!()
    };
    assert_eq!((tr.export, tr.check_align), (1, 4096));
    assert!(tr.contexts.is_empty());
}

#[test]
fn go_without_block_size_uses_minimum_one() {
    let mut t = T::new(false, 3);
    let o = t.opt(Opt::Go, &encode_info(b"ro", &[]));
    assert!(
        replies(&o.reply).contains(&OptionReply::Info(InfoReply::BlockSize {
            minimum: 1,
            preferred: 4096,
            maximum: 1 << 16
        }))
    );
    let Step::Transmission(tr) = o.step else {
        panic!()
    };
    assert_eq!(tr.check_align, 0);
}

#[test]
fn meta_contexts() {
    let mut t = T::new(false, 3);
    let set = encode_meta_context(b"x", &[b"base:allocation"]);
    let o = t.opt(Opt::SetMetaContext, &set);
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "request option 'set meta context' when structured reply is not negotiated"
    );
    // LIST works without structured replies, and lists everything.
    let o = t.opt(Opt::ListMetaContext, &encode_meta_context(b"x", &[]));
    let names: Vec<_> = replies(&o.reply)
        .into_iter()
        .filter_map(|r| match r {
            OptionReply::MetaContext { id, name } => Some((id, name.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "base:allocation".to_string()),
            (0, "qemu:allocation-depth".to_string()),
            (0, "qemu:dirty-bitmap:b0".to_string())
        ]
    );
    t.opt(Opt::ExtendedHeaders, b"");
    let o = t.opt(
        Opt::SetMetaContext,
        &encode_meta_context(b"x", &[b"qemu:dirty-bitmap:b0", b"base:allocation"]),
    );
    assert_eq!(
        replies(&o.reply),
        vec![
            OptionReply::MetaContext {
                id: 0,
                name: "base:allocation".into()
            },
            OptionReply::MetaContext {
                id: 2,
                name: "qemu:dirty-bitmap:b0".into()
            },
            OptionReply::Ack
        ]
    );
    // Unknown export.
    let o = t.opt(Opt::ListMetaContext, &encode_meta_context(b"zz", &[]));
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (Rep::ErrUnknown, "export 'zz' not present".into())
    );
    // GO to the same export: contexts kept, BLOCK_STAT_PAYLOAD advertised.
    let o = t.opt(Opt::Go, &encode_info(b"x", &[]));
    let Step::Transmission(tr) = o.step else {
        panic!()
    };
    assert_eq!(tr.contexts.count(), 2);
    assert!(tr
        .flags
        .contains(TransmissionFlags::BLOCK_STAT_PAYLOAD | TransmissionFlags::SEND_DF));
    assert_eq!(tr.mode, ReplyMode::Extended);
}

#[test]
fn failed_set_clears_the_selection() {
    let mut t = T::new(false, 3);
    t.opt(Opt::StructuredReply, b"");
    t.opt(
        Opt::SetMetaContext,
        &encode_meta_context(b"x", &[b"base:allocation"]),
    );
    let o = t.opt(Opt::SetMetaContext, b"\0\0\0\x01x\0\0\0\x02");
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "Inconsistent lengths in option set meta context"
    );
    let Step::Transmission(tr) = t.opt(Opt::Go, &encode_info(b"x", &[])).step else {
        panic!()
    };
    assert!(tr.contexts.is_empty());
}

#[test]
fn contexts_for_another_export_are_dropped() {
    let mut t = T::new(false, 3);
    t.opt(Opt::StructuredReply, b"");
    t.opt(
        Opt::SetMetaContext,
        &encode_meta_context(b"x", &[b"base:allocation"]),
    );
    let Step::Transmission(tr) = t.opt(Opt::Go, &encode_info(b"ro", &[])).step else {
        panic!()
    };
    assert!(tr.contexts.is_empty());
}

#[test]
fn meta_trailing_bytes_are_reported() {
    let mut t = T::new(false, 3);
    t.opt(Opt::StructuredReply, b"");
    let mut d = encode_meta_context(b"x", &[b"base:allocation"]);
    d.extend_from_slice(b"zz");
    let o = t.opt(Opt::SetMetaContext, &d);
    assert_eq!(o.unread_tail, 2);
    assert_eq!(replies(&o.reply).len(), 2);
}

#[test]
fn tls_gating() {
    let mut t = T::new(true, 3);
    let o = t.opt(Opt::List, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (
            Rep::ErrTlsReqd,
            "Option 0x3 not permitted before TLS".into()
        )
    );
    let o = t.opt(Opt::Unknown(0x63), b"abc");
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "Option 0x63 not permitted before TLS"
    );
    let h = OptionHeader {
        opt: Opt::Go,
        length: 100,
    };
    assert_eq!(
        t.n.plan_option(&h).unwrap(),
        PayloadPlan { keep: 0, skip: 100 }
    );
    let h = OptionHeader {
        opt: Opt::ExportName,
        length: 1,
    };
    assert_eq!(
        t.n.plan_option(&h).unwrap_err().to_string(),
        "Option 0x1 not permitted before TLS"
    );
    let o = t.opt(Opt::StartTls, b"x");
    assert!(matches!(o.step, Step::Close(_)));
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "option 'starttls' has unexpected length"
    );
    let o = t.opt(Opt::StartTls, b"");
    assert_eq!(
        (replies(&o.reply), o.step),
        (vec![OptionReply::Ack], Step::StartTls)
    );
    t.n.tls_established();
    let o = t.opt(Opt::StartTls, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]),
        (Rep::ErrInvalid, "TLS already enabled".into())
    );
    let o = t.opt(Opt::List, b"");
    assert_eq!(replies(&o.reply).len(), 3);
    let o = t.opt(Opt::Abort, b"");
    assert_eq!(o.step, Step::Abort);

    let mut t = T::new(true, 3);
    let o = t.opt(Opt::Abort, b"");
    assert_eq!(
        err_text(&replies(&o.reply)[0]).1,
        "Option 0x2 not permitted before TLS"
    );
    assert_eq!(o.step, Step::Abort);
    let t = T::new(true, 0);
    let h = OptionHeader {
        opt: Opt::StartTls,
        length: 0,
    };
    assert_eq!(
        t.n.plan_option(&h).unwrap_err().to_string(),
        "Unsupported option 0x5"
    );
}

#[test]
fn block_size_helper() {
    let e = exports();
    assert_eq!(block_sizes(&e[0], true), (1, 4096, MAX_BUFFER_SIZE));
    assert_eq!(block_sizes(&e[1], true), (4096, 4096, 1 << 16));
    assert_eq!(block_sizes(&e[1], false), (1, 4096, 1 << 16));
    let mut big = e[1].clone();
    big.request_alignment = 65536;
    assert_eq!(block_sizes(&big, true), (65536, 65536, 1 << 16));
}

/// The export flags of the first `NBD_REP_INFO`/`NBD_INFO_EXPORT` reply.
fn info_export_flags(out: &Outcome) -> TransmissionFlags {
    replies(&out.reply)
        .into_iter()
        .find_map(|r| match r {
            OptionReply::Info(InfoReply::Export { flags, .. }) => Some(flags),
            _ => None,
        })
        .expect("NBD_INFO_EXPORT")
}

#[test]
fn block_stat_payload_flag_follows_qemu() {
    // Extended headers: INFO always advertises payloads; GO only with
    // contexts negotiated for the same export.
    let mut t = T::new(false, 3);
    t.opt(Opt::ExtendedHeaders, &[]);
    let info = t.opt(Opt::Info, &encode_info(b"x", &[]));
    assert!(info_export_flags(&info).contains(TransmissionFlags::BLOCK_STAT_PAYLOAD));
    let out = t.opt(
        Opt::SetMetaContext,
        &encode_meta_context(b"x", &[b"base:allocation"]),
    );
    assert_eq!(out.step, Step::Continue);
    let go = t.opt(Opt::Go, &encode_info(b"ro", &[]));
    assert!(!info_export_flags(&go).contains(TransmissionFlags::BLOCK_STAT_PAYLOAD));
    // Structured replies only: never.
    let mut t = T::new(false, 3);
    t.opt(Opt::StructuredReply, &[]);
    let info = t.opt(Opt::Info, &encode_info(b"x", &[]));
    assert!(!info_export_flags(&info).contains(TransmissionFlags::BLOCK_STAT_PAYLOAD));
}
