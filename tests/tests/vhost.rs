//! vhost-user-blk export: a Rust frontend (the `vhost` crate's frontend
//! side, a memfd as guest memory, a split-ring driver) against qsd and
//! against qemu-storage-daemon, comparing what both answer where QSD's
//! behaviour is defined.

use std::path::{Path, PathBuf};
use std::time::Duration;

use qsd_blackbox_tests::vhost_client::*;
use qsd_blackbox_tests::{Daemon, Impl};

const MIB: u64 = 1 << 20;

/// A daemon exporting a fresh image over vhost-user-blk.
struct Setup {
    d: Daemon,
    img: PathBuf,
    sock: PathBuf,
}

fn setup(which: Impl, size: u64, export_opts: &str) -> Setup {
    setup_with(which, size, export_opts, &[])
}

fn setup_with(which: Impl, size: u64, export_opts: &str, extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(size))
        .expect("image");
    let sock = dir.join("vhost.sock");
    let bd = format!(
        "driver=file,node-name=disk,filename={},discard=unmap",
        img.display()
    );
    let ex = format!(
        "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,addr.path={}{export_opts}",
        sock.display()
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--blockdev", &bd, "--export", &ex]);
    let d = Daemon::start_with(which, false, &args);
    qsd_blackbox_tests::wait_for_path(&sock);
    Setup { d, img, sock }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn both() -> [Impl; 2] {
    [Impl::Ours, Impl::Qsd]
}

fn read_file(p: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).expect("open image");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).expect("read image");
    b
}

/// Features, protocol features, queue count and configuration space.
#[test]
fn negotiation_matches_qsd() {
    let mut seen = Vec::new();
    for which in both() {
        for opts in [",writable=on,num-queues=3,logical-block-size=4096", ""] {
            let s = setup(which, 64 * MIB, opts);
            let mut c = Client::connect(&s.sock, Opts::default());
            let features = c.fe.get_features().expect("features");
            let pf = c.fe.get_protocol_features().expect("protocol features");
            let queues = c.fe.get_queue_num().expect("queue num");
            let mut cfg = c.config(60);
            // QSD shows wce=0 although it caches writes; we show the
            // cache as it is (see docs).
            cfg[32] = 0;
            seen.push((which, opts, features, pf, queues, cfg));
        }
    }
    let (ours, qsd) = seen.split_at(2);
    for (o, q) in ours.iter().zip(qsd) {
        assert_eq!(
            o.2 | 1 << 26,
            q.2,
            "features ({}) differ beyond LOG_ALL",
            o.1
        );
        // QSD's protocol features besides INFLIGHT_SHMFD that we offer too.
        let common = ProtocolFeatures::MQ
            | ProtocolFeatures::REPLY_ACK
            | ProtocolFeatures::BACKEND_REQ
            | ProtocolFeatures::CONFIG
            | ProtocolFeatures::CONFIGURE_MEM_SLOTS;
        assert_eq!(o.3 & !ProtocolFeatures::INFLIGHT_SHMFD, common);
        assert!(q.3.contains(common));
        assert!(o.3.contains(ProtocolFeatures::INFLIGHT_SHMFD));
        assert!(!q.3.contains(ProtocolFeatures::INFLIGHT_SHMFD));
        assert_eq!(o.4, q.4, "queue count");
        assert_eq!(o.5, q.5, "config space ({})", o.1);
    }
    // Read-only exports offer VIRTIO_BLK_F_RO.
    assert_ne!(ours[1].2 & (1 << 5), 0);
    assert_eq!(ours[0].2 & (1 << 5), 0);
}

/// The scripted requests whose results are compared between qsd and QSD.
fn script() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..48u64 {
        ops.push(Op::Write {
            sector: i * 16,
            data: pattern(i, 8192),
        });
    }
    ops.push(Op::Flush);
    for i in 0..48u64 {
        ops.push(Op::Read {
            sector: i * 16,
            len: 8192,
        });
    }
    let total = 64 * MIB / 512;
    ops.extend([
        Op::GetId { len: 20 },
        Op::GetId { len: 7 },
        Op::GetId { len: 40 },
        // Out of range, straddling the end, not a multiple of 512.
        Op::Read {
            sector: total,
            len: 512,
        },
        Op::Read {
            sector: total - 1,
            len: 1024,
        },
        Op::Write {
            sector: total - 1,
            data: vec![1; 1024],
        },
        Op::Read {
            sector: 8,
            len: 100,
        },
        Op::Write {
            sector: u64::MAX / 512,
            data: vec![1; 512],
        },
        // Discard and write zeroes: plain, UNMAP, bad flags, too long,
        // out of range.
        Op::WriteZeroes {
            sector: 0,
            num: 16,
            flags: 0,
        },
        Op::WriteZeroes {
            sector: 16,
            num: 16,
            flags: 1,
        },
        Op::WriteZeroes {
            sector: 32,
            num: 16,
            flags: 2,
        },
        Op::WriteZeroes {
            sector: 0,
            num: 32769,
            flags: 0,
        },
        Op::WriteZeroes {
            sector: total - 8,
            num: 16,
            flags: 0,
        },
        Op::Discard {
            sector: 48,
            num: 16,
            flags: 0,
        },
        Op::Discard {
            sector: 64,
            num: 16,
            flags: 1,
        },
        Op::Discard {
            sector: 0,
            num: 32769,
            flags: 0,
        },
        Op::Read {
            sector: 0,
            len: 8192 * 5,
        },
        // A discard payload longer than one segment.
        Op::Raw {
            type_: VIRTIO_BLK_T_DISCARD,
            sector: 0,
            out: vec![0; 32],
            in_len: 0,
        },
        // A short discard payload.
        Op::Raw {
            type_: VIRTIO_BLK_T_WRITE_ZEROES,
            sector: 0,
            out: vec![0; 8],
            in_len: 0,
        },
        // Unknown types, and the barrier bit.
        Op::Raw {
            type_: 99,
            sector: 0,
            out: vec![],
            in_len: 0,
        },
        Op::Raw {
            type_: 7,
            sector: 0,
            out: vec![],
            in_len: 16,
        },
        Op::Raw {
            type_: 0x8000_0000,
            sector: 8,
            out: vec![],
            in_len: 512,
        },
    ]);
    ops
}

fn run_script(which: Impl, opts: &str, queues: usize, depth: usize) -> Vec<Done> {
    let s = setup(which, 64 * MIB, opts);
    let mut c = Client::connect(
        &s.sock,
        Opts {
            queues,
            ..Opts::default()
        },
    );
    c.start();
    let ops = script();
    let mut out = Vec::new();
    // Writes on every queue at once, then the rest in order.
    let (writes, rest) = ops.split_at(48);
    for (q, chunk) in writes.chunks(48 / queues).enumerate() {
        out.extend(c.run(q % queues, chunk, depth));
    }
    out.extend(c.run(0, &rest[..49], depth));
    // Requests whose order matters run one at a time.
    out.extend(c.run(queues - 1, &rest[49..], 1));
    out
}

#[test]
fn data_path_matches_qsd() {
    let ours = run_script(Impl::Ours, ",writable=on,num-queues=2", 2, 32);
    let qsd = run_script(Impl::Qsd, ",writable=on,num-queues=2", 2, 32);
    assert_eq!(ours.len(), qsd.len());
    for (i, (o, q)) in ours.iter().zip(&qsd).enumerate() {
        assert!(
            o == q,
            "request {i}: ours {}/{} QSD {}/{}",
            o.status,
            o.used_len,
            q.status,
            q.used_len
        );
    }
    // The reads returned what was written.
    for i in 0..48usize {
        assert_eq!(ours[49 + i].status, S_OK);
        assert!(ours[49 + i].data == pattern(i as u64, 8192), "read {i}");
    }
}

#[test]
fn logical_block_size_alignment_matches_qsd() {
    let ops = vec![
        Op::Write {
            sector: 8,
            data: vec![3; 4096],
        },
        Op::Write {
            sector: 1,
            data: vec![3; 4096],
        },
        Op::Read {
            sector: 4,
            len: 4096,
        },
        Op::Read {
            sector: 8,
            len: 512,
        },
        Op::Discard {
            sector: 7,
            num: 8,
            flags: 0,
        },
        Op::WriteZeroes {
            sector: 16,
            num: 8,
            flags: 0,
        },
    ];
    let mut res = Vec::new();
    for which in both() {
        let s = setup(which, 16 * MIB, ",writable=on,logical-block-size=4096");
        // Also: without EVENT_IDX (every completion is notified).
        let mut c = Client::connect(
            &s.sock,
            Opts {
                event_idx: false,
                ..Opts::default()
            },
        );
        c.start();
        res.push(c.run(0, &ops, 1));
    }
    assert!(res[0] == res[1]);
}

#[test]
fn read_only_export_refuses_writes() {
    let mut res = Vec::new();
    for which in both() {
        let s = setup(which, 16 * MIB, "");
        std::fs::write(&s.img, pattern(5, 4096)).expect("seed image");
        let mut c = Client::connect(&s.sock, Opts::default());
        c.start();
        let r = c.run(
            0,
            &[
                Op::Write {
                    sector: 0,
                    data: vec![0; 512],
                },
                Op::Discard {
                    sector: 0,
                    num: 8,
                    flags: 0,
                },
                Op::WriteZeroes {
                    sector: 0,
                    num: 8,
                    flags: 0,
                },
                Op::Read {
                    sector: 0,
                    len: 4096,
                },
                Op::Flush,
            ],
            1,
        );
        assert_eq!(r[0].status, S_IOERR);
        assert_eq!(r[1].status, S_IOERR);
        assert_eq!(r[2].status, S_IOERR);
        assert!(r[3].data == pattern(5, 4096));
        assert!(read_file(&s.img, 0, 4096) == pattern(5, 4096));
        res.push(r);
    }
    assert!(res[0] == res[1]);
}

/// Many requests in flight on several queues, indirect descriptors, and
/// the image checked from the host.
#[test]
fn many_in_flight_on_several_queues() {
    for which in both() {
        let s = setup(which, 64 * MIB, ",writable=on,num-queues=4");
        let mut c = Client::connect(
            &s.sock,
            Opts {
                queues: 4,
                queue_size: 256,
                slot_size: 128 * 1024,
                indirect: true,
                ..Opts::default()
            },
        );
        c.start();
        // Submit on all queues before waiting on any.
        let mem = c.mem.clone();
        let mut expected = Vec::new();
        for q in 0..4 {
            for i in 0..64u64 {
                let sector = (q as u64 * 64 + i) * 64;
                let data = pattern(sector, 32 * 1024);
                c.queues[q].submit(
                    &mem,
                    &Op::Write {
                        sector,
                        data: data.clone(),
                    },
                    i as usize,
                );
                expected.push((sector, data));
            }
            c.queues[q].kick();
        }
        for q in 0..4 {
            let mut got = 0;
            while got < 64 {
                for (_, d) in c.queues[q].wait(&mem, Duration::from_secs(20)) {
                    assert_eq!(d.status, S_OK, "{which:?} queue {q}");
                    got += 1;
                }
            }
        }
        for (sector, data) in &expected {
            assert!(&read_file(&s.img, sector * 512, data.len()) == data);
        }
        let reads: Vec<Op> = expected
            .iter()
            .map(|(s, d)| Op::Read {
                sector: *s,
                len: d.len() as u32,
            })
            .collect();
        let r = c.run(3, &reads, 64);
        for (d, (_, data)) in r.iter().zip(&expected) {
            assert!(&d.data == data);
        }
    }
}

/// A frontend disconnects; the next one is served by the same daemon.
#[test]
fn reconnect_after_disconnect() {
    for which in both() {
        let s = setup(which, 16 * MIB, ",writable=on");
        for round in 0..3u64 {
            let mut c = Client::connect(&s.sock, Opts::default());
            c.start();
            let r = c.run(
                0,
                &[
                    Op::Write {
                        sector: round * 8,
                        data: pattern(round, 4096),
                    },
                    Op::Read {
                        sector: round * 8,
                        len: 4096,
                    },
                ],
                1,
            );
            assert!(r[1].data == pattern(round, 4096), "{which:?} round {round}");
            if round > 0 {
                let prev = c.one(
                    0,
                    Op::Read {
                        sector: (round - 1) * 8,
                        len: 4096,
                    },
                );
                assert!(prev.data == pattern(round - 1, 4096));
            }
            drop(c);
        }
    }
}

/// `block_resize` updates the capacity and sends a config-change message.
#[test]
fn resize_notifies_the_frontend() {
    for which in both() {
        let s = setup(which, 16 * MIB, ",writable=on");
        let mut c = Client::connect(&s.sock, Opts::default());
        c.start();
        assert_eq!(c.capacity(), 16 * MIB / 512);
        let mut q = s.d.qmp();
        let r =
            q.cmd(r#"{"execute":"block_resize","arguments":{"node-name":"disk","size":33554432}}"#);
        assert!(r.get("return").is_some(), "{which:?}: {r}");
        let mut ok = false;
        for _ in 0..200 {
            if c.config_changes.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ok, "{which:?}: no config change message");
        assert_eq!(c.capacity(), 32 * MIB / 512);
        let d = c.one(
            0,
            Op::Write {
                sector: 20 * MIB / 512,
                data: vec![9; 512],
            },
        );
        assert_eq!(d.status, S_OK);
    }
}

/// The guest toggles the write cache through the config space (`wce`).
#[test]
fn wce_can_be_set() {
    let s = setup(Impl::Ours, 16 * MIB, ",writable=on,writethrough=on");
    let mut c = Client::connect(&s.sock, Opts::default());
    assert_eq!(c.config(33)[32], 0, "writethrough shows wce=0");
    c.fe.set_config(
        32,
        vhost::vhost_user::message::VhostUserConfigFlags::empty(),
        &[1],
    )
    .expect("SET_CONFIG");
    assert_eq!(c.config(33)[32], 1);
    c.start();
    assert_eq!(
        c.one(
            0,
            Op::Write {
                sector: 0,
                data: vec![1; 512]
            }
        )
        .status,
        S_OK
    );
}

/// Inflight tracking: requests taken from the ring but never completed
/// (the daemon died) are run again by the next daemon.
#[test]
fn inflight_requests_survive_a_daemon_restart() {
    let s = setup(Impl::Ours, 16 * MIB, ",writable=on");
    let mut c = Client::connect(
        &s.sock,
        Opts {
            inflight: true,
            ..Opts::default()
        },
    );
    assert!(c.protocol.contains(ProtocolFeatures::INFLIGHT_SHMFD));
    c.start();
    assert_eq!(
        c.one(
            0,
            Op::Write {
                sector: 0,
                data: pattern(1, 4096)
            }
        )
        .status,
        S_OK
    );
    // Put a write in the ring without kicking, and mark it in flight in
    // the area as a daemon would have when taking it, then "crash".
    let mem = c.mem.clone();
    let head = c.queues[0].submit(
        &mem,
        &Op::Write {
            sector: 64,
            data: pattern(2, 4096),
        },
        7,
    );
    let (inf, area) = c.inflight.take().expect("inflight area");
    {
        use std::os::unix::fs::FileExt;
        // Queue 0: header then 16-byte entries: inflight, .., counter.
        let at = 16 + 16 * head as u64;
        let mut e = [0u8; 16];
        e[0] = 1;
        e[8..16].copy_from_slice(&99u64.to_le_bytes());
        area.write_all_at(&e, at).expect("mark in flight");
    }
    let memfd = c.memfd.try_clone().expect("memfd");
    let used_before = c.used_idx(0);
    let queue_state = c.queues.remove(0);
    drop(c);
    drop(s.d); // kill the daemon
               // A new daemon on the same image and socket.
    let bd = format!("driver=file,node-name=disk,filename={}", s.img.display());
    let ex = format!(
        "type=vhost-user-blk,id=exp0,node-name=disk,addr.type=unix,addr.path={},writable=on",
        s.sock.display()
    );
    let _d2 = Daemon::start_with(Impl::Ours, false, &["--blockdev", &bd, "--export", &ex]);
    let mut c2 = Client::connect_with_memory(
        &s.sock,
        Opts {
            inflight: true,
            ..Opts::default()
        },
        Some((memfd, Some((inf, area)))),
    );
    c2.queues.push(queue_state);
    c2.start();
    let mem = c2.mem.clone();
    let done = c2.queues[0].wait(&mem, Duration::from_secs(10));
    assert_eq!(done.len(), 1, "the in-flight write was run again");
    assert_eq!(done[0].0, 7);
    assert_eq!(done[0].1.status, S_OK);
    assert_eq!(c2.used_idx(0), used_before.wrapping_add(1));
    assert!(read_file(&s.img, 64 * 512, 4096) == pattern(2, 4096));
    // The queue goes on normally afterwards.
    assert!(
        c2.one(
            0,
            Op::Read {
                sector: 0,
                len: 4096
            }
        )
        .data
            == pattern(1, 4096)
    );
}

/// Requests on an iothread, with writethrough.
#[test]
fn iothread_and_writethrough() {
    let s = setup_with(
        Impl::Ours,
        16 * MIB,
        ",writable=on,iothread=io0,writethrough=on,num-queues=2",
        &["--object", "iothread,id=io0"],
    );
    let mut c = Client::connect(
        &s.sock,
        Opts {
            queues: 2,
            ..Opts::default()
        },
    );
    c.start();
    let ops: Vec<Op> = (0..32u64)
        .map(|i| Op::Write {
            sector: i * 8,
            data: pattern(i, 4096),
        })
        .collect();
    for d in c.run(1, &ops, 16) {
        assert_eq!(d.status, S_OK);
    }
    for i in 0..32u64 {
        assert!(read_file(&s.img, i * 4096, 4096) == pattern(i, 4096));
    }
}

/// Deleting the iothread (QSD allows it) moves the queues of the next
/// frontend to the main loop.
#[test]
fn iothread_deleted_under_the_export() {
    let s = setup_with(
        Impl::Ours,
        16 * MIB,
        ",writable=on,iothread=io0",
        &["--object", "iothread,id=io0"],
    );
    let mut q = s.d.qmp();
    let r = q.cmd(r#"{"execute":"object-del","arguments":{"id":"io0"}}"#);
    assert!(r.get("return").is_some(), "{r}");
    let mut c = Client::connect(&s.sock, Opts::default());
    c.start();
    let d = c.one(
        0,
        Op::Write {
            sector: 0,
            data: pattern(3, 4096),
        },
    );
    assert_eq!(d.status, S_OK);
    assert!(
        c.one(
            0,
            Op::Read {
                sector: 0,
                len: 4096
            }
        )
        .data
            == pattern(3, 4096)
    );
}
