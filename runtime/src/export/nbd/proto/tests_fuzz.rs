//! Property tests: no decoder panics on arbitrary bytes, and encoders and
//! decoders agree on arbitrary field values.

use proptest::prelude::*;

use super::meta::ContextSet;
use super::options::{parse_info, parse_meta_context};
use super::*;

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = v.len().min(N);
    a[..n].copy_from_slice(&v[..n]);
    a
}

fn any_mode() -> impl Strategy<Value = ReplyMode> {
    prop_oneof![
        Just(ReplyMode::Simple),
        Just(ReplyMode::Structured),
        Just(ReplyMode::Extended)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fixed_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = decode_greeting(&arr(&b));
        let _ = decode_client_flags(&arr(&b), HandshakeFlags::ALL);
        let _ = decode_option_header(&arr(&b));
        let _ = decode_option_reply_header(&arr(&b));
        let _ = decode_export_name_reply(&arr(&b));
        let _ = decode_request(&arr(&b));
        let _ = decode_extended_request(&arr(&b));
        let _ = decode_simple_reply(&arr(&b));
        let _ = decode_structured_chunk(&arr(&b));
        let _ = decode_extended_chunk(&arr(&b));
        let _ = reply::reply_kind(arr(&b));
    }

    #[test]
    fn payload_decoders_never_panic(
        b in proptest::collection::vec(any::<u8>(), 0..200),
        raw_opt in 0u32..14,
        total in any::<u32>(),
        rep in prop_oneof![1u32..5, 0x8000_0001u32..0x8000_000c],
        typ in prop_oneof![0u16..8, 0x8000u16..0x8004],
        flags in any::<u16>(),
        max_ids in 0usize..8,
    ) {
        let opt = Opt::from_raw(raw_opt);
        let _ = parse_info(opt, &b, total);
        let _ = parse_info(opt, &b, b.len() as u32);
        let _ = parse_meta_context(opt, &b);
        let _ = options::parse_export_name(&b);
        let h = OptionReplyHeader { opt: raw_opt, rep: Rep::from_raw(rep), length: b.len() as u32 };
        let _ = decode_option_reply(&h, &b);
        for form in [ChunkForm::Structured, ChunkForm::Extended] {
            let h = ChunkHeader {
                flags: ReplyFlags(flags),
                typ: ReplyType::from_raw(typ),
                cookie: 1,
                offset: 0,
                length: b.len() as u64,
            };
            let _ = decode_chunk_payload(form, &h, &b);
        }
        let _ = request::decode_block_status_payload(&b, max_ids);
    }

    #[test]
    fn handshake_never_panics(
        flags in any::<[u8; 4]>(),
        opts in proptest::collection::vec(
            (0u32..14, proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
        tls in any::<bool>(),
    ) {
        let exports = vec![ExportDesc {
            name: "x".into(),
            description: Some("d".into()),
            size: 1 << 20,
            flags: ExportDesc::qemu_flags(true, true),
            request_alignment: 512,
            max_transfer: u32::MAX,
            allocation_depth: true,
            bitmaps: vec!["b".into()],
        }];
        let mut n = Negotiation::new(tls);
        if n.client_flags(&flags).is_err() {
            return Ok(());
        }
        for (o, data) in opts {
            let h = OptionHeader { opt: Opt::from_raw(o), length: data.len() as u32 };
            let Ok(plan) = n.plan_option(&h) else { return Ok(()) };
            prop_assert_eq!(plan.keep as usize + plan.skip as usize, data.len());
            let out = n.handle_option(&h, &data[..plan.keep as usize], &exports);
            prop_assert!(out.unread_tail <= plan.keep as usize);
            match out.step {
                Step::Continue => {}
                Step::StartTls => n.tls_established(),
                _ => return Ok(()),
            }
        }
    }

    #[test]
    fn request_checks_never_panic(
        hdr in any::<[u8; 32]>(),
        mode in any_mode(),
        size in any::<u64>(),
        read_only in any::<bool>(),
        negotiated in any::<[bool; 4]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut h = match decode_extended_request(&hdr) {
            Ok(h) => h,
            Err(RequestError::BadMagic { header, .. }) => header,
            Err(e) => panic!("{e}"),
        };
        if mode != ReplyMode::Extended {
            h.length &= 0xffff_ffff;
        }
        let contexts = ContextSet {
            base_allocation: negotiated[0],
            allocation_depth: negotiated[1],
            bitmaps: negotiated[2..].to_vec(),
        };
        let s = Session { mode, export_size: size, read_only, contexts: &contexts };
        match plan(&h, &s) {
            Plan::Proceed { payload: Payload::BlockStatus(n), next: Next::DecodeBlockStatus } => {
                prop_assert!(n <= MAX_BUFFER_SIZE);
                let _ = complete_block_status(&h, &payload, &s);
            }
            Plan::Proceed { payload, next: Next::Done(v) } => {
                if let Payload::WriteData(n) | Payload::Discard(n) = payload {
                    prop_assert!(n <= MAX_BUFFER_SIZE);
                }
                if let Ok(Command::Read { offset, length, .. } | Command::Write { offset, length, .. }) = v {
                    prop_assert!(length <= MAX_BUFFER_SIZE);
                    prop_assert!(offset.checked_add(u64::from(length)).is_some_and(|e| e <= size));
                }
                if let Err(r) = v {
                    prop_assert_eq!(r.errno, NbdErrno::Inval);
                }
            }
            Plan::Proceed { .. } => prop_assert!(false, "inconsistent plan"),
            Plan::Disconnect => prop_assert_eq!(h.cmd, Cmd::Disc),
            Plan::RejectAndClose(r) => prop_assert!(r.message.contains("larger than max len")),
        }
    }

    #[test]
    fn request_headers_round_trip(
        flags in any::<u16>(), cmd in any::<u16>(), cookie in any::<u64>(),
        offset in any::<u64>(), length in any::<u64>(),
    ) {
        let h = RequestHeader {
            flags: CommandFlags(flags),
            cmd: Cmd::from_raw(cmd),
            cookie,
            offset,
            length,
        };
        prop_assert_eq!(decode_extended_request(&encode_extended_request(&h)).unwrap(), h);
        match encode_request(&h) {
            Ok(b) => prop_assert_eq!(decode_request(&b).unwrap(), h),
            Err(_) => prop_assert!(length > u64::from(u32::MAX)),
        }
    }

    #[test]
    fn chunk_headers_round_trip(
        flags in any::<u16>(), typ in any::<u16>(), cookie in any::<u64>(),
        offset in any::<u64>(), length in 0u64..=reply::MAX_CHUNK_PAYLOAD,
    ) {
        let h = ChunkHeader {
            flags: ReplyFlags(flags),
            typ: ReplyType::from_raw(typ),
            cookie,
            offset,
            length,
        };
        let e = encode_chunk_header(ChunkForm::Extended, &h).unwrap();
        prop_assert_eq!(decode_extended_chunk(&arr(e.as_bytes())).unwrap(), h);
        let s = encode_chunk_header(ChunkForm::Structured, &h).unwrap();
        let back = decode_structured_chunk(&arr(s.as_bytes())).unwrap();
        prop_assert_eq!(back, ChunkHeader { offset: 0, ..h });
    }
}
