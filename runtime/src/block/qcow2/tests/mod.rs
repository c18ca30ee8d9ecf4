//! In-process tests of the qcow2 driver against QEMU's tools: images made
//! by `qemu-img` read back right, images we write pass `qemu-img check`
//! and compare equal to a raw shadow copy.
//!
//! These need `qemu-img` (they fail, not skip, without it).

mod bench;
mod corrupt;
mod crash;
mod random;
mod read;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use qapi::types::BlockdevOptions;
use serde_json::json;

use crate::block::graph::ParentKind;
use crate::block::{Attachment, BlockNode, Perm};
use crate::Daemon;

/// A temporary directory removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "qsd-qcow2-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("mkdir");
        Dir(p)
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed: {text}");
    text
}

/// `qemu-img check` must report a clean image (no errors, no leaks).
pub fn check_clean(path: &str) {
    let out = Command::new("qemu-img")
        .args(["check", "-U", "--output=json", path])
        .output()
        .expect("qemu-img");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "qemu-img check: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for k in ["corruptions", "leaks", "check-errors"] {
        assert_eq!(
            v.get(k).and_then(|x| x.as_u64()).unwrap_or(0),
            0,
            "{path}: {text}"
        );
    }
}

/// `qemu-img check`: no corruption (leaks allowed); returns the leaks.
pub fn check_consistent(path: &str) -> u64 {
    let out = Command::new("qemu-img")
        .args(["check", "-U", "--output=json", path])
        .output()
        .expect("qemu-img");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "qemu-img check: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        v.get("corruptions").and_then(|x| x.as_u64()).unwrap_or(0),
        0,
        "{text}"
    );
    assert_eq!(
        v.get("check-errors").and_then(|x| x.as_u64()).unwrap_or(0),
        0,
        "{text}"
    );
    v.get("leaks").and_then(|x| x.as_u64()).unwrap_or(0)
}

pub fn add(d: &Daemon, v: serde_json::Value) -> Result<(), String> {
    let o: BlockdevOptions =
        qapi::visit::from_value(&v, qapi::visit::Mode::Json).map_err(|e| e.0)?;
    crate::block::blockdev_add(d, o).map_err(|e| e.desc)
}

/// Opens `path` as qcow2 node `name`, with a writer attached (as an
/// export would); `extra` adds options.
pub fn open_rw(
    d: &Daemon,
    name: &str,
    path: &str,
    extra: serde_json::Value,
) -> (Arc<BlockNode>, Attachment) {
    let mut o = json!({"driver": "qcow2", "node-name": name, "discard": "unmap",
        "file": {"driver": "file", "filename": path, "discard": "unmap"}});
    if let (Some(m), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    add(d, o).expect("blockdev-add");
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

/// Opens read-only.
pub fn open_ro(d: &Daemon, name: &str, path: &str) -> Arc<BlockNode> {
    add(
        d,
        json!({"driver": "qcow2", "node-name": name, "read-only": true,
            "file": {"driver": "file", "filename": path}}),
    )
    .expect("blockdev-add");
    d.block.node(name).expect("node")
}

/// Deterministic pseudo-random numbers (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fills `buf` with a pattern derived from `seed`.
pub fn pattern(buf: &mut [u8], seed: u64) {
    let mut r = Rng(seed | 1);
    for chunk in buf.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Reads a whole file.
pub fn slurp(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read")
}
