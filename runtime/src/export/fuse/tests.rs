//! Unit tests of the FUSE export's operations ([`super::ops`]) on real
//! nodes, without mounting anything: the errno of every refusal and the
//! effect of every accepted request, as QEMU 10.0's FUSE export has them.

use std::path::PathBuf;
use std::sync::Arc;

use qapi::types::BlockdevOptions;
use serde_json::json;

use super::ops::{SetAttr, Shared};
use crate::block::{Attachment, IoBuf, ParentKind, Perm};
use crate::Daemon;

/// A scratch directory on tmpfs (exact allocation), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let d = PathBuf::from("/dev/shm").join(format!(
            "qsd-fuse-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        Scratch(d)
    }

    /// An image of `size` bytes whose first `data` bytes are 0xa5.
    fn image(&self, size: u64, data: usize) -> String {
        let p = self.0.join("img");
        std::fs::write(&p, vec![0xa5u8; data]).expect("write");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open")
            .set_len(size)
            .expect("set_len");
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The state of an export of the node added by `node` (JSON options of
/// `blockdev-add`, node name `n`), with the node attachment that the
/// registry would keep.
fn export(
    d: &Daemon,
    node: serde_json::Value,
    writable: bool,
    growable: bool,
) -> (Arc<Shared>, Attachment) {
    let o: BlockdevOptions =
        qapi::visit::from_value(&node, qapi::visit::Mode::Json).expect("options");
    crate::block::blockdev_add(d, o).expect("blockdev-add");
    let n = d.block.node("n").expect("node");
    let mut perm = Perm::CONSISTENT_READ;
    if writable {
        perm |= Perm::WRITE;
    }
    if writable || growable {
        perm |= Perm::RESIZE;
    }
    let att = d
        .block
        .attach(
            &n,
            ParentKind::Backend {
                name: String::new(),
            },
            "root",
            perm,
            Perm::ALL,
        )
        .expect("attach");
    (Arc::new(Shared::new(n, writable, growable, false)), att)
}

fn file(path: &str) -> serde_json::Value {
    json!({"driver": "file", "node-name": "n", "filename": path})
}

fn data(len: usize, byte: u8) -> IoBuf {
    IoBuf::from_slice(&vec![byte; len], 1)
}

#[tokio::test]
async fn reads_stop_at_the_end() {
    let s = Scratch::new();
    let d = Daemon::new();
    let (sh, _att_sh) = export(&d, file(&s.image(8192, 8192)), false, false);
    assert_eq!(sh.read(0, 4096).await.expect("read").len(), 4096);
    assert_eq!(sh.read(6144, 4096).await.expect("read").len(), 2048);
    assert_eq!(sh.read(8192, 4096).await.expect("read").len(), 0);
    assert_eq!(sh.read(9000, 10).await.err(), Some(libc::ENOMEM));
}

#[tokio::test]
async fn writes_are_clipped_refused_or_grow() {
    let s = Scratch::new();
    let d = Daemon::new();
    let (ro, _att_ro) = export(&d, file(&s.image(8192, 0)), false, false);
    assert_eq!(ro.write(0, data(512, 1)).await.err(), Some(libc::EACCES));
    drop(ro);

    let d = Daemon::new();
    let (rw, _att_rw) = export(&d, file(&s.image(8192, 0)), true, false);
    assert_eq!(rw.write(7168, data(4096, 2)).await, Ok(1024));
    assert_eq!(rw.write(8192, data(4096, 2)).await, Ok(0));
    assert_eq!(rw.write(9000, data(4096, 2)).await.err(), Some(libc::EIO));
    assert_eq!(rw.getattr().size, 8192);

    let d = Daemon::new();
    let s2 = Scratch::new();
    let (grow, _att_grow) = export(&d, file(&s2.image(8192, 0)), true, true);
    assert_eq!(grow.write(16384, data(4096, 3)).await, Ok(4096));
    assert_eq!(grow.getattr().size, 20480);
    let back = grow.read(8192, 12288).await.expect("read");
    assert!(back[..8192].iter().all(|&b| b == 0));
    assert!(back[8192..].iter().all(|&b| b == 3));
}

#[tokio::test]
async fn fallocate_modes() {
    const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
    const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;
    let s = Scratch::new();
    let d = Daemon::new();
    let (sh, _att_sh) = export(&d, file(&s.image(1 << 20, 1 << 20)), true, false);
    // Plain allocation only at or after the end.
    assert_eq!(sh.fallocate(0, 4096, 0).await, Err(libc::EOPNOTSUPP));
    assert_eq!(sh.fallocate(1 << 20, 1 << 20, 0).await, Ok(()));
    let a = sh.getattr();
    assert_eq!((a.size, a.blocks), (2 << 20, 4096));
    // Past the end: grown first (sparse), then allocated.
    assert_eq!(sh.fallocate(3 << 20, 4096, 0).await, Ok(()));
    let a = sh.getattr();
    assert_eq!((a.size, a.blocks), ((3 << 20) + 4096, 4104));
    // Punching needs KEEP_SIZE and reads back zeroes.
    assert_eq!(sh.fallocate(0, 4096, PUNCH).await, Err(libc::EINVAL));
    assert_eq!(sh.fallocate(0, 4096, PUNCH | KEEP).await, Ok(()));
    assert!(sh
        .read(0, 4096)
        .await
        .expect("read")
        .iter()
        .all(|&b| b == 0));
    // Zeroing without KEEP_SIZE grows; with it, stops at the end.
    assert_eq!(sh.fallocate(4 << 20, 4096, ZERO).await, Ok(()));
    assert_eq!(sh.getattr().size, (4 << 20) + 4096);
    assert_eq!(sh.fallocate(4 << 20, 1 << 20, ZERO | KEEP).await, Ok(()));
    assert_eq!(sh.getattr().size, (4 << 20) + 4096);
    // A range starting past the end with KEEP_SIZE is an I/O error.
    assert_eq!(
        sh.fallocate(8 << 20, 4096, ZERO | KEEP).await,
        Err(libc::EIO)
    );
    // Other modes.
    assert_eq!(sh.fallocate(0, 4096, KEEP).await, Err(libc::EOPNOTSUPP));
    assert_eq!(
        sh.fallocate(0, 4096, libc::FALLOC_FL_COLLAPSE_RANGE).await,
        Err(libc::EOPNOTSUPP)
    );
}

#[tokio::test]
async fn null_nodes_cannot_grow_or_punch() {
    let d = Daemon::new();
    let (sh, _att_sh) = export(
        &d,
        json!({"driver": "null-co", "node-name": "n", "size": 65536}),
        true,
        true,
    );
    assert_eq!(
        sh.write(65536, data(512, 1)).await.err(),
        Some(libc::ENOTSUP)
    );
    assert_eq!(
        sh.fallocate(
            0,
            4096,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        )
        .await,
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        sh.fallocate(0, 4096, libc::FALLOC_FL_ZERO_RANGE).await,
        Ok(())
    );
    let a = sh.getattr();
    // No allocation information: the size in blocks.
    assert_eq!((a.size, a.blocks, a.blksize), (65536, 128, 1));
}

#[tokio::test]
async fn setattr_rules() {
    let s = Scratch::new();
    let d = Daemon::new();
    let (ro, _att_ro) = export(&d, file(&s.image(4096, 0)), false, false);
    assert_eq!(ro.getattr().perm, 0o400);
    let times = SetAttr {
        times: true,
        ..Default::default()
    };
    assert_eq!(ro.setattr(times).await.err(), Some(libc::ENOTSUP));
    let uid = SetAttr {
        uid: Some(1),
        ..Default::default()
    };
    assert_eq!(ro.setattr(uid).await.err(), Some(libc::ENOTSUP));
    let group = SetAttr {
        mode: Some(libc::S_IFREG | 0o440),
        ..Default::default()
    };
    assert_eq!(ro.setattr(group).await.err(), Some(libc::EPERM));
    let write = SetAttr {
        mode: Some(libc::S_IFREG | 0o600),
        ..Default::default()
    };
    assert_eq!(ro.setattr(write).await.err(), Some(libc::EROFS));
    let size = SetAttr {
        size: Some(8192),
        ..Default::default()
    };
    assert_eq!(ro.setattr(size).await.err(), Some(libc::EACCES));
    let exec = SetAttr {
        mode: Some(libc::S_IFREG | 0o500),
        ..Default::default()
    };
    assert_eq!(ro.setattr(exec).await.map(|a| a.perm), Ok(0o500));

    ro.set_allow_other(true);
    let a = ro
        .setattr(SetAttr {
            mode: Some(0o444),
            uid: Some(7),
            gid: Some(8),
            ..Default::default()
        })
        .await
        .expect("setattr");
    assert_eq!((a.perm, a.uid, a.gid), (0o444, 7, 8));
}

#[tokio::test]
async fn lseek_finds_data_and_holes() {
    let s = Scratch::new();
    let d = Daemon::new();
    // Data in the first 64 KiB, a hole up to 1 MiB.
    let (sh, _att_sh) = export(&d, file(&s.image(1 << 20, 65536)), false, false);
    assert_eq!(sh.lseek(0, libc::SEEK_DATA).await, Ok(0));
    assert_eq!(sh.lseek(0, libc::SEEK_HOLE).await, Ok(65536));
    assert_eq!(sh.lseek(65536, libc::SEEK_DATA).await, Err(libc::ENXIO));
    assert_eq!(sh.lseek(1 << 20, libc::SEEK_HOLE).await, Ok(1 << 20));
    assert_eq!(
        sh.lseek((1 << 20) + 1, libc::SEEK_HOLE).await,
        Err(libc::ENXIO)
    );
    assert_eq!(sh.lseek(0, libc::SEEK_SET).await, Err(libc::EINVAL));
}
