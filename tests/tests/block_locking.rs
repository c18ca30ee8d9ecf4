//! Image locking against real QEMU tools: our locks and theirs use the
//! same bytes of the image file, so each side sees the other's use.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::{Daemon, Impl};
use serde_json::json;

fn make_image(dir: &Path) -> String {
    let p = dir.join("a.img").display().to_string();
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "raw", &p, "1M"])
        .status()
        .expect("qemu-img must be installed");
    assert!(st.success());
    p
}

/// Starts qemu-nbd serving `img` (it holds "consistent read" and "write"
/// and does not share "resize"); waits until its socket exists.
fn qemu_nbd(dir: &Path, img: &str) -> Child {
    let sock = dir.join("nbd.sock");
    let child = Command::new("qemu-nbd")
        .args(["-f", "raw", "-k"])
        .arg(&sock)
        .arg(img)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-nbd must be installed");
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < end, "qemu-nbd did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn cmd(execute: &str, args: serde_json::Value) -> String {
    json!({"execute": execute, "arguments": args}).to_string()
}

/// While qemu-nbd uses the image without sharing "resize", resizing a
/// node of it fails the same way in both daemons.
#[test]
fn resize_refused_while_qemu_nbd_serves_the_image() {
    for which in [Impl::Qsd, Impl::Ours] {
        let d = Daemon::start(which);
        let img = make_image(d.dir.path());
        let mut nbd = qemu_nbd(d.dir.path(), &img);
        let mut q = d.qmp();
        let r = q.cmd(&cmd(
            "blockdev-add",
            json!({"driver": "file", "node-name": "f", "filename": img}),
        ));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        let r = q.cmd(&cmd(
            "block_resize",
            json!({"node-name": "f", "size": 4096}),
        ));
        assert_eq!(
            r,
            json!({"error": {"class": "GenericError", "desc": "Failed to get \"resize\" lock"}}),
            "{which:?}"
        );
        let _ = nbd.kill();
        let _ = nbd.wait();
        // Once qemu-nbd is gone, the resize works.
        let r = q.cmd(&cmd(
            "block_resize",
            json!({"node-name": "f", "size": 4096}),
        ));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        assert_eq!(std::fs::metadata(&img).expect("image").len(), 4096);
    }
}

/// A raw window over the image does not share "resize": qemu-img cannot
/// resize the image while we hold it, and says why as it does for QSD.
#[test]
fn qemu_img_resize_refused_while_we_hold_the_image() {
    let mut outputs = Vec::new();
    for which in [Impl::Qsd, Impl::Ours] {
        let d = Daemon::start(which);
        let img = make_image(d.dir.path());
        let mut q = d.qmp();
        let r = q.cmd(&cmd(
            "blockdev-add",
            json!({"driver": "raw", "node-name": "r", "size": 4096,
                   "file": {"driver": "file", "filename": img}}),
        ));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        let out = Command::new("qemu-img")
            .args(["resize", "-f", "raw", &img, "2M"])
            .output()
            .expect("qemu-img");
        assert!(
            !out.status.success(),
            "{which:?}: qemu-img resize succeeded"
        );
        let err = String::from_utf8_lossy(&out.stderr).replace(&img, "IMG");
        assert!(
            err.contains("Failed to get \"resize\" lock"),
            "{which:?}: {err}"
        );
        assert!(
            err.contains("Is another process using the image [IMG]?"),
            "{which:?}: {err}"
        );
        outputs.push(err);
        // After blockdev-del the lock is gone.
        let r = q.cmd(&cmd("blockdev-del", json!({"node-name": "r"})));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        let st = Command::new("qemu-img")
            .args(["resize", "-q", "-f", "raw", &img, "2M"])
            .status()
            .expect("qemu-img");
        assert!(st.success(), "{which:?}: resize after blockdev-del failed");
    }
    assert_eq!(outputs[0], outputs[1]);
}
