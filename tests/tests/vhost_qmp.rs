//! QMP of the vhost-user-blk export, byte for byte against
//! qemu-storage-daemon: block-export-add errors in QSD's order,
//! query-block-exports, block-export-del (safe and hard, with and without
//! a connected frontend), the command line, and daemon exit with a
//! frontend attached.

use std::path::Path;
use std::time::Duration;

use qsd_blackbox_tests::vhost_client::{BackendExt, Client, Op, Opts, S_OK};
use qsd_blackbox_tests::{normalize, Daemon, Impl};

fn add(id: &str, extra: &str, sock: &Path) -> String {
    format!(
        r#"{{"execute":"block-export-add","arguments":{{"type":"vhost-user-blk","id":"{id}","node-name":"disk","addr":{{"type":"unix","path":"{}"}}{extra}}}}}"#,
        sock.display()
    )
}

/// Runs `lines` on a fresh daemon of each kind (with node `disk`, a
/// read-only node `ro` and iothread `io0`) and returns the normalized
/// transcripts. `{dir}` in a line is the daemon's private directory.
fn transcript(which: Impl, lines: &[String]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(1 << 20))
        .expect("image");
    let bd = format!("driver=file,node-name=disk,filename={}", img.display());
    let ro = format!(
        "driver=file,node-name=ro,filename={},read-only=on",
        img.display()
    );
    let d = Daemon::start_with(
        which,
        false,
        &[
            "--blockdev",
            &bd,
            "--blockdev",
            &ro,
            "--object",
            "iothread,id=io0",
        ],
    );
    let mut q = d.qmp();
    let mut out = String::new();
    for l in lines {
        let l = l.replace("{dir}", &dir.path().display().to_string());
        let r = exchange(&mut q, &l);
        out.push_str(&format!(">> {l}\n{}", normalize(&r)));
    }
    out.replace(&dir.path().display().to_string(), "DIR")
}

/// Sends `line`, reads up to its reply and whatever follows shortly.
fn exchange(q: &mut qsd_blackbox_tests::Qmp, line: &str) -> String {
    q.send_line(line);
    let mut out = String::new();
    loop {
        let l = q.read_line();
        out.push_str(&l);
        if l.starts_with(r#"{"return""#) || l.starts_with(r#"{"error""#) {
            break;
        }
    }
    out.push_str(&q.drain(Duration::from_millis(30)));
    out
}

fn assert_same(lines: &[String]) {
    let ours = transcript(Impl::Ours, lines);
    let qsd = transcript(Impl::Qsd, lines);
    assert_eq!(ours, qsd);
}

#[test]
fn add_errors_and_queries_match_qsd() {
    let s = |n: &str| Path::new("{dir}").join(n);
    let lines = vec![
        add("e1", "", &s("a.sock")),
        r#"{"execute":"query-block-exports"}"#.to_string(),
        add("e1", "", &s("b.sock")),
        add("9bad", "", &s("b.sock")),
        add("e2", r#","node-name":"nope""#, &s("b.sock")).replace(r#""node-name":"disk","#, ""),
        add("e2", r#","writable":true"#, &s("b.sock")).replace("disk", "ro"),
        add("e2", r#","iothread":"nope""#, &s("b.sock")),
        add("e2", r#","allow-inactive":true"#, &s("b.sock")),
        add("e2", r#","logical-block-size":1000"#, &s("b.sock")),
        add("e2", r#","logical-block-size":256"#, &s("b.sock")),
        add("e2", r#","logical-block-size":4194304"#, &s("b.sock")),
        add("e2", r#","num-queues":0"#, &s("b.sock")),
        add("e2", r#","num-queues":0,"logical-block-size":3"#, &s("b.sock")),
        r#"{"execute":"block-export-add","arguments":{"type":"vhost-user-blk","id":"e2","node-name":"disk","addr":{"type":"inet","host":"127.0.0.1","port":"0"}}}"#.to_string(),
        r#"{"execute":"block-export-add","arguments":{"type":"vhost-user-blk","id":"e2","node-name":"disk","addr":{"type":"fd","str":"3"}}}"#.to_string(),
        add("e2", "", Path::new("/nonexistent/dir/x.sock")),
        add("e2", r#","num-queues":4,"logical-block-size":4096,"writable":true,"writethrough":true"#, &s("c.sock")),
        add("e3", r#","iothread":"io0","fixed-iothread":true"#, &s("d.sock")),
        add("e4", r#","iothread":"io0""#, &s("e.sock")),
        add("e5", "", &s("a.sock")),
        r#"{"execute":"query-block-exports"}"#.to_string(),
        r#"{"execute":"block-export-del","arguments":{"id":"e3"}}"#.to_string(),
        r#"{"execute":"block-export-del","arguments":{"id":"e3"}}"#.to_string(),
        r#"{"execute":"block-export-del","arguments":{"id":"nope","mode":"hard"}}"#.to_string(),
        r#"{"execute":"block-export-del","arguments":{"id":"e4","mode":"hard"}}"#.to_string(),
        r#"{"execute":"blockdev-del","arguments":{"node-name":"disk"}}"#.to_string(),
        r#"{"execute":"query-block-exports"}"#.to_string(),
        add("e3", "", &s("d.sock")),
        r#"{"execute":"query-block-exports"}"#.to_string(),
    ];
    assert_same(&lines);
}

/// With a frontend connected: QSD does not count it as a user, so even a
/// safe delete disconnects it; the event comes before the reply.
#[test]
fn delete_with_a_connected_frontend_matches_qsd() {
    let mut transcripts = Vec::new();
    for which in [Impl::Ours, Impl::Qsd] {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(1 << 20))
            .expect("image");
        let sock = dir.path().join("vu.sock");
        let bd = format!("driver=file,node-name=disk,filename={}", img.display());
        let ex = format!(
            "type=vhost-user-blk,id=e0,node-name=disk,writable=on,addr.type=unix,addr.path={}",
            sock.display()
        );
        let d = Daemon::start_with(which, false, &["--blockdev", &bd, "--export", &ex]);
        let mut c = Client::connect(&sock, Opts::default());
        c.start();
        assert_eq!(
            c.one(
                0,
                Op::Write {
                    sector: 0,
                    data: vec![1; 512]
                }
            )
            .status,
            S_OK
        );
        let mut q = d.qmp();
        let mut out = String::new();
        for l in [
            r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#,
            r#"{"execute":"query-block-exports"}"#,
            r#"{"execute":"block-export-del","arguments":{"id":"e0","mode":"hard"}}"#,
        ] {
            out.push_str(&normalize(&exchange(&mut q, l)));
        }
        // The frontend was disconnected.
        let gone = c.fe.get_features().is_err() || c.fe.get_features().is_err();
        assert!(gone, "{which:?}: frontend still connected");
        out.push_str(&normalize(&exchange(
            &mut q,
            r#"{"execute":"query-block-exports"}"#,
        )));
        out.push_str(&normalize(&exchange(
            &mut q,
            r#"{"execute":"blockdev-del","arguments":{"node-name":"disk"}}"#,
        )));
        transcripts.push(out);
    }
    assert_eq!(transcripts[0], transcripts[1]);
}

/// `--export` on the command line: errors and a passed listening socket
/// (`addr.type=fd`).
#[test]
fn command_line_matches_qsd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(1 << 20))
        .expect("image");
    let bd = format!("driver=file,node-name=disk,filename={}", img.display());
    for bad in [
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=unix,addr.path=x.sock,logical-block-size=1000",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=unix,addr.path=x.sock,num-queues=0",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=unix,addr.path=x.sock,num-queues=-1",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=unix,addr.path=x.sock,iothread=nope",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=inet,addr.host=x,addr.port=1",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=fd,addr.str=nofd",
        "type=vhost-user-blk,id=e,node-name=disk,addr.type=fd,addr.str=0",
        "type=vhost-user-blk,id=e,node-name=disk",
    ] {
        let mut res = Vec::new();
        for which in [Impl::Ours, Impl::Qsd] {
            let o = std::process::Command::new(which.program())
                .args(["--blockdev", &bd, "--export", bad])
                .current_dir(dir.path())
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run");
            let prog = which.program();
            let name = prog
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let err = String::from_utf8_lossy(&o.stderr)
                .replace(&prog.display().to_string(), "PROG")
                .replace(&name, "PROG");
            res.push((o.status.code(), err));
        }
        assert_eq!(res[0], res[1], "{bad}");
    }
    // A listening socket passed as descriptor 3 (from the command line).
    for which in [Impl::Ours, Impl::Qsd] {
        let sock = dir.path().join(format!("fd-{which:?}.sock"));
        let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        use std::os::fd::AsRawFd;
        let fd = l.as_raw_fd();
        let mut cmd = std::process::Command::new(which.program());
        cmd.args([
            "--blockdev",
            &bd,
            "--export",
            "type=vhost-user-blk,id=e,node-name=disk,addr.type=fd,addr.str=3,writable=on",
        ]);
        use std::os::unix::process::CommandExt;
        // SAFETY: dup2 in the child before exec, on descriptors that exist.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec.
                let r = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn");
        let mut c = Client::connect(&sock, Opts::default());
        c.start();
        assert_eq!(
            c.one(
                0,
                Op::Write {
                    sector: 0,
                    data: vec![2; 512]
                }
            )
            .status,
            S_OK,
            "{which:?}"
        );
        drop(c);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `quit` while a frontend is attached: the daemon disconnects it and
/// exits cleanly; the image holds what was written.
#[test]
fn quit_with_a_frontend_attached() {
    for which in [Impl::Ours, Impl::Qsd] {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(1 << 20))
            .expect("image");
        let sock = dir.path().join("vu.sock");
        let bd = format!("driver=file,node-name=disk,filename={}", img.display());
        let ex = format!(
            "type=vhost-user-blk,id=e0,node-name=disk,writable=on,num-queues=2,addr.type=unix,addr.path={}",
            sock.display()
        );
        let mut d = Daemon::start_with(which, false, &["--blockdev", &bd, "--export", &ex]);
        let mut c = Client::connect(
            &sock,
            Opts {
                queues: 2,
                ..Opts::default()
            },
        );
        c.start();
        let ops: Vec<Op> = (0..16u64)
            .map(|i| Op::Write {
                sector: i,
                data: vec![i as u8 + 1; 512],
            })
            .collect();
        for r in c.run(1, &ops, 16) {
            assert_eq!(r.status, S_OK);
        }
        let mut q = d.qmp();
        q.send_line(r#"{"execute":"quit"}"#);
        let r = q.drain(Duration::from_millis(300));
        assert!(r.contains(r#"{"return": {}}"#), "{which:?}: {r}");
        assert_eq!(d.wait(Duration::from_secs(10)), Some(0), "{which:?} exit");
        assert!(c.fe.get_features().is_err(), "{which:?}: still connected");
        let data = std::fs::read(&img).expect("image");
        for i in 0..16usize {
            assert!(data[i * 512..(i + 1) * 512]
                .iter()
                .all(|b| *b == i as u8 + 1));
        }
    }
}
