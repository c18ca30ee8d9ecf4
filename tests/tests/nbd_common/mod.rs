//! Helpers of the NBD tests: a daemon (ours or QSD) serving an export, a
//! raw NBD client, and running the real client tools.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::{Daemon, Impl, Qmp};
use serde_json::{json, Value};

pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
pub const REQ_MAGIC: u32 = 0x2560_9513;
pub const EXT_REQ_MAGIC: u32 = 0x21E4_1C71;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META: u32 = 9;
pub const OPT_SET_META: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

pub const IMPLS: [Impl; 2] = [Impl::Qsd, Impl::Ours];

/// A negotiated monitor connection. Under load QSD may send its greeting
/// twice (a client that connects while the monitor is being set up sees
/// it opened twice), so greetings before the reply are skipped.
pub fn qmp(d: &Daemon) -> Qmp {
    let mut q = d.connect();
    let g = q.read_line();
    assert!(g.starts_with(r#"{"QMP""#), "greeting: {g}");
    q.send_line(r#"{"execute":"qmp_capabilities"}"#);
    loop {
        let r = q.read_line();
        if r.starts_with(r#"{"QMP""#) {
            continue;
        }
        assert!(
            r.starts_with(r#"{"return": {}}"#),
            "negotiation failed: {r}"
        );
        return q;
    }
}

/// Builds a QMP command line.
pub fn cmd(execute: &str, args: Value) -> String {
    if args.is_null() {
        json!({ "execute": execute }).to_string()
    } else {
        json!({"execute": execute, "arguments": args}).to_string()
    }
}

/// Runs a tool; panics if it cannot be started (tests fail, never skip,
/// when a client is missing).
pub fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} must be installed: {e}"))
}

/// Runs a tool that must succeed; returns its standard output.
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let o = run(prog, args);
    assert!(
        o.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes a raw image of `size` bytes with data at the given ranges
/// (filled with `fill`) and holes elsewhere.
pub fn make_image(path: &Path, size: u64, data: &[(u64, u64, u8)]) {
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("size image");
    use std::os::unix::fs::FileExt;
    for &(off, len, fill) in data {
        f.write_all_at(&vec![fill; len as usize], off)
            .expect("write image");
    }
}

/// A daemon serving one export over a UNIX socket (and TCP if asked).
pub struct Served {
    pub d: Daemon,
    pub q: Qmp,
    pub img: PathBuf,
    pub sock: PathBuf,
    pub tcp_port: Option<u16>,
}

/// A free TCP port on 127.0.0.1 (a race with other tests is possible but
/// unlikely: the port is released just before use).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Served {
    /// Starts `which` with `img` (created by `mk`) exported as `disk`.
    pub fn start(which: Impl, export: Value, mk: impl FnOnce(&Path)) -> Served {
        Self::start_with(which, json!({}), export, false, mk)
    }

    /// As [`Served::start`], with extra `nbd-server-start` arguments and
    /// optionally on TCP instead of UNIX.
    pub fn start_with(
        which: Impl,
        server_args: Value,
        export: Value,
        tcp: bool,
        mk: impl FnOnce(&Path),
    ) -> Served {
        let d = Daemon::start(which);
        let img = d.dir.path().join("disk.img");
        mk(&img);
        let sock = d.dir.path().join("nbd.sock");
        let mut q = qmp(&d);
        let r = q.cmd(&cmd(
            "blockdev-add",
            json!({"driver": "file", "node-name": "disk", "filename": img}),
        ));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        let mut tcp_port = None;
        let addr = if tcp {
            let p = free_port();
            tcp_port = Some(p);
            json!({"type": "inet", "data": {"host": "127.0.0.1", "port": p.to_string()}})
        } else {
            json!({"type": "unix", "data": {"path": sock}})
        };
        let mut args = server_args;
        args["addr"] = addr;
        let r = q.cmd(&cmd("nbd-server-start", args));
        assert_eq!(r, json!({"return": {}}), "{which:?}");
        if !export.is_null() {
            let mut e = json!({"type": "nbd", "id": "e", "node-name": "disk", "name": "disk"});
            for (k, v) in export.as_object().expect("object") {
                e[k] = v.clone();
            }
            let r = q.cmd(&cmd("block-export-add", e));
            assert_eq!(r, json!({"return": {}}), "{which:?}");
        }
        Served {
            d,
            q,
            img,
            sock,
            tcp_port,
        }
    }

    /// The NBD URI of the export.
    pub fn uri(&self) -> String {
        match self.tcp_port {
            Some(p) => format!("nbd://127.0.0.1:{p}/disk"),
            None => format!("nbd+unix:///disk?socket={}", self.sock.display()),
        }
    }

    /// Replaces the paths and ports that differ between runs.
    pub fn mask(&self, s: &str) -> String {
        let mut s = s.replace(&self.sock.display().to_string(), "SOCK");
        s = s.replace(&self.img.display().to_string(), "IMG");
        if let Some(p) = self.tcp_port {
            s = s.replace(&p.to_string(), "PORT");
        }
        s
    }
}

/// A raw NBD client over a UNIX socket.
pub struct Raw {
    pub s: UnixStream,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).expect("connect to NBD socket");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw { s }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send to NBD server");
    }

    /// Sends, ignoring errors (the server may have closed already).
    pub fn send_lossy(&mut self, b: &[u8]) {
        let _ = self.s.write_all(b);
    }

    pub fn recv(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.s.read_exact(&mut v).expect("receive from NBD server");
        v
    }

    /// Everything the server sends until it closes (or `limit` passes).
    pub fn recv_to_end(&mut self, limit: Duration) -> Vec<u8> {
        self.s.set_read_timeout(Some(limit)).expect("timeout");
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    /// Whether the server closed the connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.s.set_read_timeout(Some(limit)).expect("timeout");
        let mut b = [0u8; 1];
        let start = Instant::now();
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if start.elapsed() > limit {
                return false;
            }
        }
    }

    pub fn option(&mut self, opt: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }

    /// One option reply: (type, payload).
    pub fn reply(&mut self) -> (u32, Vec<u8>) {
        let h = self.recv(20);
        let typ = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
        (typ, self.recv(len))
    }

    /// Replies until ACK or an error.
    pub fn replies(&mut self) -> Vec<(u32, Vec<u8>)> {
        let mut v = Vec::new();
        loop {
            let r = self.reply();
            let end = r.0 == 1 || r.0 & 0x8000_0000 != 0;
            v.push(r);
            if end {
                return v;
            }
        }
    }

    /// Greeting and fixed-newstyle flags with NO_ZEROES.
    pub fn start(&mut self) -> Vec<u8> {
        let g = self.recv(18);
        self.send(&3u32.to_be_bytes());
        g
    }

    /// Handshake up to transmission with `name`: structured replies or
    /// extended headers if asked, and the given meta contexts.
    pub fn go(&mut self, name: &str, structured: bool, extended: bool, meta: &[&str]) {
        self.start();
        if extended {
            self.option(OPT_EXTENDED_HEADERS, &[]);
            assert_eq!(self.reply().0, 1);
        } else if structured {
            self.option(OPT_STRUCTURED_REPLY, &[]);
            assert_eq!(self.reply().0, 1);
        }
        if !meta.is_empty() {
            self.option(OPT_SET_META, &meta_data(name, meta));
            let r = self.replies();
            assert_eq!(r.last().map(|x| x.0), Some(1), "{r:?}");
        }
        self.option(OPT_GO, &info_data(name, &[]));
        let r = self.replies();
        assert_eq!(r.last().map(|x| x.0), Some(1), "{r:?}");
    }
}

pub fn info_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

pub fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// A compact request header.
pub fn request(flags: u16, cmd: u16, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut b = REQ_MAGIC.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&cmd.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b
}

/// An extended request header.
pub fn ext_request(flags: u16, cmd: u16, cookie: u64, offset: u64, len: u64) -> Vec<u8> {
    let mut b = EXT_REQ_MAGIC.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&cmd.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b
}

/// Hex dump in 32-byte lines, for readable assertion failures.
pub fn hex(b: &[u8]) -> String {
    b.chunks(32)
        .map(|c| c.iter().map(|x| format!("{x:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the process still runs.
pub fn alive(d: &mut Daemon) -> bool {
    matches!(d.child.try_wait(), Ok(None))
}

/// The reply form a session negotiated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Simple,
    Structured,
    Extended,
}

/// Reads one complete reply (all chunks up to `DONE`); what arrived if
/// the server closes first.
pub fn read_reply(c: &mut Raw, mode: Mode, read_len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let get = |c: &mut Raw, n: usize, out: &mut Vec<u8>| -> bool {
        let mut b = vec![0u8; n];
        if c.s.read_exact(&mut b).is_err() {
            return false;
        }
        out.extend_from_slice(&b);
        true
    };
    loop {
        let start = out.len();
        if !get(c, 4, &mut out) {
            return out;
        }
        let magic = u32::from_be_bytes(out[start..start + 4].try_into().unwrap());
        let (rest, len_at) = match magic {
            0x6744_6698 => {
                if !get(c, 12, &mut out) {
                    return out;
                }
                let err = u32::from_be_bytes(out[start + 4..start + 8].try_into().unwrap());
                if err == 0 && mode == Mode::Simple && read_len > 0 {
                    get(c, read_len, &mut out);
                }
                return out;
            }
            0x668e_33ef => (16, 16),
            0x6e8a_278c => (28, 24),
            _ => return out,
        };
        if !get(c, rest, &mut out) {
            return out;
        }
        let h = &out[start..];
        let done = h[5] & 1 != 0;
        let len = if len_at == 24 {
            u64::from_be_bytes(h[24..32].try_into().unwrap()) as usize
        } else {
            u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize
        };
        if !get(c, len, &mut out) || done {
            return out;
        }
    }
}
