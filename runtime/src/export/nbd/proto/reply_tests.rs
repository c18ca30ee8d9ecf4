//! Unit tests of reply encoding and decoding.

use super::*;

fn header(form: ChunkForm, b: &[u8]) -> ChunkHeader {
    match form {
        ChunkForm::Structured => decode_structured_chunk(b[..20].try_into().unwrap()).unwrap(),
        ChunkForm::Extended => decode_extended_chunk(b[..32].try_into().unwrap()).unwrap(),
    }
}

fn hlen(form: ChunkForm) -> usize {
    match form {
        ChunkForm::Structured => STRUCTURED_REPLY_LEN,
        ChunkForm::Extended => EXTENDED_REPLY_LEN,
    }
}

const FORMS: [ChunkForm; 2] = [ChunkForm::Structured, ChunkForm::Extended];

#[test]
fn simple_reply() {
    let b = encode_simple_reply(Some(NbdErrno::Inval), 9);
    assert_eq!(b, *b"\x67\x44\x66\x98\0\0\0\x16\0\0\0\0\0\0\0\x09");
    assert_eq!(
        decode_simple_reply(&b).unwrap(),
        SimpleReply {
            error: Some(NbdErrno::Inval),
            cookie: 9
        }
    );
    assert_eq!(
        decode_simple_reply(&encode_simple_reply(None, 1))
            .unwrap()
            .error,
        None
    );
    let mut bad = b;
    bad[0] = 0;
    assert_eq!(
        decode_simple_reply(&bad).unwrap_err(),
        ReplyError::UnexpectedMagic(0x0044_6698)
    );
}

#[test]
fn reply_kinds() {
    assert_eq!(
        reply_kind(SIMPLE_REPLY_MAGIC.to_be_bytes()).unwrap(),
        (ChunkKind::Simple, 16)
    );
    assert_eq!(
        reply_kind(STRUCTURED_REPLY_MAGIC.to_be_bytes()).unwrap(),
        (ChunkKind::Structured, 20)
    );
    assert_eq!(
        reply_kind(EXTENDED_REPLY_MAGIC.to_be_bytes()).unwrap(),
        (ChunkKind::Extended, 32)
    );
    assert_eq!(reply_kind([0; 4]).unwrap_err(), ReplyError::BadMagic(0));
}

#[test]
fn none_and_data_chunks() {
    for form in FORMS {
        let n = chunk_none(form, 5, 4096);
        let h = header(form, n.as_bytes());
        assert_eq!(n.as_bytes().len(), hlen(form));
        assert_eq!((h.typ, h.length, h.cookie), (ReplyType::None, 0, 5));
        assert_eq!(h.offset, if form == ChunkForm::Extended { 4096 } else { 0 });
        assert_eq!(
            decode_chunk_payload(form, &h, &[]).unwrap(),
            ChunkPayload::None
        );

        let d = chunk_offset_data(form, true, 5, 4096, 4100, 3).unwrap();
        assert_eq!(d.as_bytes().len(), hlen(form) + 8);
        let h = header(form, d.as_bytes());
        assert_eq!((h.typ, h.length), (ReplyType::OffsetData, 11));
        assert!(h.flags.contains(ReplyFlags::DONE));
        let mut payload = d.as_bytes()[hlen(form)..].to_vec();
        payload.extend_from_slice(b"abc");
        assert_eq!(
            decode_chunk_payload(form, &h, &payload).unwrap(),
            ChunkPayload::OffsetData {
                offset: 4100,
                data: b"abc"
            }
        );

        let hole = chunk_offset_hole(form, false, 5, 0, 512, 1024);
        let h = header(form, hole.as_bytes());
        assert!(!h.flags.contains(ReplyFlags::DONE));
        assert_eq!(
            decode_chunk_payload(form, &h, &hole.as_bytes()[hlen(form)..]).unwrap(),
            ChunkPayload::OffsetHole {
                offset: 512,
                length: 1024
            }
        );
    }
    // A structured chunk cannot announce more than 4 GiB.
    assert!(chunk_offset_data(ChunkForm::Structured, true, 1, 0, 0, u64::from(u32::MAX)).is_err());
    assert!(chunk_offset_data(ChunkForm::Extended, true, 1, 0, 0, u64::from(u32::MAX)).is_ok());
    assert!(format!("{:?}", chunk_none(ChunkForm::Structured, 1, 0)).starts_with("HeaderBuf"));
}

#[test]
fn error_chunks() {
    for form in FORMS {
        for off in [None, Some(77u64)] {
            let mut v = Vec::new();
            let e = ChunkError {
                errno: NbdErrno::Io,
                message: b"boom",
                offset: off,
            };
            put_chunk_error(&mut v, form, true, 3, 0, &e).unwrap();
            let h = header(form, &v);
            let want = if off.is_some() {
                ReplyType::ErrorOffset
            } else {
                ReplyType::Error
            };
            assert_eq!(h.typ, want);
            assert_eq!(
                decode_chunk_payload(form, &h, &v[hlen(form)..]).unwrap(),
                ChunkPayload::Error {
                    errno: NbdErrno::Io,
                    message: b"boom",
                    offset: off
                }
            );
        }
    }
    let mut v = Vec::new();
    assert!(put_chunk_error(
        &mut v,
        ChunkForm::Structured,
        true,
        1,
        0,
        &ChunkError {
            errno: NbdErrno::Io,
            message: &[b'x'; 4097],
            offset: None
        }
    )
    .is_err());
}

#[test]
fn block_status_chunks() {
    let ext = [
        Extent {
            length: 4096,
            flags: 3,
        },
        Extent {
            length: 1 << 20,
            flags: 0,
        },
    ];
    for form in FORMS {
        let mut v = Vec::new();
        put_block_status(&mut v, form, true, 8, 0, 2, &ext).unwrap();
        let h = header(form, &v);
        let want = match form {
            ChunkForm::Structured => (ReplyType::BlockStatus, 4 + 16),
            ChunkForm::Extended => (ReplyType::BlockStatusExt, 8 + 32),
        };
        assert_eq!((h.typ, h.length), want);
        assert_eq!(
            decode_chunk_payload(form, &h, &v[hlen(form)..]).unwrap(),
            ChunkPayload::BlockStatus {
                context_id: 2,
                extents: ext.to_vec()
            }
        );
    }
    let big = [Extent {
        length: 1 << 32,
        flags: 0,
    }];
    let mut v = Vec::new();
    assert!(put_block_status(&mut v, ChunkForm::Structured, true, 1, 0, 0, &big).is_err());
    assert!(put_block_status(&mut v, ChunkForm::Extended, true, 1, 0, 0, &big).is_ok());
}

#[test]
fn generic_replies_follow_qemu() {
    let r = Rejection {
        errno: NbdErrno::Inval,
        message: "nope".into(),
    };
    let mut v = Vec::new();
    put_generic_reply(&mut v, ReplyMode::Simple, 4, 0, Err(&r)).unwrap();
    assert_eq!(v, encode_simple_reply(Some(NbdErrno::Inval), 4));
    let mut v = Vec::new();
    put_generic_reply(&mut v, ReplyMode::Structured, 4, 0, Ok(())).unwrap();
    assert_eq!(v, encode_simple_reply(None, 4));
    let mut v = Vec::new();
    put_generic_reply(&mut v, ReplyMode::Structured, 4, 0, Err(&r)).unwrap();
    assert_eq!(header(ChunkForm::Structured, &v).typ, ReplyType::Error);
    let mut v = Vec::new();
    put_generic_reply(&mut v, ReplyMode::Extended, 4, 9, Ok(())).unwrap();
    assert_eq!(v, chunk_none(ChunkForm::Extended, 4, 9).as_bytes());
    assert_eq!(ReplyMode::Simple.chunk_form(), None);
}

#[test]
fn malformed_chunks() {
    let h = |typ, len, flags| ChunkHeader {
        flags: ReplyFlags(flags),
        typ,
        cookie: 1,
        offset: 0,
        length: len,
    };
    let s = ChunkForm::Structured;
    let e = ChunkForm::Extended;
    let err = |form, typ, p: &[u8], flags| {
        decode_chunk_payload(form, &h(typ, p.len() as u64, flags), p).unwrap_err()
    };
    assert!(matches!(
        err(s, ReplyType::None, b"", 0),
        ReplyError::BadField { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::None, b"x", 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::OffsetData, &[0; 8], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::OffsetHole, &[0; 12], 1),
        ReplyError::BadField { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::OffsetHole, &[0; 11], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::BlockStatus, &[0; 8], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::BlockStatus, &[0; 13], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(e, ReplyType::BlockStatus, &[0; 12], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::BlockStatusExt, &[0; 24], 1),
        ReplyError::BadLength { .. }
    ));
    let mut bse = vec![0u8; 24];
    bse[7] = 2; // count 2, but room for 1
    assert!(matches!(
        err(e, ReplyType::BlockStatusExt, &bse, 1),
        ReplyError::BadField { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::Error, &[0; 6], 1),
        ReplyError::BadField { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::Error, &[0, 0, 0, 5, 0, 9, b'a'], 1),
        ReplyError::BadField { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::Error, &[0, 0, 0, 5, 0, 0, b'a'], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::ErrorOffset, &[0, 0, 0, 5, 0, 0, 1], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::Error, &[0; 5], 1),
        ReplyError::BadLength { .. }
    ));
    assert!(matches!(
        err(s, ReplyType::Unknown(9), &[], 1),
        ReplyError::BadLength { .. }
    ));
    // Header length and payload disagree.
    assert!(decode_chunk_payload(s, &h(ReplyType::None, 4, 1), b"").is_err());
    // An unknown error type is still an error with its message.
    let p = [0, 0, 0, 5, 0, 1, b'm', 0xaa];
    assert_eq!(
        decode_chunk_payload(s, &h(ReplyType::Unknown(0x8009), 8, 1), &p).unwrap(),
        ChunkPayload::Error {
            errno: NbdErrno::Io,
            message: b"m",
            offset: None
        }
    );
    // Header decoding errors.
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&EXTENDED_REPLY_MAGIC.to_be_bytes());
    b[24..].copy_from_slice(&(MAX_CHUNK_PAYLOAD + 1).to_be_bytes());
    assert!(matches!(
        decode_extended_chunk(&b),
        Err(ReplyError::TooLong(_))
    ));
    assert!(matches!(
        decode_structured_chunk(&[0; 20]),
        Err(ReplyError::UnexpectedMagic(0))
    ));
    assert!(matches!(
        decode_extended_chunk(&[0; 32]),
        Err(ReplyError::UnexpectedMagic(0))
    ));
}
