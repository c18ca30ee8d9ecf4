//! Drives a vhost-user-blk back end through libblkio (the `blkio` crate,
//! driver `virtio-blk-vhost-user`) and prints one JSON line of results.
//!
//! usage: vhost-bench-client PATH PATTERN BS DEPTH QUEUES SECONDS
//!   PATTERN: randread | randwrite | read | write
//! Each queue runs in its own thread with DEPTH requests in flight,
//! waiting for completions on the queue's completion fd (no polling).

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use blkio::{Blkio, Blkioq, Completion, ReqFlags};

fn die(msg: String) -> ! {
    eprintln!("vhost-bench-client: {msg}");
    std::process::exit(1)
}

struct Job {
    pattern: String,
    bs: usize,
    depth: usize,
    capacity: u64,
    seconds: f64,
}

fn run_queue(mut q: Blkioq, buf: *mut u8, job: &Job, seed: u64) -> (u64, u64) {
    let blocks = job.capacity / job.bs as u64;
    let random = job.pattern.starts_with("rand");
    let write = job.pattern.ends_with("write");
    let mut x = seed | 1;
    let mut seq = (seed % blocks.max(1)) * 7919 % blocks.max(1);
    let mut next_off = || {
        if random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * job.bs as u64
        } else {
            seq = (seq + 1) % blocks;
            seq * job.bs as u64
        }
    };
    let submit = |q: &mut Blkioq, slot: usize, off: u64| {
        // SAFETY: `slot < depth`; the region holds depth * bs bytes.
        let p = unsafe { buf.add(slot * job.bs) };
        if write {
            q.write(off, p, job.bs, slot, ReqFlags::empty());
        } else {
            q.read(off, p, job.bs, slot, ReqFlags::empty());
        }
    };
    for slot in 0..job.depth {
        submit(&mut q, slot, next_off());
    }
    let mut done: Vec<MaybeUninit<Completion>> =
        (0..job.depth).map(|_| MaybeUninit::uninit()).collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(job.seconds);
    let mut ios = 0u64;
    let mut errors = 0u64;
    while Instant::now() < end {
        let n = match q.do_io(&mut done, 1, None, None) {
            Ok(n) => n,
            Err(e) => die(format!("do_io: {}", e.message())),
        };
        for c in &done[..n] {
            // SAFETY: do_io initialised the first n completions.
            let c = unsafe { c.assume_init_ref() };
            if c.ret != 0 {
                errors += 1;
            }
            ios += 1;
            submit(&mut q, c.user_data, next_off());
        }
    }
    // Let the requests in flight finish.
    let mut left = job.depth;
    while left > 0 {
        match q.do_io(&mut done, left, None, None) {
            Ok(n) => left -= n,
            Err(_) => break,
        }
    }
    (ios, errors)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        die("usage: vhost-bench-client PATH PATTERN BS DEPTH QUEUES SECONDS".into());
    }
    let num = |i: usize| -> u64 {
        a[i].parse()
            .unwrap_or_else(|_| die(format!("bad number {}", a[i])))
    };
    let (bs, depth, queues) = (num(3) as usize, num(4) as usize, num(5) as usize);
    let seconds: f64 = a[6].parse().unwrap_or_else(|_| die("bad seconds".into()));
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap_or_else(|e| die(e.message().into()));
    b.set_str("path", &a[1])
        .unwrap_or_else(|e| die(e.message().into()));
    b.connect()
        .unwrap_or_else(|e| die(format!("connect: {}", e.message())));
    b.set_i32("num-queues", queues as i32)
        .unwrap_or_else(|e| die(format!("num-queues: {}", e.message())));
    let capacity = b
        .get_u64("capacity")
        .unwrap_or_else(|e| die(e.message().into()));
    let out = b
        .start()
        .unwrap_or_else(|e| die(format!("start: {}", e.message())));
    let job = Job {
        pattern: a[2].clone(),
        bs,
        depth,
        capacity,
        seconds,
    };
    let mut regions = Vec::new();
    for _ in 0..queues {
        let r = b
            .alloc_mem_region(depth * bs)
            .unwrap_or_else(|e| die(format!("alloc: {}", e.message())));
        b.map_mem_region(&r)
            .unwrap_or_else(|e| die(format!("map: {}", e.message())));
        regions.push(r);
    }
    let start = Instant::now();
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = out
            .queues
            .into_iter()
            .zip(&regions)
            .enumerate()
            .map(|(i, (q, r))| {
                let addr = r.addr;
                let job = &job;
                s.spawn(move || run_queue(q, addr as *mut u8, job, 0x9e37_79b9 * (i as u64 + 1)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or((0, 1))).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let ios: u64 = results.iter().map(|r| r.0).sum();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    println!(
        "{{\"iops\": {:.0}, \"mib_s\": {:.1}, \"errors\": {errors}, \"seconds\": {secs:.2}}}",
        ios as f64 / secs,
        ios as f64 * bs as f64 / secs / 1048576.0
    );
}
