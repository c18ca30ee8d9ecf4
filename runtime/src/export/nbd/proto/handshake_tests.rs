//! Unit tests of the handshake framing.

use super::*;

#[test]
fn greeting_bytes_and_round_trip() {
    let g = encode_greeting(HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES);
    assert_eq!(&g[..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(&g[16..], &[0, 3]);
    assert_eq!(decode_greeting(&g).unwrap().bits(), 3);
    // Unknown handshake flags are kept for the client to ignore.
    let mut g2 = g;
    g2[16] = 0x80;
    assert_eq!(decode_greeting(&g2).unwrap().unknown(), 0x8000);
}

#[test]
fn greeting_errors() {
    let mut g = encode_greeting(HandshakeFlags::EMPTY);
    g[0] = b'X';
    assert!(matches!(
        decode_greeting(&g),
        Err(HandshakeError::BadGreetingMagic(_))
    ));
    let mut g = encode_greeting(HandshakeFlags::EMPTY);
    g[8..16].copy_from_slice(&0x0000_4202_8186_1253_u64.to_be_bytes());
    let e = decode_greeting(&g).unwrap_err();
    assert_eq!(e, HandshakeError::NotNewstyle(0x0000_4202_8186_1253));
    assert!(e.to_string().contains("not newstyle"));
}

#[test]
fn client_flags() {
    let offered = HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES;
    for f in 0..4u32 {
        let got = decode_client_flags(&encode_client_flags(ClientFlags(f)), offered).unwrap();
        assert_eq!(got.bits(), f);
    }
    let e = decode_client_flags(&5u32.to_be_bytes(), offered).unwrap_err();
    assert_eq!(e.to_string(), "Unknown client flags 0x4 received");
    // NO_ZEROES is refused when the server did not offer it.
    let e = decode_client_flags(&3u32.to_be_bytes(), HandshakeFlags::FIXED_NEWSTYLE).unwrap_err();
    assert_eq!(e, HandshakeError::UnknownClientFlags(2));
}

#[test]
fn option_headers() {
    let b = encode_option_header(Opt::Go, 7);
    assert_eq!(
        decode_option_header(&b).unwrap(),
        OptionHeader {
            opt: Opt::Go,
            length: 7
        }
    );
    let max = encode_option_header(Opt::Unknown(99), MAX_OPTION_LENGTH);
    assert_eq!(decode_option_header(&max).unwrap().opt, Opt::Unknown(99));
    let long = encode_option_header(Opt::List, MAX_OPTION_LENGTH + 1);
    let e = decode_option_header(&long).unwrap_err();
    assert_eq!(
        e.to_string(),
        "len (33554433) is larger than max len (33554432)"
    );
    let mut bad = b;
    bad[7] ^= 1;
    assert_eq!(
        decode_option_header(&bad).unwrap_err().to_string(),
        "Bad magic received"
    );
}

fn split(v: &[u8]) -> (OptionReplyHeader, &[u8]) {
    let h = decode_option_reply_header(v[..20].try_into().unwrap()).unwrap();
    assert_eq!(h.length as usize, v.len() - 20);
    (h, &v[20..])
}

#[test]
fn option_replies_round_trip() {
    let mut v = Vec::new();
    put_rep_ack(&mut v, 3);
    let (h, p) = split(&v);
    assert_eq!((h.opt, h.rep), (3, Rep::Ack));
    assert_eq!(decode_option_reply(&h, p).unwrap(), OptionReply::Ack);

    let mut v = Vec::new();
    put_rep_server(&mut v, 3, b"x", b"desc").unwrap();
    let (h, p) = split(&v);
    assert_eq!(
        decode_option_reply(&h, p).unwrap(),
        OptionReply::Server {
            name: "x".into(),
            description: "desc".into()
        }
    );

    let infos = [
        InfoReply::Export {
            size: 1 << 40,
            flags: TransmissionFlags(0x1ded),
        },
        InfoReply::Name("n".into()),
        InfoReply::Description("".into()),
        InfoReply::BlockSize {
            minimum: 1,
            preferred: 4096,
            maximum: MAX_BUFFER_SIZE,
        },
        InfoReply::Unknown {
            info: 9,
            data: vec![1, 2],
        },
    ];
    for i in infos {
        let mut v = Vec::new();
        put_rep_info(&mut v, 7, &i).unwrap();
        let (h, p) = split(&v);
        assert_eq!(decode_option_reply(&h, p).unwrap(), OptionReply::Info(i));
    }

    let mut v = Vec::new();
    put_rep_meta_context(&mut v, 10, 2, b"qemu:dirty-bitmap:b0").unwrap();
    let (h, p) = split(&v);
    assert_eq!(
        decode_option_reply(&h, p).unwrap(),
        OptionReply::MetaContext {
            id: 2,
            name: "qemu:dirty-bitmap:b0".into()
        }
    );

    for rep in [
        Rep::ErrUnsup,
        Rep::ErrPolicy,
        Rep::ErrInvalid,
        Rep::ErrPlatform,
        Rep::ErrTlsReqd,
        Rep::ErrUnknown,
        Rep::ErrShutdown,
        Rep::ErrBlockSizeReqd,
        Rep::ErrTooBig,
        Rep::ErrExtHeaderReqd,
        Rep::Unknown(0x8000_0042),
    ] {
        let mut v = Vec::new();
        put_rep_error(&mut v, 1, rep, b"why").unwrap();
        let (h, p) = split(&v);
        assert_eq!(
            decode_option_reply(&h, p).unwrap(),
            OptionReply::Error {
                rep,
                message: "why".into()
            }
        );
    }

    let mut v = Vec::new();
    put_option_reply(&mut v, 5, Rep::Ack, &[]).unwrap();
    assert_eq!(v, encode_option_reply_header(5, Rep::Ack, 0));
}

#[test]
fn option_reply_errors() {
    let mut b = encode_option_reply_header(1, Rep::Ack, 0);
    b[0] = 1;
    assert!(matches!(
        decode_option_reply_header(&b),
        Err(OptionReplyError::BadMagic(_))
    ));
    let b = encode_option_reply_header(1, Rep::Ack, MAX_OPTION_LENGTH + 1);
    assert_eq!(
        decode_option_reply_header(&b).unwrap_err(),
        OptionReplyError::TooLong(MAX_OPTION_LENGTH + 1)
    );
    let hdr = |rep, len| OptionReplyHeader {
        opt: 1,
        rep,
        length: len,
    };
    let bad_len = |rep, p: &[u8]| decode_option_reply(&hdr(rep, p.len() as u32), p).unwrap_err();
    assert!(matches!(
        bad_len(Rep::Ack, b"x"),
        OptionReplyError::BadLength { .. }
    ));
    // Header and payload lengths disagree.
    assert!(matches!(
        decode_option_reply(&hdr(Rep::Ack, 3), b""),
        Err(OptionReplyError::BadLength { .. })
    ));
    assert!(matches!(
        bad_len(Rep::Server, b"\0\0"),
        OptionReplyError::BadLength { .. }
    ));
    assert!(matches!(
        bad_len(Rep::Server, b"\0\0\0\x09abc"),
        OptionReplyError::BadString { len: 9, .. }
    ));
    assert!(matches!(
        bad_len(Rep::Server, b"\0\0\x10\x01"),
        OptionReplyError::BadString { len: 4097, .. }
    ));
    assert!(matches!(
        bad_len(Rep::Info, b"\0"),
        OptionReplyError::BadLength { .. }
    ));
    assert!(matches!(
        bad_len(Rep::Info, b"\0\0\0\0"),
        OptionReplyError::BadLength { .. }
    ));
    assert!(matches!(
        bad_len(Rep::Info, b"\0\x03\0"),
        OptionReplyError::BadLength { .. }
    ));
    let long = [&[0u8, 1][..], &[b'n'; 4097][..]].concat();
    assert!(matches!(
        bad_len(Rep::Info, &long),
        OptionReplyError::BadString { .. }
    ));
    assert!(matches!(
        bad_len(Rep::MetaContext, b"\0\0"),
        OptionReplyError::BadLength { .. }
    ));
    let long = [&[0u8; 4][..], &[b'n'; 4097][..]].concat();
    assert!(matches!(
        bad_len(Rep::MetaContext, &long),
        OptionReplyError::BadString { .. }
    ));
    assert_eq!(
        bad_len(Rep::Unknown(77), b""),
        OptionReplyError::UnknownType(77)
    );
}

#[test]
fn encoders_refuse_long_strings() {
    let long = vec![b'a'; MAX_STRING_SIZE + 1];
    let mut v = Vec::new();
    assert!(matches!(
        put_rep_server(&mut v, 3, &long, b""),
        Err(EncodeError::StringTooLong {
            what: "export name",
            len: 4097
        })
    ));
    assert!(put_rep_server(&mut v, 3, b"", &long).is_err());
    assert!(put_rep_meta_context(&mut v, 9, 0, &long).is_err());
    assert!(put_rep_error(&mut v, 9, Rep::ErrInvalid, &long).is_err());
    assert!(put_rep_info(&mut v, 6, &InfoReply::Name(WireString(long.clone()))).is_err());
    assert!(put_rep_info(&mut v, 6, &InfoReply::Description(WireString(long))).is_err());
    assert!(v.is_empty(), "nothing written on error");
    let max = vec![b'a'; MAX_STRING_SIZE];
    assert!(put_rep_server(&mut v, 3, &max, &max).is_ok());
    assert_eq!(
        EncodeError::StringTooLong {
            what: "x",
            len: 5000
        }
        .to_string(),
        "x is 5000 bytes long, more than the 4096 allowed"
    );
}

#[test]
fn export_name_reply() {
    let flags = TransmissionFlags(0x0d6d);
    let r = ExportNameReply::new(0x4000_0000, flags, false);
    assert_eq!(r.as_bytes().len(), EXPORT_NAME_REPLY_LEN);
    assert!(r.as_bytes()[10..].iter().all(|&b| b == 0));
    let short = ExportNameReply::new(0x4000_0000, flags, true);
    assert_eq!(short.as_bytes(), &r.as_bytes()[..10]);
    assert_eq!(
        decode_export_name_reply(short.as_bytes().try_into().unwrap()),
        (0x4000_0000, flags)
    );
    assert!(format!("{short:?}").contains("bytes"));
}
