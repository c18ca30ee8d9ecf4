//! qcow2 images served over NBD: what clients read and map matches
//! qemu-storage-daemon 10.0.2 serving the same images, and writes made by
//! clients leave images that `qemu-img check` finds clean and that equal
//! a raw shadow copy given the same writes.

use std::path::Path;
use std::process::{Command, Output};

use qsd_blackbox_tests::{Daemon, Impl, Qmp};
use serde_json::{json, Value};

fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} must be installed: {e}"))
}

fn run_ok(prog: &str, args: &[&str]) -> String {
    let o = run(prog, args);
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cmd(q: &mut Qmp, execute: &str, args: Value) {
    let r = q.cmd(&json!({"execute": execute, "arguments": args}).to_string());
    assert_eq!(r, json!({"return": {}}), "{execute} {args}");
}

/// A daemon serving `img` (qcow2, with its backing chain from the header)
/// as export `disk` on a UNIX socket.
struct Served {
    _d: Daemon,
    _q: Qmp,
    sock: String,
}

impl Served {
    fn start(which: Impl, img: &Path, writable: bool, extra: Value) -> Served {
        let d = Daemon::start(which);
        let sock = d.dir.path().join("nbd.sock").display().to_string();
        let mut q = d.qmp();
        let mut o = json!({"driver": "qcow2", "node-name": "disk", "read-only": !writable,
            "file": {"driver": "file", "filename": img}});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        cmd(&mut q, "blockdev-add", o);
        cmd(
            &mut q,
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": sock}}}),
        );
        cmd(
            &mut q,
            "block-export-add",
            json!({"type": "nbd", "id": "e", "node-name": "disk", "name": "disk",
                "writable": writable, "allocation-depth": true}),
        );
        Served { _d: d, _q: q, sock }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///disk?socket={}", self.sock)
    }
}

fn chain(dir: &Path) -> String {
    let p = |n: &str| dir.join(n).display().to_string();
    let raw = p("src.raw");
    let mut data = vec![0u8; 8 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        if (i >> 16) % 3 != 1 {
            *b = b'a' + (i / 1000 % 13) as u8;
        }
    }
    std::fs::write(&raw, &data).expect("raw");
    run_ok(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
            &raw,
            &p("base.qcow2"),
        ],
    );
    run_ok(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            &p("mid.qcow2"),
        ],
    );
    run_ok(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 2 1M 1M",
            "-c",
            "write -z 3M 256k",
            "-c",
            "discard 5M 64k",
            &p("mid.qcow2"),
        ],
    );
    run_ok(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=131072",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            &p("top.qcow2"),
        ],
    );
    run_ok(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 3 1536k 8k",
            "-c",
            "write -P 4 100000 5000",
            "-c",
            "write -z 6M 4k",
            &p("top.qcow2"),
        ],
    );
    p("top.qcow2")
}

#[test]
fn chain_reads_and_maps_match_qsd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = chain(dir.path());
    let expect = dir.path().join("expect.raw").display().to_string();
    run_ok("qemu-img", &["convert", "-O", "raw", &top, &expect]);
    let mut maps = Vec::new();
    for which in [Impl::Qsd, Impl::Ours] {
        let s = Served::start(which, Path::new(&top), false, json!({}));
        let got = dir.path().join("got.raw").display().to_string();
        run_ok(
            "qemu-img",
            &["convert", "-f", "raw", "-O", "raw", &s.uri(), &got],
        );
        assert!(
            std::fs::read(&got).expect("got") == std::fs::read(&expect).expect("expect"),
            "{which:?}: content differs"
        );
        let m1 = run_ok("nbdinfo", &["--map", &s.uri()]);
        let m2 = run_ok("nbdinfo", &["--map=qemu:allocation-depth", &s.uri()]);
        maps.push((m1, m2));
        drop(s);
    }
    assert_eq!(
        maps[0].0, maps[1].0,
        "base:allocation map differs from QSD's"
    );
    assert_eq!(
        maps[0].1, maps[1].1,
        "qemu:allocation-depth map differs from QSD's"
    );
}

/// Deterministic qemu-io commands: writes, zeroes and discards.
fn workload(seed: u64, size: u64, n: usize) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let off = next() % size;
            let len = (1 + next() % 300_000).min(size - off);
            match next() % 5 {
                0 => format!("write -z {off} {len}"),
                1 => {
                    // Whole clusters of every geometry: they read back as
                    // zeroes afterwards.
                    let a = 2 << 20;
                    let off = off / a * a;
                    let len = (len.div_ceil(a) * a).min(size - off);
                    format!("discard {off} {len}")
                }
                _ => format!("write -P {} {off} {len}", next() % 250 + 1),
            }
        })
        .collect()
}

#[test]
fn writes_through_nbd_are_clean_and_match_shadow() {
    for (opts, size) in [
        ("cluster_size=65536", 64u64 << 20),
        ("cluster_size=512,refcount_bits=1", 8 << 20),
        ("cluster_size=2097152,extended_l2=on", 64 << 20),
        ("compat=0.10,cluster_size=4096", 16 << 20),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("w.qcow2").display().to_string();
        let shadow = dir.path().join("w.raw").display().to_string();
        run_ok(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                opts,
                &img,
                &size.to_string(),
            ],
        );
        run_ok(
            "qemu-img",
            &["create", "-q", "-f", "raw", &shadow, &size.to_string()],
        );
        let s = Served::start(
            Impl::Ours,
            Path::new(&img),
            true,
            json!({"discard": "unmap"}),
        );
        let cmds = workload(size, size, 300);
        // Discards of whole clusters read back as zeroes: the shadow
        // gets zeroes there.
        let mut nbd_args: Vec<String> = vec!["-f".into(), "raw".into()];
        let mut raw_args: Vec<String> = vec!["-f".into(), "raw".into()];
        for c in &cmds {
            nbd_args.push("-c".into());
            nbd_args.push(c.clone());
            if !c.starts_with("discard") {
                raw_args.push("-c".into());
                raw_args.push(c.clone());
            } else {
                let rest = c.trim_start_matches("discard ");
                raw_args.push("-c".into());
                raw_args.push(format!("write -z {rest}"));
            }
        }
        nbd_args.push(s.uri());
        raw_args.push(shadow.clone());
        let a: Vec<&str> = nbd_args.iter().map(String::as_str).collect();
        run_ok("qemu-io", &a);
        let a: Vec<&str> = raw_args.iter().map(String::as_str).collect();
        run_ok("qemu-io", &a);
        let check = run("qemu-img", &["check", "-U", &img]);
        assert!(
            check.status.success(),
            "{opts}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        // The export and QEMU reading the image agree.
        let got = dir.path().join("got.raw").display().to_string();
        run_ok(
            "qemu-img",
            &["convert", "-f", "raw", "-O", "raw", &s.uri(), &got],
        );
        let direct = dir.path().join("direct.raw").display().to_string();
        run_ok("qemu-img", &["convert", "-U", "-O", "raw", &img, &direct]);
        assert!(
            std::fs::read(&got).expect("got") == std::fs::read(&direct).expect("direct"),
            "{opts}: export and image differ"
        );
        run_ok(
            "qemu-img",
            &["compare", "-U", "-f", "qcow2", "-F", "raw", &img, &shadow],
        );
        drop(s);
    }
}

/// Images made by our `blockdev-create`, written through our export.
#[test]
fn created_images_written_through_nbd() {
    for (i, opts) in [
        json!({"size": 33554432}),
        json!({"size": 33554432, "cluster-size": 512, "refcount-bits": 2}),
        json!({"size": 33554432, "preallocation": "metadata", "extended-l2": true}),
        json!({"size": 33554432, "version": "v2", "cluster-size": 8192}),
        json!({"size": 33554432, "preallocation": "full", "refcount-bits": 64}),
    ]
    .into_iter()
    .enumerate()
    {
        let d = Daemon::start(Impl::Ours);
        let dir = d.dir.path().to_path_buf();
        let img = dir.join("c.qcow2").display().to_string();
        let shadow = dir.join("c.raw").display().to_string();
        std::fs::write(&img, b"").expect("img");
        let size = opts["size"].as_u64().expect("size");
        run_ok(
            "qemu-img",
            &["create", "-q", "-f", "raw", &shadow, &size.to_string()],
        );
        let sock = dir.join("nbd.sock").display().to_string();
        let mut q = d.qmp();
        cmd(
            &mut q,
            "blockdev-add",
            json!({"driver": "file", "node-name": "f", "filename": img}),
        );
        let mut o = json!({"driver": "qcow2", "file": "f"});
        for (k, v) in opts.as_object().expect("object") {
            o[k] = v.clone();
        }
        cmd(
            &mut q,
            "blockdev-create",
            json!({"job-id": "j", "options": o}),
        );
        for _ in 0..200 {
            let r = q.cmd(r#"{"execute":"query-jobs"}"#);
            if r["return"][0]["status"] == "concluded" {
                assert!(r["return"][0].get("error").is_none(), "{r}");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        cmd(&mut q, "job-dismiss", json!({"id": "j"}));
        run_ok("qemu-img", &["check", "-U", &img]);
        cmd(
            &mut q,
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": "disk", "file": "f", "discard": "unmap"}),
        );
        cmd(
            &mut q,
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": sock}}}),
        );
        cmd(
            &mut q,
            "block-export-add",
            json!({"type": "nbd", "id": "e", "node-name": "disk", "name": "disk", "writable": true}),
        );
        let uri = format!("nbd+unix:///disk?socket={sock}");
        let cmds = workload(100 + i as u64, size, 200);
        let mut a: Vec<String> = vec!["-f".into(), "raw".into()];
        let mut b: Vec<String> = vec!["-f".into(), "raw".into()];
        for c in &cmds {
            a.push("-c".into());
            a.push(c.clone());
            b.push("-c".into());
            b.push(match c.strip_prefix("discard ") {
                Some(rest) => format!("write -z {rest}"),
                None => c.clone(),
            });
        }
        a.push(uri);
        b.push(shadow.clone());
        run_ok("qemu-io", &a.iter().map(String::as_str).collect::<Vec<_>>());
        run_ok("qemu-io", &b.iter().map(String::as_str).collect::<Vec<_>>());
        let check = run("qemu-img", &["check", "-U", &img]);
        assert!(
            check.status.success(),
            "{opts}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        run_ok(
            "qemu-img",
            &["compare", "-U", "-f", "qcow2", "-F", "raw", &img, &shadow],
        );
    }
}

/// Every geometry qemu-img makes reads back the same through our export.
#[test]
fn qemu_img_geometries_read_through_nbd() {
    let mut cases = Vec::new();
    for cs in [512u64, 65536, 2 << 20] {
        cases.push(format!("compat=0.10,cluster_size={cs}"));
        for rb in [1, 16, 64] {
            cases.push(format!("compat=1.1,cluster_size={cs},refcount_bits={rb}"));
        }
        if cs >= 16384 {
            cases.push(format!("cluster_size={cs},extended_l2=on"));
        }
    }
    for opts in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("g.qcow2").display().to_string();
        run_ok(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", "-o", &opts, &img, "8M"],
        );
        run_ok(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 9 1000 300000",
                "-c",
                "write -z 2M 1M",
                "-c",
                "write -P 8 5M 70000",
                "-c",
                "discard 5M 4096",
                &img,
            ],
        );
        let s = Served::start(Impl::Ours, Path::new(&img), false, json!({}));
        run_ok(
            "qemu-img",
            &["compare", "-U", "-f", "raw", "-F", "qcow2", &s.uri(), &img],
        );
        drop(s);
    }
}

/// Images compressed by `qemu-img convert -c` (zlib and zstd, small and
/// large clusters) read back through our export as their source.
#[test]
fn compressed_images_read_through_nbd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.raw").display().to_string();
    let mut data = vec![0u8; 6 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        // Compressible runs, incompressible noise, and zero holes.
        let block = i >> 15;
        *b = match block % 4 {
            0 => b'a' + (i / 100 % 7) as u8,
            1 => ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8,
            2 => 0,
            _ => (i % 251) as u8,
        };
    }
    std::fs::write(&src, &data).expect("src");
    for ctype in ["zlib", "zstd"] {
        for cs in [512u64, 65536, 2 << 20] {
            let img = dir
                .path()
                .join(format!("c-{ctype}-{cs}.qcow2"))
                .display()
                .to_string();
            let opts = format!("compression_type={ctype},cluster_size={cs}");
            run_ok(
                "qemu-img",
                &[
                    "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", &opts, &src, &img,
                ],
            );
            let s = Served::start(Impl::Ours, Path::new(&img), false, json!({}));
            let got = dir.path().join("got.raw").display().to_string();
            run_ok(
                "qemu-img",
                &["convert", "-f", "raw", "-O", "raw", &s.uri(), &got],
            );
            assert!(
                std::fs::read(&got).expect("got") == data,
                "{opts}: content differs from the source"
            );
            drop(s);
        }
    }
}
