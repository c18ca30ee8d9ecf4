//! Differential tests of the QOM commands: the same QMP lines go to
//! qemu-storage-daemon 10.0.2 and to qsd, and the replies must be the same
//! bytes (after masking the package string and each daemon's private
//! directory).

use std::io::Write;
use std::process::{Command, Stdio};

use qsd_blackbox_tests::{normalize, Daemon, Impl};
use serde_json::json as j;

/// Runs `lines` on a fresh daemon; returns "request => reply" lines.
fn run(which: Impl, lines: &[String]) -> Vec<String> {
    let d = Daemon::start(which);
    let dir = d.dir.path().display().to_string();
    let mut q = d.qmp();
    lines
        .iter()
        .map(|l| {
            q.send_line(l);
            let r = normalize(&q.read_line()).replace(&dir, "DIR");
            format!("{l}\n => {r}")
        })
        .collect()
}

/// Sends `lines` to both daemons and compares every reply.
fn same(lines: &[String]) {
    let theirs = run(Impl::Qsd, lines);
    let ours = run(Impl::Ours, lines);
    for (t, o) in theirs.iter().zip(&ours) {
        assert_eq!(o, t, "reply differs from qemu-storage-daemon's");
    }
    assert_eq!(ours.len(), theirs.len());
}

fn cmd(execute: &str, args: serde_json::Value) -> String {
    serde_json::json!({"execute": execute, "arguments": args}).to_string()
}

fn add(args: serde_json::Value) -> String {
    cmd("object-add", args)
}

fn del(id: &str) -> String {
    cmd("object-del", serde_json::json!({ "id": id }))
}

fn list(path: &str) -> String {
    cmd("qom-list", serde_json::json!({ "path": path }))
}

fn get(path: &str, prop: &str) -> String {
    cmd(
        "qom-get",
        serde_json::json!({"path": path, "property": prop}),
    )
}

fn set(path: &str, prop: &str, value: serde_json::Value) -> String {
    cmd(
        "qom-set",
        serde_json::json!({"path": path, "property": prop, "value": value}),
    )
}

#[test]
fn composition_tree_and_paths() {
    let mut lines: Vec<String> = [
        "/",
        "/objects",
        "/chardevs",
        "/backend",
        "/nope",
        "",
        "//objects",
        "/objects/",
        "objects",
        "qmp0",
        "type",
        "/objects/type",
        "chardevs",
    ]
    .iter()
    .map(|p| list(p))
    .collect();
    lines.extend([
        get("/", "type"),
        get("/", "objects"),
        get("/", "nope"),
        get("", "type"),
        get("/objects", "type"),
        get("/chardevs", "qmp0"),
        get("/chardevs/qmp0", "type"),
        get("/chardevs/qmp0", "addr"),
        set("/", "objects", serde_json::json!(1)),
        set("/", "type", serde_json::json!("x")),
        set("/", "nope", serde_json::json!(1)),
        set("/chardevs/qmp0", "addr", serde_json::json!({})),
        set("/nope", "type", serde_json::json!(1)),
        r#"{"execute":"qom-list","arguments":{}}"#.to_string(),
        r#"{"execute":"qom-get","arguments":{"path":"/"}}"#.to_string(),
        r#"{"execute":"qom-set","arguments":{"path":"/","property":"type"}}"#.to_string(),
        // An object whose id is also a chardev's makes partial paths
        // ambiguous.
        add(serde_json::json!({"qom-type": "iothread", "id": "qmp0"})),
        list("qmp0"),
        get("qmp0", "type"),
        list("/objects/qmp0"),
        add(serde_json::json!({"qom-type": "iothread", "id": "backend"})),
        list("backend"),
        list("objects/backend"),
    ]);
    same(&lines);
}

#[test]
fn list_types() {
    let mut lines = Vec::new();
    for implements in [
        None,
        Some("object"),
        Some("user-creatable"),
        Some("interface"),
        Some("chardev"),
        Some("secret_common"),
        Some("event-loop-base"),
        Some("iothread"),
        Some("nonexistent"),
        Some(""),
    ] {
        for abstract_ in [None, Some(false), Some(true)] {
            let mut args = serde_json::Map::new();
            if let Some(i) = implements {
                args.insert("implements".into(), i.into());
            }
            if let Some(a) = abstract_ {
                args.insert("abstract".into(), a.into());
            }
            lines.push(cmd("qom-list-types", args.into()));
        }
    }
    lines.push(r#"{"execute":"qom-list-types"}"#.to_string());
    lines.push(cmd("qom-list-types", serde_json::json!({"implements": 1})));
    same(&lines);
}

#[test]
fn list_properties_of_every_type() {
    // The type names come from QSD itself.
    let d = Daemon::start(Impl::Qsd);
    let mut q = d.qmp();
    let reply = q.cmd(r#"{"execute":"qom-list-types","arguments":{"abstract":true}}"#);
    let names: Vec<String> = reply["return"]
        .as_array()
        .expect("a list of types")
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_string())
        .collect();
    assert_eq!(names.len(), 47);
    let mut lines: Vec<String> = names
        .iter()
        .chain(["nonexistent".to_string(), String::new()].iter())
        .map(|n| cmd("qom-list-properties", serde_json::json!({ "typename": n })))
        .collect();
    lines.push(r#"{"execute":"qom-list-properties","arguments":{}}"#.to_string());
    same(&lines);
}

#[test]
fn iothread_and_main_loop() {
    let io = |extra: serde_json::Value| {
        let mut o = serde_json::json!({"qom-type": "iothread", "id": "io1"});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        add(o)
    };
    let mut lines = vec![
        add(j!({"qom-type": "iothread", "id": "io0"})),
        add(j!({"qom-type": "iothread", "id": "io0"})),
        add(j!({"qom-type": "iothread", "id": "0io"})),
        add(j!({"qom-type": "iothread", "id": ""})),
        add(j!({"qom-type": "iothread", "id": "a b"})),
        add(j!({"qom-type": "iothread"})),
        io(j!({"poll-max-ns": -1})),
        io(j!({"poll-grow": -1, "poll-shrink": -2, "aio-max-batch": -3})),
        io(j!({"thread-pool-min": 10, "thread-pool-max": 5})),
        io(j!({"thread-pool-max": 0})),
        io(j!({"thread-pool-max": 2147483648u64})),
        io(j!({"thread-pool-min": -1})),
        io(j!({"poll-max-ns": "x"})),
        io(j!({"bogus": 1})),
        io(
            j!({"poll-max-ns": 100, "poll-grow": 2, "poll-shrink": 3, "aio-max-batch": 4,
               "thread-pool-min": 1, "thread-pool-max": 8}),
        ),
        list("/objects"),
        list("/objects/io1"),
        list("io1"),
    ];
    for p in [
        "poll-max-ns",
        "poll-grow",
        "poll-shrink",
        "aio-max-batch",
        "thread-pool-min",
        "thread-pool-max",
        "type",
        "nope",
    ] {
        lines.push(get("/objects/io1", p));
        lines.push(get("/objects/io0", p));
    }
    lines.extend([
        set("/objects/io1", "poll-max-ns", j!(5)),
        get("/objects/io1", "poll-max-ns"),
        set("/objects/io1", "poll-max-ns", j!("5")),
        set("/objects/io1", "poll-max-ns", j!(-5)),
        set("/objects/io1", "poll-max-ns", j!(1.5)),
        set("/objects/io1", "poll-max-ns", j!(null)),
        set("/objects/io1", "poll-max-ns", j!(9223372036854775808u64)),
        set("/objects/io1", "type", j!("x")),
        set("/objects/io1", "nope", j!(1)),
        set("/objects/io1", "thread-pool-min", j!(100)),
        get("/objects/io1", "thread-pool-min"),
        set("/objects/io1", "thread-pool-max", j!(0)),
        get("/objects/io1", "thread-pool-max"),
        set("/objects/io1", "thread-pool-max", j!(2147483647)),
        set("/objects/io1", "thread-pool-min", j!(0)),
        // main-loop: parameters apply (and are checked) at once; only one.
        add(j!({"qom-type": "main-loop", "id": "ml", "thread-pool-max": 0})),
        add(j!({"qom-type": "main-loop", "id": "ml", "thread-pool-min": 5, "thread-pool-max": 3})),
        add(j!({"qom-type": "main-loop", "id": "ml", "thread-pool-min": 5})),
        add(j!({"qom-type": "main-loop", "id": "ml2"})),
        add(j!({"qom-type": "main-loop", "id": "ml"})),
        list("/objects/ml"),
        get("/objects/ml", "thread-pool-min"),
        get("/objects/ml", "thread-pool-max"),
        get("/objects/ml", "aio-max-batch"),
        set("/objects/ml", "thread-pool-max", j!(4)),
        get("/objects/ml", "thread-pool-max"),
        del("ml"),
        del("io1"),
        del("io1"),
        del("type"),
        del(""),
        list("/objects"),
    ]);
    same(&lines);
}

#[test]
fn unsupported_and_unknown_types() {
    same(&[
        add(j!({"qom-type": "chardev-socket", "id": "x"})),
        add(j!({"qom-type": "nonexistent", "id": "x"})),
        add(j!({"qom-type": "memory-backend-ram", "id": "x", "size": 1024})),
        add(j!({"qom-type": "memory-backend-ram", "id": "x"})),
        add(j!({"qom-type": "memory-backend-file", "id": "x", "size": 1, "mem-path": "/x"})),
        add(j!({"qom-type": "tls-cipher-suites", "id": "x"})),
        add(j!({"qom-type": "authz-listfile", "id": "x", "filename": "/x"})),
        add(j!({"qom-type": "rng-random", "id": "x"})),
        add(j!({"qom-type": "can-bus", "id": "x"})),
        add(j!({"qom-type": "sev-guest", "id": "0x"})),
        add(j!({"id": "x"})),
        list("/objects"),
    ]);
}

/// Many adds and deletes: the children of /objects live in a GLib hash
/// table that grows, shrinks and keeps tombstones; `qom-list` shows its
/// iteration order.
#[test]
fn objects_order_through_resizes() {
    let mut lines = Vec::new();
    for i in 0..40 {
        lines.push(add(serde_json::json!({
            "qom-type": "secret", "id": format!("s{i}"), "data": "x"
        })));
        if i % 7 == 3 {
            // Added, then removed when completion fails.
            lines.push(add(
                serde_json::json!({"qom-type": "secret", "id": format!("f{i}")}),
            ));
        }
    }
    lines.push(list("/objects"));
    for i in (0..40).filter(|i| i % 3 != 0) {
        lines.push(del(&format!("s{i}")));
        if i % 5 == 0 {
            lines.push(list("/objects"));
        }
    }
    lines.push(list("/objects"));
    for id in ["a", "bb", "s1", "x-y.z_1", "iothread0", "T"] {
        lines.push(add(
            serde_json::json!({"qom-type": "secret", "id": id, "data": "x"}),
        ));
    }
    lines.push(list("/objects"));
    same(&lines);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Encrypts `plain` with AES-256-CBC using the reference implementation
/// (`openssl enc`), returning base64; `pad` false encrypts whole blocks as
/// they are.
fn openssl_encrypt(key: &[u8], iv: &[u8], plain: &[u8], pad: bool) -> String {
    let mut c = Command::new("openssl");
    c.args([
        "enc",
        "-aes-256-cbc",
        "-a",
        "-A",
        "-K",
        &hex(key),
        "-iv",
        &hex(iv),
    ]);
    if !pad {
        c.arg("-nopad");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is needed to make the test ciphertexts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plain)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl failed");
    String::from_utf8(out.stdout).expect("base64 text")
}

fn b64(b: &[u8]) -> String {
    let out = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b)?;
            c.wait_with_output()
        })
        .expect("openssl base64");
    String::from_utf8(out.stdout).expect("base64 text")
}

#[test]
fn secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, b"file secret\n").unwrap();
    let b64file = dir.path().join("secret.b64");
    std::fs::write(&b64file, b"YWJj\n").unwrap();
    let nulfile = dir.path().join("nul.b64");
    std::fs::write(&nulfile, b"YW\0Jj").unwrap();
    let file = file.display().to_string();

    let k1: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect();
    let k2: Vec<u8> = (0u8..32).map(|i| 255 - i).collect();
    let iv: Vec<u8> = (0u8..16).map(|i| i * 3).collect();
    let iv2: Vec<u8> = (0u8..16).rev().collect();
    let iv_b64 = b64(&iv);
    // k2 encrypted under k1; then a secret encrypted under k2: it only
    // decrypts if k2 was recovered exactly.
    let k2_enc = openssl_encrypt(&k1, &iv, &k2, true);
    let msg_enc = openssl_encrypt(&k2, &iv2, b"the passphrase", true);
    // Whole blocks without padding: the error names the last byte.
    let nopad_enc = openssl_encrypt(&k1, &iv, b"0123456789abcdefXYZ_padding_0x41", false);
    let zero_enc = openssl_encrypt(&k1, &iv, b"0123456789abcde\0", false);
    let raw_enc_path = dir.path().join("raw.bin");
    {
        let enc = Command::new("openssl")
            .args(["enc", "-aes-256-cbc", "-K", &hex(&k1), "-iv", &hex(&iv)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(b"raw bytes")?;
                c.wait_with_output()
            })
            .expect("openssl");
        std::fs::write(&raw_enc_path, enc.stdout).unwrap();
    }

    let s = |id: &str, extra: serde_json::Value| {
        let mut o = j!({"qom-type": "secret", "id": id});
        for (k, v) in extra.as_object().expect("object") {
            o[k] = v.clone();
        }
        add(o)
    };
    let lines = vec![
        s("plain", j!({"data": "abc"})),
        list("/objects/plain"),
        get("/objects/plain", "data"),
        get("/objects/plain", "file"),
        get("/objects/plain", "format"),
        get("/objects/plain", "keyid"),
        get("/objects/plain", "iv"),
        get("/objects/plain", "loaded"),
        set("/objects/plain", "format", j!("bogus")),
        set("/objects/plain", "format", j!(1)),
        set("/objects/plain", "keyid", j!(null)),
        set("/objects/plain", "data", j!({})),
        set("/objects/plain", "data", j!("changed")),
        get("/objects/plain", "data"),
        s("none", j!({})),
        s("both", j!({"data": "a", "file": file})),
        s("missing", j!({"file": "/nonexistent/secret"})),
        s("dir", j!({"file": "/"})),
        s("fromfile", j!({"file": file})),
        get("/objects/fromfile", "file"),
        s(
            "b64file",
            j!({"file": b64file.display().to_string(), "format": "base64"}),
        ),
        s(
            "nulfile",
            j!({"file": nulfile.display().to_string(), "format": "base64"}),
        ),
        s("bad64", j!({"data": "YW Jj", "format": "base64"})),
        s("odd64", j!({"data": "AAA", "format": "base64"})),
        s("empty", j!({"data": ""})),
        s("k1", j!({"data": b64(&k1), "format": "base64"})),
        s(
            "k2",
            j!({"data": k2_enc, "format": "base64", "keyid": "k1", "iv": iv_b64}),
        ),
        s(
            "msg",
            j!({"data": msg_enc, "format": "base64", "keyid": "k2", "iv": b64(&iv2)}),
        ),
        s(
            "rawfile",
            j!({"file": raw_enc_path.display().to_string(), "keyid": "k1", "iv": iv_b64}),
        ),
        s(
            "nopad",
            j!({"data": nopad_enc, "format": "base64", "keyid": "k1", "iv": iv_b64}),
        ),
        s(
            "zero",
            j!({"data": zero_enc, "format": "base64", "keyid": "k1", "iv": iv_b64}),
        ),
        // Errors, in the order QEMU checks.
        s(
            "e1",
            j!({"data": msg_enc, "format": "base64", "keyid": "nokey", "iv": iv_b64}),
        ),
        s(
            "e2",
            j!({"data": msg_enc, "format": "base64", "keyid": "plain", "iv": iv_b64}),
        ),
        s(
            "e3",
            j!({"data": msg_enc, "format": "base64", "keyid": "k1"}),
        ),
        s(
            "e4",
            j!({"data": msg_enc, "format": "base64", "keyid": "k1", "iv": "AAAA"}),
        ),
        s(
            "e5",
            j!({"data": msg_enc, "format": "base64", "keyid": "k1", "iv": "A=AA\nA=AA"}),
        ),
        s(
            "e6",
            j!({"data": msg_enc, "format": "base64", "keyid": "k1", "iv": "!!"}),
        ),
        s("e7", j!({"data": msg_enc, "keyid": "k1", "iv": iv_b64})),
        s(
            "e8",
            j!({"data": "AAAA", "format": "base64", "keyid": "k1", "iv": iv_b64}),
        ),
        s(
            "e9",
            j!({"data": msg_enc, "format": "base64", "keyid": "e9", "iv": iv_b64}),
        ),
        s(
            "e10",
            j!({"data": msg_enc, "format": "base64", "keyid": "", "iv": ""}),
        ),
        s(
            "e11",
            j!({"data": msg_enc, "format": "base64", "keyid": "k2", "iv": iv_b64}),
        ),
        add(j!({"qom-type": "iothread", "id": "io"})),
        s(
            "e12",
            j!({"data": msg_enc, "format": "base64", "keyid": "io", "iv": iv_b64}),
        ),
        s("e13", j!({"data": "", "keyid": "k1", "iv": iv_b64})),
        del("k1"),
        s(
            "e14",
            j!({"data": msg_enc, "format": "base64", "keyid": "k1", "iv": iv_b64}),
        ),
        list("/objects"),
    ];
    same(&lines);
}

/// Pseudo-random churn (fixed seed): creations, failed creations and
/// deletions of objects with ids of varied shapes, listing now and then.
#[test]
fn objects_order_under_churn() {
    let mut seed: u32 = 12345;
    let mut next = move |n: u32| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (seed >> 16) % n
    };
    let mut live: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for step in 0..400 {
        match next(10) {
            0..=4 => {
                let id = format!(
                    "{}{}",
                    ["obj", "x", "secret-", "io.", "A_"][next(5) as usize],
                    next(150)
                );
                lines.push(add(j!({"qom-type": "secret", "id": id, "data": "x"})));
                if !live.contains(&id) {
                    live.push(id);
                }
            }
            5 => {
                let id = format!("fail{}", next(50));
                lines.push(add(j!({"qom-type": "secret", "id": id})));
            }
            _ => {
                if !live.is_empty() {
                    let id = live.remove(next(live.len() as u32) as usize);
                    lines.push(del(&id));
                }
            }
        }
        if step % 25 == 0 {
            lines.push(list("/objects"));
        }
    }
    // Empty it, then fill again.
    for id in live.drain(..) {
        lines.push(del(&id));
    }
    lines.push(list("/objects"));
    for i in 0..20 {
        lines.push(add(
            j!({"qom-type": "secret", "id": format!("again{i}"), "data": "x"}),
        ));
    }
    lines.push(list("/objects"));
    same(&lines);
}
