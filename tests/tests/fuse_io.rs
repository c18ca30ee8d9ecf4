//! The FUSE export under concurrent load (our daemon only: QSD serves one
//! request at a time, which is what these tests show we do not): requests
//! are in flight together, concurrent writes and reads keep the data
//! intact, and concurrent growing writes never lose each other's data.

mod fuse_support;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse_support::{pattern, require_fuse, tmpfs_dir, wait_mount, write_image, Run};
use qsd_blackbox_tests::{Daemon, Impl, Qmp};

fn ok(q: &mut Qmp, line: &str) {
    let r = q.cmd(line);
    assert!(r.get("return").is_some(), "{line}: {r}");
}

/// Starts our daemon and exports node `node` (added by `blockdev`) at
/// `mnt` with `opts` (JSON members).
fn export(blockdev: &str, opts: &str) -> (Run, Qmp, PathBuf) {
    require_fuse();
    let run = Run {
        d: Daemon::start(Impl::Ours),
    };
    let m = run.dir().join("mnt");
    std::fs::write(&m, b"").expect("mnt");
    let mut q = run.d.qmp();
    ok(&mut q, blockdev);
    ok(
        &mut q,
        &format!(
            r#"{{"execute":"block-export-add","arguments":{{"type":"fuse","id":"e","node-name":"n","mountpoint":"{}"{opts}}}}}"#,
            m.display()
        ),
    );
    wait_mount(&m, true);
    (run, q, m)
}

fn unexport(q: &mut Qmp, m: &Path) {
    ok(
        q,
        r#"{"execute":"block-export-del","arguments":{"id":"e"}}"#,
    );
    wait_mount(m, false);
}

fn open_direct(m: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(m)
        .expect("opening the export")
}

/// A 4 KiB-aligned buffer of `len` bytes.
struct Aligned {
    v: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let v = vec![0u8; len + 4096];
        let at = v.as_ptr().align_offset(4096);
        Aligned { v, at, len }
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.v[self.at..self.at + self.len]
    }
}

#[test]
fn requests_are_in_flight_together() {
    const THREADS: u64 = 8;
    const LATENCY_MS: u64 = 400;
    let (_run, mut q, m) = export(
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"null-co","node-name":"n","size":8388608,"read-zeroes":true,"latency-ns":{}}}}}"#,
            LATENCY_MS * 1_000_000
        ),
        "",
    );
    let files: Vec<std::fs::File> = (0..THREADS)
        .map(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&m)
                .expect("open")
        })
        .collect();
    let start = Instant::now();
    let threads: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            std::thread::spawn(move || {
                let mut b = Aligned::new(4096);
                let n = f.read_at(b.buf(), i as u64 * 65536).expect("read");
                assert_eq!(n, 4096);
                assert!(b.buf().iter().all(|&x| x == 0));
                f
            })
        })
        .collect();
    let files: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("reader"))
        .collect();
    let took = start.elapsed();
    // One at a time they would take THREADS * LATENCY.
    assert!(
        took < Duration::from_millis(LATENCY_MS * THREADS / 2),
        "{THREADS} reads of {LATENCY_MS} ms each took {took:?}: not concurrent"
    );
    // Closing flushes (each another latency); do it together too.
    std::thread::scope(|s| {
        for f in files {
            s.spawn(move || drop(f));
        }
    });
    unexport(&mut q, &m);
}

#[test]
fn concurrent_writes_and_reads_keep_data_intact() {
    const THREADS: usize = 8;
    const SLICE: usize = 1 << 20;
    const OPS: usize = 150;
    let shm = tmpfs_dir();
    let img = shm.path().join("img");
    write_image(&img, &[], (THREADS * SLICE) as u64);
    let (_run, mut q, m) = export(
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","node-name":"n","filename":"{}"}}}}"#,
            img.display()
        ),
        r#","writable":true"#,
    );
    let m = Arc::new(m);
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = m.clone();
                s.spawn(move || {
                    let f = open_direct(&m);
                    let buffered = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&*m)
                        .expect("open");
                    let base = (t * SLICE) as u64;
                    let mut model = vec![0u8; SLICE];
                    let data = pattern(OPS * 8192, t as u64 + 100);
                    let mut x = t as u64 * 7919 + 1;
                    for op in 0..OPS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let len = 4096 * (1 + (x % 2) as usize);
                        let off = ((x >> 8) as usize % (SLICE / 4096 - 2)) * 4096;
                        let chunk = &data[op * 8192..op * 8192 + len];
                        if op % 3 == 0 {
                            buffered.write_at(chunk, base + off as u64).expect("write");
                        } else {
                            let mut b = Aligned::new(len);
                            b.buf().copy_from_slice(chunk);
                            f.write_at(b.buf(), base + off as u64).expect("write");
                        }
                        model[off..off + len].copy_from_slice(chunk);
                        let mut b = Aligned::new(len);
                        f.read_at(b.buf(), base + off as u64).expect("read");
                        assert_eq!(b.buf(), chunk, "thread {t} op {op}: read back differs");
                    }
                    f.sync_all().expect("fsync");
                    model
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("writer")).collect()
    });
    unexport(&mut q, &m);
    let got = std::fs::read(&img).expect("image");
    for (t, model) in models.iter().enumerate() {
        assert!(
            got[t * SLICE..(t + 1) * SLICE] == model[..],
            "slice {t} of the image differs from what was written"
        );
    }
}

#[test]
fn concurrent_growing_writes_lose_nothing() {
    const THREADS: usize = 8;
    const CHUNK: usize = 64 << 10;
    const ROUNDS: usize = 16;
    let shm = tmpfs_dir();
    let img = shm.path().join("img");
    write_image(&img, &[], 0);
    let (_run, mut q, m) = export(
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","node-name":"n","filename":"{}"}}}}"#,
            img.display()
        ),
        r#","writable":true,"growable":true"#,
    );
    // Thread t writes chunk r * THREADS + t for every round r: the file
    // grows under all of them at once.
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || {
                let f = open_direct(m);
                for r in 0..ROUNDS {
                    let i = r * THREADS + t;
                    let mut b = Aligned::new(CHUNK);
                    b.buf().copy_from_slice(&pattern(CHUNK, i as u64 + 1));
                    let n = f.write_at(b.buf(), (i * CHUNK) as u64).expect("write");
                    assert_eq!(n, CHUNK);
                }
            });
        }
    });
    let size = std::fs::metadata(&m).expect("stat").len();
    assert_eq!(size, (THREADS * ROUNDS * CHUNK) as u64);
    unexport(&mut q, &m);
    let got = std::fs::read(&img).expect("image");
    assert_eq!(got.len(), THREADS * ROUNDS * CHUNK);
    for i in 0..THREADS * ROUNDS {
        assert!(
            got[i * CHUNK..(i + 1) * CHUNK] == pattern(CHUNK, i as u64 + 1)[..],
            "chunk {i} was lost"
        );
    }
}

#[test]
fn export_in_an_iothread_serves_requests() {
    let shm = tmpfs_dir();
    let img = shm.path().join("img");
    write_image(&img, &pattern(1 << 20, 9), 1 << 20);
    require_fuse();
    let run = Run {
        d: Daemon::start(Impl::Ours),
    };
    let m = run.dir().join("mnt");
    std::fs::write(&m, b"").expect("mnt");
    let mut q = run.d.qmp();
    ok(
        &mut q,
        r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io0"}}"#,
    );
    ok(
        &mut q,
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","node-name":"n","filename":"{}"}}}}"#,
            img.display()
        ),
    );
    ok(
        &mut q,
        &format!(
            r#"{{"execute":"block-export-add","arguments":{{"type":"fuse","id":"e","node-name":"n","mountpoint":"{}","writable":true,"iothread":"io0","writethrough":true}}}}"#,
            m.display()
        ),
    );
    wait_mount(&m, true);
    let f = open_direct(&m);
    let mut b = Aligned::new(65536);
    b.buf().copy_from_slice(&pattern(65536, 42));
    assert_eq!(f.write_at(b.buf(), 131072).expect("write"), 65536);
    let mut r = Aligned::new(65536);
    f.read_at(r.buf(), 131072).expect("read");
    assert_eq!(r.buf(), &pattern(65536, 42)[..]);
    drop(f);
    unexport(&mut q, &m);
    let got = std::fs::read(&img).expect("image");
    assert_eq!(&got[131072..196608], &pattern(65536, 42)[..]);
    assert_eq!(&got[..131072], &pattern(1 << 20, 9)[..131072]);
}
