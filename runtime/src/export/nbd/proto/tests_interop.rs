//! Interoperability: a throw-away synchronous server built on the codec
//! (an all-zero in-memory export) is queried with libnbd's `nbdinfo`, and
//! the output must equal what `nbdinfo` prints for qemu-storage-daemon
//! serving the same export (null-co, read-zeroes). Needs `nbdinfo`
//! (libnbd-bin) and `qemu-storage-daemon`; the test fails without them.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const SIZE: u64 = 1 << 20;

fn export() -> ExportDesc {
    ExportDesc {
        name: "x".into(),
        description: Some("d".into()),
        size: SIZE,
        flags: ExportDesc::qemu_flags(true, true),
        request_alignment: 1,
        max_transfer: u32::MAX,
        allocation_depth: true,
        bitmaps: vec![],
    }
}

/// Reads exactly `buf.len()` bytes, first from `pending` (bytes handed
/// back by the handshake), then from the socket.
fn read_in(s: &mut UnixStream, pending: &mut Vec<u8>, buf: &mut [u8]) -> std::io::Result<()> {
    let n = pending.len().min(buf.len());
    buf[..n].copy_from_slice(&pending[..n]);
    pending.drain(..n);
    s.read_exact(&mut buf[n..])
}

fn serve(mut s: UnixStream, exports: Arc<Vec<ExportDesc>>) -> std::io::Result<()> {
    let mut neg = Negotiation::new(false);
    s.write_all(&neg.greeting())?;
    let mut f = [0u8; 4];
    s.read_exact(&mut f)?;
    if neg.client_flags(&f).is_err() {
        return Ok(());
    }
    let mut pending = Vec::new();
    let t = loop {
        let mut hb = [0u8; OPTION_HEADER_LEN];
        read_in(&mut s, &mut pending, &mut hb)?;
        let Ok(h) = decode_option_header(&hb) else {
            return Ok(());
        };
        let Ok(plan) = neg.plan_option(&h) else {
            return Ok(());
        };
        let mut data = vec![0u8; plan.keep as usize];
        read_in(&mut s, &mut pending, &mut data)?;
        let mut skip = vec![0u8; plan.skip as usize];
        read_in(&mut s, &mut pending, &mut skip)?;
        let o = neg.handle_option(&h, &data, &exports);
        s.write_all(&o.reply)?;
        if o.unread_tail > 0 {
            let mut v = data[data.len() - o.unread_tail..].to_vec();
            v.append(&mut pending);
            pending = v;
        }
        match o.step {
            Step::Continue => {}
            Step::Transmission(t) => break t,
            _ => return Ok(()),
        }
    };
    let exp = &exports[t.export];
    let ctx = ExportContexts {
        allocation_depth: exp.allocation_depth,
        bitmaps: &exp.bitmaps,
    };
    loop {
        let h = if t.mode == ReplyMode::Extended {
            let mut b = [0u8; EXTENDED_REQUEST_LEN];
            read_in(&mut s, &mut pending, &mut b)?;
            decode_extended_request(&b)
        } else {
            let mut b = [0u8; REQUEST_LEN];
            read_in(&mut s, &mut pending, &mut b)?;
            decode_request(&b)
        };
        let Ok(h) = h else { return Ok(()) };
        let session = Session {
            mode: t.mode,
            export_size: exp.size,
            read_only: false,
            contexts: &t.contexts,
        };
        let (payload, next) = match plan(&h, &session) {
            Plan::Disconnect | Plan::RejectAndClose(_) => return Ok(()),
            Plan::Proceed { payload, next } => (payload, next),
        };
        let n = match payload {
            Payload::None => 0,
            Payload::WriteData(n) | Payload::BlockStatus(n) | Payload::Discard(n) => n,
        };
        let mut body = vec![0u8; n as usize];
        read_in(&mut s, &mut pending, &mut body)?;
        let verdict = match next {
            Next::Done(v) => v,
            Next::DecodeBlockStatus => complete_block_status(&h, &body, &session),
        };
        let mut out = Vec::new();
        match (verdict, t.mode.chunk_form()) {
            (Ok(Command::Read { offset, length, .. }), None) => {
                out.extend_from_slice(&encode_simple_reply(None, h.cookie));
                out.resize(out.len() + length as usize, 0);
                let _ = offset;
            }
            (Ok(Command::Read { offset, length, .. }), Some(form)) => {
                let hb = chunk_offset_data(form, true, h.cookie, h.offset, offset, length.into())
                    .expect("chunk");
                out.extend_from_slice(hb.as_bytes());
                out.resize(out.len() + length as usize, 0);
            }
            (
                Ok(Command::BlockStatus {
                    offset,
                    length,
                    req_one,
                    contexts,
                    ..
                }),
                Some(form),
            ) => {
                let set = contexts.unwrap_or_else(|| t.contexts.clone());
                let list = set.contexts(&ctx);
                let len = if req_one {
                    length.min(exp.size - offset)
                } else {
                    exp.size - offset
                };
                for (i, c) in list.iter().enumerate() {
                    // null-co with read-zeroes: a zero hole, depth 1.
                    let flags = if c.id == meta::ID_BASE_ALLOCATION {
                        3
                    } else {
                        1
                    };
                    let e = [Extent { length: len, flags }];
                    let last = i + 1 == list.len();
                    put_block_status(&mut out, form, last, h.cookie, h.offset, c.id, &e)
                        .expect("block status");
                }
            }
            (Ok(_), _) => {
                put_generic_reply(&mut out, t.mode, h.cookie, h.offset, Ok(())).expect("reply")
            }
            (Err(r), _) => {
                put_generic_reply(&mut out, t.mode, h.cookie, h.offset, Err(&r)).expect("reply")
            }
        }
        s.write_all(&out)?;
    }
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("qsd-nbdproto-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nbdinfo(args: &[&str], sock: &Path) -> String {
    let mut uri_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let uri = if args.contains(&"--list") {
        format!("nbd+unix://?socket={}", sock.display())
    } else {
        format!("nbd+unix:///x?socket={}", sock.display())
    };
    uri_args.push(uri);
    let out = Proc::new("nbdinfo")
        .args(&uri_args)
        .stdin(Stdio::null())
        .output()
        .expect("running nbdinfo (package libnbd-bin)");
    assert!(
        out.status.success(),
        "nbdinfo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace(&sock.display().to_string(), "SOCKET")
}

/// Kills the daemon and removes the sockets, also when the test fails.
struct Cleanup(Child, Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        for p in &self.1 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn nbdinfo_sees_the_same_server_as_with_qsd() {
    let ours = scratch("ours.sock");
    let listener = UnixListener::bind(&ours).expect("bind");
    let exports = Arc::new(vec![export()]);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let exports = exports.clone();
            std::thread::spawn(move || serve(conn, exports));
        }
    });

    let theirs = scratch("qsd.sock");
    let qsd = Proc::new("qemu-storage-daemon")
        .args([
            "--blockdev",
            "driver=null-co,node-name=n,size=1048576,read-zeroes=on",
            "--nbd-server",
            &format!("addr.type=unix,addr.path={}", theirs.display()),
            "--export",
            "type=nbd,id=e,node-name=n,name=x,description=d,writable=on,allocation-depth=on",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("running qemu-storage-daemon");
    let _cleanup = Cleanup(qsd, vec![ours.clone(), theirs.clone()]);
    wait_for(&theirs);

    for args in [
        &["--json"][..],
        &["--list", "--json"],
        &["--map"],
        &["--map=qemu:allocation-depth"],
        &["--can", "zero"],
        &["--size"],
    ] {
        let want = nbdinfo(args, &theirs);
        let got = nbdinfo(args, &ours);
        assert_eq!(got, want, "nbdinfo {args:?}");
    }
}
