//! Differential tests of the qcow2 driver through QMP: the same images
//! (made by qemu-img, some of them corrupted on purpose) and the same
//! commands go to qemu-storage-daemon 10.0.2 and to qsd; replies must be
//! the same bytes (after masking the private directory and generated
//! node names), and images made by `blockdev-create` the same files.

use std::path::Path;
use std::process::{Command, Stdio};

use qsd_blackbox_tests::{mask_generated, normalize, qemu_img, Daemon, Impl};
use serde_json::{json, Value};

fn qemu_io(args: &[&str]) {
    let st = Command::new("qemu-io")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("qemu-io must be installed");
    assert!(st.success(), "qemu-io {args:?} failed");
}

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(off)).expect("seek");
    f.write_all(bytes).expect("patch");
}

/// Corruptions of a fresh 64 MiB image: (name, offset, bytes).
fn corruptions() -> Vec<(&'static str, u64, Vec<u8>)> {
    let b32 = |v: u32| v.to_be_bytes().to_vec();
    let b64 = |v: u64| v.to_be_bytes().to_vec();
    vec![
        ("badmagic", 0, b32(0x1234_5678)),
        ("version1", 4, b32(1)),
        ("version4", 4, b32(4)),
        ("cbits8", 20, b32(8)),
        ("cbits22", 20, b32(22)),
        ("crypt3", 32, b32(3)),
        ("l1huge", 36, b32(0x7fff_ffff)),
        ("l1small", 36, b32(0)),
        ("l1unaligned", 40, b64(0x30001)),
        ("rtunaligned", 48, b64(0x10001)),
        ("rtclusters0", 56, b32(0)),
        ("rthuge", 56, b32(0x7fff_ffff)),
        ("snapnb", 60, b32(100_000)),
        ("snapoff", 64, b64(0x1001)),
        ("incompat_unknown", 72, b64(1 << 20)),
        ("incompat_corrupt", 72, b64(2)),
        ("incompat_extdata", 72, b64(4)),
        ("incompat_comp", 72, b64(8)),
        ("refcount_order7", 96, b32(7)),
        ("hdrlen100", 100, b32(100)),
        ("hdrlen_big", 100, b32(70000)),
        ("comptype5", 104, vec![5]),
        ("comptype1_nobit", 104, vec![1]),
        ("size_huge", 24, b64(1 << 62)),
        (
            "ext_bad_len",
            112,
            [b32(0x1234_5678), b32(100_000)].concat(),
        ),
        ("backoff_big", 8, b64(0x20000)),
    ]
}

fn make_images(dir: &Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    for (name, off, bytes) in corruptions() {
        let f = p(&format!("{name}.qcow2"));
        qemu_img(&["create", "-q", "-f", "qcow2", &f, "64M"]);
        patch(Path::new(&f), off, &bytes);
    }
    let t = p("trunc.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &t, "64M"]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .and_then(|f| f.set_len(50))
        .expect("truncate");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        &p("v2.qcow2"),
        "1G",
    ]);
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-o",
        "extended_l2=on,lazy_refcounts=on,compression_type=zstd,refcount_bits=64,cluster_size=131072",
        &p("v3.qcow2"), "100M",
    ]);
    let data = format!("data_file={},data_file_raw=on", p("data.raw"));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &data,
        &p("ext.qcow2"),
        "8M",
    ]);
    qemu_img(&["create", "-q", "-f", "qcow2", &p("base.qcow2"), "8M"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 1 0 1M", &p("base.qcow2")]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &p("mid.qcow2"),
    ]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        &p("top.qcow2"),
    ]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 2 0 64k", &p("top.qcow2")]);
    for b in ["bm_ro.qcow2", "bm_rw.qcow2"] {
        qemu_img(&["create", "-q", "-f", "qcow2", &p(b), "64M"]);
        qemu_img(&["bitmap", "--add", &p(b), "b1"]);
        qemu_img(&["bitmap", "--add", "-g", "128k", "--disable", &p(b), "b2"]);
    }
    // Backing loops named in headers: a -> b -> a, and s -> s.
    for n in ["loop_a", "loop_b", "loop_s"] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            &p(&format!("{n}.qcow2")),
            "1M",
        ]);
    }
    for (img, backing) in [
        ("loop_a", "loop_b"),
        ("loop_b", "loop_a"),
        ("loop_s", "loop_s"),
    ] {
        qemu_img(&[
            "rebase",
            "-u",
            "-f",
            "qcow2",
            "-b",
            &format!("{backing}.qcow2"),
            "-F",
            "qcow2",
            &p(&format!("{img}.qcow2")),
        ]);
    }
    qemu_img(&["create", "-q", "-f", "qcow2", &p("full.qcow2"), "64M"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 1 0 64M", &p("full.qcow2")]);
}

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

fn same(lines: &[String]) {
    let theirs = run(Impl::Qsd, lines);
    let ours = run(Impl::Ours, lines);
    for (t, o) in theirs.iter().zip(&ours) {
        assert_eq!(o, t, "reply differs from qemu-storage-daemon's");
    }
    assert_eq!(ours.len(), theirs.len());
}

fn add(args: Value) -> String {
    json!({"execute": "blockdev-add", "arguments": args}).to_string()
}

fn qcow2(name: &str, img: &str, read_only: bool) -> String {
    add(
        json!({"driver": "qcow2", "node-name": name, "read-only": read_only,
        "file": {"driver": "file", "filename": format!("DIR/{img}")}}),
    )
}

#[test]
fn open_errors_match_qsd() {
    let mut lines = Vec::new();
    for (name, _, _) in corruptions() {
        lines.push(qcow2("n", &format!("{name}.qcow2"), true));
    }
    lines.push(qcow2("n", "trunc.qcow2", true));
    lines.push(qcow2("c", "incompat_comp.qcow2", false));
    // Already open read-only above: the lock conflict comes first.
    lines.push(qcow2("c", "incompat_corrupt.qcow2", false));
    same(&lines);
}

/// Read-write images whose headers close a backing loop: QEMU's image
/// lock refuses the second opening of the image.
#[test]
fn backing_loops_match_qsd() {
    same(&[
        qcow2("a", "loop_a.qcow2", false),
        qcow2("s", "loop_s.qcow2", false),
        qcow2("b", "loop_b.qcow2", false),
    ]);
}

/// Read-only backing loops (on which QSD recurses without end) and
/// chains deeper than we open give a clear error; the daemon goes on.
#[test]
fn read_only_backing_loops_and_deep_chains_fail_cleanly() {
    let d = Daemon::start(Impl::Ours);
    make_images(d.dir.path());
    let dir = d.dir.path().display().to_string();
    let deep = |i: usize| format!("{dir}/deep{i}.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &deep(0), "1M"]);
    for i in 1..=70 {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            &format!("deep{}.qcow2", i - 1),
            "-F",
            "qcow2",
            &deep(i),
        ]);
    }
    let mut q = d.qmp();
    let mut ask = |l: String| q.cmd(&l.replace("DIR", &dir))["error"]["desc"].clone();
    let e = ask(qcow2("a", "loop_a.qcow2", true));
    assert_eq!(
        e,
        format!(
            "Could not open backing file: Could not open backing file: \
             Backing file '{dir}/loop_a.qcow2' is already part of this backing chain (a loop)"
        )
    );
    let e = ask(qcow2("s", "loop_s.qcow2", true));
    assert_eq!(
        e,
        format!(
            "Could not open backing file: \
             Backing file '{dir}/loop_s.qcow2' is already part of this backing chain (a loop)"
        )
    );
    assert_eq!(ask(qcow2("ok", "deep63.qcow2", true)), Value::Null);
    let e = ask(qcow2("deep", "deep70.qcow2", true));
    let e = e.as_str().expect("error");
    assert!(
        e.ends_with("Backing chain too deep: more than 64 images named in headers"),
        "{e}"
    );
    assert_eq!(
        q.cmd(r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#)["return"]
            .as_array()
            .map(Vec::len),
        Some(128),
        "only the 64-image chain (qcow2 and file nodes) stays open"
    );
}

#[test]
fn queries_match_qsd() {
    same(&[
        qcow2("a", "v2.qcow2", false),
        qcow2("b", "v3.qcow2", true),
        qcow2("c", "ext.qcow2", false),
        qcow2("d", "top.qcow2", false),
        qcow2("e", "incompat_corrupt.qcow2", true),
        add(json!({"driver": "qcow2", "node-name": "f", "backing": null,
            "file": {"driver": "file", "filename": "DIR/mid.qcow2"}})),
        r#"{"execute":"query-named-block-nodes"}"#.to_string(),
    ]);
}

/// Runs blockdev-create jobs and returns the job list.
fn create_all(which: Impl, cases: &[Value]) -> (tempfile::TempDir, Value) {
    let d = Daemon::start(which);
    let dir = d.dir.path().display().to_string();
    let mut q = d.qmp();
    for (i, c) in cases.iter().enumerate() {
        let img = format!("{dir}/c{i}.qcow2");
        std::fs::write(&img, b"").expect("img");
        q.cmd(
            &add(json!({"driver": "file", "node-name": format!("f{i}"), "filename": img}))
                .to_string(),
        );
        let mut o = json!({"driver": "qcow2", "file": format!("f{i}")});
        for (k, v) in c.as_object().expect("object") {
            o[k] = v.clone();
        }
        q.cmd(&json!({"execute": "blockdev-create", "arguments": {"job-id": format!("j{i}"), "options": o}}).to_string());
    }
    let mut jobs = Value::Null;
    for _ in 0..200 {
        jobs = q.cmd(r#"{"execute":"query-jobs"}"#);
        let done = jobs["return"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["status"] == "concluded"));
        if done {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let copy = tempfile::tempdir().expect("tempdir");
    for i in 0..cases.len() {
        let from = format!("{dir}/c{i}.qcow2");
        std::fs::copy(&from, copy.path().join(format!("c{i}.qcow2"))).expect("copy");
    }
    (copy, jobs)
}

#[test]
fn blockdev_create_matches_qsd() {
    let cases = vec![
        json!({"size": 67108864}),
        json!({"size": 0}),
        json!({"size": 1073741824u64, "cluster-size": 512, "refcount-bits": 1}),
        json!({"size": 1073741824u64, "cluster-size": 2097152, "refcount-bits": 64}),
        json!({"size": 10485760, "version": "v2"}),
        json!({"size": 10485760, "lazy-refcounts": true, "extended-l2": true, "compression-type": "zstd"}),
        json!({"size": 10485760, "backing-file": "/some/where.qcow2", "backing-fmt": "qcow2"}),
        json!({"size": 10485760, "backing-file": "rel.qcow2"}),
        json!({"size": 10485760, "preallocation": "metadata"}),
        json!({"size": 10485760, "preallocation": "metadata", "cluster-size": 4096}),
        json!({"size": 1000}),
        json!({"size": 1048576, "cluster-size": 1000}),
        json!({"size": 1048576, "version": "v2", "refcount-bits": 8}),
        json!({"size": 1048576, "version": "v2", "lazy-refcounts": true}),
        json!({"size": 1048576, "version": "v2", "extended-l2": true}),
        json!({"size": 1048576, "version": "v2", "compression-type": "zstd"}),
        json!({"size": 1048576, "refcount-bits": 3}),
        json!({"size": 1048576, "extended-l2": true, "cluster-size": 8192}),
        json!({"size": 1048576, "backing-fmt": "qcow2"}),
        json!({"size": 1048576, "data-file-raw": true}),
        json!({"size": 1048576, "backing-file": "x", "preallocation": "metadata"}),
        json!({"size": 4611686018427387904u64}),
        json!({"size": 1048576, "file": "nonexistent"}),
    ];
    let (theirs_dir, theirs) = create_all(Impl::Qsd, &cases);
    let (ours_dir, ours) = create_all(Impl::Ours, &cases);
    let errors = |v: &Value| {
        let mut e: Vec<(String, Value)> = v["return"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| {
                (
                    j["id"].as_str().unwrap_or("").to_string(),
                    j["error"].clone(),
                )
            })
            .collect();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e
    };
    assert_eq!(errors(&ours), errors(&theirs));
    for (i, case) in cases.iter().enumerate() {
        let a = std::fs::read(theirs_dir.path().join(format!("c{i}.qcow2"))).expect("theirs");
        let b = std::fs::read(ours_dir.path().join(format!("c{i}.qcow2"))).expect("ours");
        assert!(a == b, "image {i} ({case}) differs from QSD's");
    }
}

/// Like `run`, but keeps the events that come before each reply.
fn run_with_events(which: Impl, lines: &[String]) -> Vec<String> {
    let d = Daemon::start(which);
    make_images(d.dir.path());
    let dir = d.dir.path().display().to_string();
    let mut q = d.qmp();
    let mut out = Vec::new();
    for l in lines {
        q.send_line(&l.replace("DIR", &dir));
        loop {
            let r = mask_generated(&normalize(&q.read_line()).replace(&dir, "DIR"));
            let done = r.starts_with("{\"return\"") || r.starts_with("{\"error\"");
            out.push(r);
            if done {
                break;
            }
        }
    }
    out
}

#[test]
fn amend_matches_qsd() {
    let amend = |job: &str, node: &str, extra: Value| {
        let mut o = json!({"driver": "qcow2"});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        json!({"execute": "x-blockdev-amend",
            "arguments": {"job-id": job, "node-name": node, "options": o}})
        .to_string()
    };
    let lines = vec![
        add(json!({"driver": "qcow2", "node-name": "q",
            "file": {"driver": "file", "node-name": "f", "filename": "DIR/v2.qcow2"}})),
        amend("a", "nope", json!({})),
        amend("a", "f", json!({})),
        amend("a", "q", json!({})),
        amend(
            "b",
            "q",
            json!({"encrypt": {"format": "luks", "state": "active", "new-secret": "x"}}),
        ),
        amend("b", "q", json!({})),
        r#"{"execute":"query-jobs"}"#.to_string(),
    ];
    let theirs = run_with_events(Impl::Qsd, &lines);
    let ours = run_with_events(Impl::Ours, &lines);
    assert_eq!(ours, theirs);
}

#[test]
fn resize_matches_qsd() {
    let resize = |size: u64| {
        json!({"execute": "block_resize", "arguments": {"node-name": "q", "size": size}})
            .to_string()
    };
    same(&[
        qcow2("q", "full.qcow2", false),
        resize(32 << 20),
        resize(1000),
        resize(64 << 20),
        resize(128 << 20),
        r#"{"execute":"query-named-block-nodes"}"#.to_string(),
    ]);
}

#[test]
fn option_errors_match_qsd() {
    let cases = [
        json!({"cache-size": 1000000, "l2-cache-size": 10000, "refcount-cache-size": 10000}),
        json!({"cache-size": 100000, "l2-cache-size": 200000}),
        json!({"cache-size": 100000, "refcount-cache-size": 200000}),
        json!({"l2-cache-entry-size": 1000}),
        json!({"l2-cache-entry-size": 256}),
        json!({"l2-cache-entry-size": 131072}),
        json!({"cache-clean-interval": 4294967296u64}),
        json!({"cache-clean-interval": -1}),
        json!({"l2-cache-size": -1}),
        json!({"lazy-refcounts": true}),
        json!({"encrypt": {"format": "aes", "key-secret": "x"}}),
        json!({"data-file": "x"}),
        json!({"backing": "nonexistent"}),
        json!({"backing": {"driver": "file", "filename": "/nonexistent"}}),
        json!({"overlap-check": "none"}),
        json!({"overlap-check": {"template": "all", "main-header": false}}),
    ];
    let mut lines = Vec::new();
    for c in cases {
        let mut o = json!({"driver": "qcow2", "node-name": "n",
            "file": {"driver": "file", "filename": "DIR/base.qcow2"}});
        for (k, v) in c.as_object().expect("object") {
            o[k] = v.clone();
        }
        lines.push(add(o));
        lines.push(json!({"execute": "blockdev-del", "arguments": {"node-name": "n"}}).to_string());
    }
    lines.push(qcow2("v", "v2.qcow2", false));
    lines.push(add(
        json!({"driver": "qcow2", "node-name": "w", "lazy-refcounts": true,
        "file": {"driver": "file", "filename": "DIR/v2.qcow2"}}),
    ));
    same(&lines);
}

/// Persistent bitmaps show in `format-specific` as in QSD (in use once
/// opened read-write). QSD also loads them as dirty bitmaps
/// (`dirty-bitmaps`), which this daemon does not do yet.
#[test]
fn bitmaps_in_format_specific_match_qsd() {
    let lines = [
        qcow2("g", "bm_ro.qcow2", true),
        qcow2("h", "bm_rw.qcow2", false),
        r#"{"execute":"query-named-block-nodes"}"#.to_string(),
    ];
    let specific = |which| {
        let out = run(which, &lines);
        let last = out
            .last()
            .expect("reply")
            .split(" => ")
            .nth(1)
            .expect("reply")
            .to_string();
        let v: Value = serde_json::from_str(last.trim()).expect("json");
        let mut m = Vec::new();
        for n in v["return"].as_array().expect("nodes") {
            if n["drv"] == "qcow2" {
                m.push((
                    n["node-name"].clone(),
                    n["image"]["format-specific"].clone(),
                ));
            }
        }
        m
    };
    assert_eq!(specific(Impl::Ours), specific(Impl::Qsd));
}
