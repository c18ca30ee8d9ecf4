//! The FUSE export's data path, compared with qemu-storage-daemon 10.0.2:
//! the same images are exported by both daemons and the same commands
//! (`dd`, `truncate`, `fallocate`, `chmod`, `qemu-img info/map/convert/
//! compare`, `md5sum`, `stat`) run against the exported file. Their
//! transcripts (output, errors, exit status, the stat fields QEMU sets)
//! must be the same, and so must the image after the export is removed.
//! Stat times are checked apart: QEMU reports the current second for all
//! three.

mod fuse_support;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use fuse_support::{
    assert_same, mask, pattern, require_fuse, sh, tmpfs_dir, wait_mount, write_image, Run,
};
use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};

/// Sends `line` and returns the lines up to the reply (events included),
/// normalised.
fn cmd(q: &mut Qmp, dir: &Path, img: &Path, line: &str) -> String {
    q.send_line(line);
    let mut out = String::new();
    loop {
        let l = q.read_line();
        out.push_str(&mask(&normalize(&l), dir, img));
        if !l.contains(r#""event": "#) {
            return out;
        }
    }
}

fn qemu_img(dir: &Path, args: &[&str]) {
    let st = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("qemu-img must be installed");
    assert!(st.success(), "qemu-img {args:?} failed");
}

/// The files every scenario starts with, in `img`: `img` (1 MiB, data in
/// the first 512 KiB, the rest sparse), `pat` (3 MiB of data with a zero
/// MiB in the middle), `src.qcow2` (made from `pat`); and the mount point
/// `mnt` in `dir`.
fn make_files(dir: &Path, img: &Path) {
    write_image(&img.join("img"), &pattern(512 << 10, 7), 1 << 20);
    let mut pat = pattern(3 << 20, 11);
    pat[1 << 20..2 << 20].fill(0);
    std::fs::write(img.join("pat"), &pat).expect("pat");
    qemu_img(
        img,
        &[
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "pat",
            "src.qcow2",
        ],
    );
    std::fs::write(dir.join("mnt"), b"").expect("mnt");
}

/// Checks that atime, mtime and ctime of the exported file are one value,
/// the current second (give or take the attribute cache).
fn check_times(which: Impl, m: &Path) {
    let out = Command::new("stat")
        .args(["-c", "%X %Y %Z %x"])
        .arg(m)
        .output()
        .expect("stat");
    let s = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = s.split_whitespace().collect();
    assert!(f.len() >= 4, "{which:?}: stat printed {s}");
    assert!(f[0] == f[1] && f[1] == f[2], "{which:?}: times differ: {s}");
    assert!(
        s.contains(".000000000"),
        "{which:?}: times have nanoseconds: {s}"
    );
    let t: u64 = f[0].parse().expect("seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        t <= now && now - t <= 3,
        "{which:?}: time {t} is not now ({now})"
    );
}

/// A scenario: QMP lines that set the export up (`DIR` is the daemon's
/// directory, `IMG` the images'), the script run while it is exported,
/// and the script run after `block-export-del`. Images are on tmpfs
/// (exact block counts) unless `on_disk`, where block counts are left
/// out.
struct Scenario {
    setup: &'static [&'static str],
    script: &'static str,
    after: &'static str,
    on_disk: bool,
}

fn run_scenario(which: Impl, sc: &Scenario) -> String {
    let run = Run {
        d: Daemon::start(which),
    };
    let dir = run.dir().to_path_buf();
    let shm = tmpfs_dir();
    let img = if sc.on_disk {
        dir.clone()
    } else {
        shm.path().to_path_buf()
    };
    make_files(&dir, &img);
    let mut q = run.d.qmp();
    let mut out = String::new();
    for l in sc.setup {
        let l = l
            .replace("IMG", &img.display().to_string())
            .replace("DIR", &dir.display().to_string());
        out.push_str(&cmd(&mut q, &dir, &img, &l));
    }
    let m = dir.join("mnt");
    wait_mount(&m, true);
    check_times(which, &m);
    out.push_str(&sh(&dir, &img, sc.script));
    check_times(which, &m);
    out.push_str(&cmd(
        &mut q,
        &dir,
        &img,
        r#"{"execute":"block-export-del","arguments":{"id":"exp0"}}"#,
    ));
    wait_mount(&m, false);
    out.push_str(&sh(&dir, &img, sc.after));
    out
}

fn differential(name: &str, sc: &Scenario) {
    require_fuse();
    let theirs = run_scenario(Impl::Qsd, sc);
    let ours = run_scenario(Impl::Ours, sc);
    assert_same(name, &theirs, &ours);
}

/// What the image looks like once the export is gone.
const AFTER: &str = r#"
t sum "$IMG/img"
t ist "$IMG/img"
t stat -c 'mnt size=%s type=%F perm=%a' "$M"
t qemu-img map --output=json -f raw "$IMG/img"
"#;

/// A writable export of a raw node over a file.
const RAW_SETUP: &[&str] = &[
    r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"file0","filename":"IMG/img"}}"#,
    r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"disk","file":"file0"}}"#,
    r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"exp0","node-name":"disk","mountpoint":"DIR/mnt","writable":true}}"#,
    r#"{"execute":"query-block-exports"}"#,
];

/// Every kind of request on a writable, fixed-size export.
const RAW_SCRIPT: &str = r#"
t st
t stat -f -c 'blocks=%b free=%f avail=%a files=%c ffree=%d bsize=%S fbsize=%s namelen=%l type=%T' "$M"
t python3 -c 'import os, sys
for f in (os.listxattr, lambda p: os.getxattr(p, "user.x")):
    try: print(f(sys.argv[1]))
    except OSError as e: print("errno", e.errno)' "$M"
t sum
t dd if="$IMG/pat" of="$M" bs=4k seek=3 count=5 conv=notrunc
t st
t dd if="$IMG/pat" of="$M" bs=64k count=2
t st
t dd if="$IMG/pat" of="$M" bs=4k seek=255 count=2 conv=notrunc
t dd if="$IMG/pat" of="$M" bs=4k seek=300 count=1 conv=notrunc
t dd if="$IMG/pat" of="$M" bs=64k seek=5 count=3 oflag=direct conv=notrunc
t dd if="$IMG/pat" of="$M" bs=4k seek=20 count=1 conv=notrunc,fsync
t dd if="$M" of="$DIR/rd" bs=256k iflag=direct
t sum "$DIR/rd"
t st
t fallocate -p -o 8192 -l 16384 "$M"
t st
t fallocate -z -o 65536 -l 65536 "$M"
t st
t fallocate -z -n -o 1040384 -l 65536 "$M"
t fallocate -p -o 1040384 -l 65536 "$M"
t fallocate -o 0 -l 4096 "$M"
t fallocate -n -o 0 -l 4096 "$M"
t fallocate -c -o 0 -l 4096 "$M"
t fallocate -l 2M "$M"
t st
t fallocate -o 1M -l 1M "$M"
t st
t fallocate -o 3M -l 512k "$M"
t st
t fallocate -z -o 4M -l 256k "$M"
t st
t fallocate -z -n -o 4194304 -l 1M "$M"
t st
t truncate -s 5M "$M"
t st
t truncate -s 3M "$M"
t st
t sum
t touch "$M"
t chmod 640 "$M"
t st
t chmod 600 "$M"
t chown 1:2 "$M"
t st
t chown 0:0 "$M"
t info "$M"
t qemu-img map --output=json -f raw "$M"
t qemu-img convert -f raw -O qcow2 "$M" "$DIR/out.qcow2"
t qemu-img compare -f raw -F qcow2 "$M" "$DIR/out.qcow2"
t qemu-img convert -m 1 -n -f qcow2 -O raw "$IMG/src.qcow2" "$M"
t qemu-img compare -f raw -F qcow2 "$M" "$IMG/src.qcow2"
t qemu-img compare -f raw -F raw "$M" "$IMG/pat"
t qemu-img map --output=json -f raw "$M"
t st
t sum
t cmp "$M" "$IMG/img"
"#;

#[test]
fn writable_export_of_a_raw_node() {
    differential(
        "writable_export_of_a_raw_node",
        &Scenario {
            setup: RAW_SETUP,
            script: RAW_SCRIPT,
            after: AFTER,
            on_disk: false,
        },
    );
}

/// The same with the image on the test directory's file system (ext4 or
/// whatever it is), where zeroing uses other calls; block counts are not
/// compared there.
#[test]
fn writable_export_of_a_raw_node_on_disk() {
    differential(
        "writable_export_of_a_raw_node_on_disk",
        &Scenario {
            setup: RAW_SETUP,
            script: RAW_SCRIPT,
            after: AFTER,
            on_disk: true,
        },
    );
}

#[test]
fn read_only_export_of_a_file_node() {
    differential(
        "read_only_export_of_a_file_node",
        &Scenario {
            setup: &[
                r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"file0","filename":"IMG/img","read-only":true}}"#,
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"exp0","node-name":"file0","mountpoint":"DIR/mnt","growable":true}}"#,
            ],
            script: r#"
t st
t sum
t dd if="$IMG/pat" of="$M" bs=4k count=1 conv=notrunc
t dd if="$M" of="$DIR/rd" bs=4k skip=250 count=10
t sum "$DIR/rd"
t truncate -s 2M "$M"
t fallocate -p -o 0 -l 4096 "$M"
t fallocate -z -o 0 -l 4096 "$M"
t fallocate -o 1M -l 4096 "$M"
t chmod 600 "$M"
t chmod 400 "$M"
t chmod 444 "$M"
t st
t touch "$M"
t info "$M"
t qemu-img map --output=json -f raw "$M"
t qemu-img compare -f raw -F raw "$M" "$IMG/img"
"#,
            after: AFTER,
            on_disk: false,
        },
    );
}

#[test]
fn growable_export_without_allow_other() {
    differential(
        "growable_export_without_allow_other",
        &Scenario {
            setup: &[
                r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"file0","filename":"IMG/img"}}"#,
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"exp0","node-name":"file0","mountpoint":"DIR/mnt","writable":true,"growable":true,"allow-other":"off","writethrough":true}}"#,
            ],
            script: r#"
t st
t dd if="$IMG/pat" of="$M" bs=4k seek=255 count=2 conv=notrunc
t st
t dd if="$IMG/pat" of="$M" bs=64k seek=40 count=2 conv=notrunc
t st
t dd if="$IMG/pat" of="$M" bs=64k seek=60 count=2 oflag=direct conv=notrunc
t st
t sum
t chmod 644 "$M"
t chmod 700 "$M"
t st
t chown 1 "$M"
t truncate -s 1M "$M"
t st
t fallocate -z -o 2M -l 64k "$M"
t st
t fallocate -o 3M -l 64k "$M"
t st
t qemu-img map --output=json -f raw "$M"
t sum
"#,
            after: AFTER,
            on_disk: false,
        },
    );
}

#[test]
fn export_of_a_null_node() {
    differential(
        "export_of_a_null_node",
        &Scenario {
            setup: &[
                r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"null0","size":1048576,"read-zeroes":true}}"#,
                r#"{"execute":"block-export-add","arguments":{"type":"fuse","id":"exp0","node-name":"null0","mountpoint":"DIR/mnt","writable":true,"growable":true}}"#,
            ],
            script: r#"
t st
t sum
t dd if="$IMG/pat" of="$M" bs=4k count=2 conv=notrunc
t dd if="$IMG/pat" of="$M" bs=4k seek=256 count=1 conv=notrunc
t truncate -s 2M "$M"
t fallocate -o 1M -l 4096 "$M"
t fallocate -z -o 4096 -l 4096 "$M"
t fallocate -p -o 4096 -l 4096 "$M"
t fallocate -z -o 1M -l 4096 "$M"
t st
t qemu-img map --output=json -f raw "$M"
"#,
            after: r#"t stat -c 'mnt size=%s type=%F perm=%a' "$M""#,
            on_disk: false,
        },
    );
}
