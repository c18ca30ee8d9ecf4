//! Corrupt metadata found by an access: QEMU's message, the
//! `BLOCK_IMAGE_CORRUPTED` event, the corrupt bit on writable images, and
//! no further I/O; read-only images only report.

use serde_json::json;

use super::*;
use crate::block::{IoBuf, WriteFlags};

fn poke(path: &str, off: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(off)).expect("seek");
    f.write_all(bytes).expect("write");
}

/// A 1 MiB image with 64 KiB written at 0: L1 at 0x30000, L2 at 0x40000,
/// data at 0x50000.
fn image(dir: &Dir) -> String {
    let p = dir.path("k.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", &p, "1M"]);
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 5 0 64k", &p]);
    p
}

fn corrupt_bit(path: &str) -> bool {
    let b = std::fs::read(path).expect("read");
    b[79] & 2 != 0
}

fn events(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if e["event"] == "BLOCK_IMAGE_CORRUPTED" {
            v.push(e["data"].clone());
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_l2_table_is_fatal() {
    let dir = Dir::new("corrupt");
    let p = image(&dir);
    poke(&p, 0x30000, &0x8000_0000_0004_0200u64.to_be_bytes());
    let d = Daemon::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _sub = d.events.subscribe(tx);
    let (n, _a) = open_rw(&d, "q", &p, json!({}));
    let e = n.read(0, 4096).await.expect_err("corrupt");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let e = n.read(0, 4096).await.expect_err("unusable");
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEDIUM));
    let ev = events(&mut rx);
    assert_eq!(
        ev,
        vec![json!({"device": "", "node-name": "q",
            "msg": "L2 table offset 0x40200 unaligned (L1 index: 0)", "fatal": true})]
    );
    assert!(corrupt_bit(&p));
    // Now read-write opening is refused, read-only works.
    let d2 = Daemon::new();
    let r = add(
        &d2,
        json!({"driver": "qcow2", "node-name": "x",
        "file": {"driver": "file", "filename": p, "locking": "off"}}),
    );
    assert_eq!(
        r.unwrap_err(),
        "qcow2: Image is corrupt; cannot be opened read/write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_data_cluster_read_only_reports() {
    let dir = Dir::new("corrupt");
    let p = image(&dir);
    poke(&p, 0x40000, &0x8000_0000_0005_0200u64.to_be_bytes());
    let d = Daemon::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _sub = d.events.subscribe(tx);
    let n = open_ro(&d, "q", &p);
    let e = n.read(0, 4096).await.expect_err("corrupt");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    // Not fatal: other clusters still read, no more events.
    n.read(65536, 4096).await.expect("other cluster");
    let _ = n.read(0, 4096).await;
    let ev = events(&mut rx);
    assert_eq!(
        ev,
        vec![json!({"device": "", "node-name": "q",
            "msg": "Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)",
            "fatal": false})]
    );
    assert!(!corrupt_bit(&p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_over_metadata_is_prevented() {
    let dir = Dir::new("corrupt");
    let p = image(&dir);
    // All refcounts zero: the allocator would hand out the header.
    poke(&p, 0x20000, &[0u8; 16]);
    let d = Daemon::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _sub = d.events.subscribe(tx);
    let (n, _a) = open_rw(&d, "q", &p, json!({}));
    let e = n
        .write(
            983040,
            IoBuf::from_slice(&[1u8; 4096], 1),
            WriteFlags::default(),
        )
        .await
        .expect_err("corrupt");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let ev = events(&mut rx);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        ev[0]["msg"],
        "Preventing invalid write on metadata (overlaps with qcow2_header)"
    );
    assert_eq!(ev[0]["fatal"], true);
    assert!(corrupt_bit(&p));
}

/// Random header and table mutations never panic or hang: opening either
/// fails with a message or succeeds, and I/O then returns data or errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mutations_never_panic() {
    let dir = Dir::new("mutate");
    let src = image(&dir);
    let pristine = std::fs::read(&src).expect("read");
    let mut r = Rng(77);
    for i in 0..300 {
        let mut b = pristine.clone();
        // Mutate the header cluster, the L1, refcount table/block or L2.
        let regions = [0u64, 0x10000, 0x20000, 0x30000, 0x40000];
        for _ in 0..1 + r.below(4) {
            let base = regions[r.below(regions.len() as u64) as usize];
            let off = (base + r.below(if base == 0 { 112 } else { 64 })) as usize;
            b[off] = r.next() as u8;
        }
        let p = dir.path(&format!("m{i}.qcow2"));
        std::fs::write(&p, &b).expect("write");
        let d = Daemon::new();
        let ro = r.below(2) == 0;
        let opened = add(
            &d,
            json!({"driver": "qcow2", "node-name": "q", "read-only": ro,
            "file": {"driver": "file", "filename": p}}),
        );
        if let Err(msg) = opened {
            assert!(!msg.is_empty());
            continue;
        }
        let n = d.block.node("q").expect("node");
        let size = n.size();
        let _ = n.read(0, size.min(1 << 20) as usize).await;
        let _ = n.block_status(0, size.max(1)).await;
        if !ro {
            let (n, _a) = (
                n.clone(),
                d.block.attach(
                    &n,
                    crate::block::graph::ParentKind::Backend {
                        name: String::new(),
                    },
                    "root",
                    crate::block::Perm::CONSISTENT_READ | crate::block::Perm::WRITE,
                    crate::block::Perm::ALL,
                ),
            );
            let _ = n
                .write(0, IoBuf::from_slice(&[9u8; 8192], 1), WriteFlags::default())
                .await;
            let _ = n.flush().await;
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// An image left dirty by QEMU with lazy refcounts (qemu-io `abort`) is
/// repaired when opened read-write: data intact, check clean, bit gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_lazy_refcount_image_is_repaired() {
    let dir = Dir::new("dirty");
    let p = dir.path("lz.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "lazy_refcounts=on",
            &p,
            "64M",
        ],
    );
    let out = std::process::Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 3 0 1M",
            "-c",
            "write -P 4 10M 64k",
            "-c",
            "abort",
            &p,
        ])
        .output()
        .expect("qemu-io");
    assert!(!out.status.success());
    let b = std::fs::read(&p).expect("read");
    assert_eq!(b[79] & 1, 1, "qemu-io left the image dirty");
    let d = Daemon::new();
    let (n, _a) = open_rw(&d, "q", &p, json!({}));
    let r = n.read(0, 1 << 20).await.expect("read");
    assert!(r.iter().all(|x| *x == 3));
    let r = n.read(10 << 20, 65536).await.expect("read");
    assert!(r.iter().all(|x| *x == 4));
    n.write(
        20 << 20,
        IoBuf::from_slice(&[5u8; 65536], 1),
        WriteFlags::default(),
    )
    .await
    .expect("write");
    n.flush().await.expect("flush");
    check_clean(&p);
    let b = std::fs::read(&p).expect("read");
    assert_eq!(b[79] & 1, 0, "dirty bit cleared");
}
