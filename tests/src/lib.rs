//! Helpers shared by the black-box tests: start our daemon or the reference
//! qemu-storage-daemon (QSD) with a QMP monitor, talk raw QMP to them, and
//! normalise the few bytes that legitimately differ (package string, event
//! timestamps).
//!
//! Tests never skip silently: a missing reference program is a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod vhost_client;

/// Which program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Our `qsd`.
    Ours,
    /// The reference `qemu-storage-daemon` 10.0.2.
    Qsd,
}

impl Impl {
    pub fn program(self) -> PathBuf {
        match self {
            Impl::Ours => qsd_bin(),
            Impl::Qsd => reference_bin(),
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of our binary, built on first use with the profile of the running
/// tests, so black-box tests always run the current code.
pub fn qsd_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "qsd", "--bin", "qsd"])
            .current_dir(root());
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build of qsd failed");
    });
    profile_dir.join("qsd")
}

/// Path of the reference daemon; panics if it is not installed.
pub fn reference_bin() -> PathBuf {
    let p = PathBuf::from("/usr/bin/qemu-storage-daemon");
    assert!(
        p.exists(),
        "qemu-storage-daemon is not installed: the differential tests need it (.ci/run installs it)"
    );
    p
}

/// A running daemon with a QMP monitor on a UNIX socket in a private
/// directory.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub qmp_path: PathBuf,
    pub which: Impl,
}

impl Daemon {
    /// Starts `which` with a monitor (`pretty` as given) plus `extra` options.
    pub fn start_with(which: Impl, pretty: bool, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let qmp_path = dir.path().join("qmp.sock");
        let chardev = format!(
            "socket,id=qmp0,path={},server=on,wait=off",
            qmp_path.display()
        );
        let monitor = if pretty {
            "chardev=qmp0,pretty=on"
        } else {
            "chardev=qmp0"
        };
        // The pid file is the daemon's documented readiness signal: it is
        // written once chardevs, monitors, exports and servers exist.
        // Connecting earlier races with QSD's monitor set-up (a client
        // that connects while the monitor attaches may see no greeting).
        let pidfile = dir.path().join("daemon.pid");
        let mut child = Command::new(which.program())
            .args(["--chardev", &chardev, "--monitor", monitor])
            .args(extra)
            .arg("--pidfile")
            .arg(&pidfile)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning daemon");
        let end = Instant::now() + Duration::from_secs(20);
        while !std::fs::read(&pidfile).is_ok_and(|b| b.ends_with(b"\n")) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{which:?} exited during start-up: {st}");
            }
            assert!(Instant::now() < end, "{which:?} did not write its pid file");
            std::thread::sleep(Duration::from_millis(5));
        }
        let d = Daemon {
            child,
            dir,
            qmp_path,
            which,
        };
        wait_for_path(&d.qmp_path);
        d
    }

    pub fn start(which: Impl) -> Daemon {
        Self::start_with(which, false, &[])
    }

    /// A new raw connection to the monitor (greeting not yet read).
    pub fn connect(&self) -> Qmp {
        Qmp::connect(&self.qmp_path)
    }

    /// A connection that has read the greeting and negotiated.
    pub fn qmp(&self) -> Qmp {
        let mut q = self.connect();
        q.read_line();
        q.send_line(r#"{"execute":"qmp_capabilities"}"#);
        let r = q.read_line();
        assert!(
            r.starts_with(r#"{"return": {}}"#),
            "negotiation failed: {r}"
        );
        q
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `p` exists (a socket the daemon creates).
pub fn wait_for_path(p: &Path) {
    let end = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < end, "{} did not appear", p.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw QMP connection: lines in, lines out.
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    pub fn connect(path: &Path) -> Qmp {
        let end = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < end,
                        "connecting to {}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Qmp { stream, reader }
    }

    /// Sends `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to monitor");
    }

    /// Sends `line` followed by a newline.
    pub fn send_line(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Reads one line including its CRLF; panics on timeout or EOF.
    pub fn read_line(&mut self) -> String {
        let mut s = String::new();
        let n = self.reader.read_line(&mut s).expect("read from monitor");
        assert!(n > 0, "monitor closed the connection");
        s
    }

    /// Reads one line, or `None` if the connection closed.
    pub fn try_read_line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s),
        }
    }

    /// Reads until `n` lines that are not events arrived; returns all lines.
    pub fn read_replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut got = 0;
        while got < n {
            let l = self.read_line();
            if !l.contains(r#""event": "#) {
                got += 1;
            }
            out.push(l);
        }
        out
    }

    /// Sends a command and returns the parsed reply (skipping events).
    pub fn cmd(&mut self, line: &str) -> Value {
        self.send_line(line);
        loop {
            let l = self.read_line();
            let v: Value = serde_json::from_str(&l).expect("reply is JSON");
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    /// Reads lines until one contains `marker` (returns true) or nothing
    /// arrives for `wait` (returns false); returns everything read.
    pub fn drain_until(&mut self, marker: &str, wait: Duration) -> (String, bool) {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut out = String::new();
        let mut found = false;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    out.push_str(&line);
                    if line.contains(marker) {
                        found = true;
                        break;
                    }
                }
                Err(_) => {
                    out.push_str(&line);
                    break;
                }
            }
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        (out, found)
    }

    /// Reads whatever arrives within `wait`.
    pub fn drain(&mut self, wait: Duration) -> String {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut out = String::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        out
    }
}

/// Replaces generated node names (`#block` + digits, partly random) by
/// `#blockN`, so replies of two daemons can be compared.
pub fn mask_generated(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("#block") {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        let j = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        out.push('N');
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

/// Runs `qemu-img ARGS` (output discarded); panics if it is missing or fails.
pub fn qemu_img(args: &[&str]) {
    let st = std::process::Command::new("qemu-img")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("qemu-img must be installed");
    assert!(st.success(), "qemu-img {args:?} failed");
}

/// Replaces what legitimately differs between QSD and us: the package
/// string and event timestamps.
pub fn normalize(line: &str) -> String {
    let mut s = line.to_string();
    for pkg in [
        "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1",
        concat!("qsd ", env!("CARGO_PKG_VERSION")),
    ] {
        s = s.replace(pkg, "PACKAGE");
    }
    // "timestamp": {"seconds": N, "microseconds": N}
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"seconds\": ") {
        out.push_str(&rest[..i + 11]);
        rest = &rest[i + 11..];
        let j = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        out.push('S');
        rest = &rest[j..];
    }
    out.push_str(rest);
    let s = out;
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"microseconds\": ") {
        out.push_str(&rest[..i + 16]);
        rest = &rest[i + 16..];
        let j = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        out.push('U');
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_masks_package_and_time() {
        let l = r#"{"timestamp": {"seconds": 17, "microseconds": 5}, "event": "X"}"#;
        assert_eq!(
            super::normalize(l),
            r#"{"timestamp": {"seconds": S, "microseconds": U}, "event": "X"}"#
        );
    }
}
