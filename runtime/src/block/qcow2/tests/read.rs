//! Images written by QEMU read back right through our driver.

use serde_json::json;

use super::*;

/// Writes a mix of patterns, zeroes and discards with qemu-io.
fn fill_with_qemu_io(path: &str, size: u64, cs: u64, seed: u64) {
    let mut r = Rng(seed);
    let mut cmds: Vec<String> = Vec::new();
    for i in 0..24 {
        let off = r.below(size / 512) * 512;
        let len = (1 + r.below((4 * cs).min(size - off) / 512)) * 512;
        let len = len.min(size - off);
        let c = match i % 6 {
            4 => format!("write -z {off} {len}"),
            5 => format!("discard {off} {len}"),
            _ => format!("write -P {} {off} {len}", 1 + r.below(254)),
        };
        cmds.push(c);
    }
    let mut args = vec!["-f", "qcow2"];
    for c in &cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(path);
    run("qemu-io", &args);
}

/// Reads the whole node in uneven pieces and compares with `expect`.
async fn compare_node(n: &BlockNode, expect: &[u8], seed: u64) {
    let size = n.size();
    assert_eq!(size, expect.len() as u64);
    let mut r = Rng(seed);
    let mut off = 0;
    while off < size {
        let len = (1 + r.below(300_000)).min(size - off);
        let b = n.read(off, len as usize).await.expect("read");
        if b[..] != expect[off as usize..(off + len) as usize] {
            let at = (0..len as usize)
                .find(|i| b[*i] != expect[off as usize + i])
                .unwrap_or(0);
            panic!("mismatch at {}", off + at as u64);
        }
        off += len;
    }
}

fn raw_of(dir: &Dir, path: &str) -> Vec<u8> {
    let raw = dir.path("expect.raw");
    run("qemu-img", &["convert", "-U", "-O", "raw", path, &raw]);
    slurp(std::path::Path::new(&raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_images_read_back() {
    let mut cases: Vec<(String, u64)> = Vec::new();
    for cs in [512u64, 65536, 2 << 20] {
        cases.push((format!("compat=0.10,cluster_size={cs}"), cs));
        for rb in [1, 16, 64] {
            cases.push((
                format!("compat=1.1,cluster_size={cs},refcount_bits={rb}"),
                cs,
            ));
        }
        if cs >= 16384 {
            cases.push((format!("compat=1.1,cluster_size={cs},extended_l2=on"), cs));
        }
    }
    for (i, (opts, cs)) in cases.iter().enumerate() {
        let dir = Dir::new("read");
        let img = dir.path("a.qcow2");
        let size = if *cs > 65536 { 24 << 20 } else { 6 << 20 };
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
        fill_with_qemu_io(&img, size, *cs, 7 + i as u64);
        let expect = raw_of(&dir, &img);
        let d = Daemon::new();
        let n = open_ro(&d, "q", &img);
        compare_node(&n, &expect, i as u64 + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_images_read_back() {
    for ctype in ["zlib", "zstd"] {
        for cs in [512u64, 65536, 2 << 20] {
            let dir = Dir::new("comp");
            let raw = dir.path("src.raw");
            let size: u64 = 8 << 20;
            let mut data = vec![0u8; size as usize];
            // Compressible text-like data with holes.
            let mut r = Rng(cs + 3);
            for (k, chunk) in data.chunks_mut(4096).enumerate() {
                if k % 5 == 3 {
                    continue;
                }
                let w = r.below(26) as u8;
                for (j, b) in chunk.iter_mut().enumerate() {
                    *b = b'a' + ((j as u8).wrapping_mul(w) % 26);
                }
            }
            std::fs::write(&raw, &data).expect("write raw");
            let img = dir.path("c.qcow2");
            let o = format!("compression_type={ctype},cluster_size={cs}");
            run(
                "qemu-img",
                &[
                    "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", &o, &raw, &img,
                ],
            );
            let d = Daemon::new();
            let n = open_ro(&d, "c", &img);
            compare_node(&n, &data, cs).await;
            // Compressed clusters are data in block status.
            let e = n.block_status(0, size).await.expect("status");
            assert!(e.data && e.depth == 1, "{e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backing_chain_depth_3() {
    let dir = Dir::new("chain");
    let base = dir.path("base.qcow2");
    let mid = dir.path("mid.qcow2");
    let top = dir.path("top.qcow2");
    let size: u64 = 4 << 20;
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4096",
            &base,
            "4M",
        ],
    );
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 1 0 4M", &base]);
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            &mid,
        ],
    );
    run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 2 1M 1M",
            "-c",
            "write -z 3M 64k",
            &mid,
        ],
    );
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            &top,
        ],
    );
    run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 3 1536k 8k",
            "-c",
            "write -P 4 100000 5000",
            &top,
        ],
    );
    let expect = raw_of(&dir, &top);
    let d = Daemon::new();
    let n = open_ro(&d, "top", &top);
    compare_node(&n, &expect, 5).await;
    // Allocation depth: top (1), mid (2), base (3).
    let e = n.block_status(1536 << 10, 8192).await.expect("status");
    assert_eq!((e.depth, e.data), (1, true), "{e:?}");
    let e = n.block_status(1 << 20, 4096).await.expect("status");
    assert_eq!((e.depth, e.data), (2, true), "{e:?}");
    let e = n.block_status(3 << 20, 4096).await.expect("status");
    assert_eq!((e.depth, e.zero), (2, true), "{e:?}");
    let e = n.block_status(0, 4096).await.expect("status");
    assert_eq!((e.depth, e.data), (3, true), "{e:?}");
    assert_eq!(n.size(), size);
    // `backing: null` cuts the chain.
    add(
        &d,
        json!({"driver": "qcow2", "node-name": "alone", "read-only": true, "backing": null,
            "file": {"driver": "file", "filename": top}}),
    )
    .expect("add");
    let a = d.block.node("alone").expect("node");
    let b = a.read(0, 4096).await.expect("read");
    assert!(b.iter().all(|x| *x == 0));
    let e = a.block_status(0, 4096).await.expect("status");
    assert_eq!((e.depth, e.zero, e.data), (0, true, false));
}
