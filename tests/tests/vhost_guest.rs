//! A real guest on the vhost-user-blk export: qemu-system-x86_64 (TCG)
//! boots a Debian kernel with a busybox initramfs (built by
//! `tests/guest/build.sh`), with its RAM in a shared memfd and the disk
//! as `vhost-user-blk-pci` with 1 and 2 queues. The guest's /init
//! (`tests/guest/init`) reads a pattern the host wrote, writes patterns
//! from one writer per CPU, reads them back, discards and zeroes; the
//! host then checks the image. The same runs against qemu-storage-daemon.
//!
//! Needs qemu-system-x86_64, and apt (with package lists) to fetch the
//! kernel and busybox once into `target/guest-cache` (or
//! `$QSD_GUEST_CACHE`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qsd_blackbox_tests::{root, Daemon, Impl};

const MIB: u64 = 1 << 20;

fn guest_assets() -> (PathBuf, PathBuf) {
    let cache = std::env::var_os("QSD_GUEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/guest-cache"));
    let st = Command::new(root().join("tests/guest/build.sh"))
        .arg(&cache)
        .status()
        .expect("running tests/guest/build.sh");
    assert!(st.success(), "building the guest failed");
    (cache.join("vmlinuz"), cache.join("initramfs.gz"))
}

fn md5(data: &[u8]) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("md5sum input");
    let out = c.wait_with_output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn read_at(p: &Path, off: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(p).expect("image");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut b = vec![0u8; len as usize];
    f.read_exact(&mut b).expect("read");
    b
}

/// Boots the guest against `which` with `queues` queues; returns the
/// guest's report lines and the image path.
fn run_guest(which: Impl, queues: u32) -> (Vec<String>, PathBuf, String) {
    let (kernel, initrd) = guest_assets();
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let img = dir.join("disk.img");
    let host_pat: Vec<u8> = (0..MIB).map(|i| (i * 31 + 7) as u8).collect();
    {
        let mut f = std::fs::File::create(&img).expect("image");
        f.set_len(64 * MIB).expect("size");
        f.write_all(&host_pat).expect("host pattern");
        f.seek(SeekFrom::Start(21 * MIB)).expect("seek");
        f.write_all(&vec![0xffu8; MIB as usize])
            .expect("discard area");
    }
    let sock = dir.join("vu.sock");
    let bd = format!(
        "driver=file,node-name=disk,filename={},discard=unmap",
        img.display()
    );
    let ex = format!(
        "type=vhost-user-blk,id=e,node-name=disk,writable=on,num-queues={queues},addr.type=unix,addr.path={}",
        sock.display()
    );
    let _d = Daemon::start_with(which, false, &["--blockdev", &bd, "--export", &ex]);
    qsd_blackbox_tests::wait_for_path(&sock);
    let console = dir.join("console.log");
    let start = Instant::now();
    let mut vm = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg", "-m", "256"])
        .args(["-smp", &queues.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args([
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-machine",
            "memory-backend=mem",
        ])
        .arg("-chardev")
        .arg(format!("socket,id=vu,path={}", sock.display()))
        .args([
            "-device",
            &format!("vhost-user-blk-pci,chardev=vu,num-queues={queues}"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 must be installed");
    let status = loop {
        if let Some(st) = vm.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(240) {
            let _ = vm.kill();
            let _ = vm.wait();
            panic!(
                "{which:?}: guest did not finish: {}",
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(status.success(), "{which:?}: qemu failed: {log}");
    let lines = log
        .lines()
        .filter_map(|l| l.strip_prefix("T "))
        .map(|l| l.trim().to_string())
        .collect();
    eprintln!("{which:?} with {queues} queue(s): {:?}", start.elapsed());
    (lines, img, md5(&host_pat))
}

fn check(which: Impl, queues: u32) -> Vec<String> {
    let (lines, img, host_md5) = run_guest(which, queues);
    let get = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("{which:?}: no {k} in {lines:?}"))
    };
    assert_eq!(get("QUEUES"), queues.to_string(), "{which:?}");
    assert_eq!(get("SECTORS"), (64 * MIB / 512).to_string());
    assert_eq!(get("SERIAL"), "vhost_user_blk");
    assert_eq!(
        get("HOSTPAT"),
        host_md5,
        "{which:?}: guest read the host's pattern"
    );
    assert_eq!(
        get("VERIFIED"),
        "4",
        "{which:?}: guest read back what it wrote"
    );
    assert_eq!(get("DISCARD"), "ok");
    assert!(lines.iter().any(|l| l == "DONE"), "{which:?}: {lines:?}");
    // The host sees what the guest wrote.
    let pat = get("PATTERN");
    for j in 0..4 {
        let region = read_at(&img, MIB + j * 4 * MIB, 4 * MIB);
        assert_eq!(md5(&region), pat, "{which:?}: region {j} on the host");
    }
    assert!(read_at(&img, 17 * MIB, MIB).iter().all(|b| *b == 0));
    assert!(
        read_at(&img, 21 * MIB, MIB).iter().all(|b| *b == 0),
        "{which:?}: discard"
    );
    lines
        .into_iter()
        .filter(|l| !l.starts_with("PATTERN"))
        .collect()
}

#[test]
fn guest_with_one_queue() {
    let ours = check(Impl::Ours, 1);
    let qsd = check(Impl::Qsd, 1);
    assert_eq!(ours, qsd);
}

#[test]
fn guest_with_two_queues() {
    let ours = check(Impl::Ours, 2);
    let qsd = check(Impl::Qsd, 2);
    assert_eq!(ours, qsd);
}

/// qsd only (QSD has no inflight tracking): the daemon is killed three
/// times while the guest writes with O_DIRECT; QEMU reconnects
/// (`reconnect-ms`), passes the inflight area back, and the guest reads
/// back everything it wrote.
#[test]
fn guest_survives_daemon_restarts() {
    let (kernel, initrd) = guest_assets();
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 * MIB))
        .expect("image");
    let sock = dir.join("vu.sock");
    let bd = format!("driver=file,node-name=disk,filename={}", img.display());
    let ex = format!(
        "type=vhost-user-blk,id=e,node-name=disk,writable=on,addr.type=unix,addr.path={}",
        sock.display()
    );
    let start_daemon = || {
        let d = Daemon::start_with(Impl::Ours, false, &["--blockdev", &bd, "--export", &ex]);
        qsd_blackbox_tests::wait_for_path(&sock);
        d
    };
    let mut daemon = start_daemon();
    let console = dir.join("console.log");
    let mut vm = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg", "-m", "256", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet qsdtest=restart"])
        .args([
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-machine",
            "memory-backend=mem",
        ])
        .arg("-chardev")
        .arg(format!(
            "socket,id=vu,path={},reconnect-ms=100",
            sock.display()
        ))
        .args(["-device", "vhost-user-blk-pci,chardev=vu"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 must be installed");
    let begin = Instant::now();
    let log = || std::fs::read_to_string(&console).unwrap_or_default();
    while !log().contains("T START") {
        assert!(
            begin.elapsed() < Duration::from_secs(120),
            "guest never started writing: {}",
            log()
        );
        assert!(
            vm.try_wait().expect("wait").is_none(),
            "qemu exited: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        drop(daemon); // SIGKILL
        daemon = start_daemon();
    }
    let status = loop {
        if let Some(st) = vm.try_wait().expect("wait") {
            break st;
        }
        if begin.elapsed() > Duration::from_secs(240) {
            let _ = vm.kill();
            panic!("guest did not finish: {}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let out = log();
    assert!(out.contains("T RESTART-VERIFIED 8"), "{out}");
    assert!(out.contains("T DONE"));
    drop(daemon);
}
