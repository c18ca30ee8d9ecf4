//! Micro-benchmark of the block I/O path: random 4 KiB reads and writes
//! through a raw node over a file node, from tokio tasks, as an export
//! would issue them. Prints requests per second and CPU time per request.
//!
//! Run: `cargo run --release -p qsd-runtime --example block_bench -- [DIR] [aio]`
//! (DIR defaults to /dev/shm; aio is threads or io_uring; set
//! QSD_BLOCK_INLINE=0 to force every request through the thread pool).

use std::sync::Arc;
use std::time::Instant;

use qsd_runtime::block::{IoBuf, ParentKind, Perm, WriteFlags};
use qsd_runtime::Daemon;

fn cpu_time() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "/dev/shm".into());
    let aio = args.get(2).cloned().unwrap_or_else(|| "threads".into());
    let path = format!("{dir}/qsd-bench-{}.img", std::process::id());
    let size: u64 = 256 << 20;
    std::fs::write(&path, vec![1u8; size as usize]).expect("image");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let d = Daemon::new();
        let o = serde_json::json!({"driver": "raw", "node-name": "r",
            "file": {"driver": "file", "filename": path, "aio": aio}});
        let o = qapi::visit::from_value(&o, qapi::visit::Mode::Json).expect("options");
        qsd_runtime::block::blockdev_add(&d, o).expect("blockdev-add");
        let n = d.block.node("r").expect("node");
        let _w = d
            .block
            .attach(
                &n,
                ParentKind::Backend {
                    name: String::new(),
                },
                "root",
                Perm::CONSISTENT_READ | Perm::WRITE,
                Perm::ALL,
            )
            .expect("attach");
        for (what, qd) in [("read", 1), ("read", 16), ("write", 1), ("write", 16)] {
            let per_task = 200_000 / qd;
            let t0 = Instant::now();
            let c0 = cpu_time();
            let mut tasks = Vec::new();
            for t in 0..qd {
                let n = Arc::clone(&n);
                tasks.push(tokio::spawn(async move {
                    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
                    for _ in 0..per_task {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let off = (x % (size / 4096)) * 4096;
                        if what == "read" {
                            n.read(off, 4096).await.expect("read");
                        } else {
                            n.write(
                                off,
                                IoBuf::from_slice(&[7u8; 4096], 1),
                                WriteFlags::default(),
                            )
                            .await
                            .expect("write");
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_time() - c0;
            let reqs = (per_task * qd) as f64;
            println!(
                "{what:5} qd={qd:2}: {:8.0} req/s, {:5.2} us wall/req, {:5.2} us CPU/req",
                reqs / wall,
                wall / reqs * 1e6,
                cpu / reqs * 1e6
            );
        }
    });
    let _ = std::fs::remove_file(&path);
}
