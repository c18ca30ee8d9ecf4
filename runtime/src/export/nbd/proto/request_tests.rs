//! Unit tests of request decoding and QEMU's request checks.

use super::*;

fn hdr(cmd: Cmd, flags: u16, offset: u64, length: u64) -> RequestHeader {
    RequestHeader {
        flags: CommandFlags(flags),
        cmd,
        cookie: 0x1122_3344_5566_7788,
        offset,
        length,
    }
}

#[test]
fn headers_round_trip_and_layout() {
    let h = hdr(Cmd::Read, 1, 512, 16);
    let b = encode_request(&h).unwrap();
    assert_eq!(b[..4], REQUEST_MAGIC.to_be_bytes());
    assert_eq!(decode_request(&b).unwrap(), h);
    let big = hdr(Cmd::Trim, 0, 0, 1 << 33);
    assert_eq!(
        encode_request(&big).unwrap_err(),
        RequestError::LengthTooLarge(1 << 33)
    );
    let e = encode_extended_request(&big);
    assert_eq!(e[..4], EXTENDED_REQUEST_MAGIC.to_be_bytes());
    assert_eq!(decode_extended_request(&e).unwrap(), big);
}

#[test]
fn bad_magic_keeps_the_cookie() {
    let h = hdr(Cmd::Read, 0, 0, 8);
    let b = encode_request(&h).unwrap();
    let mut ext = [0u8; EXTENDED_REQUEST_LEN];
    ext[..REQUEST_LEN].copy_from_slice(&b);
    let e = decode_extended_request(&ext).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid magic (got 0x25609513, expected 0x21e41c71)"
    );
    let RequestError::BadMagic { header, .. } = e else {
        panic!()
    };
    assert_eq!(header.cookie, h.cookie);
    let mut c = b;
    c[3] ^= 0xff;
    assert!(decode_request(&c).is_err());
}

fn session(mode: ReplyMode, read_only: bool, contexts: &ContextSet) -> Session<'_> {
    Session {
        mode,
        export_size: 1 << 30,
        read_only,
        contexts,
    }
}

fn done(p: Plan) -> Result<Command, Rejection> {
    match p {
        Plan::Proceed {
            next: Next::Done(v),
            ..
        } => v,
        other => panic!("{other:?}"),
    }
}

fn msg(p: Plan) -> String {
    done(p).unwrap_err().message
}

#[test]
fn accepted_commands() {
    let none = ContextSet::default();
    let s = session(ReplyMode::Structured, false, &none);
    assert_eq!(
        done(plan(&hdr(Cmd::Read, 5, 8, 16), &s)).unwrap(),
        Command::Read {
            offset: 8,
            length: 16,
            fua: true,
            df: true
        }
    );
    let p = plan(&hdr(Cmd::Write, 1, 0, 4), &s);
    assert!(matches!(
        p,
        Plan::Proceed {
            payload: Payload::WriteData(4),
            ..
        }
    ));
    assert_eq!(
        done(p).unwrap(),
        Command::Write {
            offset: 0,
            length: 4,
            fua: true
        }
    );
    assert_eq!(
        done(plan(&hdr(Cmd::Flush, 1, 0, 0), &s)).unwrap(),
        Command::Flush { fua: true }
    );
    assert_eq!(
        done(plan(&hdr(Cmd::Trim, 0, 0, 64 << 20), &s)).unwrap(),
        Command::Trim {
            offset: 0,
            length: 64 << 20,
            fua: false
        }
    );
    assert_eq!(
        done(plan(&hdr(Cmd::Cache, 0, 0, 4096), &s)).unwrap(),
        Command::Cache {
            offset: 0,
            length: 4096,
            fua: false
        }
    );
    assert_eq!(
        done(plan(&hdr(Cmd::WriteZeroes, 0x13, 0, 4096), &s)).unwrap(),
        Command::WriteZeroes {
            offset: 0,
            length: 4096,
            fua: true,
            no_hole: true,
            fast_zero: true
        }
    );
    // Exactly at the end, and exactly 32 MiB.
    assert!(done(plan(&hdr(Cmd::Read, 0, (1 << 30) - 8, 8), &s)).is_ok());
    assert!(done(plan(&hdr(Cmd::Read, 0, 0, u64::from(MAX_BUFFER_SIZE)), &s)).is_ok());
    assert!(done(plan(&hdr(Cmd::Read, 0, 1 << 30, 0), &s)).is_ok());
    assert_eq!(plan(&hdr(Cmd::Disc, 0xff, 5, 5), &s), Plan::Disconnect);
}

#[test]
fn refusals_match_qemu_texts() {
    let none = ContextSet::default();
    let simple = session(ReplyMode::Simple, false, &none);
    let s = session(ReplyMode::Structured, false, &none);
    let ro = session(ReplyMode::Structured, true, &none);
    let max = u64::from(MAX_BUFFER_SIZE);
    assert_eq!(
        msg(plan(&hdr(Cmd::Read, 0, 0, max + 1), &s)),
        "len (33554433) is larger than max len (33554432)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Cache, 0, 0, max + 1), &s)),
        "len (33554433) is larger than max len (33554432)"
    );
    match plan(&hdr(Cmd::Write, 0, 0, max + 1), &s) {
        Plan::RejectAndClose(r) => assert_eq!(r.errno, NbdErrno::Inval),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        msg(plan(&hdr(Cmd::Read, 4, 0, 8), &simple)),
        "unsupported flags for command read (got 0x4)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Read, 0x40, 0, 8), &s)),
        "unsupported flags for command read (got 0x40)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Write, 0x20, 0, 4), &s)),
        "unsupported flags for command write (got 0x20)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::WriteZeroes, 4, 0, 0), &s)),
        "unsupported flags for command write zeroes (got 0x4)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Resize, 2, 0, 0), &s)),
        "unsupported flags for command <unknown> (got 0x2)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Flush, 0x8000, 0, 0), &s)),
        "unsupported flags for command flush (got 0x8000)"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Unknown(42), 0, 0, 0), &s)),
        "invalid request type (42) received"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Resize, 0, 0, 0), &s)),
        "invalid request type (8) received"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::WriteZeroes, 0, (1 << 30) - 512, 4096), &s)),
        "operation past EOF; From: 1073741312, Len: 4096, Size: 1073741824"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::Read, 0, u64::MAX, 1), &s)),
        "operation past EOF; From: 18446744073709551615, Len: 1, Size: 1073741824"
    );
    for cmd in [Cmd::Write, Cmd::Trim, Cmd::WriteZeroes] {
        assert_eq!(msg(plan(&hdr(cmd, 0, 0, 4), &ro)), "Export is read-only");
    }
    // Read-only comes before the range check, the range before flags.
    assert_eq!(
        msg(plan(&hdr(Cmd::Trim, 0x40, 1 << 40, 4), &ro)),
        "Export is read-only"
    );
    assert!(msg(plan(&hdr(Cmd::Trim, 0x40, 1 << 40, 4), &s)).starts_with("operation past EOF"));
    assert_eq!(
        msg(plan(&hdr(Cmd::BlockStatus, 0, 0, 4096), &s)),
        "CMD_BLOCK_STATUS not negotiated"
    );
}

#[test]
fn block_status_without_payload() {
    let set = ContextSet {
        base_allocation: true,
        ..Default::default()
    };
    let s = session(ReplyMode::Structured, false, &set);
    assert_eq!(
        done(plan(&hdr(Cmd::BlockStatus, 9, 0, 4096), &s)).unwrap(),
        Command::BlockStatus {
            offset: 0,
            length: 4096,
            req_one: true,
            contexts: None,
            fua: true
        }
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::BlockStatus, 0, 0, 0), &s)),
        "need non-zero length"
    );
    assert_eq!(
        msg(plan(&hdr(Cmd::BlockStatus, 2, 0, 1), &s)),
        "unsupported flags for command block status (got 0x2)"
    );
    let ext = session(ReplyMode::Extended, false, &set);
    assert!(done(plan(&hdr(Cmd::BlockStatus, 0, 0, 1 << 29), &ext)).is_ok());
}

#[test]
fn extended_payloads() {
    let set = ContextSet {
        base_allocation: true,
        allocation_depth: false,
        bitmaps: vec![true],
    };
    let s = session(ReplyMode::Extended, false, &set);
    // PAYLOAD_LEN on READ: payload discarded, length 0, flag refused.
    let p = plan(&hdr(Cmd::Read, 0x20, 0, 8), &s);
    assert!(matches!(
        p,
        Plan::Proceed {
            payload: Payload::Discard(8),
            ..
        }
    ));
    assert_eq!(msg(p), "unsupported flags for command read (got 0x20)");
    // WRITE accepts PAYLOAD_LEN, and tolerates its absence.
    assert!(done(plan(&hdr(Cmd::Write, 0x20, 0, 4), &s)).is_ok());
    assert!(done(plan(&hdr(Cmd::Write, 0, 0, 4), &s)).is_ok());
    assert!(matches!(
        plan(&hdr(Cmd::Flush, 0x20, 0, 1 << 26), &s),
        Plan::RejectAndClose(_)
    ));
    // BLOCK_STATUS with a payload.
    let h = hdr(Cmd::BlockStatus, 0x20, 0, 16);
    assert_eq!(
        plan(&h, &s),
        Plan::Proceed {
            payload: Payload::BlockStatus(16),
            next: Next::DecodeBlockStatus
        }
    );
    assert!(matches!(
        plan(&hdr(Cmd::BlockStatus, 0x20, 0, 1 << 26), &s),
        Plan::RejectAndClose(_)
    ));
    let cmd = complete_block_status(&h, &encode_block_status_payload(4096, &[2, 0]), &s).unwrap();
    let Command::BlockStatus {
        length, contexts, ..
    } = cmd
    else {
        panic!()
    };
    assert_eq!(length, 4096);
    assert_eq!(contexts, Some(set.clone()));
    let sub = complete_block_status(&h, &encode_block_status_payload(4096, &[2]), &s).unwrap();
    let Command::BlockStatus {
        contexts: Some(c), ..
    } = sub
    else {
        panic!()
    };
    assert!(!c.base_allocation && c.bitmaps == vec![true]);
    let bad = |p: &[u8]| complete_block_status(&h, p, &s).unwrap_err().message;
    for p in [
        encode_block_status_payload(4096, &[0, 0]),
        encode_block_status_payload(4096, &[1]),
        encode_block_status_payload(4096, &[0, 2, 0]),
        encode_block_status_payload(4096, &[]),
        vec![0; 13],
        vec![0; 4],
    ] {
        assert_eq!(bad(&p), "CMD_BLOCK_STATUS payload not valid", "{p:?}");
    }
    assert_eq!(
        bad(&encode_block_status_payload(0, &[0])),
        "need non-zero length"
    );
    assert_eq!(
        bad(&encode_block_status_payload(1 << 40, &[0])),
        "operation past EOF; From: 0, Len: 1099511627776, Size: 1073741824"
    );
    let h2 = hdr(Cmd::BlockStatus, 0x24, 0, 12);
    assert_eq!(
        complete_block_status(&h2, &encode_block_status_payload(8, &[0]), &s)
            .unwrap_err()
            .message,
        "unsupported flags for command block status (got 0x24)"
    );
    // No contexts at all: QEMU aborts here; we refuse.
    let none = ContextSet::default();
    let s0 = session(ReplyMode::Extended, false, &none);
    assert_eq!(
        complete_block_status(&h, &encode_block_status_payload(8, &[0]), &s0)
            .unwrap_err()
            .message,
        "CMD_BLOCK_STATUS not negotiated"
    );
}

#[test]
fn block_status_payload_codec() {
    let p = encode_block_status_payload(7, &[1, 2]);
    assert_eq!(
        decode_block_status_payload(&p, 2),
        Some(BlockStatusPayload {
            effect_length: 7,
            ids: vec![1, 2]
        })
    );
    assert_eq!(decode_block_status_payload(&p, 1), None);
    assert_eq!(decode_block_status_payload(&p[..8], 2), None);
    assert_eq!(decode_block_status_payload(&p[..11], 2), None);
}
