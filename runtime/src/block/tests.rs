//! Unit tests of the node data path and the drivers, on temporary files
//! in /tmp (ext4 here: O_DIRECT, SEEK_DATA) and /dev/shm (tmpfs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use qapi::types::BlockdevOptions;
use serde_json::json;

use super::graph::ParentKind;
use super::{BlockNode, IoBuf, Perm, WriteFlags, ZeroFlags};
use crate::Daemon;

struct TmpImg {
    dir: PathBuf,
}

impl TmpImg {
    fn new(base: &str, size: u64) -> TmpImg {
        let dir = PathBuf::from(base).join(format!(
            "qsd-block-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let f = std::fs::File::create(dir.join("a.img")).expect("create");
        f.set_len(size).expect("set_len");
        TmpImg { dir }
    }
    fn path(&self) -> String {
        self.dir.join("a.img").display().to_string()
    }
}

impl Drop for TmpImg {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn add(d: &Daemon, v: serde_json::Value) -> Result<(), String> {
    let o: BlockdevOptions =
        qapi::visit::from_value(&v, qapi::visit::Mode::Json).map_err(|e| e.0)?;
    super::blockdev_add(d, o).map_err(|e| e.desc)
}

/// A writer attached to `name` (as an export would).
fn writer(d: &Daemon, name: &str) -> (Arc<BlockNode>, super::Attachment) {
    let n = d.block.node(name).expect("node");
    let a = d
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
        .expect("attach writer");
    (n, a)
}

async fn roundtrip(n: &BlockNode) {
    let align = n.mem_alignment();
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    n.write(4096, IoBuf::from_slice(&data, align), WriteFlags::default())
        .await
        .expect("write");
    let back = n.read(4096, 8192).await.expect("read");
    assert_eq!(&back[..], &data[..]);
    // Unaligned for O_DIRECT: goes through bounce buffers.
    n.write(
        5000,
        IoBuf::from_slice(b"hello", 1),
        WriteFlags { fua: true },
    )
    .await
    .expect("unaligned write");
    let back = n.read(4998, 9).await.expect("unaligned read");
    assert_eq!(&back[2..7], b"hello");
    assert_eq!(back[0], data[902]);
    n.flush().await.expect("flush");
    // Out of range: EIO.
    let e = n.read(n.size() - 1, 2).await.expect_err("past the end");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

async fn file_roundtrip(base: &str, extra: serde_json::Value) {
    let img = TmpImg::new(base, 1 << 20);
    let d = Daemon::new();
    let mut o = json!({"driver": "file", "node-name": "f", "filename": img.path()});
    if let (Some(m), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    add(&d, o).expect("blockdev-add");
    let (n, _w) = writer(&d, "f");
    roundtrip(&n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_threads_on_ext4_and_tmpfs() {
    file_roundtrip("/tmp", json!({})).await;
    file_roundtrip("/dev/shm", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_o_direct() {
    file_roundtrip("/tmp", json!({"cache": {"direct": true}})).await;
    file_roundtrip("/dev/shm", json!({"cache": {"direct": true}})).await;
    let img = TmpImg::new("/tmp", 1 << 20);
    let d = Daemon::new();
    add(&d, json!({"driver": "file", "node-name": "f", "filename": img.path(), "cache": {"direct": true}}))
        .expect("add");
    let n = d.block.node("f").expect("node");
    assert!(n.request_alignment() >= 512, "{}", n.request_alignment());
    assert!(n.mem_alignment() >= 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_io_uring() {
    file_roundtrip("/tmp", json!({"aio": "io_uring"})).await;
    file_roundtrip(
        "/tmp",
        json!({"aio": "io_uring", "cache": {"direct": true}}),
    )
    .await;
    file_roundtrip("/dev/shm", json!({"aio": "io_uring"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeroes_discard_and_status() {
    let img = TmpImg::new("/tmp", 1 << 20);
    let d = Daemon::new();
    add(
        &d,
        json!({"driver": "raw", "node-name": "r", "discard": "unmap",
                    "file": {"driver": "file", "filename": img.path()}}),
    )
    .expect("add");
    let (n, _w) = writer(&d, "r");
    // A fresh sparse file is a hole.
    let e = n.block_status(0, 1 << 20).await.expect("status");
    assert!(e.zero && !e.data, "{e:?}");
    assert_eq!(e.len, 1 << 20);
    n.write(
        65536,
        IoBuf::from_slice(&[1u8; 65536], 1),
        WriteFlags::default(),
    )
    .await
    .expect("write");
    let e = n.block_status(0, 1 << 20).await.expect("status");
    assert_eq!((e.len, e.zero, e.data), (65536, true, false));
    let e = n.block_status(65536, 1 << 20).await.expect("status");
    assert!(e.data && !e.zero && e.len >= 65536, "{e:?}");
    // Write zeroes with unmap punches a hole.
    n.write_zeroes(
        65536,
        65536,
        ZeroFlags {
            may_unmap: true,
            ..Default::default()
        },
    )
    .await
    .expect("zeroes");
    let e = n.block_status(65536, 65536).await.expect("status");
    assert!(e.zero && !e.data, "{e:?}");
    assert!(n
        .read(65536, 65536)
        .await
        .expect("read")
        .iter()
        .all(|b| *b == 0));
    // Zeroes without unmap keep reading zero.
    n.write(0, IoBuf::from_slice(&[7u8; 4096], 1), WriteFlags::default())
        .await
        .expect("write");
    n.write_zeroes(0, 4096, ZeroFlags::default())
        .await
        .expect("zeroes");
    assert!(n.read(0, 4096).await.expect("read").iter().all(|b| *b == 0));
    // Discard passes down (the inline file child has discard=unmap).
    n.write(
        131072,
        IoBuf::from_slice(&[7u8; 65536], 1),
        WriteFlags::default(),
    )
    .await
    .expect("write");
    n.discard(131072, 65536).await.expect("discard");
    let e = n.block_status(131072, 65536).await.expect("status");
    assert!(e.zero, "{e:?}");
    let f = n.child("file").expect("file child");
    let stats = super::info::node_stats(&f);
    let v = serde_json::to_value(stats.driver_specific).expect("json");
    assert_eq!(v["discard-nb-ok"], json!(1));
    assert_eq!(v["discard-bytes-ok"], json!(65536));
    assert_eq!(n.wr_highest_offset(), 196608);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_ignored_by_default_and_detect_zeroes() {
    let img = TmpImg::new("/tmp", 1 << 20);
    let d = Daemon::new();
    add(
        &d,
        json!({"driver": "file", "node-name": "f", "filename": img.path(), "detect-zeroes": "on"}),
    )
    .expect("add");
    let (n, _w) = writer(&d, "f");
    n.write(0, IoBuf::from_slice(&[7u8; 4096], 1), WriteFlags::default())
        .await
        .expect("write");
    // discard=ignore: nothing happens.
    n.discard(0, 4096).await.expect("discard");
    assert!(n.read(0, 4096).await.expect("read").iter().all(|b| *b == 7));
    // An all-zero write becomes write-zeroes (ZERO_RANGE keeps it
    // allocated or not; it reads zero either way).
    n.write(0, IoBuf::new(4096, 1), WriteFlags::default())
        .await
        .expect("write");
    assert!(n.read(0, 4096).await.expect("read").iter().all(|b| *b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_read_only() {
    let img = TmpImg::new("/tmp", 1 << 20);
    let d = Daemon::new();
    add(
        &d,
        json!({"driver": "file", "node-name": "ro", "filename": img.path(), "read-only": true}),
    )
    .expect("add");
    let n = d.block.node("ro").expect("node");
    let e = d
        .block
        .attach(
            &n,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            Perm::WRITE,
            Perm::ALL,
        )
        .expect_err("writer on read-only node");
    assert_eq!(e.desc, "Block node is read-only");
    // Without a writer, writes fail with EPERM.
    let e = n
        .write(0, IoBuf::new(512, 1), WriteFlags::default())
        .await
        .expect_err("write");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    // Two users that do not share what the other takes conflict.
    add(&d, json!({"driver": "null-co", "node-name": "n"})).expect("add");
    let n = d.block.node("n").expect("node");
    let _a = d
        .block
        .attach(
            &n,
            ParentKind::Job {
                job_type: "mirror".into(),
                id: "j".into(),
            },
            "source",
            Perm::CONSISTENT_READ,
            Perm::CONSISTENT_READ,
        )
        .expect("job");
    let e = d
        .block
        .attach(
            &n,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            Perm::WRITE,
            Perm::ALL,
        )
        .expect_err("conflict");
    assert_eq!(
        e.desc,
        "Permission conflict on node 'n': permissions 'write' are both required by an unnamed block device (uses node 'n' as 'root' child) and unshared by mirror job 'j' (uses node 'n' as 'source' child)."
    );
    // A user makes blockdev-del fail.
    let e = d.block.delete("n").expect_err("in use");
    assert_eq!(e.desc, "Block device n is in use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_threshold_event_and_resize_hook() {
    let img = TmpImg::new("/dev/shm", 1 << 20);
    let d = Daemon::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _events = d.events.subscribe(tx);
    add(
        &d,
        json!({"driver": "file", "node-name": "f", "filename": img.path()}),
    )
    .expect("add");
    let n = d.block.node("f").expect("node");
    let _w = d
        .block
        .attach(
            &n,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            Perm::WRITE | Perm::RESIZE,
            Perm::ALL,
        )
        .expect("writer");
    let sizes: Arc<Mutex<Vec<u64>>> = Arc::default();
    let s2 = sizes.clone();
    let _sub = n.subscribe(move |e| {
        let super::NodeEvent::Resized(s) = e;
        s2.lock().expect("lock").push(*s);
    });
    n.set_write_threshold(100);
    n.write(0, IoBuf::new(64, 1), WriteFlags::default())
        .await
        .expect("write");
    assert!(rx.try_recv().is_err());
    n.write(64, IoBuf::new(64, 1), WriteFlags::default())
        .await
        .expect("write");
    let ev = rx.try_recv().expect("event");
    assert_eq!(ev["event"], json!("BLOCK_WRITE_THRESHOLD"));
    assert_eq!(
        ev["data"],
        json!({"node-name": "f", "amount-exceeded": 28, "write-threshold": 100})
    );
    assert!(rx.try_recv().is_err());
    assert_eq!(n.write_threshold(), 0);
    n.co_truncate(2 << 20).await.expect("truncate");
    assert_eq!(*sizes.lock().expect("lock"), vec![2 << 20]);
    assert_eq!(std::fs::metadata(img.path()).expect("meta").len(), 2 << 20);
}

/// Holding a node that does not share "write" makes a writing qemu-io
/// fail with QEMU's message, and our own second writer too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_lock_against_qemu_io() {
    let img = TmpImg::new("/tmp", 1 << 20);
    let d = Daemon::new();
    add(
        &d,
        json!({"driver": "file", "node-name": "a", "filename": img.path()}),
    )
    .expect("add");
    add(
        &d,
        json!({"driver": "file", "node-name": "b", "filename": img.path()}),
    )
    .expect("add");
    let a = d.block.node("a").expect("a");
    let _hold = d
        .block
        .attach(
            &a,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            Perm::CONSISTENT_READ,
            Perm::ALL & !Perm::WRITE,
        )
        .expect("reader that does not share write");
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", &img.path()])
        .output()
        .expect("qemu-io must be installed");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    assert!(
        err.contains(&format!(
            "Is another process using the image [{}]?",
            img.path()
        )),
        "{err}"
    );
    // Inside our process the second node's file descriptor sees it too.
    let b = d.block.node("b").expect("b");
    let e = d
        .block
        .attach(
            &b,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            Perm::WRITE,
            Perm::ALL,
        )
        .expect_err("second writer");
    assert_eq!(e.desc, "Failed to get \"write\" lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_nodes() {
    let d = Daemon::new();
    add(
        &d,
        json!({"driver": "null-co", "node-name": "n", "size": 4096, "read-zeroes": true}),
    )
    .expect("add");
    add(
        &d,
        json!({"driver": "null-aio", "node-name": "m", "latency-ns": 1000}),
    )
    .expect("add");
    let (n, _w) = writer(&d, "n");
    assert_eq!(n.size(), 4096);
    n.write(0, IoBuf::new(512, 1), WriteFlags::default())
        .await
        .expect("write");
    let e = n.block_status(0, 4096).await.expect("status");
    assert!(e.zero && !e.data && e.depth == 1);
    let m = d.block.node("m").expect("m");
    assert_eq!(m.size(), 1 << 30);
    assert_eq!(m.read(0, 512).await.expect("read").len(), 512);
    let e = add(
        &d,
        json!({"driver": "null-co", "node-name": "x", "size": -1}),
    )
    .expect_err("size");
    assert_eq!(e, "Value '-1' is out of range for parameter 'size'");
}
