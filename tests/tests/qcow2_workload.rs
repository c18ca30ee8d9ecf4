//! A randomized workload against a qcow2 image served by our daemon over
//! NBD: several clients connected at once, each with a queue of requests
//! in flight (writes, some FUA; write-zeroes with and without holes;
//! trims; flushes; reads of random sizes at random offsets), checked
//! against a raw shadow copy as it goes. Afterwards the whole export
//! reads back equal to the shadow, and once the daemon has quit the
//! image passes `qemu-img check` with no errors and no leaks and
//! `qemu-img compare` finds it equal to the shadow.
//!
//! Each client owns stripes of the disk (stripe `i` belongs to client
//! `i % clients`) and keeps its requests in flight in distinct stripes,
//! so the expected content never depends on how the server orders them.

mod nbd_common;

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbd_common::{
    request, run, run_ok, Raw, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES,
};
use qsd_blackbox_tests::{Daemon, Impl, Qmp};
use serde_json::{json, Value};

const STRIPE: u64 = 256 << 10;
const FLAG_FUA: u16 = 1;
const FLAG_NO_HOLE: u16 = 2;

/// xorshift64*: deterministic, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn cmd(q: &mut Qmp, execute: &str, args: Value) {
    let r = q.cmd(&json!({"execute": execute, "arguments": args}).to_string());
    assert_eq!(r, json!({"return": {}}), "{execute} {args}");
}

/// One request of a batch.
struct Op {
    cmd: u16,
    off: u64,
    len: u64,
    data: Vec<u8>,
}

/// Reads one simple reply: (cookie, error), and `len` bytes of data for
/// a successful read.
fn reply(c: &mut Raw, read_len: impl Fn(u64) -> usize) -> (u64, u32, Vec<u8>) {
    let h = c.recv(16);
    assert_eq!(
        u32::from_be_bytes(h[0..4].try_into().unwrap()),
        0x6744_6698,
        "simple reply magic"
    );
    let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
    let cookie = u64::from_be_bytes(h[8..16].try_into().unwrap());
    let mut data = Vec::new();
    if err == 0 {
        let n = read_len(cookie);
        data = vec![0u8; n];
        c.s.read_exact(&mut data).expect("read data");
    }
    (cookie, err, data)
}

/// Sends `ops` at once and waits for all replies; returns the data of
/// each request (reads), in the order of `ops`.
fn batch(c: &mut Raw, ops: &[Op]) -> Vec<Vec<u8>> {
    let mut wire = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        let flags = match o.cmd {
            CMD_WRITE if o.off % 3 == 0 => FLAG_FUA,
            CMD_WRITE_ZEROES if o.off % 2 == 0 => FLAG_NO_HOLE,
            _ => 0,
        };
        wire.extend_from_slice(&request(flags, o.cmd, i as u64, o.off, o.len as u32));
        if o.cmd == CMD_WRITE {
            wire.extend_from_slice(&o.data);
        }
    }
    c.send(&wire);
    let mut out = vec![Vec::new(); ops.len()];
    for _ in 0..ops.len() {
        let (cookie, err, data) = reply(c, |k| {
            let o = &ops[k as usize];
            if o.cmd == CMD_READ {
                o.len as usize
            } else {
                0
            }
        });
        let o = &ops[cookie as usize];
        assert_eq!(
            err, 0,
            "command {} at {} len {} failed",
            o.cmd, o.off, o.len
        );
        out[cookie as usize] = data;
    }
    out
}

fn read(c: &mut Raw, off: u64, len: u64) -> Vec<u8> {
    let op = Op {
        cmd: CMD_READ,
        off,
        len,
        data: Vec::new(),
    };
    batch(c, &[op]).remove(0)
}

/// Client `k` of the case's clients, with its share of the requests.
fn client(sock: &Path, shadow: &Mutex<Vec<u8>>, k: u64, case: &Case) {
    let (clients, depth, max_len) = (case.clients, case.depth, case.max_len);
    let ops = case.ops / clients;
    let mut c = Raw::connect(sock);
    c.s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    c.go("disk", false, false, &[]);
    let size = shadow.lock().unwrap().len() as u64;
    let mine = size / STRIPE / clients;
    let mut r = Rng(case.seed * 7919 + k + 1);
    let mut done = 0;
    while done < ops {
        let n = (1 + r.below(depth)).min(ops - done);
        let mut stripes: Vec<u64> = Vec::new();
        let mut batch_ops = Vec::new();
        while (batch_ops.len() as u64) < n {
            let s = r.below(mine) * clients + k;
            if stripes.contains(&s) {
                continue;
            }
            stripes.push(s);
            let base = s * STRIPE;
            let off = base + r.below(STRIPE);
            let len = (1 + r.below(max_len)).min(base + STRIPE - off);
            let (cmd, data) = match r.below(20) {
                0..=7 => {
                    let fill = (r.next() | 1) as u8;
                    let data = (0..len).map(|i| fill ^ (i as u8 / 7)).collect();
                    (CMD_WRITE, data)
                }
                8..=10 => (CMD_WRITE_ZEROES, Vec::new()),
                11..=12 => (CMD_TRIM, Vec::new()),
                13 => (CMD_FLUSH, Vec::new()),
                _ => (CMD_READ, Vec::new()),
            };
            let (off, len) = if cmd == CMD_FLUSH { (0, 0) } else { (off, len) };
            batch_ops.push(Op {
                cmd,
                off,
                len,
                data,
            });
        }
        // Reads last: while the writes' data goes out, the server has
        // only short replies to send back.
        batch_ops.sort_by_key(|o| o.cmd == CMD_READ);
        let got = batch(&mut c, &batch_ops);
        for (o, g) in batch_ops.iter().zip(got) {
            let range = o.off as usize..(o.off + o.len) as usize;
            match o.cmd {
                CMD_WRITE => shadow.lock().unwrap()[range].copy_from_slice(&o.data),
                CMD_WRITE_ZEROES => shadow.lock().unwrap()[range].fill(0),
                CMD_READ => {
                    let s = shadow.lock().unwrap();
                    if g[..] != s[range.clone()] {
                        let at = (0..g.len()).find(|i| g[*i] != s[range.start + i]);
                        panic!(
                            "client {k}: read at {} len {} differs at +{at:?}",
                            o.off, o.len
                        );
                    }
                }
                _ => {}
            }
        }
        // What trimmed ranges read as now is what they hold.
        for o in batch_ops.iter().filter(|o| o.cmd == CMD_TRIM) {
            let b = read(&mut c, o.off, o.len);
            shadow.lock().unwrap()[o.off as usize..(o.off + o.len) as usize].copy_from_slice(&b);
        }
        done += n;
    }
}

struct Case {
    opts: &'static str,
    size: u64,
    backing: bool,
    clients: u64,
    ops: u64,
    depth: u64,
    max_len: u64,
    seed: u64,
}

fn workload(case: Case) {
    let mut d = Daemon::start(Impl::Ours);
    let dir = d.dir.path().to_path_buf();
    let img = dir.join("w.qcow2").display().to_string();
    let shadow_path = dir.join("w.raw").display().to_string();
    let mut initial = vec![0u8; case.size as usize];
    if case.backing {
        let base = dir.join("base.raw").display().to_string();
        for (i, b) in initial.iter_mut().enumerate() {
            *b = (i / 4096 % 251) as u8 + 1;
        }
        std::fs::write(&base, &initial).expect("base");
        run_ok(
            "qemu-img",
            &[
                "create", "-q", "-f", "qcow2", "-o", case.opts, "-b", &base, "-F", "raw", &img,
            ],
        );
    } else {
        run_ok(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                case.opts,
                &img,
                &case.size.to_string(),
            ],
        );
    }
    let sock = dir.join("nbd.sock");
    let mut q = d.qmp();
    cmd(
        &mut q,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "disk", "discard": "unmap",
            "file": {"driver": "file", "filename": img}}),
    );
    cmd(
        &mut q,
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": sock}}, "max-connections": 0}),
    );
    cmd(
        &mut q,
        "block-export-add",
        json!({"type": "nbd", "id": "e", "node-name": "disk", "name": "disk", "writable": true}),
    );
    let shadow = Arc::new(Mutex::new(initial));
    std::thread::scope(|s| {
        for k in 0..case.clients {
            let (sock, shadow) = (&sock, &shadow);
            let c = &case;
            s.spawn(move || client(sock, shadow, k, c));
        }
    });
    let shadow = Arc::try_unwrap(shadow)
        .expect("clients done")
        .into_inner()
        .unwrap();
    // The whole export, 1 MiB at a time, 8 requests in flight.
    let mut c = Raw::connect(&sock);
    c.go("disk", false, false, &[]);
    let chunk = 1u64 << 20;
    for group in (0..case.size).step_by((8 * chunk) as usize) {
        let ops: Vec<Op> = (group..(group + 8 * chunk).min(case.size))
            .step_by(chunk as usize)
            .map(|off| Op {
                cmd: CMD_READ,
                off,
                len: chunk.min(case.size - off),
                data: Vec::new(),
            })
            .collect();
        for (o, g) in ops.iter().zip(batch(&mut c, &ops)) {
            assert!(
                g[..] == shadow[o.off as usize..(o.off + o.len) as usize],
                "{}: final read at {} differs",
                case.opts,
                o.off
            );
        }
    }
    drop(c);
    q.send_line(r#"{"execute":"quit"}"#);
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0), "daemon exit");
    std::fs::write(&shadow_path, &shadow).expect("shadow");
    let check = run("qemu-img", &["check", &img]);
    assert!(
        check.status.success(),
        "{}: qemu-img check: {}{}",
        case.opts,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    run_ok(
        "qemu-img",
        &["compare", "-f", "qcow2", "-F", "raw", &img, &shadow_path],
    );
}

/// 20,000 requests from four clients at once, up to 8 in flight each.
#[test]
fn nbd_clients_20000_ops_match_shadow() {
    workload(Case {
        opts: "cluster_size=65536",
        size: 64 << 20,
        backing: false,
        clients: 4,
        ops: 20_000,
        depth: 8,
        max_len: 128 << 10,
        seed: 1,
    });
}

/// Subclusters over a backing file, small clusters with narrow refcounts.
#[test]
fn nbd_clients_other_geometries_match_shadow() {
    for (i, (opts, backing)) in [
        ("cluster_size=32768,extended_l2=on", true),
        ("cluster_size=4096,refcount_bits=2", false),
    ]
    .into_iter()
    .enumerate()
    {
        workload(Case {
            opts,
            size: 16 << 20,
            backing,
            clients: 3,
            ops: 3000,
            depth: 6,
            max_len: 64 << 10,
            seed: 10 + i as u64,
        });
    }
}
