//! Randomized malformed input for the vhost-user-blk export (qsd only;
//! QSD's libvhost-user gives up on the device instead): vhost-user
//! messages with bad sizes, codes, indices and descriptors, and
//! descriptor chains with addresses outside guest memory, loops, bad
//! indirect tables and short buffers. The daemon must survive (a new
//! frontend is served afterwards), complete every chain whose head is
//! valid, and never write to guest memory outside the device-writable
//! buffers it was given. Seeds are fixed, so failures reproduce; set
//! `VHOST_FUZZ_ROUNDS` for longer runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::vhost_client::*;
use qsd_blackbox_tests::{Daemon, Impl};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("VHOST_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start() -> (Daemon, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let img = dir.join("img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(4 << 20))
        .expect("image");
    let sock = dir.join("vu.sock");
    let bd = format!(
        "driver=file,node-name=disk,filename={},discard=unmap",
        img.display()
    );
    let ex = format!(
        "type=vhost-user-blk,id=e,node-name=disk,writable=on,num-queues=2,addr.type=unix,addr.path={}",
        sock.display()
    );
    let d = Daemon::start_with(Impl::Ours, false, &["--blockdev", &bd, "--export", &ex]);
    qsd_blackbox_tests::wait_for_path(&sock);
    (d, sock)
}

/// The daemon still serves a well-behaved frontend.
fn still_serves(d: &mut Daemon, sock: &Path) {
    assert_eq!(d.child.try_wait().expect("wait"), None, "daemon died");
    let mut c = Client::connect(sock, Opts::default());
    c.start();
    let r = c.run(
        0,
        &[
            Op::Write {
                sector: 8,
                data: vec![0x5a; 4096],
            },
            Op::Read {
                sector: 8,
                len: 4096,
            },
        ],
        1,
    );
    assert_eq!(r[0].status, S_OK);
    assert!(r[1].data.iter().all(|b| *b == 0x5a));
}

// Guest memory areas of the chain test (queue 0 rings are below 64 KiB).
const SCRATCH: u64 = 0x20_0000;
const SCRATCH_LEN: u64 = 0x8_0000;
const TABLES: u64 = 0x30_0000;
const HEADERS: u64 = 0x2f_0000;

fn fill_canary(mem: &GuestMemoryMmap, size: u64) {
    let c: Vec<u8> = (0..size - DATA_BASE).map(|i| (i * 7 + 3) as u8).collect();
    mem.write_slice(&c, GuestAddress(DATA_BASE))
        .expect("canary");
}

fn snapshot(mem: &GuestMemoryMmap, size: u64) -> Vec<u8> {
    let mut b = vec![0u8; (size - DATA_BASE) as usize];
    mem.read_slice(&mut b, GuestAddress(DATA_BASE))
        .expect("snapshot");
    b
}

/// A random buffer address: inside the scratch area, anywhere readable,
/// or outside guest memory (partly or wholly).
fn rand_buf(r: &mut Rng, writable: bool, mem_size: u64) -> (u64, u32) {
    let len = match r.below(6) {
        0 => 0,
        1 => 1,
        2 => 16,
        3 => u32::MAX,
        _ => r.below(64 * 1024) as u32 + 1,
    };
    let addr = match r.below(5) {
        0 | 1 => SCRATCH + r.below(SCRATCH_LEN),
        2 if !writable => DATA_BASE + r.below(mem_size - DATA_BASE),
        2 => {
            // Straddles the end of guest memory.
            let k = r.below(4096) + 1;
            return (mem_size - k, (k + 1 + r.below(4096)) as u32);
        }
        3 => mem_size + r.below(1 << 30),
        _ => u64::MAX - r.below(4096),
    };
    // Writable buffers stay in the scratch area unless they leave guest
    // memory (which the daemon must refuse).
    let inside = (SCRATCH..SCRATCH + SCRATCH_LEN).contains(&addr);
    if writable && inside && addr + u64::from(len) > SCRATCH + SCRATCH_LEN {
        let l = (SCRATCH + SCRATCH_LEN - addr) as u32;
        return (addr, l);
    }
    (addr, len)
}

fn rand_flags(r: &mut Rng) -> u16 {
    let mut f = 0;
    if r.chance(60) {
        f |= 1; // NEXT
    }
    if r.chance(50) {
        f |= 2; // WRITE
    }
    if r.chance(8) {
        f |= 4; // INDIRECT
    }
    f
}

#[test]
fn malformed_descriptor_chains() {
    let (mut d, sock) = start();
    let mut r = Rng(0x1234_5678_9abc_def1);
    let mut c = Client::connect(
        &sock,
        Opts {
            queue_size: 64,
            slot_size: 64 * 1024,
            indirect: true,
            ..Opts::default()
        },
    );
    c.start();
    let mut completed = 0usize;
    for round in 0..rounds(60) {
        let mem = c.mem.clone();
        let size = c.mem_size;
        fill_canary(&mem, size);
        // Request headers the chains may start with.
        for i in 0..8u64 {
            let mut h = [0u8; 16];
            let t: u32 = [0, 1, 4, 8, 11, 13, 99, 0x8000_0001][r.below(8) as usize];
            h[0..4].copy_from_slice(&t.to_le_bytes());
            h[8..16].copy_from_slice(&r.below(8192).to_le_bytes());
            mem.write_slice(&h, GuestAddress(HEADERS + 16 * i))
                .expect("header");
        }
        // Random indirect tables.
        for t in 0..8u64 {
            let n = r.below(8) + 1;
            for i in 0..n {
                let f = rand_flags(&mut r);
                let mut f = f;
                let (a, l) = if i == 0 {
                    f &= !2;
                    (HEADERS + 16 * r.below(8), 16)
                } else {
                    rand_buf(&mut r, f & 2 != 0, size)
                };
                let mut dsc = [0u8; 16];
                dsc[0..8].copy_from_slice(&a.to_le_bytes());
                dsc[8..12].copy_from_slice(&l.to_le_bytes());
                dsc[12..14].copy_from_slice(&f.to_le_bytes());
                dsc[14..16].copy_from_slice(&(r.below(n + 2) as u16).to_le_bytes());
                mem.write_slice(&dsc, GuestAddress(TABLES + 0x1000 * t + 16 * i))
                    .expect("indirect table");
            }
        }
        // Chains in the descriptor table (64 entries), heads distinct.
        let mut descs = Vec::new();
        for i in 0..64u16 {
            let mut f = rand_flags(&mut r);
            let (a, l) = if f & 4 != 0 {
                let len = if r.chance(80) {
                    16 * (r.below(8) as u32 + 1)
                } else {
                    r.below(200) as u32
                };
                (TABLES + 0x1000 * r.below(8), len)
            } else if r.chance(30) {
                f &= !2;
                (HEADERS + 16 * r.below(8), 16)
            } else {
                rand_buf(&mut r, f & 2 != 0, size)
            };
            let next = if r.chance(80) {
                r.below(64) as u16
            } else {
                r.below(1000) as u16
            };
            descs.push((i, a, l, f, next));
        }
        let expected = snapshot(&mem, size);
        let q = &mut c.queues[0];
        let nheads = r.below(16) as u16 + 1;
        let mut heads: Vec<u16> = (0..64).collect();
        for i in 0..64 {
            heads.swap(i, r.below(64) as usize);
        }
        for (k, h) in heads.iter().take(nheads as usize).enumerate() {
            let ds: &[(u16, u64, u32, u16, u16)] = if k == 0 { &descs } else { &[] };
            q.submit_raw(&mem, ds, *h);
        }
        q.kick();
        let deadline = Instant::now() + Duration::from_secs(10);
        while q.outstanding() > 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: {} chains never completed",
                q.outstanding()
            );
            completed += q.wait(&mem, Duration::from_secs(10)).len();
        }
        // Nothing outside the scratch area changed.
        let after = snapshot(&mem, size);
        let s0 = (SCRATCH - DATA_BASE) as usize;
        let s1 = s0 + SCRATCH_LEN as usize;
        assert!(
            after[..s0] == expected[..s0],
            "round {round}: write below scratch"
        );
        if let Some(i) = (s1..after.len()).find(|i| after[*i] != expected[*i]) {
            let end = (i + 32).min(after.len());
            panic!(
                "round {round}: write above scratch at {:#x}: {:02x?} expected {:02x?}",
                DATA_BASE + i as u64,
                &after[i..end],
                &expected[i..end]
            );
        }
    }
    assert!(completed > 0);
    drop(c);
    // A ring the guest broke (available index far ahead, head out of
    // range) stops the queue; the next frontend is served.
    for broken in 0..2 {
        let mut c = Client::connect(&sock, Opts::default());
        c.start();
        let mem = c.mem.clone();
        if broken == 0 {
            let idx = c.queues[0].avail_idx.wrapping_add(500);
            c.queues[0].set_avail_idx(&mem, idx);
        } else {
            c.queues[0].submit_raw(&mem, &[], 5000);
        }
        c.queues[0].kick();
        std::thread::sleep(Duration::from_millis(100));
        // The other queue is not affected.
        drop(c);
        still_serves(&mut d, &sock);
    }
}

fn send_raw(s: &mut UnixStream, req: u32, flags: u32, payload: &[u8]) {
    let mut m = Vec::with_capacity(12 + payload.len());
    m.extend_from_slice(&req.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    let _ = s.write_all(&m);
}

fn drain(s: &mut UnixStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut b = [0u8; 4096];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            break;
        }
    }
}

#[test]
fn malformed_messages() {
    let (mut d, sock) = start();
    let mut r = Rng(0xfeed_beef_0bad_cafe);
    for round in 0..rounds(40) {
        let mut s = connect_stream(&sock);
        match round % 4 {
            // Garbage bytes.
            0 => {
                let n = r.below(100) as usize + 1;
                let b: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                let _ = s.write_all(&b);
            }
            // A header announcing more than it sends.
            1 => {
                let mut m = Vec::new();
                m.extend_from_slice(&(r.below(50) as u32).to_le_bytes());
                m.extend_from_slice(&1u32.to_le_bytes());
                m.extend_from_slice(&(r.next() as u32 | 0x1000).to_le_bytes());
                let _ = s.write_all(&m);
            }
            // Every request code with random payloads, after SET_OWNER.
            _ => {
                send_raw(&mut s, 3, 1, &[]);
                for _ in 0..20 {
                    let req = r.below(48) as u32;
                    let flags = 1 | if r.chance(50) { 8 } else { 0 };
                    let n = [0usize, 4, 8, 16, 24, 40, 100][r.below(7) as usize];
                    let mut p: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                    if n >= 8 && r.chance(50) {
                        // Small indices are more interesting.
                        p[0..4].copy_from_slice(&(r.below(4) as u32).to_le_bytes());
                    }
                    send_raw(&mut s, req, flags, &p);
                    drain(&mut s);
                }
            }
        }
        drop(s);
        if round % 10 == 9 {
            still_serves(&mut d, &sock);
        }
    }
    still_serves(&mut d, &sock);
}

/// Messages whose descriptors or addresses do not fit: the daemon
/// refuses them instead of mapping past a file's end or using unknown
/// addresses.
#[test]
fn bad_tables_and_descriptors() {
    use qsd_blackbox_tests::vhost_client::{BackendExt, FrontendExt};
    use std::os::fd::AsRawFd;
    use vhost::vhost_user::message::VhostUserInflight;
    use vhost::{VhostUserMemoryRegionInfo, VringConfigData};
    let (mut d, sock) = start();
    // A memory table larger than its file.
    {
        let c = Client::connect(&sock, Opts::default());
        let small = tempfile::tempfile().expect("file");
        small.set_len(4096).expect("size");
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: 1 << 20,
            userspace_addr: 0x7000_0000,
            mmap_offset: 0,
            mmap_handle: small.as_raw_fd(),
        };
        // Either refused, or the connection is dropped for it.
        let r = c.fe.set_mem_table(&[region]);
        assert!(r.is_err() || c.fe.get_features().is_err());
    }
    // Ring addresses outside the table, bad sizes, unknown queues, an
    // inflight area larger than its file: each refused, or the connection
    // is dropped for it (a round trip after it tells).
    type Bad = Box<dyn Fn(&mut Client) -> bool>;
    let cases: Vec<(&str, Bad)> = vec![
        (
            "vring num 0",
            Box::new(|c: &mut Client| c.fe.set_vring_num(0, 0).is_err()),
        ),
        (
            "vring num 3",
            Box::new(|c: &mut Client| c.fe.set_vring_num(0, 3).is_err()),
        ),
        (
            "vring num 2048",
            Box::new(|c: &mut Client| c.fe.set_vring_num(0, 2048).is_err()),
        ),
        (
            "vring num queue 9",
            Box::new(|c: &mut Client| c.fe.set_vring_num(9, 64).is_err()),
        ),
        (
            "vring addr",
            Box::new(|c: &mut Client| {
                let bad = VringConfigData {
                    queue_max_size: 128,
                    queue_size: 128,
                    flags: 0,
                    desc_table_addr: 0xdead_0000_0000,
                    used_ring_addr: 0xdead_0000_1000,
                    avail_ring_addr: 0xdead_0000_2000,
                    log_addr: None,
                };
                c.fe.set_vring_addr(0, &bad).is_err()
            }),
        ),
        (
            "vring base 7",
            Box::new(|c: &mut Client| c.fe.get_vring_base(7).is_err()),
        ),
        (
            "inflight",
            Box::new(|c: &mut Client| {
                let small = tempfile::tempfile().expect("file");
                small.set_len(64).expect("size");
                let inf = VhostUserInflight {
                    mmap_size: 1 << 20,
                    mmap_offset: 0,
                    num_queues: 1,
                    queue_size: 128,
                };
                c.fe.set_inflight_fd(&inf, small.as_raw_fd()).is_err()
            }),
        ),
        (
            "config",
            Box::new(|c: &mut Client| {
                let flags = vhost::vhost_user::message::VhostUserConfigFlags::WRITABLE;
                c.fe.get_config(0, 4096, flags, &[0u8; 4096]).is_err()
            }),
        ),
    ];
    for (what, bad) in cases {
        let mut c = Client::connect(
            &sock,
            Opts {
                inflight: true,
                ..Opts::default()
            },
        );
        c.start();
        let refused = bad(&mut c) || c.fe.get_features().is_err();
        assert!(refused, "{what} accepted");
    }
    still_serves(&mut d, &sock);
}
