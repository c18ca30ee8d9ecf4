//! Randomized traffic (fixed seeds, so failures reproduce): malformed
//! handshakes and requests must get exactly QSD's answers, and never
//! crash or wedge our server: after each run it still serves a new
//! client.

mod nbd_common;

use std::time::Duration;

use nbd_common::*;
use qsd_blackbox_tests::Impl;
use serde_json::json;

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const SIZE: u64 = 1 << 20;

fn image(p: &std::path::Path) {
    make_image(p, SIZE, &[(0, 8192, 1), (100_000, 50_000, 2)]);
}

fn export() -> serde_json::Value {
    json!({"writable": true, "allocation-depth": true, "description": "fuzz"})
}

fn random_option(r: &mut Rng) -> Vec<u8> {
    let opt = r.pick(&[1u32, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 99, 0x8000_0001]);
    let names: [&str; 4] = ["disk", "", "x", "disk\0"];
    let mut data = match (opt, r.below(4)) {
        (6 | 7, 0..=2) => info_data(r.pick(&names), &[r.below(5) as u16, 3]),
        (9 | 10, 0..=2) => meta_data(
            r.pick(&names),
            &[r.pick(&[
                "base:allocation",
                "qemu:",
                "base:",
                "qemu:allocation-depth",
                "qemu:dirty-bitmap:x",
                "",
            ])],
        ),
        (1, 0..=2) => r.pick(&names).as_bytes().to_vec(),
        _ => {
            let n = r.below(40) as usize;
            r.bytes(n)
        }
    };
    if r.below(5) == 0 && !data.is_empty() {
        let i = r.below(data.len() as u64) as usize;
        data[i] ^= 1 << r.below(8);
    }
    let mut len = data.len() as u32;
    if r.below(10) == 0 {
        len = r.pick(&[len + 3, len.saturating_sub(2), 5000, (32 << 20) + 1]);
    }
    let magic = if r.below(25) == 0 { r.next() } else { IHAVEOPT };
    let mut b = magic.to_be_bytes().to_vec();
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&data);
    b
}

/// The server's bytes for a random handshake (everything sent at once).
fn handshake_run(which: Impl, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut r = Rng(seed);
    let mut msgs = Vec::new();
    let flags = if r.below(8) == 0 {
        r.below(8) as u32
    } else {
        3
    };
    msgs.extend_from_slice(&flags.to_be_bytes());
    for _ in 0..1 + r.below(5) {
        msgs.extend(random_option(&mut r));
    }
    let s = Served::start(which, export(), image);
    let mut c = Raw::connect(&s.sock);
    let mut got = c.recv(18);
    c.send_lossy(&msgs);
    got.extend(c.recv_to_end(Duration::from_millis(300)));
    (msgs, got)
}

#[test]
fn random_handshakes_get_qsd_answers() {
    let mut replied = 0;
    for seed in 1..=40u64 {
        let (sent, a) = handshake_run(Impl::Qsd, seed * 7919);
        let (_, b) = handshake_run(Impl::Ours, seed * 7919);
        replied += usize::from(a.len() > 18);
        assert_eq!(hex(&a), hex(&b), "seed {seed}: client sent\n{}", hex(&sent));
    }
    assert!(replied > 25, "only {replied} handshakes got option replies");
}

/// One random request (and its payload).
fn random_request(r: &mut Rng, ext: bool, cookie: u64) -> (Vec<u8>, usize) {
    let cmd = r.pick(&[
        CMD_READ,
        CMD_READ,
        CMD_READ,
        CMD_WRITE,
        CMD_WRITE,
        CMD_FLUSH,
        CMD_TRIM,
        CMD_CACHE,
        CMD_WRITE_ZEROES,
        CMD_BLOCK_STATUS,
        CMD_BLOCK_STATUS,
        8,
        9,
        300,
    ]);
    let flags = if r.below(3) == 0 {
        r.below(0x40) as u16
    } else {
        0
    };
    let any_off = r.below(SIZE);
    let any_len = r.below(SIZE);
    let offset = r.pick(&[
        0,
        512,
        4096,
        SIZE - 512,
        SIZE,
        SIZE + 512,
        any_off,
        u64::MAX - 10,
    ]);
    let len = r.pick(&[
        0u64,
        1,
        512,
        4096,
        65536,
        any_len,
        32 << 20,
        (32 << 20) + 1,
        u64::from(u32::MAX),
    ]);
    let mut b = if ext {
        ext_request(flags, cmd, cookie, offset, len)
    } else {
        request(flags, cmd, cookie, offset, len as u32)
    };
    let with_payload = cmd == CMD_WRITE || (ext && flags & 0x20 != 0);
    if with_payload && len <= 1 << 20 {
        if ext && cmd == CMD_BLOCK_STATUS && r.below(2) == 0 && len >= 8 {
            // A plausible payload: effect length and context ids.
            let mut p = r.below(SIZE).to_be_bytes().to_vec();
            while p.len() < len as usize {
                p.push(0);
            }
            p.truncate(len as usize);
            b.extend_from_slice(&p);
        } else {
            b.extend(r.bytes(len as usize));
        }
    }
    if r.below(30) == 0 {
        b[0] ^= 0x80;
    }
    let read_len = if cmd == CMD_READ { len as usize } else { 0 };
    (b, read_len)
}

/// Replies to a random request sequence, one request at a time.
fn transmission_run(which: Impl, seed: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut r = Rng(seed);
    let mode = r.pick(&[Mode::Simple, Mode::Structured, Mode::Extended]);
    let meta: &[&str] = if mode == Mode::Simple {
        &[]
    } else {
        &["base:allocation", "qemu:allocation-depth"]
    };
    let mut s = Served::start(which, export(), image);
    let mut c = Raw::connect(&s.sock);
    c.go("disk", mode != Mode::Simple, mode == Mode::Extended, meta);
    c.s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut replies = Vec::new();
    for cookie in 1..=12 {
        let (req, read_len) = random_request(&mut r, mode == Mode::Extended, cookie);
        c.send_lossy(&req);
        let rep = read_reply(&mut c, mode, read_len);
        let stop = rep.is_empty();
        replies.push(rep);
        if stop {
            break;
        }
    }
    drop(c);
    assert!(alive(&mut s.d), "{which:?} seed {seed}: daemon died");
    // Still serving.
    let mut c = Raw::connect(&s.sock);
    c.go("disk", false, false, &[]);
    c.send(&request(0, CMD_READ, 77, 0, 8));
    let rep = c.recv(24);
    assert_eq!(
        &rep[..4],
        &[0x67, 0x44, 0x66, 0x98],
        "{which:?} seed {seed}"
    );
    (replies, std::fs::read(&s.img).unwrap())
}

#[test]
fn random_requests_get_qsd_answers() {
    let mut answered = 0;
    for seed in 1..=30u64 {
        let (a, ia) = transmission_run(Impl::Qsd, seed * 104_729);
        let (b, ib) = transmission_run(Impl::Ours, seed * 104_729);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let short = |v: &Vec<u8>| hex(&v[..v.len().min(96)]);
            assert_eq!(
                x,
                y,
                "seed {seed}, request {}: QSD\n{}\nours\n{}",
                i + 1,
                short(x),
                short(y)
            );
        }
        assert_eq!(a.len(), b.len(), "seed {seed}");
        assert!(ia == ib, "seed {seed}: images differ");
        answered += a.iter().filter(|x| !x.is_empty()).count();
    }
    // The generator must produce mostly answerable requests.
    assert!(answered > 150, "only {answered} requests answered");
}

/// Pure garbage, on many connections at once, against our server only:
/// no crash, no hang, other clients undisturbed.
#[test]
fn garbage_does_not_disturb_other_clients() {
    let mut s = Served::start(Impl::Ours, export(), image);
    let mut good = Raw::connect(&s.sock);
    good.go("disk", true, false, &[]);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sock = s.sock.clone();
            std::thread::spawn(move || {
                let mut r = Rng(t + 1);
                for _ in 0..20 {
                    let mut c = Raw::connect(&sock);
                    c.s.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let mut g = [0u8; 18];
                    use std::io::Read;
                    let _ = c.s.read_exact(&mut g);
                    if r.below(2) == 0 {
                        c.send_lossy(&3u32.to_be_bytes());
                        c.send_lossy(&opt_go());
                    }
                    let n = r.below(4000) as usize;
                    c.send_lossy(&r.bytes(n));
                    let _ = c.recv_to_end(Duration::from_millis(20));
                }
            })
        })
        .collect();
    for i in 0..50u64 {
        good.send(&request(0, CMD_READ, i, 0, 16));
        let rep = read_reply(&mut good, Mode::Structured, 16);
        assert!(rep.len() > 16, "reply {i}: {}", hex(&rep));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(alive(&mut s.d));
    let r = s.q.cmd(&cmd("query-block-exports", json!(null)));
    assert_eq!(r["return"][0]["id"], "e");
}

fn opt_go() -> Vec<u8> {
    let d = info_data("disk", &[]);
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&OPT_GO.to_be_bytes());
    b.extend_from_slice(&(d.len() as u32).to_be_bytes());
    b.extend_from_slice(&d);
    b
}
