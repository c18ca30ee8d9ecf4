//! Differential test: run the real qemu-storage-daemon 10.0.2 with option
//! values that exercise the keyval parser, the keyval visitor's scalar
//! conversions and the QemuOpts parser, and compare its exit status and stderr
//! with what our functions predict.
//!
//! The reference program is `qemu-storage-daemon` (Debian package `qemu-utils`),
//! or the program named by `$QSD_REFERENCE`. Its absence is a test failure.
//!
//! A value our functions accept is followed by `--object ,`, a sentinel that
//! QSD rejects right away (`Invalid parameter ''`), so that QSD exits without
//! serving anything; reaching the sentinel proves the value was accepted.

mod common;

use common::Qsd;
use qapi::keyval::scalar::{self, IntKind, UintKind};
use qapi::keyval::{KeyvalError, QsdOption};
use qapi::qemuopts::{self, ChardevStart, QemuOptsErrorKind, CHARDEV_IMPLIED_KEY, CHARDEV_OPTS};

const PROG: &str = "qemu-storage-daemon";

/// Messages only the keyval parser produces.
fn is_syntax_message(msg: &str) -> bool {
    msg.starts_with("Invalid parameter '")
        || msg.ends_with("' is too long")
        || msg.starts_with("Expected '=' after parameter")
        || msg.ends_with("used inconsistently")
        || (msg.starts_with("Parameter '") && msg.ends_with("' missing"))
        || msg == "Help is not available for this option"
}

fn keyval_cases() -> Vec<(QsdOption, &'static str, String)> {
    use QsdOption::{Blockdev, Export, Monitor, NbdServer, Object};
    let l127 = "a".repeat(127);
    let l128 = "a".repeat(128);
    let d128 = "1".repeat(128);
    let mut v: Vec<(QsdOption, &'static str, String)> = [
        "node-name=a,,b",
        ",",
        "=x",
        "a..b=1",
        ".a=1",
        "a.=1",
        "1=x",
        "a b=1",
        "_a=1",
        "é=1",
        "?=1",
        "?x",
        "a.1x=1",
        "a.-1=1",
        "a.+1=1",
        "file,b",
        "driver=file,b",
        "file,,b",
        ",driver=x",
        "driver=x,,y=1",
        "driver=x,,",
        "help",
        "?",
        "file,help",
        "help,driver=file",
        "help,a.1=x",
        "a.1=x,help",
        "help,file",
        "help,a..b=1",
        "helpx",
        "help=1",
        "x=1,x=2",
        "__a.b_c=1",
        "___x=1",
        "__ab=1",
        "a.b=1,a=2",
        "a=1,a.b=2",
        "a.b.c=1,a.b=2",
        "a.b=1,a.b.c=2",
        "a.0.x=1,a.0=2",
        "a=1,a.b.=2",
        "a=1,a..b=2",
        "a.1=x",
        "a.01=x",
        "a.00=1",
        "a.0=1,a.00=2",
        "a.0=1,a.2=3",
        "a.2147483647=1",
        "a.99999999999=1",
        "a.0=x,a.b=y",
        "a.b.0=x,a.b.1.c=y,a.b.1=z",
        "a.x.0=1,a.x.b=2,x.y.0=1,x.y.c=2",
        "x.y.0=1,x.y.c=2,a.x.0=1,a.x.b=2",
        "foo.0=1,foo.q=2,bar.0=1,bar.q=2",
        "foo.1=1,bar.0=1,bar.q=2",
        "c.1=1,b.0=1,b.q=2",
        "a.0.1=x,a.b=1",
        "a.b.c.d.e.f.g.1=x",
        "a.b.c.d.e.f.g.0.h.i.2=x",
        "raw,file.a.b.c..d=1",
    ]
    .iter()
    .map(|s| (Blockdev, "blockdev", s.to_string()))
    .collect();
    for s in [
        format!("{l127}=1"),
        format!("{l128}=1"),
        format!("x.{l128}=1"),
        format!("{l128}.x=1"),
        l128.clone(),
        format!("x.{l128},y"),
        format!("__{l128}=1"),
        format!("1{l128}=1"),
        format!("x.1{l128}=1"),
        format!("x.{d128}=1"),
    ] {
        v.push((Blockdev, "blockdev", s));
    }
    for s in ["help", "x,help", "a.1=x", ",", "x,y", "id=a,,b", "nbd,help"] {
        v.push((Export, "export", s.to_string()));
    }
    for s in ["help", "a.1=x", "x,y", ",", "?"] {
        v.push((Monitor, "monitor", s.to_string()));
    }
    for s in [
        "help",
        "x,help",
        "x",
        "addr.type=unix,addr.path",
        "addr..type=unix",
        "addr.0=x,addr.type=unix",
        "addr.type=unix,addr.path=,,",
    ] {
        v.push((NbdServer, "nbd-server", s.to_string()));
    }
    for s in [
        "a.1=x",
        ",",
        "x,y",
        "help,a.1=x",
        "id=a,,b",
        "iothread,id=x,,y=1",
    ] {
        v.push((Object, "object", s.to_string()));
    }
    v
}

#[test]
fn keyval_syntax_matches_qsd() {
    let qsd = Qsd::new();
    let mut failures = Vec::new();
    let cases = keyval_cases();
    for (opt, name, value) in &cases {
        let prefix = format!("{PROG}: --{name} {value}: ");
        match opt.parse(value) {
            Err(e) => {
                let out = qsd.run(&[&format!("--{name}"), value]);
                let want = format!("{prefix}{e}\n");
                if out.code != Some(1) || out.stderr != want {
                    failures.push(format!("--{name} {value:?}: want {want:?}, got {out:?}"));
                }
            }
            Ok(parsed) if parsed.help => {
                let out = qsd.run(&[&format!("--{name}"), value]);
                if out.code != Some(0) || out.stdout.is_empty() {
                    failures.push(format!("--{name} {value:?}: want help, got {out:?}"));
                }
            }
            Ok(_) => {
                let out = qsd.run_with_sentinel(&[&format!("--{name}"), value]);
                let bad = out
                    .stderr
                    .lines()
                    .filter_map(|l| l.strip_prefix(&prefix))
                    .any(is_syntax_message);
                if bad {
                    failures.push(format!("--{name} {value:?}: accepted by us, got {out:?}"));
                }
            }
        }
    }
    report(cases.len(), failures);
}

/// A QSD invocation whose value `v` lands in one scalar member, and our
/// prediction for it.
struct ScalarCase {
    /// Options before the one under test.
    setup: Vec<String>,
    option: &'static str,
    value: String,
    /// Our conversion's verdict: `Err(message)`, or `Ok(Some(message))` when a
    /// later (semantic) error is known, `Ok(None)` when QSD must get past the
    /// conversion (its output must not mention `expects`).
    predicted: Result<Option<String>, String>,
}

fn scalar_cases(qsd: &Qsd) -> Vec<ScalarCase> {
    let mut cases = Vec::new();
    let mut n = 0;
    let mut sock = |tag: &str| {
        n += 1;
        qsd.path(&format!("{tag}{n}.sock"))
    };

    let ints = [
        "1",
        "0x10",
        "010",
        "08",
        "-1",
        "-0",
        "+5",
        " 5",
        "5 ",
        "",
        "1e3",
        "1.5",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "0x7fffffffffffffff",
        "0xffffffffffffffff",
        "0b1",
        "0X1F",
        "0x",
        "0x ",
        "-",
        "99999999999999999999",
        "1k",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "0x80000000",
        "4294967295",
        "4294967296",
        "-4294967295",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551615",
        "-18446744073709551616",
        "65535",
        "65536",
        "\t7",
    ];
    for v in ints {
        let predicted =
            scalar::to_int("poll-max-ns", Some("poll-max-ns"), v, IntKind::Int64).map(|n| {
                (n < 0).then(|| {
                    "poll-max-ns value must be in range [0, 9223372036854775807]".to_string()
                })
            });
        cases.push(ScalarCase {
            setup: vec![],
            option: "object",
            value: format!("iothread,id=i,poll-max-ns={v}"),
            predicted,
        });
        cases.push(ScalarCase {
            setup: vec![],
            option: "object",
            value: format!("secret_keyring,id=s,serial={v}"),
            predicted: scalar::to_int("serial", Some("serial"), v, IntKind::Int32).map(|_| None),
        });
        let path = sock("nbd");
        cases.push(ScalarCase {
            setup: vec![],
            option: "nbd-server",
            value: format!("addr.type=unix,addr.path={path},max-connections={v}"),
            predicted: scalar::to_uint(
                "max-connections",
                Some("max-connections"),
                v,
                UintKind::Uint32,
            )
            .map(|_| None),
        });
        cases.push(ScalarCase {
            setup: vec![],
            option: "object",
            value: format!("thread-context,id=t,node-affinity.0=0,node-affinity.1={v}"),
            predicted: scalar::to_uint("node-affinity.1", None, v, UintKind::Uint16).map(|_| None),
        });
    }
    for v in ["5", "x", "-1", "99999999999", "4294967296", "0x10"] {
        cases.push(ScalarCase {
            setup: vec![],
            option: "blockdev",
            value: format!(
                "raw,node-name=r,file.driver=nbd,file.server.type=unix,\
                 file.server.path=/nonexistent,file.reconnect-delay={v}"
            ),
            predicted: scalar::to_uint(
                "file.reconnect-delay",
                Some("reconnect-delay"),
                v,
                UintKind::Uint32,
            )
            .map(|_| None),
        });
    }

    let sizes = [
        "0",
        "512",
        "1",
        "1k",
        "1K",
        "2k",
        "1.k",
        "1.K",
        "2.k",
        "1.",
        "1.0",
        "1.0B",
        "1b",
        "512B",
        "0.5k",
        ".5k",
        "0.5K",
        "0.50k",
        "512.0",
        "512.5",
        "1.5",
        "1.5B",
        "1.5k",
        "0x200",
        "0X200",
        "0x200k",
        "0x1k",
        "0x",
        "0x0",
        "00x1",
        " 512",
        "+512",
        "-512",
        "-0",
        "1e",
        "1e3",
        "1.5e1k",
        "0.5e1k",
        "05.k",
        "0x.8k",
        "inf",
        "nan",
        "0.0009765625M",
        "0.00048828125G",
        "0.5000000001k",
        "0.499999999999k",
        "0.00000000001k",
        "1 k",
        "1kB",
        "1KiB",
        "16E",
        "15.9999E",
        "16383P",
        "1P",
        "1T",
        "1M",
        "2M",
        "3M",
        "18446744073709551615",
        "18446744073709551616",
        "-.5k",
        "+.5k",
        " .5k",
        "x.5k",
        ".",
        ".k",
        "2097152",
        "2097152.4",
        "0.00000000000000000000000000001M",
    ];
    for v in sizes {
        let path = sock("vub");
        let predicted = scalar::to_size("logical-block-size", v).map(|n| {
            let fine = n == 0 || (n.is_power_of_two() && (512..=2_097_152).contains(&n));
            (!fine).then(|| {
                "parameter logical-block-size must be a power of 2 between 512 and 2097152"
                    .to_string()
            })
        });
        cases.push(ScalarCase {
            setup: vec!["--blockdev".into(), "null-co,node-name=n".into()],
            option: "export",
            value: format!(
                "vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path={path},\
                 logical-block-size={v}"
            ),
            predicted,
        });
    }
    for v in ["1.5G", "16E", "1e3", "-1", "1k"] {
        cases.push(ScalarCase {
            setup: vec![],
            option: "object",
            value: format!("memory-backend-ram,id=m,size={v}"),
            predicted: scalar::to_size("size", v)
                .map(|_| Some("invalid object type: memory-backend-ram".to_string())),
        });
    }

    let bools = [
        "on", "off", "yes", "no", "true", "false", "y", "n", "Y", "N", "1", "0", "ON", "True", "",
        " on", "on ", "maybe",
    ];
    for v in bools {
        cases.push(ScalarCase {
            setup: vec![],
            option: "blockdev",
            value: format!("null-co,node-name=n,read-only={v}"),
            predicted: scalar::to_bool("read-only", v).map(|_| None),
        });
        let path = sock("abs");
        cases.push(ScalarCase {
            setup: vec![],
            option: "nbd-server",
            value: format!("addr.type=unix,addr.path={path},addr.abstract={v}"),
            predicted: scalar::to_bool("addr.abstract", v).map(|_| None),
        });
    }

    // Structure mismatches and the other visitor messages.
    let path = sock("st");
    let structural = [
        (
            "nbd-server",
            "addr=x".to_string(),
            scalar::wrong_type("addr", "object"),
        ),
        (
            "object",
            "thread-context,id=t,node-affinity=1".to_string(),
            scalar::wrong_type("node-affinity", "array"),
        ),
        (
            "object",
            "thread-context,id=t,node-affinity.a=1".to_string(),
            scalar::wrong_type("node-affinity", "array"),
        ),
        (
            "object",
            "thread-context,id=t,node-affinity.0.a=1".to_string(),
            scalar::scalar_str("node-affinity.0", &serde_json::json!({"a": "1"}))
                .map(str::to_string)
                .unwrap_or_else(|e| e),
        ),
        (
            "nbd-server",
            "addr.type=unix,addr.path.x=1".to_string(),
            "Parameters 'addr.path.*' are unexpected".to_string(),
        ),
        (
            "object",
            "iothread,id=a,poll-max-ns.x=1".to_string(),
            "Parameters 'poll-max-ns.*' are unexpected".to_string(),
        ),
        (
            "nbd-server",
            "addr.type=unix".to_string(),
            scalar::missing("addr.path"),
        ),
        (
            "nbd-server",
            format!("addr.type=unix,addr.path={path},addr.zzz=1"),
            scalar::unexpected("addr.zzz"),
        ),
        (
            "nbd-server",
            "addr.type=bad".to_string(),
            scalar::bad_enum(Some("type"), "bad"),
        ),
        (
            "blockdev",
            "raw,node-name=r,file.0=x".to_string(),
            scalar::wrong_type("file", "BlockdevRef"),
        ),
        (
            "blockdev",
            "raw,node-name=r,file.driver=nbd,file.server=x".to_string(),
            scalar::wrong_type("file.server", "object"),
        ),
    ];
    for (option, value, msg) in structural {
        cases.push(ScalarCase {
            setup: vec![],
            option,
            value,
            predicted: Err(msg),
        });
    }
    cases
}

#[test]
fn scalar_conversions_match_qsd() {
    let qsd = Qsd::new();
    let cases = scalar_cases(&qsd);
    let mut failures = Vec::new();
    for c in &cases {
        let mut args: Vec<&str> = c.setup.iter().map(String::as_str).collect();
        let flag = format!("--{}", c.option);
        args.push(&flag);
        args.push(&c.value);
        let out = qsd.run_with_sentinel(&args);
        let prefix = format!("{PROG}: --{} {}: ", c.option, c.value);
        let ok = match &c.predicted {
            Err(msg) => out.code == Some(1) && out.stderr == format!("{prefix}{msg}\n"),
            Ok(Some(msg)) => out.code == Some(1) && out.stderr == format!("{prefix}{msg}\n"),
            Ok(None) => {
                out.code == Some(1)
                    && !out.stderr.contains("expects")
                    && !out.stderr.contains("Invalid parameter type")
            }
        };
        if !ok {
            failures.push(format!(
                "{:?} --{} {:?}: predicted {:?}, got {out:?}",
                c.setup, c.option, c.value, c.predicted
            ));
        }
    }
    report(cases.len(), failures);
}

fn chardev_cases(qsd: &Qsd) -> Vec<String> {
    let mut v: Vec<String> = [
        "socket,id=x,serve=on",
        "socket,id=x,server=maybe",
        "socket,id=x,noserver",
        "socket,id=x,nodelay",
        "socket,id=x,delay",
        "socket,id=1x",
        "socket,id=",
        "socket,id=x,,y",
        "socket",
        "id=x",
        "",
        "help",
        "?",
        "help,id=a",
        "socket,help",
        "socket,id=x,help",
        "null,id=a,?",
        "null,id=a,help,x=1",
        "null,id=a,x=1,help",
        "null,id=1,help",
        "null,id=a,id=b",
        "null,id=a,x=1",
        "null,,x,id=a",
        ",id=a",
        "null,=x,id=a",
        "null,id=a,",
        "null,id=a,,",
        "id",
        "null,id",
        "null,noid",
        "null,id,id=a",
        "null,id=a.b_c-d",
        "null,id=_a",
        "null,id=a/b",
        "a=b=c,id=a",
        "null,id=a,mux",
        "null,id=a,nomux",
        "null,id=a,fo,,o",
        "null,id=a,no",
        "null,id=a,nohelp",
        "null,id=a,size",
        "null,id=a,backend=file",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [
        "x",
        "-1",
        "99999999999999999999",
        "99999999999999999999x",
        "-99999999999999999999",
        "0x",
        " 0x5",
        "",
        "1.5",
        "010",
        "08",
    ] {
        v.push(format!("null,id=a,reconnect-ms={n}"));
    }
    for s in [
        "1x",
        "16E",
        "1.5k",
        "-1",
        "-.5",
        "-.5k",
        "-1k",
        "-0.5",
        "-.0",
        "99999999999999999999",
        "99999999999999999999k",
        "16Ex",
        "0x1ffffffffffffffff",
        "0x10k",
        "",
        "18446744073709551615.99999999999999999999",
        "18446744073709551615.4",
        "1e",
        "0x10",
    ] {
        v.push(format!("null,id=a,size={s}"));
    }
    for b in ["Y", "maybe", "yes", "true", "n", "off"] {
        v.push(format!("null,id=a,mux={b}"));
    }
    v.push(format!(
        "socket,id=s,path={},server=on,wait=off",
        qsd.path("chr.sock")
    ));
    v
}

#[test]
fn qemuopts_matches_qsd() {
    let qsd = Qsd::new();
    let cases = chardev_cases(&qsd);
    let mut failures = Vec::new();
    for value in &cases {
        let out = qsd.run_with_sentinel(&["--chardev", value]);
        let prefix = format!("{PROG}: --chardev {value}: ");
        let warn = |w: &[qemuopts::FlagWarning]| -> String {
            w.iter()
                .map(|w| format!("{prefix}warning: {}\n{}", w.message(), w.hint()))
                .collect()
        };
        let ok = match qemuopts::parse(value, Some(CHARDEV_IMPLIED_KEY), CHARDEV_OPTS) {
            Err(e) if e.kind == QemuOptsErrorKind::HelpWanted => {
                out.code == Some(1)
                    && out.stderr == warn(&e.warnings)
                    && out.stdout == qemuopts::help_text("chardev", CHARDEV_OPTS)
            }
            Err(e) => {
                let want = format!(
                    "{}{prefix}{e}\n{}",
                    warn(&e.warnings),
                    e.kind.hint().unwrap_or("")
                );
                out.code == Some(1) && out.stderr == want
            }
            Ok(opts) => match qemuopts::chardev_start(&opts) {
                Ok(ChardevStart::ListBackends) => {
                    out.code == Some(0)
                        && out
                            .stdout
                            .starts_with("Available chardev backend types: \n")
                }
                Err(msg) => {
                    out.code == Some(1)
                        && out.stderr == format!("{}{prefix}{msg}\n", warn(&opts.warnings))
                }
                Ok(ChardevStart::Create { .. }) => {
                    // Past the parser: only the warnings must match, and what
                    // follows must not be a parse error.
                    let w = warn(&opts.warnings);
                    let rest = out.stderr.strip_prefix(&w);
                    let msg = rest
                        .and_then(|r| r.lines().next())
                        .and_then(|l| l.strip_prefix(&prefix))
                        .unwrap_or("");
                    out.code == Some(1)
                        && rest.is_some()
                        && !msg.starts_with("Invalid parameter '")
                        && !msg.starts_with("Parameter '")
                        && !msg.starts_with("Value '")
                }
            },
        };
        if !ok {
            failures.push(format!("--chardev {value:?}: got {out:?}"));
        }
    }
    report(cases.len(), failures);
}

#[test]
fn sentinel_is_rejected_as_expected() {
    let qsd = Qsd::new();
    let out = qsd.run(&["--object", ","]);
    let want = KeyvalError::InvalidParameter(String::new());
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr, format!("{PROG}: --object ,: {want}\n"));
    assert!(matches!(
        QsdOption::Object.parse(","),
        Err(KeyvalError::InvalidParameter(k)) if k.is_empty()
    ));
}

fn report(total: usize, failures: Vec<String>) {
    let passed = total - failures.len();
    eprintln!("{passed} of {total} cases agree with {PROG}");
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from {PROG}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
