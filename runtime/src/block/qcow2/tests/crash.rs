//! Crash safety: a child process (this test binary, re-run on one ignored
//! test) drives the driver with a mixed concurrent workload and is killed
//! with SIGKILL at a random moment, 20 times on the same image. After
//! each kill, `qemu-img check` must find no corruption (leaks are fine)
//! and every write the child saw acknowledged after a flush, or with
//! FUA, must read back intact (read with qemu-img, not our driver).
//!
//! The disk is split in two halves: the first takes random overwrites,
//! zeroes and discards (allocation and freeing churn, unverified); in the
//! second each iteration writes its own slots once, with a pattern that
//! names the slot, and logs them once durable.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::block::{IoBuf, WriteFlags, ZeroFlags};

const SIZE: u64 = 64 << 20;
const SLOT: u64 = 64 << 10;
/// Verified slots per iteration.
const SLOTS_PER_ROUND: u64 = 24;

fn slot_seed(slot: u64) -> u64 {
    slot.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

#[test]
fn crash_safety_sigkill_20_times() {
    let dir = Dir::new("crash");
    let img = dir.path("a.qcow2");
    let log = dir.path("durable.log");
    run(
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
    let exe = std::env::current_exe().expect("exe");
    let mut r = Rng(4242);
    let mut total_leaks = 0;
    let mut durable = 0;
    for round in 0..20u64 {
        let mut child = Command::new(&exe)
            .args([
                "block::qcow2::tests::crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("QCOW2_CRASH_IMG", &img)
            .env("QCOW2_CRASH_LOG", &log)
            .env("QCOW2_CRASH_ROUND", round.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(Duration::from_millis(150 + r.below(1200)));
        // SAFETY: kill(2) on the pid of a child we spawned and have not
        // reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = child.wait();
        total_leaks += check_consistent(&img);
        // Every durable write is intact.
        let raw = dir.path("now.raw");
        run("qemu-img", &["convert", "-O", "raw", &img, &raw]);
        let data = slurp(std::path::Path::new(&raw));
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let mut count = 0;
        for line in logged.lines() {
            let Ok(slot) = line.trim().parse::<u64>() else {
                continue;
            };
            let off = (SIZE / 2 + slot * SLOT) as usize;
            let mut exp = vec![0u8; SLOT as usize];
            pattern(&mut exp, slot_seed(slot));
            assert!(
                data[off..off + SLOT as usize] == exp[..],
                "round {round}: durable slot {slot} lost"
            );
            count += 1;
        }
        durable = count;
    }
    eprintln!("crash test: {durable} durable slots verified, {total_leaks} leaked clusters seen");
    assert!(durable > 20, "the child made too few writes durable");
    // A final clean open and close still works, and the image is usable.
    run(
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

/// The child side: runs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_safety_sigkill_20_times in a child process"]
async fn crash_child() {
    let (Ok(img), Ok(log), Ok(round)) = (
        std::env::var("QCOW2_CRASH_IMG"),
        std::env::var("QCOW2_CRASH_LOG"),
        std::env::var("QCOW2_CRASH_ROUND"),
    ) else {
        return;
    };
    let round: u64 = round.parse().expect("round");
    let d = Daemon::new();
    let (n, _a) = open_rw(&d, "q", &img, json!({}));
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&log)
            .expect("log"),
    ));
    // Acknowledged but not yet durable verified slots.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Churn clients on the first half.
    for k in 0..3u64 {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Rng(round * 77 + k + 1);
            let half = SIZE / 2;
            loop {
                let off = r.below(half);
                let len = (1 + r.below(300_000)).min(half - off);
                match r.below(6) {
                    0..=2 => {
                        let mut b = IoBuf::new(len as usize, n.mem_alignment());
                        pattern(&mut b, r.next());
                        let _ = n.write(off, b, WriteFlags::default()).await;
                    }
                    3 => {
                        let f = ZeroFlags {
                            may_unmap: r.below(2) == 0,
                            ..Default::default()
                        };
                        let _ = n.write_zeroes(off, len, f).await;
                    }
                    4 => {
                        let _ = n.discard(off, len).await;
                    }
                    _ => {
                        let _ = n.flush().await;
                    }
                }
            }
        }));
    }
    // The verified writer: each slot once; FUA or a later flush makes it
    // durable.
    {
        let n = n.clone();
        let log = log.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Rng(round * 31 + 5);
            for i in 0..SLOTS_PER_ROUND {
                let slot = round * SLOTS_PER_ROUND + i;
                let fua = r.below(3) == 0;
                if fua && r.below(2) == 0 {
                    // First allocate the slot without making it durable,
                    // so that the FUA write below goes in place while the
                    // mapping is still only cached.
                    let mut b = IoBuf::new(SLOT as usize, n.mem_alignment());
                    pattern(&mut b, r.next());
                    n.write(SIZE / 2 + slot * SLOT, b, WriteFlags::default())
                        .await
                        .expect("write");
                }
                let mut b = IoBuf::new(SLOT as usize, n.mem_alignment());
                pattern(&mut b, slot_seed(slot));
                n.write(SIZE / 2 + slot * SLOT, b, WriteFlags { fua })
                    .await
                    .expect("write");
                if fua {
                    writeln!(log.lock().unwrap(), "{slot}").expect("log");
                } else {
                    acked.lock().unwrap().push(slot);
                }
                if r.below(3) == 0 {
                    let done: Vec<u64> = std::mem::take(&mut *acked.lock().unwrap());
                    n.flush().await.expect("flush");
                    let mut l = log.lock().unwrap();
                    for s in done {
                        writeln!(l, "{s}").expect("log");
                    }
                }
                tokio::time::sleep(Duration::from_millis(r.below(40))).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
