//! Registry tests: creation order, errors and secrets, without a daemon
//! process.

use qapi::types::ObjectOptions;
use qapi::visit::{from_value, Mode};
use serde_json::{json, Value};

use super::*;
use crate::objects::qmp;

fn opts(v: Value) -> ObjectOptions {
    from_value(&v, Mode::Json).unwrap()
}

fn add(d: &Daemon, v: Value) -> Result<(), String> {
    d.objects.add(&opts(v)).map_err(|e| e.desc)
}

fn list_objects(d: &Daemon) -> Vec<String> {
    qmp::qom_list(
        d,
        qapi::types::QomListArgs {
            path: "/objects".into(),
        },
    )
    .unwrap()
    .into_iter()
    .map(|p| p.name)
    .collect()
}

#[test]
fn ids() {
    assert!(id_wellformed("a"));
    assert!(id_wellformed("a-b.c_9"));
    assert!(!id_wellformed(""));
    assert!(!id_wellformed("0a"));
    assert!(!id_wellformed("a b"));
    assert!(!id_wellformed("é"));
}

#[test]
fn objects_listed_in_hash_table_order() {
    let d = Daemon::new();
    add(&d, json!({"qom-type": "main-loop", "id": "ml"})).unwrap();
    // Added to /objects, then removed when completion fails.
    assert_eq!(
        add(&d, json!({"qom-type": "main-loop", "id": "ml2"})).unwrap_err(),
        "only one main-loop instance allowed"
    );
    add(&d, json!({"qom-type": "iothread", "id": "io"})).unwrap();
    add(&d, json!({"qom-type": "secret", "id": "x", "data": "a"})).unwrap();
    add(&d, json!({"qom-type": "secret", "id": "tg", "data": "b"})).unwrap();
    // What QSD answers after the same steps.
    assert_eq!(list_objects(&d), ["type", "x", "io", "tg", "ml"]);
    d.objects.shutdown();
}

#[test]
fn creation_errors() {
    let d = Daemon::new();
    let cases = [
        (
            json!({"qom-type": "iothread", "id": "0io"}),
            "Parameter 'id' expects an identifier",
        ),
        (
            json!({"qom-type": "memory-backend-ram", "id": "m", "size": 1}),
            "invalid object type: memory-backend-ram",
        ),
        (
            json!({"qom-type": "authz-listfile", "id": "m", "filename": "/x"}),
            "invalid object type: authz-listfile",
        ),
        (
            json!({"qom-type": "throttle-group", "id": "t"}),
            "object type 'throttle-group' is not implemented by this daemon yet",
        ),
        (
            json!({"qom-type": "iothread", "id": "i", "poll-grow": -1}),
            "poll-grow value must be in range [0, 9223372036854775807]",
        ),
        (
            json!({"qom-type": "iothread", "id": "i", "thread-pool-max": 0}),
            "bad thread-pool-min/thread-pool-max values",
        ),
        (
            json!({"qom-type": "main-loop", "id": "m", "thread-pool-min": 5, "thread-pool-max": 3}),
            "bad thread-pool-min/thread-pool-max values",
        ),
        (
            json!({"qom-type": "secret", "id": "s"}),
            "Either 'file' or 'data' must be provided",
        ),
        (
            json!({"qom-type": "secret", "id": "s", "data": "a", "file": "/x"}),
            "'file' and 'data' are mutually exclusive",
        ),
        (
            json!({"qom-type": "secret", "id": "s", "data": "!", "format": "base64"}),
            "Base64 data contains invalid characters",
        ),
        (
            json!({"qom-type": "secret", "id": "type", "data": "a"}),
            "attempt to add duplicate property 'type' to object (type 'container')",
        ),
    ];
    for (o, want) in cases {
        assert_eq!(add(&d, o.clone()).unwrap_err(), want, "{o}");
    }
    assert_eq!(list_objects(&d), ["type"]);
}

#[test]
fn delete() {
    let d = Daemon::new();
    add(&d, json!({"qom-type": "main-loop", "id": "ml"})).unwrap();
    add(&d, json!({"qom-type": "iothread", "id": "io"})).unwrap();
    assert!(d.objects.iothread("io").is_some());
    assert_eq!(
        d.objects.delete("ml").unwrap_err().desc,
        "object 'ml' is in use, can not be deleted"
    );
    assert_eq!(
        d.objects.delete("type").unwrap_err().desc,
        "object 'type' not found"
    );
    let io = d.objects.iothread("io").unwrap();
    d.objects.delete("io").unwrap();
    assert!(io.handle().is_none());
    assert!(d.objects.iothread("io").is_none());
    assert_eq!(
        add(&d, json!({"qom-type": "iothread", "id": "ml"})).unwrap_err(),
        "attempt to add duplicate property 'ml' to object (type 'container')"
    );
}

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const IV_B64: &str = "Dw4NDAsKCQgHBgUEAwIBAA==";
/// "hello secret", encrypted by `openssl enc -aes-256-cbc` with the key
/// and IV above.
const CIPHERTEXT_B64: &str = "7LRIVaLonXN64Oa+FCBydg==";

#[test]
fn secrets() {
    let d = Daemon::new();
    add(
        &d,
        json!({"qom-type": "secret", "id": "raw", "data": "abc"}),
    )
    .unwrap();
    add(
        &d,
        json!({"qom-type": "secret", "id": "key", "data": KEY_B64, "format": "base64"}),
    )
    .unwrap();
    add(
        &d,
        json!({"qom-type": "secret", "id": "pw", "data": CIPHERTEXT_B64, "format": "base64",
               "keyid": "key", "iv": IV_B64}),
    )
    .unwrap();
    assert_eq!(secret_value(&d, "raw").unwrap(), b"abc");
    assert_eq!(
        secret_value(&d, "key").unwrap(),
        (0u8..32).collect::<Vec<_>>()
    );
    assert_eq!(secret_value_utf8(&d, "pw").unwrap(), "hello secret");
    assert_eq!(secret_value_base64(&d, "raw").unwrap(), "YWJj");
    assert_eq!(
        secret_value(&d, "nope").unwrap_err().desc,
        "No secret with id 'nope'"
    );
    add(&d, json!({"qom-type": "main-loop", "id": "ml"})).unwrap();
    assert_eq!(
        secret_value(&d, "ml").unwrap_err().desc,
        "Object with id 'ml' is not a secret"
    );

    let enc = |id: &str, extra: Value| {
        let mut o = json!({"qom-type": "secret", "id": id, "data": CIPHERTEXT_B64,
                           "format": "base64", "keyid": "key", "iv": IV_B64});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        add(&d, o).unwrap_err()
    };
    assert_eq!(
        enc("e1", json!({"keyid": "raw"})),
        "Key should be 32 bytes in length"
    );
    assert_eq!(
        enc("e2", json!({"iv": "AAAA"})),
        "IV should be 16 bytes in length not 3"
    );
    assert_eq!(
        enc("e3", json!({"format": "raw"})),
        "Length 24 must be a multiple of block size 16"
    );
    assert_eq!(
        enc("e4", json!({"keyid": "e4"})),
        "Secret with id 'e4' has no data"
    );
    let mut o = json!({"qom-type": "secret", "id": "e5", "data": "x", "keyid": "key"});
    o["format"] = json!("raw");
    assert_eq!(add(&d, o).unwrap_err(), "IV is required to decrypt secret");
}

/// Runs the reference qemu-storage-daemon with `--object arg`; returns its
/// exit code and standard output. It must exit by itself (help or error).
fn qsd_object_option(arg: &str) -> (Option<i32>, String) {
    use std::io::Read;
    let bin = "/usr/bin/qemu-storage-daemon";
    assert!(
        std::path::Path::new(bin).exists(),
        "qemu-storage-daemon is needed for this test"
    );
    let mut child = std::process::Command::new(bin)
        .args(["--object", arg])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("qemu-storage-daemon --object {arg} did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code(), out)
}

/// `cli_object_help` against the reference daemon: the same text where it
/// prints help, and no help where it reports an error.
#[test]
fn cli_help_matches_qsd() {
    let mut args: Vec<String> = [
        "help",
        "?",
        "nonexistent,help",
        "help,qom-type=secret",
        "iothread,help,id=",
        "iothread,?",
        "secret,id=s,data=x,help",
        "help,id=a,,b,qom-type=main-loop",
        "qom-type.x=1,help",
        "__com.example_x=1,help",
        // Errors: no help.
        "help,iothread",
        "iothread,help,bogus",
        "iothread,0x=1,help",
        "iothread,a=1,a.b=2,help",
        "iothread,=1,help",
        "iothread,id=x,help=on",
        r#"{"qom-type":"iothread","id":"x","help":1}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(types::TYPES.iter().map(|t| format!("{},help", t.name)));
    for arg in &args {
        let (code, out) = qsd_object_option(arg);
        match cli_object_help(arg) {
            Some(text) => {
                assert_eq!(code, Some(0), "--object {arg}");
                assert_eq!(out, text, "--object {arg}");
            }
            None => assert_eq!(code, Some(1), "--object {arg}: QSD printed {out:?}"),
        }
    }
}
