//! Rough throughput numbers (run by hand, in release mode):
//! `cargo test --release -p qsd-runtime --lib qcow2::tests::bench -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::*;
use crate::block::{IoBuf, WriteFlags};

async fn at_depth<F, Fut>(depth: u64, ops: u64, f: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..depth {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = k;
            while i < ops {
                f(i).await;
                i += depth;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    ops as f64 / t.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput() {
    let dir = Dir::new("bench");
    let img = dir.path("b.qcow2");
    let size: u64 = 4 << 30;
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", &img, &size.to_string()],
    );
    let d = Daemon::new();
    let (n, _a) = open_rw(&d, "q", &img, json!({}));
    let ops = 40_000;
    let nn = n.clone();
    let iops = at_depth(32, ops, move |i| {
        let n = nn.clone();
        async move {
            let off = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (size / 4096)) * 4096;
            n.write(off, IoBuf::new(4096, 4096), WriteFlags::default())
                .await
                .expect("write");
        }
    })
    .await;
    eprintln!("random 4k write (allocating), depth 32: {iops:.0} IOPS");
    let nn = n.clone();
    let iops = at_depth(32, ops, move |i| {
        let n = nn.clone();
        async move {
            let off = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (size / 4096)) * 4096;
            n.read(off, 4096).await.expect("read");
        }
    })
    .await;
    eprintln!("random 4k read, depth 32: {iops:.0} IOPS");
    let nn = n.clone();
    let seq = 1024;
    let rate = at_depth(4, seq, move |i| {
        let n = nn.clone();
        async move {
            n.write(
                (size / 2) + i * (1 << 20),
                IoBuf::new(1 << 20, 4096),
                WriteFlags::default(),
            )
            .await
            .expect("write");
        }
    })
    .await;
    eprintln!("sequential 1M write: {:.0} MiB/s", rate);
    let nn = n.clone();
    let rate = at_depth(4, seq, move |i| {
        let n = nn.clone();
        async move {
            n.write(
                (size / 2) + i * (1 << 20),
                IoBuf::new(1 << 20, 4096),
                WriteFlags::default(),
            )
            .await
            .expect("write");
        }
    })
    .await;
    eprintln!("sequential 1M rewrite (allocated): {:.0} MiB/s", rate);
    // The same on a plain file node, for scale.
    let raw = dir.path("b.raw");
    std::fs::File::create(&raw).expect("raw");
    add(
        &d,
        json!({"driver": "file", "node-name": "r", "filename": raw}),
    )
    .expect("add");
    let rn = d.block.node("r").expect("node");
    let _ra = d
        .block
        .attach(
            &rn,
            crate::block::graph::ParentKind::Backend {
                name: String::new(),
            },
            "root",
            crate::block::Perm::CONSISTENT_READ
                | crate::block::Perm::WRITE
                | crate::block::Perm::RESIZE,
            crate::block::Perm::ALL,
        )
        .expect("attach");
    let rate = at_depth(4, seq, move |i| {
        let n = rn.clone();
        async move {
            n.driver()
                .write(
                    i * (1 << 20),
                    IoBuf::new(1 << 20, 4096),
                    WriteFlags::default(),
                )
                .await
                .expect("write");
        }
    })
    .await;
    eprintln!("sequential 1M write, file node: {:.0} MiB/s", rate);
    n.flush().await.expect("flush");
    let t = Instant::now();
    let mut off = 0;
    let mut extents = 0;
    while off < size {
        let e = n.block_status(off, size - off).await.expect("status");
        off += e.len;
        extents += 1;
    }
    eprintln!(
        "block status over 4 GiB: {extents} extents in {:?}",
        t.elapsed()
    );
}
