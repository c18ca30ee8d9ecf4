//! Differential tests of the block layer's QMP commands: the same lines go
//! to qemu-storage-daemon 10.0.2 and to qsd, each with its own copy of the
//! same images, and the replies must be the same bytes after masking the
//! private directory and the random part of generated node names.

use std::path::Path;

use qsd_blackbox_tests::{mask_generated, normalize, qemu_img, Daemon, Impl};
use serde_json::{json, Value};

/// The images every scenario starts with, made by qemu-img in `dir`.
fn make_images(dir: &Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    qemu_img(&["create", "-q", "-f", "raw", &p("a.img"), "1M"]);
    qemu_img(&["create", "-q", "-f", "raw", &p("b.img"), "64k"]);
    std::fs::write(dir.join("odd.img"), vec![0u8; 1000]).expect("odd.img");
    std::fs::create_dir(dir.join("sub")).expect("sub");
}

/// Runs `lines` (with `DIR` standing for the daemon's directory) on a fresh
/// daemon; returns "request => reply" lines.
fn run(which: Impl, lines: &[String]) -> Vec<String> {
    let d = Daemon::start(which);
    make_images(d.dir.path());
    let dir = d.dir.path().display().to_string();
    let mut q = d.qmp();
    lines
        .iter()
        .map(|l| {
            q.send_line(&l.replace("DIR", &dir));
            let r = mask_generated(&normalize(&q.read_line()).replace(&dir, "DIR"));
            format!("{l}\n => {r}")
        })
        .collect()
}

/// Sends `lines` to both daemons and compares every reply.
fn same(lines: &[String]) {
    let theirs = run(Impl::Qsd, lines);
    let ours = run(Impl::Ours, lines);
    for (t, o) in theirs.iter().zip(&ours) {
        if o != t {
            let i = o
                .bytes()
                .zip(t.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(o.len().min(t.len()));
            let from = i.saturating_sub(150);
            panic!(
                "reply differs from qemu-storage-daemon's at byte {i}:\n ours: ...{}\nqemu: ...{}",
                o.get(from..(i + 150).min(o.len())).unwrap_or(o),
                t.get(from..(i + 150).min(t.len())).unwrap_or(t)
            );
        }
    }
    assert_eq!(ours.len(), theirs.len());
}

fn cmd(execute: &str, args: Value) -> String {
    json!({"execute": execute, "arguments": args}).to_string()
}

fn add(args: Value) -> String {
    cmd("blockdev-add", args)
}

fn file(name: &str, img: &str) -> String {
    add(json!({"driver": "file", "node-name": name, "filename": format!("DIR/{img}")}))
}

fn del(name: &str) -> String {
    cmd("blockdev-del", json!({ "node-name": name }))
}

fn nodes() -> String {
    cmd("query-named-block-nodes", json!({}))
}

fn graph() -> String {
    r#"{"execute":"x-debug-query-block-graph"}"#.to_string()
}

fn reopen(opts: Value) -> String {
    cmd("blockdev-reopen", json!({ "options": [opts] }))
}

#[test]
fn node_names() {
    same(&[
        add(json!({"driver": "file", "filename": "DIR/a.img"})),
        file("1a", "a.img"),
        file("", "a.img"),
        file("a b", "a.img"),
        file("\u{e9}", "a.img"),
        file("a234567890123456789012345678901", "a.img"),
        file("a2345678901234567890123456789012", "a.img"),
        file("a-b.c_d", "a.img"),
        file("a-b.c_d", "a.img"),
        add(
            json!({"driver": "raw", "node-name": "r", "file": {"driver": "file", "node-name": "bad name", "filename": "DIR/a.img"}}),
        ),
        add(
            json!({"driver": "raw", "node-name": "r", "file": {"driver": "file", "node-name": "r", "filename": "DIR/a.img"}}),
        ),
        add(
            json!({"driver": "raw", "node-name": "1x", "file": {"driver": "file", "filename": "DIR/nonexist"}}),
        ),
        add(json!({"driver": "raw", "file": "nonexist"})),
        nodes(),
    ]);
}

#[test]
fn add_errors_in_qemu_order() {
    same(&[
        add(
            json!({"driver": "file", "node-name": "1x", "filename": "DIR/nonexist", "force-share": true, "detect-zeroes": "unmap"}),
        ),
        add(
            json!({"driver": "file", "node-name": "1x", "filename": "DIR/nonexist", "detect-zeroes": "unmap"}),
        ),
        add(json!({"driver": "file", "node-name": "1x", "filename": "DIR/nonexist"})),
        add(json!({"driver": "file", "node-name": "x", "filename": "DIR/nonexist"})),
        add(
            json!({"driver": "raw", "node-name": "x", "file": {"driver": "file", "filename": "DIR/nonexist"}, "detect-zeroes": "unmap"}),
        ),
        add(json!({"driver": "raw", "node-name": "x", "file": "nonex", "detect-zeroes": "unmap"})),
        add(
            json!({"driver": "raw", "node-name": "x", "file": {"driver": "file", "filename": "DIR/a.img"}, "force-share": true}),
        ),
        add(json!({"driver": "file", "node-name": "d", "filename": "/dev/null"})),
        add(json!({"driver": "host_device", "node-name": "d", "filename": "DIR/a.img"})),
        add(json!({"driver": "file", "node-name": "d", "filename": "DIR/sub"})),
        add(json!({"driver": "file", "node-name": "d", "filename": "DIR/a.img", "aio": "native"})),
        add(json!({"driver": "file", "node-name": "d", "filename": ""})),
        add(
            json!({"driver": "file", "node-name": "d", "filename": "DIR/a.img", "pr-manager": "x"}),
        ),
        add(json!({"driver": "vmdk", "node-name": "d", "file": "nonex"})),
        nodes(),
    ]);
}

#[test]
fn raw_windows() {
    same(&[
        add(json!({"driver": "null-co", "node-name": "n"})),
        add(json!({"driver": "raw", "node-name": "r", "file": "n", "offset": -1})),
        add(
            json!({"driver": "raw", "node-name": "r", "file": "n", "offset": 1, "size": 1073741824}),
        ),
        add(json!({"driver": "raw", "node-name": "r2", "file": "n", "size": 1023})),
        add(json!({"driver": "raw", "node-name": "r3", "file": "n", "size": -5})),
        add(json!({"driver": "raw", "node-name": "r4", "file": "n", "offset": 1073741825})),
        add(json!({"driver": "raw", "node-name": "r", "file": "n", "offset": 512, "size": 1024})),
        add(
            json!({"driver": "raw", "node-name": "w", "file": {"driver": "file", "filename": "DIR/a.img"}, "offset": 512}),
        ),
        add(
            json!({"driver": "raw", "node-name": "v", "file": {"driver": "file", "filename": "DIR/b.img"}, "size": 512}),
        ),
        add(
            json!({"driver": "null-co", "node-name": "n3", "size": 0, "read-zeroes": true, "latency-ns": 5}),
        ),
        add(json!({"driver": "null-aio", "node-name": "n4", "latency-ns": 5})),
        add(json!({"driver": "raw", "node-name": "rn", "file": "n4"})),
        nodes(),
        cmd("query-named-block-nodes", json!({"flat": true})),
        graph(),
    ]);
}

#[test]
fn queries() {
    same(&[
        r#"{"execute":"query-block"}"#.to_string(),
        r#"{"execute":"query-blockstats"}"#.to_string(),
        cmd("query-blockstats", json!({"query-nodes": true})),
        nodes(),
        graph(),
        file("f0", "a.img"),
        add(json!({"driver": "raw", "node-name": "r0", "file": "f0"})),
        add(
            json!({"driver": "raw", "node-name": "r1", "file": {"driver": "file", "filename": "DIR/a.img"}}),
        ),
        add(
            json!({"driver": "file", "node-name": "o", "filename": "DIR/odd.img", "read-only": true, "cache": {"direct": true, "no-flush": true}, "discard": "unmap", "detect-zeroes": "unmap", "force-share": true}),
        ),
        add(
            json!({"driver": "file", "node-name": "p", "filename": "DIR/b.img", "auto-read-only": true, "locking": "off", "aio": "io_uring"}),
        ),
        r#"{"execute":"query-block"}"#.to_string(),
        r#"{"execute":"query-blockstats"}"#.to_string(),
        cmd("query-blockstats", json!({"query-nodes": false})),
        cmd("query-blockstats", json!({"query-nodes": true})),
        nodes(),
        graph(),
    ]);
}

#[test]
fn delete() {
    same(&[
        del("nope"),
        file("f", "a.img"),
        add(json!({"driver": "raw", "node-name": "r", "file": "f"})),
        add(
            json!({"driver": "raw", "node-name": "r2", "file": {"driver": "file", "node-name": "inner", "filename": "DIR/b.img"}}),
        ),
        del("f"),
        del("inner"),
        del("r"),
        del("f"),
        del("r2"),
        del("inner"),
        nodes(),
        graph(),
    ]);
}

#[test]
fn resize() {
    same(&[
        add(
            json!({"driver": "file", "node-name": "ro", "filename": "DIR/odd.img", "read-only": true}),
        ),
        cmd("block_resize", json!({"node-name": "ro", "size": 4096})),
        add(json!({"driver": "null-co", "node-name": "n"})),
        cmd("block_resize", json!({"node-name": "n", "size": 4096})),
        file("o3", "odd.img"),
        cmd("block_resize", json!({"node-name": "o3", "size": -1})),
        cmd("block_resize", json!({"node-name": "o3", "size": 2000})),
        cmd("block_resize", json!({"node-name": "nope", "size": 2000})),
        cmd("block_resize", json!({"size": 2000})),
        cmd("block_resize", json!({"device": "o3", "size": 2000})),
        cmd(
            "block_resize",
            json!({"device": "o3", "node-name": "o3", "size": 3000}),
        ),
        cmd(
            "block_resize",
            json!({"node-name": "o3", "size": 9223372036854775807i64}),
        ),
        add(
            json!({"driver": "raw", "node-name": "r", "file": {"driver": "file", "filename": "DIR/b.img"}}),
        ),
        cmd("block_resize", json!({"node-name": "r", "size": 131072})),
        add(
            json!({"driver": "raw", "node-name": "r2", "file": {"driver": "file", "filename": "DIR/a.img"}, "size": 512}),
        ),
        cmd("block_resize", json!({"node-name": "r2", "size": 4096})),
        add(
            json!({"driver": "raw", "node-name": "r3", "file": {"driver": "file", "filename": "DIR/a.img"}, "offset": 512}),
        ),
        cmd("block_resize", json!({"node-name": "r3", "size": 4096})),
        nodes(),
    ]);
}

#[test]
fn write_threshold_and_activation() {
    same(&[
        file("f", "a.img"),
        add(json!({"driver": "raw", "node-name": "r", "file": "f"})),
        cmd(
            "block-set-write-threshold",
            json!({"node-name": "r", "write-threshold": 100}),
        ),
        cmd(
            "block-set-write-threshold",
            json!({"node-name": "xx", "write-threshold": 100}),
        ),
        cmd(
            "blockdev-set-active",
            json!({"node-name": "xx", "active": false}),
        ),
        cmd(
            "blockdev-set-active",
            json!({"node-name": "f", "active": false}),
        ),
        cmd(
            "blockdev-set-active",
            json!({"node-name": "r", "active": false}),
        ),
        nodes(),
        cmd("block_resize", json!({"node-name": "r", "size": 4096})),
        cmd("blockdev-set-active", json!({"active": true})),
        cmd("blockdev-set-active", json!({"active": false})),
        nodes(),
        cmd(
            "blockdev-set-active",
            json!({"node-name": "r", "active": true}),
        ),
        nodes(),
    ]);
}

#[test]
fn reopen_rules() {
    same(&[
        add(json!({"driver": "null-co", "node-name": "n"})),
        reopen(json!({"driver": "null-co", "node-name": "n", "read-only": true})),
        file("f", "a.img"),
        file("f2", "a.img"),
        add(json!({"driver": "raw", "node-name": "r", "file": "f"})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "read-only": true})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "detect-zeroes": "on"})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "offset": 512})),
        reopen(json!({"driver": "raw", "file": "f"})),
        reopen(json!({"driver": "raw", "node-name": "zz", "file": "f"})),
        reopen(json!({"driver": "null-co", "node-name": "r"})),
        reopen(json!({"driver": "file", "node-name": "f", "filename": "DIR/odd.img"})),
        reopen(
            json!({"driver": "file", "node-name": "f", "filename": "DIR/a.img", "read-only": true}),
        ),
        reopen(
            json!({"driver": "file", "node-name": "f", "filename": "DIR/a.img", "cache": {"direct": true}}),
        ),
        reopen(
            json!({"driver": "file", "node-name": "f", "filename": "DIR/a.img", "locking": "off"}),
        ),
        reopen(
            json!({"driver": "file", "node-name": "f", "filename": "DIR/a.img", "aio": "io_uring"}),
        ),
        reopen(
            json!({"driver": "raw", "node-name": "r", "file": {"driver": "file", "filename": "DIR/a.img"}}),
        ),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "nonex"})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f2"})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "force-share": true})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "detect-zeroes": "unmap"})),
        reopen(json!({"driver": "raw", "node-name": "r", "file": "f", "offset": 100000000})),
        add(
            json!({"driver": "raw", "node-name": "r2", "file": {"driver": "file", "filename": "DIR/a.img"}}),
        ),
        reopen(
            json!({"driver": "raw", "node-name": "r2", "file": {"driver": "file", "filename": "DIR/a.img", "cache": {"direct": true}}, "read-only": true}),
        ),
        nodes(),
        graph(),
    ]);
}
