//! Crash safety of the daemon itself: qsd serves a qcow2 image over NBD
//! to several clients (random writes, write-zeroes, trims and flushes on
//! one half of the disk; on the other half a writer that makes slots
//! durable with FUA or a later flush) and is killed with SIGKILL at a
//! random moment, 20 times on the same image. After each kill
//! `qemu-img check` must find no corruption (leaked clusters only) and
//! every write whose FUA reply, or a later flush's reply, had arrived
//! must read back intact (read by qemu-img, not by us).

mod nbd_common;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbd_common::{request, run, run_ok, Raw, CMD_FLUSH, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES};
use qsd_blackbox_tests::{Daemon, Impl};
use serde_json::json;

const SIZE: u64 = 64 << 20;
const SLOT: u64 = 64 << 10;
const SLOTS_PER_ROUND: u64 = 24;
const FLAG_FUA: u16 = 1;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn slot_data(slot: u64) -> Vec<u8> {
    let mut x = slot.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..SLOT)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A connected, negotiated client (simple replies) that reports errors
/// instead of panicking: the daemon dies under it.
fn connect(sock: &Path) -> io::Result<UnixStream> {
    let mut c = Raw::connect(sock);
    c.go("disk", false, false, &[]);
    c.s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(c.s)
}

/// Sends one request and waits for its reply; Ok(false) on an error reply.
fn call(
    s: &mut UnixStream,
    flags: u16,
    cmd: u16,
    off: u64,
    data: &[u8],
    len: u64,
) -> io::Result<bool> {
    let mut b = request(flags, cmd, 7, off, len as u32);
    b.extend_from_slice(data);
    s.write_all(&b)?;
    let mut h = [0u8; 16];
    s.read_exact(&mut h)?;
    Ok(u32::from_be_bytes([h[4], h[5], h[6], h[7]]) == 0)
}

/// Random writes, zeroes, trims and flushes on the first half until the
/// daemon goes away.
fn churn(sock: &Path, seed: u64) -> io::Result<()> {
    let mut s = connect(sock)?;
    let mut r = Rng(seed);
    let half = SIZE / 2;
    loop {
        let off = r.below(half);
        let len = (1 + r.below(300_000)).min(half - off);
        match r.below(6) {
            0..=2 => {
                let fill = r.next() as u8;
                let data = vec![fill; len as usize];
                call(&mut s, 0, CMD_WRITE, off, &data, len)?;
            }
            3 => {
                call(&mut s, 0, CMD_WRITE_ZEROES, off, &[], len)?;
            }
            4 => {
                call(&mut s, 0, CMD_TRIM, off, &[], len)?;
            }
            _ => {
                call(&mut s, 0, CMD_FLUSH, 0, &[], 0)?;
            }
        }
    }
}

/// Writes this round's slots once each; a slot goes into `durable` once
/// its FUA reply or a later flush reply has arrived.
fn verified(sock: &Path, round: u64, durable: &Mutex<Vec<u64>>) -> io::Result<()> {
    let mut s = connect(sock)?;
    let mut r = Rng(round * 31 + 5);
    let mut acked = Vec::new();
    for i in 0..SLOTS_PER_ROUND {
        let slot = round * SLOTS_PER_ROUND + i;
        let off = SIZE / 2 + slot * SLOT;
        let fua = r.below(3) == 0;
        if fua && r.below(2) == 0 {
            // Allocate first without making it durable, so that the FUA
            // write goes in place while the mapping is only cached.
            let junk = vec![r.next() as u8; SLOT as usize];
            assert!(call(&mut s, 0, CMD_WRITE, off, &junk, SLOT)?);
        }
        let flags = if fua { FLAG_FUA } else { 0 };
        assert!(call(&mut s, flags, CMD_WRITE, off, &slot_data(slot), SLOT)?);
        if fua {
            durable.lock().unwrap().push(slot);
        } else {
            acked.push(slot);
        }
        if r.below(3) == 0 {
            assert!(call(&mut s, 0, CMD_FLUSH, 0, &[], 0)?);
            durable.lock().unwrap().append(&mut acked);
        }
        std::thread::sleep(Duration::from_millis(r.below(40)));
    }
    Ok(())
}

/// `qemu-img check`: no corruption; returns the leaked clusters.
fn check_consistent(img: &str) -> u64 {
    let o = run("qemu-img", &["check", "--output=json", img]);
    let out = String::from_utf8_lossy(&o.stdout);
    // 0: clean; 3: leaks only. Anything else is corruption or failure.
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "qemu-img check: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("check JSON");
    assert_eq!(v["corruptions"].as_u64().unwrap_or(0), 0, "{out}");
    v["leaks"].as_u64().unwrap_or(0)
}

#[test]
fn daemon_sigkill_20_times_keeps_image_consistent_and_durable_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("c.qcow2").display().to_string();
    run_ok(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=65536",
            &img,
            &SIZE.to_string(),
        ],
    );
    let durable = Arc::new(Mutex::new(Vec::new()));
    let mut r = Rng(4243);
    let mut leaks = 0;
    for round in 0..20u64 {
        let mut d = Daemon::start(Impl::Ours);
        let sock = d.dir.path().join("nbd.sock");
        let mut q = d.qmp();
        for line in [
            json!({"execute": "blockdev-add", "arguments": {"driver": "qcow2",
                "node-name": "disk", "discard": "unmap",
                "file": {"driver": "file", "filename": img}}}),
            json!({"execute": "nbd-server-start",
                "arguments": {"addr": {"type": "unix", "data": {"path": sock}}}}),
            json!({"execute": "block-export-add", "arguments": {"type": "nbd", "id": "e",
                "node-name": "disk", "name": "disk", "writable": true}}),
        ] {
            assert_eq!(q.cmd(&line.to_string()), json!({"return": {}}), "{line}");
        }
        let wait = Duration::from_millis(150 + r.below(1200));
        std::thread::scope(|s| {
            for k in 0..2 {
                let sock = &sock;
                s.spawn(move || churn(sock, round * 77 + k + 1));
            }
            let (sock, durable) = (&sock, &durable);
            s.spawn(move || verified(sock, round, durable));
            std::thread::sleep(wait);
            // SIGKILL (Child::kill).
            d.child.kill().expect("kill");
            let _ = d.child.wait();
        });
        leaks += check_consistent(&img);
        let raw = dir.path().join("now.raw").display().to_string();
        run_ok("qemu-img", &["convert", "-O", "raw", &img, &raw]);
        let data = std::fs::read(&raw).expect("raw");
        for &slot in durable.lock().unwrap().iter() {
            let off = (SIZE / 2 + slot * SLOT) as usize;
            assert!(
                data[off..off + SLOT as usize] == slot_data(slot)[..],
                "round {round}: durable slot {slot} lost"
            );
        }
    }
    let n = durable.lock().unwrap().len();
    eprintln!("daemon crash test: {n} durable slots verified, {leaks} leaked clusters seen");
    assert!(n > 20, "too few writes were made durable ({n})");
    // The image still opens read-write, takes writes and checks clean
    // once repaired by qemu-img.
    run_ok(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 7 0 1M",
            "-c",
            "read -P 7 0 1M",
            &img,
        ],
    );
    check_consistent(&img);
}
