//! Shared by the FUSE export tests: the check that FUSE can be used here
//! (a failure, never a skip, says what is missing), deterministic image
//! content, shell transcripts with the private directory masked, and
//! clean-up of mounts a failed test leaves behind.

#![allow(dead_code)]

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::Daemon;

/// Panics with what is missing unless FUSE mounts work for this process
/// the way both daemons mount them (root opens `/dev/fuse` and calls
/// mount(2); others need `fusermount3`).
pub fn require_fuse() {
    let dev = Path::new("/dev/fuse");
    assert!(
        dev.exists(),
        "FUSE is unavailable: /dev/fuse is missing (load the fuse kernel module, \
         or give the container the device)"
    );
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dev)
    {
        panic!("FUSE is unavailable: cannot open /dev/fuse: {e}");
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let found = Command::new("fusermount3")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "FUSE is unavailable: not root and fusermount3 is missing (Debian package fuse3)"
        );
    }
    for tool in [
        "qemu-img",
        "qemu-io",
        "fallocate",
        "truncate",
        "dd",
        "md5sum",
        "stat",
    ] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{tool} is missing: the FUSE export tests need it");
    }
}

/// Deterministic pseudo-random bytes (xorshift), the same for every run.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `data` to `path`, then extends the file (sparse) to `size`.
pub fn write_image(path: &Path, data: &[u8], size: u64) {
    std::fs::write(path, data).expect("writing an image");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("opening an image");
    f.set_len(size).expect("sizing an image");
}

/// Lines of /proc/self/mountinfo whose mount point lies in `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Whether `path` is a mount point of a FUSE file system.
pub fn is_fuse_mount(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4).is_some_and(|p| Path::new(p) == path)
            && f.iter().skip_while(|x| **x != "-").nth(1) == Some(&"fuse")
    })
}

/// Waits until `path` is (or is no longer) a FUSE mount point.
pub fn wait_mount(path: &Path, mounted: bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while is_fuse_mount(path) != mounted {
        assert!(
            Instant::now() < end,
            "{} {} a FUSE mount point",
            path.display(),
            if mounted {
                "did not become"
            } else {
                "is still"
            }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon whose leftover mounts are lazily unmounted when the test ends,
/// even when it fails (a killed daemon leaves a dead mount behind).
pub struct Run {
    pub d: Daemon,
}

impl Run {
    pub fn dir(&self) -> &Path {
        self.d.dir.path()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for m in mounts_under(self.d.dir.path()) {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: `c` is a NUL-terminated path live for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Runs a bash script in `dir` with `$DIR` set to it and `$IMG` to
/// `img` (where the images are); returns everything it printed (stdout
/// and stderr interleaved) with those directories written `DIR` and `IMG`.
pub fn sh(dir: &Path, img: &Path, script: &str) -> String {
    let noblocks = if img.starts_with("/dev/shm") { "" } else { "1" };
    let out = Command::new("bash")
        .args(["-c", &format!("exec 2>&1\n{PRELUDE}\n{script}")])
        .env("DIR", dir)
        .env("IMG", img)
        .env("NOBLOCKS", noblocks)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running bash");
    mask(&String::from_utf8_lossy(&out.stdout), dir, img)
}

/// Writes `dir` as `DIR` and `img` as `IMG`.
pub fn mask(s: &str, dir: &Path, img: &Path) -> String {
    let s = if img == dir {
        s.to_string()
    } else {
        s.replace(&img.display().to_string(), "IMG")
    };
    s.replace(&dir.display().to_string(), "DIR")
}

/// A directory on tmpfs for images: unlike ext4, tmpfs counts only data
/// in a file's blocks (no extent tree blocks that depend on how the disk
/// happened to be fragmented), so allocation compares exactly.
pub fn tmpfs_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    assert!(
        shm.is_dir(),
        "/dev/shm (tmpfs) is missing: the FUSE export tests keep images there"
    );
    tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
}

/// Helpers of the scripts: `t CMD...` prints the command, its output
/// (without dd's timing line) and its exit status; `st` the stat fields
/// QEMU sets (times are checked separately; blocks not when `$NOBLOCKS`
/// is set, for images on file systems whose block counts include
/// metadata); `ist` size and blocks of an image; `info` is `qemu-img info` (without `actual-size` then).
const PRELUDE: &str = r#"
set +e
M="$DIR/mnt"
t() { echo "\$ $*"; "$@" 2>&1 | grep -v -e ' copied, ' -e '^[0-9]* bytes .* copied'; echo "rc=${PIPESTATUS[0]}"; }
B='blocks=%b '; [ -n "$NOBLOCKS" ] && B=''
st() { stat -c "size=%s ${B}blksize=%o mode=%f perm=%a uid=%u gid=%g links=%h ino=%i type=%F" "${1:-$M}"; }
ist() { stat -c "size=%s ${B}" "$1"; }
info() { if [ -n "$NOBLOCKS" ]; then qemu-img info --output=json "$@" | grep -v actual-size; else qemu-img info --output=json "$@"; fi; }
sum() { md5sum < "${1:-$M}"; }
"#;

/// Compares two transcripts line by line; panics at the first difference
/// with context.
pub fn assert_same(what: &str, qsd: &str, ours: &str) {
    if let Some(d) = std::env::var_os("FUSE_TEST_DUMP") {
        let d = Path::new(&d);
        let _ = std::fs::write(d.join(format!("{what}.qsd")), qsd);
        let _ = std::fs::write(d.join(format!("{what}.ours")), ours);
    }
    if qsd == ours {
        return;
    }
    let q: Vec<&str> = qsd.lines().collect();
    let o: Vec<&str> = ours.lines().collect();
    let i = q
        .iter()
        .zip(&o)
        .position(|(a, b)| a != b)
        .unwrap_or(q.len().min(o.len()));
    let from = i.saturating_sub(8);
    panic!(
        "{what}: ours differs from qemu-storage-daemon's at line {}:\n--- qemu-storage-daemon\n{}\n--- qsd\n{}\n",
        i + 1,
        q[from..(i + 3).min(q.len())].join("\n"),
        o[from..(i + 3).min(o.len())].join("\n"),
    );
}
