//! Randomized workloads against a raw shadow copy: several concurrent
//! clients issue writes, write-zeroes, discards and reads of random sizes
//! at random offsets (each client in its own stripes of the disk), then
//! the image must pass `qemu-img check` with no leaks and compare equal
//! to the shadow.

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::block::{IoBuf, WriteFlags, ZeroFlags};

/// Stripe size: client `k` owns stripes `i` with `i % clients == k`.
const STRIPE: u64 = 256 << 10;

pub struct Workload {
    pub ops: u64,
    pub clients: u64,
    pub max_len: u64,
    pub seed: u64,
}

/// Runs the workload on `n`, keeping `shadow` up to date.
pub async fn run_workload(n: Arc<BlockNode>, shadow: Arc<Mutex<Vec<u8>>>, w: &Workload) {
    let size = n.size();
    let stripes = size / STRIPE;
    let mut tasks = Vec::new();
    for k in 0..w.clients {
        let n = n.clone();
        let shadow = shadow.clone();
        let (ops, clients, max_len, seed) = (w.ops / w.clients, w.clients, w.max_len, w.seed);
        tasks.push(tokio::spawn(async move {
            let mut r = Rng(seed * 1000 + k + 1);
            let align = n.mem_alignment();
            for i in 0..ops {
                let stripe = (r.below(stripes / clients)) * clients + k;
                let base = stripe * STRIPE;
                let off = base + r.below(STRIPE);
                let len = (1 + r.below(max_len)).min(base + STRIPE - off);
                let op = r.below(10);
                match op {
                    0..=4 => {
                        let mut b = IoBuf::new(len as usize, align);
                        pattern(&mut b, seed ^ (i << 8) ^ k);
                        let data = b.to_vec();
                        n.write(off, b, WriteFlags { fua: op == 4 })
                            .await
                            .expect("write");
                        shadow.lock().unwrap()[off as usize..(off + len) as usize]
                            .copy_from_slice(&data);
                    }
                    5 | 6 => {
                        let f = ZeroFlags {
                            may_unmap: op == 6,
                            ..Default::default()
                        };
                        n.write_zeroes(off, len, f).await.expect("zeroes");
                        shadow.lock().unwrap()[off as usize..(off + len) as usize].fill(0);
                    }
                    7 => {
                        // Discarded data is unspecified: read it back into
                        // the shadow.
                        n.discard(off, len).await.expect("discard");
                        let b = n.read(off, len as usize).await.expect("read");
                        shadow.lock().unwrap()[off as usize..(off + len) as usize]
                            .copy_from_slice(&b);
                    }
                    8 => n.flush().await.expect("flush"),
                    _ => {
                        let b = n.read(off, len as usize).await.expect("read");
                        let s = shadow.lock().unwrap();
                        let exp = &s[off as usize..(off + len) as usize];
                        if b[..] != *exp {
                            let at = (0..len as usize).find(|j| b[*j] != exp[*j]).unwrap_or(0);
                            panic!("client {k} op {i}: mismatch at {}", off + at as u64);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
}

/// Checks the image against the shadow with qemu-img.
pub fn compare_with_shadow(dir: &Dir, img: &str, shadow: &[u8]) {
    let raw = dir.path("shadow.raw");
    std::fs::write(&raw, shadow).expect("write shadow");
    run(
        "qemu-img",
        &["compare", "-U", "-f", "qcow2", "-F", "raw", img, &raw],
    );
}

async fn one(opts: &str, size: u64, w: Workload, backing: bool) {
    one_with(opts, size, w, backing, json!({}), None).await;
}

/// How an image is prepared before the workload: made by this command
/// (`IMG` stands for its path), which leaves content the shadow gets from
/// `qemu-img convert`.
type Prep<'a> = Option<&'a dyn Fn(&Dir, &str)>;

async fn one_with(
    opts: &str,
    size: u64,
    w: Workload,
    backing: bool,
    extra: serde_json::Value,
    prep: Prep<'_>,
) {
    let dir = Dir::new("rand");
    let img = dir.path("a.qcow2");
    let mut shadow = vec![0u8; size as usize];
    if backing {
        let base = dir.path("base.raw");
        let mut b = vec![0u8; size as usize];
        pattern(&mut b, 99);
        std::fs::write(&base, &b).expect("base");
        shadow = b;
        run(
            "qemu-img",
            &[
                "create", "-q", "-f", "qcow2", "-o", opts, "-b", &base, "-F", "raw", &img,
            ],
        );
    } else {
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                opts,
                &img,
                &size.to_string(),
            ],
        );
    }
    if let Some(prep) = prep {
        prep(&dir, &img);
        let raw = dir.path("prep.raw");
        run("qemu-img", &["convert", "-O", "raw", &img, &raw]);
        shadow = slurp(std::path::Path::new(&raw));
    }
    let d = Daemon::new();
    let (n, _a) = open_rw(&d, "q", &img, extra);
    let shadow = Arc::new(Mutex::new(shadow));
    run_workload(n.clone(), shadow.clone(), &w).await;
    // One read over the whole disk (many L2 slices at once).
    let all = n.read(0, size as usize).await.expect("read all");
    assert!(
        all[..] == shadow.lock().unwrap()[..],
        "whole-disk read differs"
    );
    n.flush().await.expect("flush");
    check_clean(&img);
    compare_with_shadow(&dir, &img, &shadow.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_20000_ops() {
    one(
        "cluster_size=65536",
        64 << 20,
        Workload {
            ops: 20_000,
            clients: 4,
            max_len: 200_000,
            seed: 1,
        },
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_geometries() {
    let cases = [
        ("cluster_size=512,refcount_bits=1", false),
        ("cluster_size=512,refcount_bits=64", false),
        ("compat=0.10,cluster_size=4096", false),
        ("compat=0.10,cluster_size=4096", true),
        ("cluster_size=65536,extended_l2=on", false),
        ("cluster_size=65536,extended_l2=on", true),
        ("cluster_size=2097152", false),
        ("cluster_size=65536,refcount_bits=8", true),
    ];
    for (i, (opts, backing)) in cases.iter().enumerate() {
        one(
            opts,
            16 << 20,
            Workload {
                ops: 2000,
                clients: 3,
                max_len: 100_000,
                seed: 10 + i as u64,
            },
            *backing,
        )
        .await;
    }
}

/// Tiny caches: L2 slices and refcount blocks are evicted and written back
/// all the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_small_caches() {
    for (i, extra) in [
        json!({"l2-cache-size": 8192, "l2-cache-entry-size": 4096, "refcount-cache-size": 1}),
        json!({"l2-cache-size": 1024, "l2-cache-entry-size": 512}),
        json!({"cache-size": 200000}),
        json!({"l2-cache-entry-size": 512, "cache-clean-interval": 1}),
        json!({"discard-no-unref": true, "pass-discard-other": true}),
        json!({"pass-discard-request": false, "lazy-refcounts": true}),
    ]
    .into_iter()
    .enumerate()
    {
        one_with(
            "cluster_size=4096",
            32 << 20,
            Workload {
                ops: 3000,
                clients: 4,
                max_len: 70_000,
                seed: 40 + i as u64,
            },
            false,
            extra,
            None,
        )
        .await;
    }
}

/// Internal snapshots share clusters and L2 tables: writes copy them, and
/// the snapshot keeps its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_with_snapshot() {
    let prep = |_: &Dir, img: &str| {
        run(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 7 0 12M",
                "-c",
                "write -z 3M 1M",
                img,
            ],
        );
        run("qemu-img", &["snapshot", "-c", "snap1", img]);
    };
    one_with(
        "cluster_size=65536",
        16 << 20,
        Workload {
            ops: 3000,
            clients: 3,
            max_len: 150_000,
            seed: 60,
        },
        false,
        json!({}),
        Some(&prep),
    )
    .await;
}

/// Writes over compressed clusters decompress and copy them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_over_compressed_clusters() {
    for ctype in ["zlib", "zstd"] {
        let prep = move |dir: &Dir, img: &str| {
            let src = dir.path("src.raw");
            let mut data = vec![0u8; 16 << 20];
            for (i, b) in data.iter_mut().enumerate() {
                *b = (i / 777 % 7) as u8 + b'a';
            }
            std::fs::write(&src, &data).expect("src");
            let o = format!("compression_type={ctype}");
            run(
                "qemu-img",
                &[
                    "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", &o, &src, img,
                ],
            );
        };
        one_with(
            "cluster_size=65536",
            16 << 20,
            Workload {
                ops: 2000,
                clients: 3,
                max_len: 100_000,
                seed: 70,
            },
            false,
            json!({}),
            Some(&prep),
        )
        .await;
    }
}

/// External data files, plain and raw: guest data lives in the data file
/// at the guest offset; with `data_file_raw` it is a valid raw image too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_external_data_file() {
    for raw in [false, true] {
        let dir = Dir::new("extdata");
        let img = dir.path("e.qcow2");
        let data = dir.path("e.data");
        let size: u64 = 16 << 20;
        let o = format!(
            "data_file={data},data_file_raw={}",
            if raw { "on" } else { "off" }
        );
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &o,
                &img,
                &size.to_string(),
            ],
        );
        let d = Daemon::new();
        let (n, _a) = open_rw(&d, "q", &img, json!({}));
        let shadow = Arc::new(Mutex::new(vec![0u8; size as usize]));
        let w = Workload {
            ops: 2000,
            clients: 3,
            max_len: 100_000,
            seed: 80 + raw as u64,
        };
        run_workload(n.clone(), shadow.clone(), &w).await;
        n.flush().await.expect("flush");
        check_clean(&img);
        compare_with_shadow(&dir, &img, &shadow.lock().unwrap());
        if raw {
            let b = slurp(std::path::Path::new(&data));
            let s = shadow.lock().unwrap();
            assert!(b.len() as u64 >= size);
            assert!(
                b[..size as usize] == s[..],
                "raw data file differs from the disk"
            );
        }
    }
}
