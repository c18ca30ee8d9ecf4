//! Start-up and shutdown compared with qemu-storage-daemon 10.0.2: the pid
//! file (written after start-up, locked, removed at exit), `--daemonize`,
//! the termination signals, and a monitor on a listening socket passed by
//! file descriptor as in the QSD manual's Python example. Every scenario runs
//! on both programs and checks the same observable facts.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::{normalize, wait_for_path, Impl, Qmp};

const BOTH: [Impl; 2] = [Impl::Qsd, Impl::Ours];

fn spawn(which: Impl, args: &[&str], dir: &Path) -> Child {
    Command::new(which.program())
        .arg0("PROG")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the daemon")
}

/// Waits for `child` to exit; kills it and fails after `secs` seconds.
fn wait_exit(child: &mut Child, secs: u64) -> Option<i32> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is one of
    // the processes this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Waits until `p` holds a complete pid line; returns the pid.
fn read_pidfile(p: &Path) -> u32 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if let Some(line) = s.strip_suffix('\n') {
                return line.parse().expect("pid file holds a number");
            }
        }
        assert!(Instant::now() < end, "{} was not written", p.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn monitor_args(dir: &Path) -> Vec<String> {
    vec![
        "--chardev".into(),
        format!(
            "socket,id=c,path={},server=on,wait=off",
            dir.join("qmp.sock").display()
        ),
        "--monitor".into(),
        "c".into(),
        "--pidfile".into(),
        dir.join("qsd.pid").display().to_string(),
    ]
}

/// A daemonized process, terminated when the test ends.
struct Detached(u32);

impl Drop for Detached {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn pid_file_is_written_locked_and_removed() {
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let args = monitor_args(dir.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(which, &args, dir.path());
        let pidfile = dir.path().join("qsd.pid");
        assert_eq!(read_pidfile(&pidfile), child.id(), "{which:?}");
        let mode = std::fs::metadata(&pidfile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{which:?}");
        // A second daemon of either kind finds the file locked.
        for second in BOTH {
            let other = tempfile::tempdir().unwrap();
            let mut c2 = spawn(second, &args, other.path());
            assert_eq!(wait_exit(&mut c2, 10), Some(1), "{which:?} {second:?}");
            assert_eq!(
                stderr_of(&mut c2),
                "PROG: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable\n",
                "{which:?} holds the lock, {second:?} tries"
            );
        }
        assert_eq!(read_pidfile(&pidfile), child.id(), "{which:?}");
        signal(child.id(), libc::SIGTERM);
        assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?}");
        assert!(!pidfile.exists(), "{which:?} left its pid file");
        assert!(
            !dir.path().join("qmp.sock").exists(),
            "{which:?} left its socket"
        );
        assert_eq!(stderr_of(&mut child), "", "{which:?}");
    }
}

#[test]
fn pid_file_is_written_once_start_up_is_complete() {
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let pidfile = dir.path().join("qsd.pid");
        let chardev = format!("socket,id=c,path={},server=on", sock.display());
        let pidarg = pidfile.display().to_string();
        let mut child = spawn(
            which,
            &[
                "--chardev",
                &chardev,
                "--monitor",
                "c",
                "--pidfile",
                &pidarg,
            ],
            dir.path(),
        );
        // wait=on: start-up waits for the first client.
        wait_for_path(&sock);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!pidfile.exists(), "{which:?} wrote its pid file too early");
        let mut q = Qmp::connect(&sock);
        assert_eq!(read_pidfile(&pidfile), child.id(), "{which:?}");
        assert!(q.read_line().starts_with(r#"{"QMP": "#), "{which:?}");
        signal(child.id(), libc::SIGTERM);
        assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?}");
        assert_eq!(
            stderr_of(&mut child),
            format!(
                "PROG: --chardev {chardev}: info: QEMU waiting for connection on: disconnected:unix:{},server=on\n",
                sock.display()
            ),
            "{which:?}"
        );
    }
}

#[test]
fn termination_signals_end_the_daemon_cleanly() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        for which in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let args = monitor_args(dir.path());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = spawn(which, &args, dir.path());
            read_pidfile(&dir.path().join("qsd.pid"));
            let mut q = Qmp::connect(&dir.path().join("qmp.sock"));
            q.read_line();
            signal(child.id(), sig);
            assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?} signal {sig}");
            assert!(q.try_read_line().is_none(), "{which:?}: connection closed");
            assert!(!dir.path().join("qsd.pid").exists(), "{which:?} {sig}");
            assert!(!dir.path().join("qmp.sock").exists(), "{which:?} {sig}");
            assert_eq!(stderr_of(&mut child), "", "{which:?}");
        }
    }
}

#[test]
fn quit_ends_the_daemon_cleanly() {
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let args = monitor_args(dir.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(which, &args, dir.path());
        read_pidfile(&dir.path().join("qsd.pid"));
        let mut q = Qmp::connect(&dir.path().join("qmp.sock"));
        q.read_line();
        q.send_line(r#"{"execute":"qmp_capabilities"}"#);
        q.read_line();
        q.send_line(r#"{"execute":"quit"}"#);
        assert_eq!(q.read_line(), "{\"return\": {}}\r\n", "{which:?}");
        assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?}");
        assert!(!dir.path().join("qsd.pid").exists(), "{which:?}");
        assert!(!dir.path().join("qmp.sock").exists(), "{which:?}");
    }
}

fn proc_link(pid: u32, what: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/{what}")).unwrap()
}

fn getsid(pid: u32) -> i32 {
    // SAFETY: getsid has no memory-safety preconditions.
    unsafe { libc::getsid(pid as libc::pid_t) }
}

#[test]
fn daemonize_detaches_once_start_up_is_complete() {
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("qsd.pid");
        let pidarg = pidfile.display().to_string();
        // A relative socket path is used before the daemon changes to `/`,
        // so the file is created in `dir` and not found again at exit.
        let mut parent = spawn(
            which,
            &[
                "--daemonize",
                "--chardev",
                "socket,id=c,path=qmp.sock,server=on,wait=off",
                "--monitor",
                "c",
                "--pidfile",
                &pidarg,
            ],
            dir.path(),
        );
        assert_eq!(wait_exit(&mut parent, 10), Some(0), "{which:?}");
        // The pid file exists by the time the parent exits.
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid: u32 = pid.trim_end().parse().unwrap();
        let _guard = Detached(pid);
        assert_ne!(pid, parent.id(), "{which:?}");
        assert_eq!(stderr_of(&mut parent), "", "{which:?}");
        assert_eq!(proc_link(pid, "cwd"), Path::new("/"), "{which:?}");
        for fd in 0..3 {
            assert_eq!(
                proc_link(pid, &format!("fd/{fd}")),
                Path::new("/dev/null"),
                "{which:?} fd {fd}"
            );
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("Umask:\t0027\n"), "{which:?}: {status}");
        // A new session, which the daemon does not lead.
        assert_ne!(getsid(pid), getsid(0), "{which:?}");
        assert_ne!(getsid(pid), pid as i32, "{which:?}");
        let sock = dir.path().join("qmp.sock");
        let mut q = Qmp::connect(&sock);
        assert!(q.read_line().starts_with(r#"{"QMP": "#), "{which:?}");
        drop(q);
        signal(pid, libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while pidfile.exists() {
            assert!(
                Instant::now() < end,
                "{which:?} did not remove its pid file"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sock.exists(), "{which:?}: relative socket path");
    }
}

#[test]
fn daemonize_start_up_errors_fail_the_parent() {
    let cases: [&[&str]; 3] = [
        &["--daemonize", "--blockdev", "x"],
        &["--daemonize", "--pidfile", "/nonexistent/dir/p"],
        &["--daemonize", "--monitor", "c", "--chardev", "null,id=c"],
    ];
    for args in cases {
        let mut seen = Vec::new();
        for which in BOTH {
            let dir = tempfile::tempdir().unwrap();
            let mut parent = spawn(which, args, dir.path());
            let code = wait_exit(&mut parent, 10);
            seen.push((code, stderr_of(&mut parent)));
        }
        assert_eq!(seen[0].0, Some(1), "{args:?}");
        assert_eq!(seen[0], seen[1], "{args:?}");
    }
}

#[test]
fn arguments_after_double_dash_are_ignored() {
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let mut args = monitor_args(dir.path());
        args.extend(["--", "foo", "--bogus"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(which, &args, dir.path());
        assert_eq!(read_pidfile(&dir.path().join("qsd.pid")), child.id());
        signal(child.id(), libc::SIGTERM);
        assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?}");
        assert_eq!(stderr_of(&mut child), "", "{which:?}");
    }
}

#[test]
fn several_monitors_serve_in_their_own_format() {
    let mut transcripts = Vec::new();
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sock");
        let b = dir.path().join("b.sock");
        let ca = format!("socket,id=a,path={},server=on,wait=off", a.display());
        let cb = format!("socket,id=b,path={},server=on,wait=off", b.display());
        let pidarg = dir.path().join("p").display().to_string();
        let mut child = spawn(
            which,
            &[
                "--chardev",
                &ca,
                "--chardev",
                &cb,
                "--monitor",
                "a",
                "--monitor",
                "chardev=b,pretty=on",
                "--pidfile",
                &pidarg,
            ],
            dir.path(),
        );
        read_pidfile(&dir.path().join("p"));
        let mut t = String::new();
        for sock in [&a, &b] {
            let mut q = Qmp::connect(sock);
            t.push_str(&normalize(&q.drain(Duration::from_millis(300))));
            // (The pretty form of the empty `{"return": {}}` is the JSON
            // writer's business, tested with it.)
            q.send_line(r#"{"execute":"qmp_capabilities"}"#);
            q.drain(Duration::from_millis(300));
            q.send_line(r#"{"execute":"query-version"}"#);
            t.push_str(&normalize(&q.drain(Duration::from_millis(300))));
        }
        signal(child.id(), libc::SIGTERM);
        assert_eq!(wait_exit(&mut child, 10), Some(0), "{which:?}");
        transcripts.push(t);
    }
    assert_eq!(transcripts[0], transcripts[1]);
}

/// The QSD manual's example: Python binds and listens on a UNIX socket,
/// passes it as `fd=N`, closes its copy and connects (launch errors show as
/// "connection refused"). The daemon waits for that first client (wait=on
/// by default) and removes the socket file at exit.
const FD_PASSING: &str = r#"
import json, os, socket, subprocess, sys
prog, sock_path = sys.argv[1], sys.argv[2]
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listen_sock:
    listen_sock.bind(sock_path)
    listen_sock.listen()
    fd = listen_sock.fileno()
    p = subprocess.Popen(
        ['PROG', '--chardev', f'socket,fd={fd},server=on,id=char1',
         '--monitor', 'chardev=char1'],
        executable=prog, pass_fds=[fd], stderr=subprocess.PIPE)
qmp_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
qmp_sock.connect(sock_path)
f = qmp_sock.makefile('rwb')
out = [f.readline().decode()]
for cmd in ['qmp_capabilities', 'query-version', 'quit']:
    f.write(json.dumps({'execute': cmd}).encode() + b'\n')
    f.flush()
    out.append(f.readline().decode())
code = p.wait(timeout=10)
err = p.stderr.read().decode().replace(f'fd={fd},', 'fd=N,')
print(json.dumps({'replies': out, 'code': code, 'stderr': err,
                  'socket_left': os.path.exists(sock_path)}))
"#;

#[test]
fn monitor_on_a_socket_passed_by_fd_as_in_the_manual() {
    let mut results = Vec::new();
    for which in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let out = Command::new("python3")
            .args(["-c", FD_PASSING])
            .arg(which.program())
            .arg(&sock)
            .output()
            .expect("python3 must be installed");
        assert!(
            out.status.success(),
            "{which:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], 0, "{which:?}: {v}");
        assert_eq!(v["socket_left"], false, "{which:?}");
        let text = normalize(&v.to_string()).replace(&sock.display().to_string(), "SOCK");
        results.push(text);
    }
    assert_eq!(results[0], results[1]);
    assert!(results[1].contains(
        "PROG: --chardev socket,fd=N,server=on,id=char1: info: QEMU waiting for connection on: disconnected:unix:SOCK,server=on"
    ));
}
