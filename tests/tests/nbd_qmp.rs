//! QMP differential tests of the NBD server and block export commands:
//! the same command sequence goes to QSD and to us, and every reply and
//! event must be byte-identical (timestamps and package masked).

mod nbd_common;

use std::path::Path;
use std::time::Duration;

use nbd_common::*;
use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};
use serde_json::json;

/// A step of a scenario.
enum Step {
    /// Send a command, record everything up to its reply.
    Cmd(String),
    /// Record lines until an event with this name arrives.
    Event(&'static str),
    /// Connect a raw client that completes the handshake with `disk` and
    /// stays connected.
    Client,
    /// Disconnect the raw clients.
    DropClients,
}

fn c(execute: &str, args: serde_json::Value) -> Step {
    Step::Cmd(cmd(execute, args))
}

fn transcript(which: Impl, steps: impl Fn(&Path) -> Vec<Step>) -> Vec<String> {
    let d = Daemon::start(which);
    let dir = d.dir.path().to_path_buf();
    make_image(&dir.join("a.img"), 1 << 20, &[(0, 4096, 1)]);
    let mut q: Qmp = qmp(&d);
    let mut out = Vec::new();
    let mut clients = Vec::new();
    for step in steps(&dir) {
        match step {
            Step::Cmd(line) => {
                out.push(format!(
                    ">> {}",
                    line.replace(&dir.display().to_string(), "DIR")
                ));
                q.send_line(&line);
                loop {
                    let l = normalize(&q.read_line());
                    let done = !l.contains("\"event\": ");
                    out.push(l);
                    if done {
                        break;
                    }
                }
            }
            Step::Event(name) => {
                let (got, found) = q.drain_until(name, Duration::from_secs(10));
                assert!(found, "{which:?}: no {name} event: {got}");
                for l in got.lines() {
                    out.push(normalize(l));
                }
            }
            Step::Client => {
                let mut r = Raw::connect(&dir.join("nbd.sock"));
                r.go("disk", true, false, &[]);
                clients.push(r);
            }
            Step::DropClients => clients.clear(),
        }
    }
    out
}

fn differential(steps: impl Fn(&Path) -> Vec<Step>) {
    let a = transcript(Impl::Qsd, &steps);
    let b = transcript(Impl::Ours, &steps);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "QSD vs ours\nQSD:  {a:#?}\nours: {b:#?}");
    }
    assert_eq!(a.len(), b.len(), "QSD: {a:#?}\nours: {b:#?}");
}

fn unix(p: &Path) -> serde_json::Value {
    json!({"type": "unix", "data": {"path": p}})
}

fn file_node(dir: &Path, name: &str, ro: bool) -> Step {
    c(
        "blockdev-add",
        json!({"driver": "file", "node-name": name, "filename": dir.join("a.img"), "read-only": ro}),
    )
}

#[test]
fn server_start_and_stop_errors() {
    // A port that is in use for both runs.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    differential(|dir| {
        let sock = dir.join("nbd.sock");
        vec![
            c("nbd-server-stop", json!(null)),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "n1"}),
            ),
            file_node(dir, "n1", false),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "n1"}),
            ),
            c("nbd-server-add", json!({"device": "n1"})),
            c("nbd-server-add", json!({"device": "nonode"})),
            c("nbd-server-remove", json!({"name": "nonode"})),
            c("block-export-del", json!({"id": "nonode"})),
            c(
                "nbd-server-start",
                json!({"addr": unix(Path::new("/nonexistent/dir/x.sock"))}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port}}}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "fd", "data": {"str": "3"}}}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "vsock", "data": {"cid": "2", "port": "1"}}}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "vsock", "data": {"cid": "x", "port": "1"}}}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "vsock", "data": {"cid": "2", "port": "-1"}}}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": unix(&sock), "tls-creds": "nope"}),
            ),
            c(
                "nbd-server-start",
                json!({"addr": unix(&sock), "tls-authz": "nope"}),
            ),
            c("nbd-server-stop", json!(null)),
            c(
                "nbd-server-start",
                json!({"addr": unix(&sock), "max-connections": 0, "handshake-max-seconds": 0}),
            ),
            c("nbd-server-start", json!({"addr": unix(&sock)})),
            c("query-block-exports", json!(null)),
            c("nbd-server-stop", json!(null)),
            c("nbd-server-stop", json!(null)),
            c(
                "nbd-server-start",
                json!({"addr": {"type": "inet", "data": {"host": "::1", "port": "0"}}}),
            ),
            c("nbd-server-stop", json!(null)),
        ]
    });
    drop(busy);
}

#[test]
fn export_add_checks_and_removal() {
    let long = "a".repeat(4097);
    let max = "b".repeat(4096);
    differential(|dir| {
        vec![
            c(
                "nbd-server-start",
                json!({"addr": unix(&dir.join("nbd.sock"))}),
            ),
            file_node(dir, "n1", false),
            file_node(dir, "ro", true),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "1bad", "node-name": "n1"}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "nope"}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "ro", "writable": true}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "ro", "iothread": "io0"}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "ro", "name": long}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "ro", "name": "d", "description": long}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "ro", "bitmaps": ["b"]}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "max", "node-name": "ro", "name": max}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "n1", "writable": true,
                       "writethrough": true, "allocation-depth": true}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "n1"}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e2", "node-name": "n1"}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e2", "node-name": "n1", "name": "other",
                       "description": "d", "allow-inactive": true}),
            ),
            c("nbd-server-add", json!({"device": "ro", "writable": true})),
            c(
                "nbd-server-add",
                json!({"device": "ro", "name": "zz", "description": "hi"}),
            ),
            c("nbd-server-add", json!({"device": "ro", "name": "zz"})),
            c(
                "nbd-server-add",
                json!({"device": "ro", "name": "bm", "bitmap": "b"}),
            ),
            c("query-block-exports", json!(null)),
            c("blockdev-del", json!({"node-name": "n1"})),
            c("block_resize", json!({"node-name": "n1", "size": 2 << 20})),
            c("block-export-del", json!({"id": "nope"})),
            c("block-export-del", json!({"id": "e1"})),
            c("block-export-del", json!({"id": "e1"})),
            c("nbd-server-remove", json!({"name": "zz", "mode": "hard"})),
            c("nbd-server-remove", json!({"name": "zz"})),
            c("query-block-exports", json!(null)),
            c("nbd-server-stop", json!(null)),
            c("query-block-exports", json!(null)),
            c("blockdev-del", json!({"node-name": "n1"})),
        ]
    });
}

#[test]
fn removal_with_clients_connected() {
    differential(|dir| {
        vec![
            c(
                "nbd-server-start",
                json!({"addr": unix(&dir.join("nbd.sock"))}),
            ),
            file_node(dir, "n1", false),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "n1", "name": "disk"}),
            ),
            Step::Client,
            c("block-export-del", json!({"id": "e1"})),
            c("block-export-del", json!({"id": "e1", "mode": "safe"})),
            c("query-block-exports", json!(null)),
            c("block-export-del", json!({"id": "e1", "mode": "hard"})),
            Step::Event("BLOCK_EXPORT_DELETED"),
            c("query-block-exports", json!(null)),
            Step::DropClients,
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e2", "node-name": "n1", "name": "disk"}),
            ),
            Step::Client,
            c("nbd-server-stop", json!(null)),
            c("query-block-exports", json!(null)),
            Step::DropClients,
            c(
                "nbd-server-start",
                json!({"addr": unix(&dir.join("nbd.sock"))}),
            ),
            c(
                "block-export-add",
                json!({"type": "nbd", "id": "e3", "node-name": "n1", "name": "disk"}),
            ),
            Step::Client,
            c("quit", json!(null)),
        ]
    });
}

/// Export types not implemented yet (vduse-blk) are refused with a clear error
/// (QSD implements it), after the common checks.
#[test]
fn other_export_types_are_not_implemented() {
    let d = Daemon::start(Impl::Ours);
    let mut q = qmp(&d);
    let dir = d.dir.path();
    make_image(&dir.join("a.img"), 1 << 20, &[]);
    q.cmd(&cmd(
        "blockdev-add",
        json!({"driver": "file", "node-name": "n", "filename": dir.join("a.img")}),
    ));
    // (vhost-user-blk and FUSE are implemented: tests/tests/vhost_qmp.rs,
    // tests/tests/fuse_qmp.rs.)
    for (typ, extra) in [("vduse-blk", json!({"name": "v"}))] {
        let mut args = json!({"type": typ, "id": "x", "node-name": "n"});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let r = q.cmd(&cmd("block-export-add", args));
        let desc = r["error"]["desc"].as_str().unwrap_or_default().to_string();
        assert!(
            desc.contains(typ) && desc.contains("not implemented"),
            "{typ}: {r}"
        );
        // The common checks come first, as in QEMU.
        let mut args = json!({"type": typ, "id": "x", "node-name": "missing"});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let r = q.cmd(&cmd("block-export-add", args));
        assert_eq!(
            r["error"]["desc"], "Cannot find device='' nor node-name='missing'",
            "{r}"
        );
    }
    let r = q.cmd(&cmd("query-block-exports", json!(null)));
    assert_eq!(r, json!({"return": []}));
}
