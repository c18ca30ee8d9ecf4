//! QMP and command-line behaviour of FUSE exports, compared byte for byte
//! with qemu-storage-daemon 10.0.2: `block-export-add` and its errors (in
//! QEMU's order of checks), `query-block-exports`, `block-export-del`
//! (also while a request is in flight), `BLOCK_EXPORT_DELETED`, unmounting
//! on removal, `quit` and SIGTERM, and `--export` errors at start-up.

mod fuse_support;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use fuse_support::{
    assert_same, is_fuse_mount, pattern, require_fuse, wait_mount, write_image, Run,
};
use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};

/// Images and mount points of the scenarios: `img` (1 MiB), `ro.img`,
/// mount points `mnt`, `mnt2`, `mnt3`, a directory `sub`, a symlink
/// `lnk` to the regular file `other`.
fn make_files(dir: &Path) {
    write_image(&dir.join("img"), &pattern(64 << 10, 3), 1 << 20);
    write_image(&dir.join("ro.img"), &pattern(4096, 5), 64 << 10);
    for m in ["mnt", "mnt2", "mnt3", "other"] {
        std::fs::write(dir.join(m), b"").expect("mount point");
    }
    std::fs::create_dir(dir.join("sub")).expect("sub");
    std::os::unix::fs::symlink("other", dir.join("lnk")).expect("lnk");
}

/// Reads one reply, with the events before it.
fn reply(q: &mut Qmp, dir: &Path) -> String {
    let mut out = String::new();
    loop {
        let l = q.read_line();
        out.push_str(&normalize(&l).replace(&dir.display().to_string(), "DIR"));
        if !l.contains(r#""event": "#) {
            return out;
        }
    }
}

/// One step of a scenario: a QMP line, or an action between lines.
enum Step {
    Qmp(&'static str),
    /// Records whether these mount points (in the daemon's directory) are
    /// FUSE mounts.
    Mounted(&'static [&'static str]),
    /// Opens `mnt`, then reads 4 KiB of it with O_DIRECT in the
    /// background and waits a moment, so that the read request is in
    /// flight (and nothing after it).
    ReadInBackground,
    /// Waits for the background read and records its outcome.
    JoinRead,
    /// Opens `mnt` and keeps it open.
    Open,
    /// Lets the daemon work for a moment.
    Sleep(u64),
    /// Reads, stats and closes the file opened by `Open`; records the
    /// outcomes.
    UseAndClose,
}

fn run(which: Impl, setup: &[&str], steps: &[Step]) -> String {
    let run = Run {
        d: Daemon::start(which),
    };
    let dir = run.dir().to_path_buf();
    make_files(&dir);
    let mut q = run.d.qmp();
    let mut out = String::new();
    let mut reader: Option<std::thread::JoinHandle<Result<usize, i32>>> = None;
    let mut held: Option<std::fs::File> = None;
    for l in setup.iter().map(|l| l.to_string()) {
        let l = l.replace("DIR", &dir.display().to_string());
        q.send_line(&l);
        out.push_str(&reply(&mut q, &dir));
    }
    for s in steps {
        match s {
            Step::Qmp(l) => {
                let l = l.replace("DIR", &dir.display().to_string());
                q.send_line(&l);
                out.push_str(
                    &format!("{l}\n => {}", reply(&mut q, &dir))
                        .replace(&dir.display().to_string(), "DIR"),
                );
            }
            Step::Mounted(ms) => {
                for m in *ms {
                    // Both daemons mount before replying and unmount
                    // before the deletion event.
                    let mounted = is_fuse_mount(&dir.join(m));
                    out.push_str(&format!("{m} mounted: {mounted}\n"));
                }
            }
            Step::ReadInBackground => {
                let path = dir.join("mnt");
                reader = Some(std::thread::spawn(move || direct_read(&path)));
                std::thread::sleep(Duration::from_millis(300));
            }
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Open => {
                held = Some(std::fs::File::open(dir.join("mnt")).expect("open mnt"));
            }
            Step::UseAndClose => {
                use std::os::fd::IntoRawFd;
                use std::os::unix::fs::FileExt;
                let f = held.take().expect("an open file");
                let mut b = [0u8; 512];
                let r = f.read_at(&mut b, 0).map_err(|e| e.raw_os_error());
                let m = f.metadata().map(|m| m.len()).map_err(|e| e.raw_os_error());
                // SAFETY: closing the descriptor we own, once.
                let c = unsafe { libc::close(f.into_raw_fd()) };
                out.push_str(&format!("held file: read {r:?} stat {m:?} close {c}\n"));
            }
            Step::JoinRead => {
                let r = reader.take().expect("a background read").join();
                out.push_str(&format!("read: {:?}\n", r.expect("reader thread")));
            }
        }
    }
    out
}

/// Opens `path` and reads its first 4 KiB with O_DIRECT: the byte count
/// or the errno.
fn direct_read(path: &Path) -> Result<usize, i32> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    let mut buf = vec![0u8; 8192];
    let at = buf.as_ptr().align_offset(4096);
    let r = f
        .read_at(&mut buf[at..at + 4096], 0)
        .map_err(|e| e.raw_os_error().unwrap_or(-1));
    // Closing sends a flush, which fails once the export is gone.
    drop(f);
    r
}

fn differential(name: &str, setup: &[&str], steps: &[Step]) {
    require_fuse();
    let theirs = run(Impl::Qsd, setup, steps);
    let ours = run(Impl::Ours, setup, steps);
    assert_same(name, &theirs, &ours);
}

const NODES: &[&str] = &[
    r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"f","filename":"DIR/img"}}"#,
    r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"ro","filename":"DIR/ro.img","read-only":true}}"#,
    r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io0"}}"#,
];

#[test]
fn add_errors_in_qemus_order() {
    use Step::Qmp;
    differential(
        "add_errors_in_qemus_order",
        NODES,
        &[
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/nonexistent"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"nonexistent"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":""}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/sub"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt/x"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"1x","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"nonode","mountpoint":"DIR/nonexistent"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"ro","mountpoint":"DIR/nonexistent","writable":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/nonexistent","iothread":"nope"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/nonexistent","allow-inactive":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","allow-other":"maybe"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","growable":"yes"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","size":1}}"#,
            ),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Step::Mounted(&["mnt"]),
        ],
    );
}

#[test]
fn add_query_del_and_mount_points() {
    use Step::{Mounted, Qmp};
    differential(
        "add_query_del_and_mount_points",
        NODES,
        &[
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","growable":true}}"#,
            ),
            Mounted(&["mnt"]),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e1","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt2"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"f"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e2","node-name":"ro","mountpoint":"DIR/mnt2","allow-other":"on"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e3","node-name":"f","mountpoint":"DIR/lnk","writable":true,"allow-other":"off","iothread":"io0","fixed-iothread":true,"writethrough":true}}"#,
            ),
            Mounted(&["mnt", "mnt2", "lnk", "other"]),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Qmp(r#"{"execute":"blockdev-del","arguments":{"node-name":"f"}}"#),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
            Mounted(&["mnt"]),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e2","mode":"hard"}}"#),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e3","mode":"safe"}}"#),
            Mounted(&["mnt2", "lnk", "other"]),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","writable":true}}"#,
            ),
            Mounted(&["mnt"]),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Qmp(r#"{"execute":"blockdev-del","arguments":{"node-name":"f"}}"#),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
            Qmp(r#"{"execute":"blockdev-del","arguments":{"node-name":"f"}}"#),
        ],
    );
}

#[test]
fn inactive_node_is_activated() {
    use Step::Qmp;
    differential(
        "inactive_node_is_activated",
        NODES,
        &[
            Qmp(
                r#"{"execute":"blockdev-set-active","arguments":{"node-name":"f","active":false}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","allow-inactive":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            ),
            Qmp(r#"{"execute":"query-named-block-nodes","arguments":{"flat":true}}"#),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
        ],
    );
}

/// FUSE and NBD exports share ids and the list; NBD commands leave FUSE
/// exports alone.
#[test]
fn fuse_and_nbd_exports_together() {
    use Step::{Mounted, Qmp};
    differential(
        "fuse_and_nbd_exports_together",
        NODES,
        &[
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            ),
            Qmp(r#"{"execute":"nbd-server-remove","arguments":{"name":"e0"}}"#),
            Qmp(
                r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix","data":{"path":"DIR/nbd.sock"}}}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0","node-name":"ro"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"n0","node-name":"ro","name":"e0"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e1","node-name":"ro","mountpoint":"DIR/mnt2"}}"#,
            ),
            // NBD exports unshare `resize`, which growable and writable
            // FUSE exports take (before their mount point is checked).
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"n1","node-name":"f"}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e2","node-name":"f","mountpoint":"DIR/nonexistent","growable":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e2","node-name":"f","mountpoint":"DIR/nonexistent","writable":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e2","node-name":"f","mountpoint":"DIR/nonexistent"}}"#,
            ),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"n1"}}"#),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e2","node-name":"f","mountpoint":"DIR/mnt3","growable":true}}"#,
            ),
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"nbd","id":"n1","node-name":"f"}}"#,
            ),
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e2"}}"#),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Qmp(r#"{"execute":"nbd-server-remove","arguments":{"name":"e1"}}"#),
            Qmp(r#"{"execute":"nbd-server-remove","arguments":{"name":"nope"}}"#),
            Qmp(r#"{"execute":"nbd-server-stop"}"#),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            Mounted(&["mnt", "mnt2"]),
            Qmp(r#"{"execute":"quit"}"#),
            Mounted(&["mnt", "mnt2"]),
        ],
    );
}

/// QEMU serves FUSE requests in its main loop: a removal requested while
/// one is in flight completes after it, and the event precedes the reply.
#[test]
fn removal_while_a_request_is_in_flight() {
    use Step::{JoinRead, Mounted, Qmp, ReadInBackground};
    differential(
        "removal_while_a_request_is_in_flight",
        &[
            r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"slow","size":1048576,"latency-ns":1500000000}}"#,
            r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"slow","mountpoint":"DIR/mnt"}}"#,
        ],
        &[
            ReadInBackground,
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
            Mounted(&["mnt"]),
            Qmp(r#"{"execute":"query-block-exports"}"#),
            JoinRead,
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"slow","mountpoint":"DIR/mnt"}}"#,
            ),
            ReadInBackground,
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0","mode":"hard"}}"#),
            JoinRead,
        ],
    );
}

/// A file still open when its export is removed: the export goes at
/// once, the open file fails from then on.
#[test]
fn removal_with_the_file_open() {
    use Step::{Mounted, Open, Qmp, UseAndClose};
    differential(
        "removal_with_the_file_open",
        &[
            NODES[0],
            r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt","writable":true}}"#,
        ],
        &[
            Open,
            Qmp(r#"{"execute":"block-export-del","arguments":{"id":"e0"}}"#),
            Mounted(&["mnt"]),
            UseAndClose,
            Qmp(
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            ),
            Mounted(&["mnt"]),
            Open,
            UseAndClose,
        ],
    );
}

/// `quit` closes the exports first, then the jobs: their events precede
/// its reply, and the files are unmounted when the daemon is gone.
#[test]
fn quit_removes_exports() {
    use Step::{Mounted, Qmp};
    differential(
        "quit_removes_exports",
        &[
            NODES[0],
            r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e0","node-name":"f","mountpoint":"DIR/mnt"}}"#,
            r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"e1","node-name":"f","mountpoint":"DIR/mnt2","writable":true}}"#,
        ],
        &[
            Mounted(&["mnt", "mnt2"]),
            // A concluded job: QSD closes the exports before it cancels
            // (here: dismisses) the jobs.
            Qmp(
                r#"{"execute":"blockdev-create","arguments":{"job-id":"j","options":{"driver":"file","filename":"DIR/new.img","size":0}}}"#,
            ),
            Step::Sleep(300),
            Qmp(r#"{"execute":"quit"}"#),
            Mounted(&["mnt", "mnt2"]),
        ],
    );
}

fn spawn(which: Impl, dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(which.program())
        .arg0("PROG")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the daemon")
}

/// `--export` on the command line: an error ends start-up with QEMU's
/// message; a good one is mounted, and SIGTERM unmounts it.
#[test]
fn command_line_exports_and_sigterm() {
    require_fuse();
    let mut seen = Vec::new();
    for which in [Impl::Qsd, Impl::Ours] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        make_files(d);
        let node = "--blockdev=file,node-name=f,filename=img";
        let mut out = String::new();
        for bad in [
            "fuse,id=e,node-name=f,mountpoint=nonexistent",
            "fuse,id=e,node-name=f,mountpoint=sub",
            "fuse,id=e,node-name=f",
            "fuse,id=e,node-name=f,mountpoint=mnt,allow-other=sometimes",
            "type=fuse,id=e,node-name=g,mountpoint=mnt",
        ] {
            let mut c = spawn(which, d, &[node, "--export", bad]);
            let st = c.wait().expect("wait");
            let mut err = String::new();
            let _ = c.stderr.take().expect("stderr").read_to_string(&mut err);
            out.push_str(&format!("{bad}: {:?} {err}", st.code()));
        }
        let mut c = spawn(
            which,
            d,
            &[
                node,
                "--export",
                "fuse,id=e,node-name=f,mountpoint=mnt,writable=on",
            ],
        );
        let m = d.join("mnt");
        wait_mount(&m, true);
        let meta = std::fs::metadata(&m).expect("stat");
        out.push_str(&format!("size {}\n", meta.len()));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().expect("wait");
        out.push_str(&format!(
            "exit {:?} mounted {}\n",
            st.code(),
            is_fuse_mount(&m)
        ));
        if is_fuse_mount(&m) {
            if let Ok(p) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: a NUL-terminated path live for the call.
                unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
            }
        }
        seen.push(out);
    }
    assert_same("command_line_exports_and_sigterm", &seen[0], &seen[1]);
}
