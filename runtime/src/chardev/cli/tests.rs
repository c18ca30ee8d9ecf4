//! The conversion checked against messages captured from
//! `qemu-storage-daemon --chardev VALUE` (10.0.2).

use super::*;

/// A minimal QemuOpts tokenizer for the tests: `,` separates options, the
/// first one without `=` is the backend.
fn tok(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .enumerate()
        .map(|(i, p)| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if i == 0 => ("backend".to_string(), p.to_string()),
            None => (p.to_string(), "on".to_string()),
        })
        .collect()
}

fn err(s: &str) -> String {
    parse_cli_chardev(&tok(s)).unwrap_err()
}

fn ok(s: &str) -> (String, ChardevBackend) {
    parse_cli_chardev(&tok(s)).unwrap()
}

const SIZE_HINT: &str = "\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, \
                         tera-, peta-\nand exabytes, respectively.";
const ID_HINT: &str =
    "\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

#[test]
fn errors_match_qsd() {
    let cases: &[(&str, String)] = &[
        ("socket", "chardev: no id specified".into()),
        ("null", "chardev: no id specified".into()),
        ("id=x", "chardev: \"x\" missing backend".into()),
        ("null,id=a,bogus=1", "Invalid parameter 'bogus'".into()),
        ("foo,id=x", "'foo' is not a valid char driver name".into()),
        ("vc,id=v", "'vc' is not a valid char driver name".into()),
        (
            "console,id=c",
            "'console' is not a valid char driver name".into(),
        ),
        (
            "msmouse,id=m",
            "'msmouse' is not a valid char driver name".into(),
        ),
        (
            "spicevmc,id=s",
            "'spicevmc' is not a valid char driver name".into(),
        ),
        (
            "socket,id=x,path=/tmp/p,host=h",
            "None or one of 'path', 'fd' or 'host' option required.".into(),
        ),
        (
            "socket,id=x,fd=3,host=h",
            "None or one of 'path', 'fd' or 'host' option required.".into(),
        ),
        (
            "socket,id=x,host=h",
            "chardev: socket: no port given".into(),
        ),
        (
            "socket,id=x,path=/z,nodelay=on,delay=on",
            "'delay' and 'nodelay' are mutually exclusive".into(),
        ),
        (
            "socket,id=x,path=/z,server=maybe",
            "Parameter 'server' expects 'on' or 'off'".into(),
        ),
        (
            "socket,id=x,path=/z,server=ON",
            "Parameter 'server' expects 'on' or 'off'".into(),
        ),
        (
            "socket,id=x,host=::,port=0,to=x",
            "Parameter 'to' expects a number".into(),
        ),
        (
            "socket,id=x,host=::,port=0,to=",
            "Parameter 'to' expects a number".into(),
        ),
        (
            "socket,id=x,host=::,port=0,to=99999999999999999999999",
            "Value '99999999999999999999999' is too large for parameter 'to'".into(),
        ),
        (
            "socket,id=x,host=::,port=0,reconnect=1x",
            "Parameter 'reconnect' expects a number".into(),
        ),
        (
            "ringbuf,id=a,size=1x",
            format!("Parameter 'size' expects a non-negative number below 2^64{SIZE_HINT}"),
        ),
        (
            "ringbuf,id=a,size=-1",
            "Value '-1' is out of range for parameter 'size'".into(),
        ),
        (
            "ringbuf,id=a,size=16E",
            "Value '16E' is out of range for parameter 'size'".into(),
        ),
        (
            "ringbuf,id=a,size=0x10k",
            format!("Parameter 'size' expects a non-negative number below 2^64{SIZE_HINT}"),
        ),
        (
            "ringbuf,id=a,size=1e3",
            format!("Parameter 'size' expects a non-negative number below 2^64{SIZE_HINT}"),
        ),
        (
            "ringbuf,id=a,size=",
            format!("Parameter 'size' expects a non-negative number below 2^64{SIZE_HINT}"),
        ),
        (
            "ringbuf,id=a,size=.k",
            format!("Parameter 'size' expects a non-negative number below 2^64{SIZE_HINT}"),
        ),
        (
            "ringbuf,id=a b",
            format!("Parameter 'id' expects an identifier{ID_HINT}"),
        ),
        (
            "ringbuf,id=1a",
            format!("Parameter 'id' expects an identifier{ID_HINT}"),
        ),
        (
            "ringbuf,id=",
            format!("Parameter 'id' expects an identifier{ID_HINT}"),
        ),
        ("file,id=f", "chardev: file: no filename given".into()),
        (
            "file,id=f,append=x",
            "Parameter 'append' expects 'on' or 'off'".into(),
        ),
        ("pipe,id=p", "chardev: pipe: no device path given".into()),
        (
            "serial,id=s",
            "chardev: serial/tty: no device path given".into(),
        ),
        (
            "parallel,id=p",
            "chardev: parallel: no device path given".into(),
        ),
        ("udp,id=u", "chardev: udp: remote port not specified".into()),
        (
            "udp,id=u,host=x,port=",
            "chardev: udp: remote port not specified".into(),
        ),
        ("mux,id=m", "chardev: mux: no chardev given".into()),
        (
            "stdio,id=s,signal=2",
            "Parameter 'signal' expects 'on' or 'off'".into(),
        ),
        (
            "null,id=a,id=b,path=1,bad=2",
            "Invalid parameter 'bad'".into(),
        ),
        (
            "null,bad=2,id=1x",
            format!("Parameter 'id' expects an identifier{ID_HINT}"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&err(input), want, "--chardev {input}");
    }
}

fn socket(b: &ChardevBackend) -> &ChardevSocket {
    match &b.u {
        ChardevBackendBranch::Socket(s) => &s.data,
        other => panic!("not a socket: {other:?}"),
    }
}

#[test]
fn server_waits_by_default_on_the_command_line() {
    let (id, b) = ok("socket,id=m,path=/tmp/m,server=on");
    assert_eq!(id, "m");
    let s = socket(&b);
    assert_eq!((s.server, s.wait), (Some(true), Some(true)));
    let s = socket(&ok("socket,id=m,path=/tmp/m,server=on,wait=off").1).clone();
    assert_eq!((s.server, s.wait), (Some(true), Some(false)));
    // A client: server explicitly off, wait absent.
    let s = socket(&ok("socket,id=m,path=/tmp/m").1).clone();
    assert_eq!((s.server, s.wait), (Some(false), None));
    assert_eq!(s.logappend, Some(false));
    // The last of repeated options counts.
    let s = socket(&ok("socket,id=m,path=/m,server=off,server=yes").1).clone();
    assert_eq!(s.server, Some(true));
}

#[test]
fn socket_addresses() {
    let s = socket(&ok("socket,id=m,path=/p").1).clone();
    match s.addr.u {
        SocketAddressLegacyBranch::Unix(u) => {
            assert_eq!(u.data.path, "/p");
            assert_eq!((u.data.abstract_, u.data.tight), (Some(false), Some(true)));
        }
        other => panic!("{other:?}"),
    }
    let s = socket(&ok("socket,id=m,host=::1,port=4,to=70000,ipv6=on").1).clone();
    match s.addr.u {
        SocketAddressLegacyBranch::Inet(i) => {
            assert_eq!((i.data.host.as_str(), i.data.port.as_str()), ("::1", "4"));
            // QEMU keeps `to` in 16 bits.
            assert_eq!(i.data.to, Some(70000u32 as u16));
            assert_eq!((i.data.ipv4, i.data.ipv6), (None, Some(true)));
        }
        other => panic!("{other:?}"),
    }
    // Neither path nor host: a descriptor, empty if not given.
    match socket(&ok("socket,id=m").1).addr.u.clone() {
        SocketAddressLegacyBranch::Fd(f) => assert_eq!(f.data.str, ""),
        other => panic!("{other:?}"),
    }
    let s = socket(&ok("socket,id=m,path=/p,delay=off").1).clone();
    assert_eq!(s.nodelay, Some(true));
    let s = socket(&ok("socket,id=m,path=/p,telnet=on,reconnect-ms=5").1).clone();
    assert_eq!(
        (s.telnet, s.tn3270, s.reconnect_ms),
        (Some(true), None, Some(5))
    );
}

#[test]
fn ringbuf_sizes() {
    let size = |s: &str| match ok(s).1.u {
        ChardevBackendBranch::Ringbuf(r) | ChardevBackendBranch::Memory(r) => r.data.size,
        other => panic!("{other:?}"),
    };
    assert_eq!(size("ringbuf,id=r"), None);
    assert_eq!(size("ringbuf,id=r,size=1k"), Some(1024));
    assert_eq!(size("ringbuf,id=r,size=1.5k"), Some(1536));
    assert_eq!(size("ringbuf,id=r,size=.5k"), Some(512));
    assert_eq!(size("ringbuf,id=r,size=0x10"), Some(16));
    assert_eq!(size("memory,id=r,size= 8"), Some(8));
    // Truncated to QEMU's int: 4G is 0 (the default), 2G negative.
    assert_eq!(size("ringbuf,id=r,size=4G"), None);
    assert_eq!(size("ringbuf,id=r,size=2G"), Some(i64::from(i32::MIN)));
}

#[test]
fn other_backends() {
    match ok("file,id=f,path=/o,input-path=/i,append=on").1.u {
        ChardevBackendBranch::File(f) => {
            assert_eq!(
                (f.data.out.as_str(), f.data.in_.as_deref()),
                ("/o", Some("/i"))
            );
            assert_eq!(f.data.append, Some(true));
        }
        other => panic!("{other:?}"),
    }
    match ok("stdio,id=s").1.u {
        ChardevBackendBranch::Stdio(s) => assert_eq!(s.data.signal, Some(true)),
        other => panic!("{other:?}"),
    }
    match ok("udp,id=u,port=5,localport=6").1.u {
        ChardevBackendBranch::Udp(u) => {
            match u.data.remote.u {
                SocketAddressLegacyBranch::Inet(i) => assert_eq!(i.data.host, "localhost"),
                other => panic!("{other:?}"),
            }
            assert!(u.data.local.is_some());
        }
        other => panic!("{other:?}"),
    }
    match ok("hub,id=h,chardevs.0=a,chardevs.1=b").1.u {
        ChardevBackendBranch::Hub(h) => assert_eq!(h.data.chardevs, ["a", "b"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ok("null,id=n,logfile=/l").1.u,
        ChardevBackendBranch::Null(_)
    ));
    assert_eq!(err("null,id=a,mux=on"), "qsd does not implement mux=on");
}

#[test]
fn help() {
    assert_eq!(
        cli_help(&tok("help")).as_deref(),
        Some(
            "Available chardev backend types: \n  pty\n  file\n  udp\n  memory\n  stdio\n  \
             socket\n  ringbuf\n  null\n  parallel\n  pipe\n  mux\n  serial\n  hub"
        )
    );
    assert_eq!(cli_help(&tok("help,bogus=1")), None);
    assert_eq!(cli_help(&tok("null,id=x")), None);
}

#[test]
fn numbers_as_qemu() {
    assert_eq!(strtou64("0x10"), Ok(16));
    assert_eq!(strtou64("010"), Ok(8));
    assert_eq!(strtou64(" 5"), Ok(5));
    assert_eq!(strtou64("-1"), Ok(u64::MAX));
    assert_eq!(strtou64("0x"), Err(Invalid));
    assert_eq!(strtou64(""), Err(Invalid));
    assert_eq!(strtosz("8b"), Ok(8));
    assert_eq!(strtosz("8B"), Ok(8));
    assert_eq!(strtosz("1E"), Ok(1 << 60));
    assert_eq!(strtosz("1.k"), Ok(1024));
    assert_eq!(strtosz("1.5"), Err(Invalid));
    assert_eq!(strtosz("0"), Ok(0));
}
