//! Chardev behaviour compared byte for byte with qemu-storage-daemon
//! 10.0.2: the chardev commands and their errors, ring buffer contents,
//! socket sessions (telnet negotiation, connect/disconnect names, hang-ups,
//! socket files), `wait`, and a monitor socket serving its clients one
//! after the other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};

/// Replaces what differs between two runs: the daemon's directory and
/// ephemeral port numbers.
fn mask(d: &Daemon, s: &str) -> String {
    let dir = d.dir.path().to_string_lossy().into_owned();
    let s = normalize(&s.replace(&dir, "TMP"));
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ':' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            if digits.len() >= 4 {
                out.push_str("PORT");
            } else {
                out.push_str(&digits);
            }
        }
    }
    out
}

/// Sends each line (with `{dir}` replaced by the daemon's directory) and
/// returns the masked replies.
fn replies(which: Impl, lines: &[&str]) -> Vec<String> {
    let d = Daemon::start(which);
    let mut q = d.qmp();
    let dir = d.dir.path().to_string_lossy().into_owned();
    lines
        .iter()
        .map(|l| {
            q.send_line(&l.replace("{dir}", &dir));
            mask(&d, &q.read_line())
        })
        .collect()
}

fn assert_same(lines: &[&str]) {
    let theirs = replies(Impl::Qsd, lines);
    let ours = replies(Impl::Ours, lines);
    for ((l, t), o) in lines.iter().zip(&theirs).zip(&ours) {
        assert_eq!(o, t, "reply to {l}");
    }
}

fn add(id: &str, backend: &str) -> String {
    format!(r#"{{"execute":"chardev-add","arguments":{{"id":"{id}","backend":{backend}}}}}"#)
}

#[test]
fn chardev_add_and_its_errors_match_qsd() {
    let lines = [
        r#"{"execute":"query-chardev-backends"}"#.to_string(),
        r#"{"execute":"query-chardev"}"#.into(),
        add("a", r#"{"type":"null","data":{}}"#),
        add("a", r#"{"type":"null","data":{}}"#),
        add("r", r#"{"type":"ringbuf","data":{}}"#),
        add("r2", r#"{"type":"ringbuf","data":{"size":3}}"#),
        add("r3", r#"{"type":"memory","data":{"size":8}}"#),
        add(
            "s",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"{dir}/a.sock"}}}}"#,
        ),
        add(
            "t",
            r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0"}},"telnet":true}}"#,
        ),
        add("v", r#"{"type":"vc","data":{}}"#),
        add("f", r#"{"type":"file","data":{"out":"{dir}/out.txt"}}"#),
        add(
            "f2",
            r#"{"type":"file","data":{"out":"/nonexistent/out.txt"}}"#,
        ),
        add(
            "x",
            r#"{"type":"null","data":{"logfile":"/nonexistent/l"}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"fd","data":{"str":"3"}}}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"x"}},"tls-authz":"x"}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"x"}},"tls-creds":"x"}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"{dir}/no"}},"server":false,"wait":true}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"{dir}/no"}},"reconnect":1}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"{dir}/no"}},"server":false}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"{dir}/no"}},"server":false,"reconnect":1,"reconnect-ms":5}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"1"}},"server":false}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"x"}}}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0"}},"websocket":true,"server":false}}"#,
        ),
        add(
            "x",
            r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0","ipv4":false,"ipv6":false}}}}"#,
        ),
        add(
            "x",
            &format!(
                r#"{{"type":"socket","data":{{"addr":{{"type":"unix","data":{{"path":"/{}"}}}}}}}}"#,
                "x".repeat(120)
            ),
        ),
        add("x", r#"{"type":"mux","data":{"chardev":"nope"}}"#),
        add("x", r#"{"type":"hub","data":{"chardevs":["nope"]}}"#),
        add("x", r#"{"type":"hub","data":{"chardevs":[]}}"#),
        add(
            "u",
            r#"{"type":"udp","data":{"remote":{"type":"unix","data":{"path":"/x"}}}}"#,
        ),
        add(
            "u",
            r#"{"type":"udp","data":{"remote":{"type":"inet","data":{"host":"127.0.0.1","port":"5555"}}}}"#,
        ),
        add("p", r#"{"type":"msmouse","data":{}}"#),
        r#"{"execute":"query-chardev"}"#.into(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_same(&lines);
}

#[test]
fn chardev_remove_change_and_break_match_qsd() {
    let lines = [
        add("a", r#"{"type":"null","data":{}}"#),
        add("b", r#"{"type":"ringbuf","data":{}}"#),
        add("c", r#"{"type":"null","data":{}}"#),
        r#"{"execute":"chardev-remove","arguments":{"id":"qmp0"}}"#.into(),
        r#"{"execute":"chardev-remove","arguments":{"id":"zz"}}"#.into(),
        r#"{"execute":"chardev-send-break","arguments":{"id":"zz"}}"#.into(),
        r#"{"execute":"chardev-send-break","arguments":{"id":"qmp0"}}"#.into(),
        r#"{"execute":"chardev-change","arguments":{"id":"qmp0","backend":{"type":"null","data":{}}}}"#.into(),
        r#"{"execute":"chardev-change","arguments":{"id":"zz","backend":{"type":"null","data":{}}}}"#.into(),
        r#"{"execute":"chardev-change","arguments":{"id":"a","backend":{"type":"ringbuf","data":{}}}}"#.into(),
        r#"{"execute":"query-chardev"}"#.into(),
        // A failed change leaves the chardev removed, as in QEMU.
        r#"{"execute":"chardev-change","arguments":{"id":"a","backend":{"type":"ringbuf","data":{"size":3}}}}"#.into(),
        r#"{"execute":"chardev-change","arguments":{"id":"a","backend":{"type":"null","data":{}}}}"#.into(),
        r#"{"execute":"chardev-remove","arguments":{"id":"b"}}"#.into(),
        add("d", r#"{"type":"null","data":{}}"#),
        add("b", r#"{"type":"null","data":{}}"#),
        r#"{"execute":"query-chardev"}"#.into(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_same(&lines);
}

#[test]
fn ringbuf_read_and_write_match_qsd() {
    let w = |data: &str, fmt: &str| {
        format!(
            r#"{{"execute":"ringbuf-write","arguments":{{"device":"r","data":"{data}"{fmt}}}}}"#
        )
    };
    let r = |size: i64, fmt: &str| {
        format!(r#"{{"execute":"ringbuf-read","arguments":{{"device":"r","size":{size}{fmt}}}}}"#)
    };
    let b64 = r#","format":"base64""#;
    let lines = [
        add("r", r#"{"type":"ringbuf","data":{"size":8}}"#),
        r#"{"execute":"ringbuf-read","arguments":{"device":"qmp0","size":10}}"#.into(),
        r#"{"execute":"ringbuf-read","arguments":{"device":"zz","size":10}}"#.into(),
        r#"{"execute":"ringbuf-write","arguments":{"device":"qmp0","data":"x"}}"#.into(),
        r(-1, ""),
        r(0, ""),
        r(10, ""),
        w(r"a\u0000b", ""),
        r(100, b64),
        w(r"a\u0000b", ""),
        r(100, ""),
        w("é€𝄞", ""),
        r(2, ""),
        r(100, b64),
        w("0123456789abc", ""),
        r(100, r#","format":"utf8""#),
        w("QQ", b64),
        r(100, b64),
        w("Q=Q=", b64),
        r(100, b64),
        w(r"QUJD\nRA==", b64),
        r(100, b64),
        w("QU*JD", b64),
        w("/+8AgMD/", b64),
        r(100, ""),
        w("77+/", b64),
        r(100, ""),
        w(r"\u007f\u0001", ""),
        r(100, ""),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_same(&lines);
}

fn query(d: &Daemon, q: &mut Qmp) -> String {
    q.send_line(r#"{"execute":"query-chardev"}"#);
    mask(d, &q.read_line())
}

/// Telnet negotiation, names while connected and after, a UNIX client
/// noticing its server's removal, and the socket file going away.
fn socket_sessions(which: Impl) -> Vec<String> {
    let d = Daemon::start(which);
    let mut q = d.qmp();
    let dir = d.dir.path().to_string_lossy().into_owned();
    let mut log = Vec::new();
    q.send_line(&add(
        "t",
        r#"{"type":"socket","data":{"addr":{"type":"inet","data":{"host":"127.0.0.1","port":"0"}},"telnet":true}}"#,
    ));
    log.push(mask(&d, &q.read_line()));
    q.send_line(r#"{"execute":"query-chardev"}"#);
    let info = q.read_line();
    log.push(mask(&d, &info));
    let port: u16 = info
        .split("telnet:127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("telnet port");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut init = [0u8; 12];
    c.read_exact(&mut init).unwrap();
    log.push(format!("{init:?}"));
    std::thread::sleep(Duration::from_millis(200));
    log.push(query(&d, &mut q));
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    // Without a frontend a TCP half-close goes unnoticed, as in QEMU.
    log.push(query(&d, &mut q));
    q.send_line(&add(
        "s",
        &format!(r#"{{"type":"socket","data":{{"addr":{{"type":"unix","data":{{"path":"{dir}/a.sock"}}}}}}}}"#),
    ));
    log.push(mask(&d, &q.read_line()));
    q.send_line(&add(
        "s2",
        &format!(r#"{{"type":"socket","data":{{"addr":{{"type":"unix","data":{{"path":"{dir}/a.sock"}}}},"server":false}}}}"#),
    ));
    log.push(mask(&d, &q.read_line()));
    std::thread::sleep(Duration::from_millis(200));
    log.push(query(&d, &mut q));
    q.send_line(r#"{"execute":"chardev-remove","arguments":{"id":"s"}}"#);
    log.push(mask(&d, &q.read_line()));
    std::thread::sleep(Duration::from_millis(500));
    log.push(query(&d, &mut q));
    log.push(format!(
        "socket file exists: {}",
        d.dir.path().join("a.sock").exists()
    ));
    log
}

#[test]
fn socket_sessions_match_qsd() {
    let theirs = socket_sessions(Impl::Qsd);
    let ours = socket_sessions(Impl::Ours);
    assert_eq!(ours, theirs);
}

/// Two more clients connect to the monitor socket while the first is
/// connected: each gets its greeting only when the one before has left.
fn clients_in_turn(which: Impl) -> Vec<String> {
    let d = Daemon::start(which);
    let mut first = d.qmp();
    let mut second = d.connect();
    let mut third = d.connect();
    let mut log = vec![
        second.drain(Duration::from_millis(300)),
        third.drain(Duration::from_millis(100)),
    ];
    first.send_line(r#"{"execute":"query-chardev"}"#);
    log.push(mask(&d, &first.read_line()));
    drop(first);
    log.push(mask(&d, &second.read_line()));
    log.push(third.drain(Duration::from_millis(300)));
    second.send_line(r#"{"execute":"qmp_capabilities"}"#);
    log.push(second.read_line());
    second.send_line(r#"{"execute":"query-chardev"}"#);
    log.push(mask(&d, &second.read_line()));
    drop(second);
    log.push(mask(&d, &third.read_line()));
    // The session starts over in negotiation mode.
    third.send_line(r#"{"execute":"query-chardev"}"#);
    log.push(third.read_line());
    log
}

#[test]
fn monitor_socket_serves_clients_one_after_another() {
    let theirs = clients_in_turn(Impl::Qsd);
    let ours = clients_in_turn(Impl::Ours);
    assert_eq!(ours, theirs);
    assert_eq!(theirs[0], "", "QSD greeted a second client early");
}

/// `wait` in `chardev-add`: the reply comes once a client connected.
fn add_with_wait(which: Impl) -> Vec<String> {
    let d = Daemon::start(which);
    let mut q = d.qmp();
    let path = d.dir.path().join("w.sock");
    q.send_line(&add(
        "w",
        &format!(
            r#"{{"type":"socket","data":{{"addr":{{"type":"unix","data":{{"path":"{}"}}}},"wait":true}}}}"#,
            path.display()
        ),
    ));
    let mut log = vec![q.drain(Duration::from_millis(400))];
    let mut c = UnixStream::connect(&path).unwrap();
    log.push(mask(&d, &q.read_line()));
    log.push(query(&d, &mut q));
    c.write_all(b"x").unwrap();
    log
}

#[test]
fn chardev_add_with_wait_replies_after_the_client_connects() {
    let theirs = add_with_wait(Impl::Qsd);
    let ours = add_with_wait(Impl::Ours);
    assert_eq!(ours, theirs);
    assert_eq!(theirs[0], "");
}

/// The same with the real client, qemu.qmp: a second client's connect
/// completes only once the first disconnected.
fn qemu_qmp_clients(which: Impl) -> String {
    let d = Daemon::start(which);
    let script = r#"
import asyncio, sys
from qemu.qmp import QMPClient
async def main(path):
    a = QMPClient('a'); await a.connect(path)
    print(await a.execute('chardev-add', {'id': 'r', 'backend': {'type': 'ringbuf', 'data': {}}}))
    b = QMPClient('b')
    t = asyncio.create_task(b.connect(path))
    await asyncio.sleep(0.5)
    print('second connected early:', t.done())
    await a.disconnect()
    await asyncio.wait_for(t, 10)
    print(await b.execute('query-chardev'))
    await b.disconnect()
asyncio.run(main(sys.argv[1]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&d.qmp_path)
        .output()
        .expect("python3 with qemu.qmp is needed");
    assert!(
        out.status.success(),
        "qemu.qmp client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    mask(&d, &String::from_utf8_lossy(&out.stdout))
}

#[test]
fn qemu_qmp_clients_take_turns_as_with_qsd() {
    let theirs = qemu_qmp_clients(Impl::Qsd);
    let ours = qemu_qmp_clients(Impl::Ours);
    assert_eq!(ours, theirs);
    assert!(theirs.contains("second connected early: False"), "{theirs}");
}
