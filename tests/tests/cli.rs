//! The command line, compared with qemu-storage-daemon 10.0.2: for the same
//! arguments, stdout, stderr and the exit status must be the same once the
//! program names are equal. Both programs are started with `argv[0]` set to
//! `PROG`, so every message names `PROG` (option scanner messages use
//! `argv[0]` as given, everything else its base name).
//!
//! Values that QSD accepts are followed by `--object ,`, which both reject
//! with `Invalid parameter ''`: the process then exits instead of serving,
//! and reaching that message proves the earlier options were accepted.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::Impl;

/// What a run printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Runs `which` with `args` in `dir`; the process must end within 10 s.
fn run_in(which: Impl, args: &[&str], dir: &std::path::Path) -> Outcome {
    let mut child = Command::new(which.program())
        .arg0("PROG")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the daemon");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{which:?} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
        code: status.code(),
    }
}

/// The `--version` text differs on purpose (see
/// `version_has_qsd_layout_and_says_which_interface`); differential cases
/// compare it as a placeholder.
fn mask_version(mut o: Outcome) -> Outcome {
    if o.stdout.starts_with("qemu-storage-daemon version ") || o.stdout.starts_with("qsd version ")
    {
        o.stdout = "<version text>".to_string();
    }
    o
}

fn run(which: Impl, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    run_in(which, args, dir.path())
}

/// Runs every case on both programs and fails listing all differences.
fn assert_same(cases: &[Vec<&str>]) {
    let mut failures = Vec::new();
    for args in cases {
        let dir = tempfile::tempdir().unwrap();
        // Paths in the cases are relative to a private directory.
        let theirs = mask_version(run_in(Impl::Qsd, args, dir.path()));
        let dir2 = tempfile::tempdir().unwrap();
        let ours = mask_version(run_in(Impl::Ours, args, dir2.path()));
        if theirs != ours {
            failures.push(format!("{args:?}\n  QSD:  {theirs:?}\n  ours: {ours:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn cases(list: &[&[&str]]) -> Vec<Vec<&'static str>> {
    list.iter()
        .map(|c| c.iter().map(|s| leak(s)).collect())
        .collect()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

#[test]
fn scanner_errors_match() {
    assert_same(&cases(&[
        &["--bogus"],
        &["--bogus=1"],
        &["---help"],
        &["--Help"],
        &["-x"],
        &["-blockdev"],
        &["--blockdev"],
        &["--p"],
        &["-T"],
        &["--help=foo"],
        &["--he=1"],
        &["--d=1"],
        &["--daemonize="],
        &["--=x"],
        &["--="],
        &["-xV"],
    ]));
}

#[test]
fn first_pass_options_win_over_later_errors_and_vice_versa() {
    assert_same(&cases(&[
        // A scanner error, -h and -V are handled in the first pass, in order.
        &["--bogus", "-V"],
        &["--blockdev", "x", "--bogus"],
        &["-T", "x=1", "--bogus"],
        &["foo", "--bogus"],
        // -V in the first pass beats errors of the second.
        &["--blockdev", "x", "-V"],
        &["-T", "x=1", "-V"],
        &["foo", "-V"],
        &["-Vx"],
        &["--pidfile", "/nonexistent/dir/p", "-V"],
        // Second-pass options, including -T, apply in order.
        &["--blockdev", "x", "-T", "x=1"],
        &["foo", "-T", "x=1"],
        &["--pidfile", "/nonexistent/dir/p", "--blockdev", "x"],
    ]));
}

#[test]
fn non_option_arguments_match() {
    assert_same(&cases(&[
        &["foo"],
        &["-"],
        &[""],
        &["--object", ",", "foo"],
        &["--object", ",", "--", "foo"],
    ]));
}

#[test]
fn option_locations_match() {
    assert_same(&cases(&[
        &["--blockdev", "x"],
        &["--blockdev=x"],
        &["--b", "x"],
        &["--e=x"],
        &["--n", "x"],
        &["-Tx=1"],
        &["-T", "x=1"],
        &["--trace=x=1"],
        &["--tr", "x=1"],
    ]));
}

#[test]
fn blockdev_values_match() {
    assert_same(&cases(&[
        &["--blockdev", "{}"],
        &["--blockdev", r#"{"driver":1}"#],
        &["--blockdev", r#" {"driver":"null-co"}"#],
        &["--blockdev", "[1]"],
        &["--blockdev", ""],
        &["--blockdev", "help"],
        &["--blockdev", "driver=file"],
        &["--blockdev", "driver=file,filename=x,aio=bad"],
        &["--blockdev", "null-co,node-name=a,size=x"],
        &["--blockdev", "null-co,node-name=a,a..b=1"],
        &["--blockdev", r#"{"driver":"null-co","x":1}"#],
    ]));
}

#[test]
fn malformed_json_values_match() {
    assert_same(&cases(&[
        &["--blockdev", "{"],
        &["--blockdev", r#"{"driver":"null-co"} {"#],
        &["--blockdev", r#"{"driver":"null-co"}x"#],
        &["--blockdev", r#"{"driver":"null-co","node-name":"a",}"#],
        &["--blockdev", "{'driver':'null-co','node-name':1}"],
        &["--blockdev", r#"{"driver" "x"}"#],
        &["--nbd-server", r#"{"addr":{"type":"unix","data":{}}}"#],
        &["--object", r#"{"qom-type":"iothread","id":"x"]"#],
        &["--export", r#"{"type":"nbd","id":"\ud800"}"#],
    ]));
}

#[test]
fn export_values_match() {
    assert_same(&cases(&[
        &["--export", r#"{"type":"nbd"}"#],
        &["--export", "nbd"],
        &["--export", "x"],
        &["--export", "type=nbd,id=e,node-name=n,writable=maybe"],
        &["--export", "vhost-user-blk,id=e,node-name=n"],
        &["--export", "help"],
    ]));
}

#[test]
fn monitor_values_match() {
    let chardev = "socket,id=c,path=m.sock,server=on,wait=off";
    assert_same(&cases(&[
        &["--monitor", "x"],
        &["--monitor", ""],
        &["--monitor", "chardev=x,mode=readline"],
        &["--monitor", "chardev=x,mode=foo"],
        &["--monitor", "chardev=x,pretty=maybe"],
        &["--monitor", "x,pretty"],
        &["--monitor", r#"{"chardev":"x"}"#],
        &["--monitor", r#"{"chardev":"x","mode":"readline"}"#],
        &["--chardev", chardev, "--monitor", "c,mode=readline"],
        &["--chardev", chardev, "--monitor", "c", "--monitor", "c"],
        &[
            "--chardev",
            chardev,
            "--monitor",
            "c,id=1,pretty=on",
            "--object",
            ",",
        ],
        &[
            "--chardev",
            chardev,
            "--monitor",
            r#"{"chardev":"c"}"#,
            "--object",
            ",",
        ],
    ]));
}

#[test]
fn nbd_server_values_match() {
    assert_same(&cases(&[
        &["--nbd-server", "addr.type=unix"],
        &["--nbd-server", "x"],
        &["--nbd-server", ""],
        &["--nbd-server", "addr.type=inet,addr.host=h"],
        &[
            "--nbd-server",
            r#"{"addr":{"type":"unix","path":"n.sock"},"max-connections":-1}"#,
        ],
    ]));
}

#[test]
fn object_values_match() {
    assert_same(&cases(&[
        &["--object", ""],
        &["--object", ","],
        &["--object", "foo"],
        &["--object", "id=x"],
        &["--object", "secret"],
        &["--object", "help,secret"],
        &["--object", "help,a..b=1"],
        &["--object", "help,a.1=x"],
        &["--object", "secret,id=x,data=y,a.1=2,help"],
        &["--object", r#"{"qom-type":"secret"}"#],
        &["--object", r#"{"qom-type":"secret","id":"x","help":1}"#],
        &["--object", "secret,id=1x,data=x"],
        &[
            "--object",
            "secret,id=s,data=x",
            "--object",
            "secret,id=s,data=y",
        ],
        &["--object", "secret,id=s,data=x", "--object", ","],
        &[
            "--object",
            r#"{"qom-type":"secret","id":"s","data":"x"}"#,
            "--object",
            ",",
        ],
        &["--object", "iothread,id=i", "--object", ","],
    ]));
}

#[test]
fn object_help_matches() {
    assert_same(&cases(&[
        &["--object", "help"],
        &["--object", "?"],
        &["--object", "secret,help"],
        &["--object", "qom-type=secret,help,id=1"],
        &["--object", "foo,help"],
        &["--object", "iothread,id=i,help"],
        &["--blockdev", "x", "--object", "help"],
        &["--object", "help", "--blockdev", "x"],
    ]));
}

#[test]
fn chardev_values_match() {
    assert_same(&cases(&[
        &["--chardev", "help"],
        &["--chardev", "foo,id=x"],
        &["--chardev", "tty,id=x"],
        &["--chardev", "socket"],
        &["--chardev", r#"{"id":"c"}"#],
        &["--chardev", "null,id=c,help"],
        &["--chardev", "socket,id=1x"],
        &["--chardev", "socket,id=c,fd=99,server=on,wait=off"],
        &["--chardev", "socket,id=c,fd=abc,server=on,wait=off"],
        &[
            "--chardev",
            "socket,id=c,path=/nonexistent/x,server=on,wait=off",
        ],
        &[
            "--chardev",
            "socket,id=c,path=a.sock,server=on,wait=off",
            "--chardev",
            "socket,id=c,path=b.sock,server=on,wait=off",
        ],
        &[
            "--chardev",
            "socket,id=c,path=a.sock,server=on,wait=off,nodelay",
            "--object",
            ",",
        ],
        &[
            "--chardev",
            "socket,id=c,path=a.sock,server=on,nowait",
            "--object",
            ",",
        ],
    ]));
}

#[test]
fn trace_values_match() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::write(&events, "# comment\n\n-foo\nnosuch").unwrap();
    let events_arg = leak(&format!("events={}", events.display()));
    assert_same(&cases(&[
        &["-T", "enable=foo,bar=1"],
        &["-T", "x,foo"],
        &["-T", "x,help"],
        &["-T", "x,?"],
        &["-T", "id=1"],
        &["-T", "events=/nonexistent"],
        &["-T", "events="],
        &["-T", "file=/nonexistent/x"],
        &["-T", "file="],
        &["-T", "enable=nosuchevent", "--object", ","],
        &["-T", "x,enable=y", "--object", ","],
        &["-T", "a,,b", "--object", ","],
        &["-T", "-x", "--object", ","],
        &["-T", "noenable", "--object", ","],
        &["-T", "nosuch*", "--object", ","],
        &["-T", "file=t.log", "--object", ","],
        &["-T", events_arg, "--object", ","],
    ]));
}

#[test]
fn pidfile_errors_match() {
    assert_same(&cases(&[
        &["--pidfile", "/nonexistent/dir/p"],
        &["--pidfile=/nonexistent/dir/p"],
        &["--pidfile", ""],
        &["--pidfile", "."],
    ]));
}

#[test]
fn help_matches_except_the_lines_about_us() {
    let theirs = run(Impl::Qsd, &["--help"]);
    let ours = run(Impl::Ours, &["-h"]);
    assert_eq!((theirs.code, ours.code), (Some(0), Some(0)));
    assert_eq!(ours.stderr, "");
    let t: Vec<&str> = theirs.stdout.lines().collect();
    let o: Vec<&str> = ours.stdout.lines().collect();
    assert_eq!(o[0], "Usage: PROG [options]");
    assert_eq!(t[0], o[0]);
    assert!(o[1].starts_with("QEMU storage daemon (qsd "), "{}", o[1]);
    // The option block (from the empty line after the title to the empty
    // line before the closing text) is QSD's.
    assert_eq!(t[2..t.len() - 2], o[2..o.len() - 1]);
    // Whatever comes around it, help wins.
    assert_eq!(run(Impl::Ours, &["--blockdev", "x", "--he"]), ours);
    assert_eq!(run(Impl::Ours, &["-hx"]), ours);
}

#[test]
fn version_has_qsd_layout_and_says_which_interface() {
    let theirs = run(Impl::Qsd, &["--version"]);
    let ours = run(Impl::Ours, &["-V"]);
    assert_eq!((theirs.code, ours.code), (Some(0), Some(0)));
    assert!(theirs
        .stdout
        .starts_with("qemu-storage-daemon version 10.0.2 ("));
    assert!(ours.stdout.starts_with("qsd version 10.0.2 (qsd "));
    assert_eq!(theirs.stdout.lines().count(), ours.stdout.lines().count());
    assert!(ours.stdout.contains("qemu-storage-daemon 10.0.2"));
    assert_eq!(ours.stderr, "");
    assert_eq!(run(Impl::Ours, &["--ver", "--bogus"]), ours);
}
