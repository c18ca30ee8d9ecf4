//! The NBD protocol on the wire, byte for byte against QSD: a raw client
//! sends the same requests to both servers, and the replies (grouped by
//! cookie, since servers may complete requests in any order) must be
//! identical, as must the image afterwards. Also: malformed traffic,
//! connection limits and removal of an export under connected clients.

mod nbd_common;

use std::collections::BTreeMap;
use std::time::Duration;

use nbd_common::*;
use qsd_blackbox_tests::Impl;
use serde_json::json;

const HOLEY: &[(u64, u64, u8)] = &[
    (0, 65536, 0xaa),
    (131072, 4096, 0xbb),
    (196608, 4096, 0),
    (600_000, 10_000, 0xcc),
];

fn holey(p: &std::path::Path) {
    make_image(p, 1 << 20, HOLEY);
}

/// Splits the server's bytes into replies per cookie (chunks of one
/// reply in order). `reads` gives the data length of simple READ
/// replies by cookie.
fn split_replies(
    mode: Mode,
    mut b: &[u8],
    reads: &BTreeMap<u64, usize>,
) -> BTreeMap<u64, Vec<Vec<u8>>> {
    let mut out: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    let be32 = |x: &[u8]| u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
    let be64 = |x: &[u8]| u64::from_be_bytes(x[..8].try_into().unwrap());
    while b.len() >= 4 {
        let magic = be32(b);
        let (cookie, len) = match magic {
            0x6744_6698 if b.len() >= 16 => {
                let cookie = be64(&b[8..]);
                let err = be32(&b[4..]);
                let data = if mode == Mode::Simple && err == 0 {
                    reads.get(&cookie).copied().unwrap_or(0)
                } else {
                    0
                };
                (cookie, 16 + data)
            }
            0x668e_33ef if b.len() >= 20 => (be64(&b[8..]), 20 + be32(&b[16..]) as usize),
            0x6e8a_278c if b.len() >= 32 => (be64(&b[8..]), 32 + be64(&b[24..]) as usize),
            _ => {
                out.entry(u64::MAX).or_default().push(b.to_vec());
                break;
            }
        };
        let len = len.min(b.len());
        out.entry(cookie).or_default().push(b[..len].to_vec());
        b = &b[len..];
    }
    if !b.is_empty() {
        out.entry(u64::MAX - 1).or_default().push(b.to_vec());
    }
    out
}

/// What a scenario observed: replies by cookie, and the image after.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    replies: BTreeMap<u64, Vec<Vec<u8>>>,
    image: Vec<u8>,
}

/// Runs the same requests against both servers and compares.
fn same_replies(
    export: serde_json::Value,
    mode: Mode,
    meta: &[&str],
    reqs: &[(Vec<u8>, Option<usize>)],
) {
    let mut obs = Vec::new();
    for which in IMPLS {
        let s = Served::start(which, export.clone(), holey);
        let mut c = Raw::connect(&s.sock);
        c.go("disk", mode != Mode::Simple, mode == Mode::Extended, meta);
        // One request at a time: pipelined requests may run in any order
        // (QEMU runs them concurrently), and QEMU drops the replies still
        // in flight when NBD_CMD_DISC arrives.
        let mut bytes = Vec::new();
        let mut reads = BTreeMap::new();
        for (r, read_len) in reqs {
            let cookie = cookie_of(r);
            if let Some(n) = read_len {
                reads.insert(cookie, *n);
            }
            c.send_lossy(r);
            bytes.extend(read_reply(&mut c, mode, read_len.unwrap_or(0)));
        }
        c.send_lossy(&if mode == Mode::Extended {
            ext_request(0, CMD_DISC, 999, 0, 0)
        } else {
            request(0, CMD_DISC, 999, 0, 0)
        });
        bytes.extend(c.recv_to_end(Duration::from_secs(10)));
        obs.push(Observed {
            replies: split_replies(mode, &bytes, &reads),
            image: std::fs::read(&s.img).unwrap(),
        });
    }
    if obs[0] != obs[1] {
        let short = |c: &Vec<u8>| {
            let h = hex(&c[..c.len().min(48)]).replace('\n', "");
            format!("{h}.. ({} bytes)", c.len())
        };
        let mut diff = String::new();
        let keys: std::collections::BTreeSet<_> =
            obs[0].replies.keys().chain(obs[1].replies.keys()).collect();
        for k in keys {
            let (a, b) = (obs[0].replies.get(k), obs[1].replies.get(k));
            if a != b {
                let f = |x: Option<&Vec<Vec<u8>>>| {
                    x.map(|v| v.iter().map(short).collect::<Vec<_>>().join(" | "))
                        .unwrap_or_else(|| "none".into())
                };
                diff += &format!("cookie {k}:\n  QSD:  {}\n  ours: {}\n", f(a), f(b));
            }
        }
        panic!(
            "QSD vs ours differ ({mode:?})\n{diff}images equal: {}",
            obs[0].image == obs[1].image
        );
    }
}

fn cookie_of(r: &[u8]) -> u64 {
    u64::from_be_bytes(r[8..16].try_into().unwrap())
}

fn rq(flags: u16, cmd: u16, cookie: u64, off: u64, len: u32) -> (Vec<u8>, Option<usize>) {
    let read = (cmd == CMD_READ).then_some(len as usize);
    (request(flags, cmd, cookie, off, len), read)
}

fn wr(flags: u16, cookie: u64, off: u64, data: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut r = request(flags, CMD_WRITE, cookie, off, data.len() as u32);
    r.extend_from_slice(data);
    (r, None)
}

/// Requests that work the same in simple and structured sessions.
fn common_requests() -> Vec<(Vec<u8>, Option<usize>)> {
    vec![
        rq(0, CMD_READ, 1, 0, 262_144),
        rq(4, CMD_READ, 2, 0, 262_144),
        rq(0, CMD_READ, 3, 65536, 4096),
        rq(0, CMD_READ, 4, 0, 0),
        rq(0, CMD_READ, 5, 1 << 20, 0),
        rq(0, CMD_READ, 6, 1 << 20, 512),
        rq(0, CMD_READ, 7, 0, (32 << 20) + 1),
        rq(0x40, CMD_READ, 8, 0, 512),
        rq(0, 9, 9, 0, 0),
        rq(1, CMD_READ, 10, 590_000, 20_000),
        wr(0, 11, 300_000, &[0x5a; 5000]),
        rq(0, CMD_READ, 12, 299_000, 7000),
        wr(1, 13, 700_000, &[1; 512]),
        rq(0, CMD_FLUSH, 14, 0, 0),
        rq(0, CMD_TRIM, 15, 0, 4096),
        rq(1, CMD_TRIM, 16, 8192, 4096),
        rq(0, CMD_WRITE_ZEROES, 17, 16384, 8192),
        rq(2, CMD_WRITE_ZEROES, 18, 131_072, 1024),
        rq(0, CMD_CACHE, 19, 0, 65536),
        rq(0, CMD_WRITE_ZEROES, 20, (1 << 20) - 512, 1024),
        rq(0, CMD_READ, 21, 0, 40_000),
        rq(0, CMD_BLOCK_STATUS, 22, 0, 4096),
    ]
}

#[test]
fn simple_replies_match_qsd() {
    same_replies(
        json!({"writable": true}),
        Mode::Simple,
        &[],
        &common_requests(),
    );
}

#[test]
fn structured_replies_match_qsd() {
    let mut reqs = common_requests();
    reqs.extend([
        rq(0, CMD_BLOCK_STATUS, 30, 0, 1 << 20),
        rq(8, CMD_BLOCK_STATUS, 31, 0, 1 << 20),
        rq(0, CMD_BLOCK_STATUS, 32, 4096, 100_000),
        rq(0, CMD_BLOCK_STATUS, 33, 0, 0),
        rq(0, CMD_BLOCK_STATUS, 34, 1 << 20, 1),
        rq(0x10, CMD_BLOCK_STATUS, 35, 0, 512),
        rq(0x10, CMD_WRITE_ZEROES, 36, 400_000, 4096),
        rq(0, CMD_READ, 37, 0, 1 << 20),
    ]);
    same_replies(
        json!({"writable": true, "allocation-depth": true}),
        Mode::Structured,
        &["base:allocation", "qemu:allocation-depth"],
        &reqs,
    );
}

#[test]
fn structured_read_only_without_contexts_match_qsd() {
    same_replies(json!({}), Mode::Structured, &[], &common_requests());
}

fn ext(flags: u16, cmd: u16, cookie: u64, off: u64, len: u64) -> (Vec<u8>, Option<usize>) {
    (ext_request(flags, cmd, cookie, off, len), None)
}

#[test]
fn extended_headers_match_qsd() {
    let payload = |len: u64, ids: &[u32]| {
        let mut p = len.to_be_bytes().to_vec();
        for i in ids {
            p.extend_from_slice(&i.to_be_bytes());
        }
        p
    };
    let with = |mut r: (Vec<u8>, Option<usize>), p: &[u8]| {
        r.0.extend_from_slice(p);
        r
    };
    let reqs = vec![
        ext(0, CMD_READ, 1, 0, 262_144),
        ext(4, CMD_READ, 2, 0, 4096),
        ext(0, CMD_READ, 3, 0, (32 << 20) + 1),
        ext(0, CMD_BLOCK_STATUS, 4, 0, 1 << 20),
        ext(8, CMD_BLOCK_STATUS, 5, 4096, 1 << 19),
        with(
            ext(0x20, CMD_BLOCK_STATUS, 6, 0, 12),
            &payload(1 << 20, &[1]),
        ),
        with(
            ext(0x20, CMD_BLOCK_STATUS, 7, 0, 16),
            &payload(1 << 20, &[1, 0]),
        ),
        with(
            ext(0x20, CMD_BLOCK_STATUS, 8, 0, 16),
            &payload(1 << 20, &[0, 0]),
        ),
        with(
            ext(0x20, CMD_BLOCK_STATUS, 9, 0, 12),
            &payload(1 << 20, &[5]),
        ),
        with(ext(0x20, CMD_BLOCK_STATUS, 10, 0, 8), &payload(1, &[])),
        with(ext(0x20, CMD_WRITE, 11, 300_000, 16), &[7u8; 16]),
        with(ext(0, CMD_WRITE, 12, 300_100, 8), &[8u8; 8]),
        with(ext(0x20, CMD_FLUSH, 13, 0, 4), &[0u8; 4]),
        ext(0, CMD_READ, 14, 299_990, 200),
        ext(0, CMD_TRIM, 15, 0, 1 << 20),
        ext(0, CMD_BLOCK_STATUS, 16, 0, 1 << 20),
        ext(0, CMD_WRITE_ZEROES, 17, 0, 2 << 20),
    ];
    same_replies(
        json!({"writable": true, "allocation-depth": true}),
        Mode::Extended,
        &["base:allocation", "qemu:allocation-depth"],
        &reqs,
    );
}

/// Bytes a server sends to a client that sends `msgs` after the greeting
/// (each followed by a short pause), until it closes.
fn handshake_transcript(which: Impl, msgs: &[Vec<u8>]) -> Vec<u8> {
    let s = Served::start(which, json!({"description": "d"}), holey);
    let mut c = Raw::connect(&s.sock);
    let mut got = c.recv(18);
    for m in msgs {
        c.send_lossy(m);
        std::thread::sleep(Duration::from_millis(20));
    }
    got.extend(c.recv_to_end(Duration::from_millis(500)));
    got
}

fn opt(o: u32, data: &[u8]) -> Vec<u8> {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&o.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn malformed_traffic_gets_qsd_answers() {
    let flags = 3u32.to_be_bytes().to_vec();
    let go = opt(OPT_GO, &info_data("disk", &[]));
    let sr = opt(OPT_STRUCTURED_REPLY, &[]);
    let mut bad_write = request(0, CMD_WRITE, 5, 0, (32 << 20) + 1);
    bad_write.extend_from_slice(&[0u8; 100]);
    let mut half_write = request(0, CMD_WRITE, 6, 0, 65536);
    half_write.extend_from_slice(&[1u8; 1000]);
    let cases: Vec<Vec<Vec<u8>>> = vec![
        // Handshake.
        vec![4u32.to_be_bytes().to_vec()],
        vec![
            flags.clone(),
            opt(99, b"abcd"),
            opt(OPT_LIST, &[]),
            opt(OPT_ABORT, &[]),
        ],
        vec![flags.clone(), b"garbage!garbage!".to_vec()],
        vec![flags.clone(), {
            let mut o = opt(OPT_INFO, &[]);
            o.truncate(12);
            o.extend_from_slice(&((32u32 << 20) + 1).to_be_bytes());
            o
        }],
        vec![flags.clone(), opt(OPT_EXPORT_NAME, b"nope")],
        vec![flags.clone(), opt(OPT_GO, &info_data("nope", &[1, 2, 3]))],
        vec![flags.clone(), opt(OPT_LIST_META, &meta_data("disk", &[]))],
        vec![flags.clone(), opt(OPT_INFO, &[0, 0, 0, 9, b'x'])],
        // Transmission.
        vec![flags.clone(), go.clone(), {
            let mut r = request(0, CMD_READ, 1, 0, 512);
            r[0] ^= 1;
            r
        }],
        vec![flags.clone(), sr.clone(), go.clone(), bad_write],
        vec![flags.clone(), sr.clone(), go.clone(), half_write],
        vec![
            flags.clone(),
            go.clone(),
            request(0, CMD_READ, 1, 0, 512)[..20].to_vec(),
        ],
    ];
    for msgs in &cases {
        let a = handshake_transcript(Impl::Qsd, msgs);
        let b = handshake_transcript(Impl::Ours, msgs);
        assert_eq!(
            hex(&a),
            hex(&b),
            "case {:?}",
            msgs.iter().map(|m| hex(m)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn max_connections_and_handshake_time_limit() {
    for which in IMPLS {
        let s = Served::start_with(
            which,
            json!({"max-connections": 1, "handshake-max-seconds": 1}),
            json!({}),
            false,
            holey,
        );
        let mut first = Raw::connect(&s.sock);
        first.recv(18);
        let mut second = Raw::connect(&s.sock);
        second
            .s
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        use std::io::Read;
        assert!(
            second.s.read(&mut b).is_err(),
            "{which:?}: second client served beyond max-connections"
        );
        // The first does not finish its handshake: dropped after ~1 s,
        // then the second gets its greeting.
        assert!(first.closed_within(Duration::from_secs(3)), "{which:?}");
        second
            .s
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let g = second.recv(18);
        assert_eq!(&g[..8], b"NBDMAGIC", "{which:?}");
        // max-connections=1 turns multi-conn off.
        second.send(&3u32.to_be_bytes());
        second.option(OPT_GO, &info_data("disk", &[]));
        let r = second.replies();
        let export = r
            .iter()
            .find(|(t, p)| *t == 3 && p[..2] == [0, 0])
            .expect("NBD_INFO_EXPORT");
        let flags = u16::from_be_bytes([export.1[10], export.1[11]]);
        assert_eq!(
            flags & 0x100,
            0,
            "{which:?}: CAN_MULTI_CONN with max-connections=1"
        );
    }
}

#[test]
fn export_removed_under_connected_clients() {
    for which in IMPLS {
        let mut s = Served::start(which, json!({"writable": true}), holey);
        let mut clients: Vec<Raw> = (0..3)
            .map(|_| {
                let mut c = Raw::connect(&s.sock);
                c.go("disk", true, false, &[]);
                c
            })
            .collect();
        // One of them has a request in flight.
        clients[0].send(&request(0, CMD_READ, 1, 0, 65536));
        let r =
            s.q.cmd(&cmd("block-export-del", json!({"id": "e", "mode": "hard"})));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        for c in &mut clients {
            assert!(c.closed_within(Duration::from_secs(5)), "{which:?}");
        }
        let (ev, found) =
            s.q.drain_until("BLOCK_EXPORT_DELETED", Duration::from_secs(5));
        assert!(found, "{which:?}: {ev}");
        assert!(alive(&mut s.d), "{which:?}");
        // The server goes on: a new export serves new clients.
        let r = s.q.cmd(&cmd(
            "block-export-add",
            json!({"type": "nbd", "id": "e2", "node-name": "disk", "name": "disk"}),
        ));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        let mut c = Raw::connect(&s.sock);
        c.go("disk", false, false, &[]);
        c.send(&request(0, CMD_READ, 7, 0, 4));
        let rep = c.recv(20);
        assert_eq!(&rep[16..], &[0xaa; 4], "{which:?}");
    }
}
