//! Real NBD clients against our server and QSD: qemu-img, qemu-io,
//! qemu-nbd, nbdinfo and nbdcopy see the same thing from both (outputs
//! compared after masking paths, ports and timings), and data written
//! through one reads back through another.

mod nbd_common;

use std::path::Path;

use nbd_common::*;
use qsd_blackbox_tests::Impl;
use serde_json::json;

/// 4 MiB: data at 0..64K, a hole, data at 1M..1M+4K, zeroes written at
/// 2M..2M+64K (allocated, reads as zero), hole to the end.
fn sparse_image(p: &Path) {
    make_image(
        p,
        4 << 20,
        &[(0, 65536, 0xaa), (1 << 20, 4096, 0x55), (2 << 20, 65536, 0)],
    );
}

/// Runs `f` against QSD and us, on UNIX and TCP, and checks both give the
/// same (masked) output.
fn same_output(export: serde_json::Value, f: impl Fn(&Served) -> String) {
    for tcp in [false, true] {
        let mut outs = Vec::new();
        for which in IMPLS {
            let s = Served::start_with(which, json!({}), export.clone(), tcp, sparse_image);
            outs.push(s.mask(&f(&s)));
        }
        assert_eq!(outs[0], outs[1], "QSD vs ours (tcp: {tcp})");
    }
}

#[test]
fn qemu_img_info_and_map() {
    same_output(json!({}), |s| {
        let mut out = run_ok("qemu-img", &["info", "--output=json", &s.uri()]);
        out += &run_ok("qemu-img", &["map", "--output=json", &s.uri()]);
        out += &run_ok("qemu-img", &["map", &s.uri()]);
        out
    });
}

#[test]
fn qemu_img_compare_and_convert() {
    same_output(json!({"writable": true}), |s| {
        let copy = s.d.dir.path().join("copy.img");
        let copy = copy.to_str().unwrap();
        let mut out = run_ok("qemu-img", &["convert", "-O", "raw", &s.uri(), copy]);
        out += &run_ok("qemu-img", &["compare", &s.uri(), copy]);
        out += &run_ok(
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                s.img.to_str().unwrap(),
                copy,
            ],
        );
        // And back: convert a file into the export.
        let src = s.d.dir.path().join("src.img");
        make_image(&src, 4 << 20, &[(4096, 8192, 7), (3 << 20, 1 << 20, 9)]);
        let src = src.to_str().unwrap();
        out += &run_ok(
            "qemu-img",
            &["convert", "-n", "-f", "raw", "-O", "raw", src, &s.uri()],
        );
        out += &run_ok("qemu-img", &["compare", "-f", "raw", src, &s.uri()]);
        out += &run_ok("qemu-img", &["map", "--output=json", &s.uri()]);
        out
    });
}

/// qemu-io's lines without the timing lines.
fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut args = vec!["-f", "raw"];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(uri);
    let out = run_ok("qemu-io", &args);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    out.lines()
        .filter(|l| !l.contains(" ops; "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn qemu_io_read_write_discard_zero() {
    same_output(json!({"writable": true}), |s| {
        qemu_io(
            &s.uri(),
            &[
                "read -P 0xaa 0 64k",
                "read -P 0 64k 64k",
                "write -P 0x11 100k 12k",
                "read -P 0x11 100k 12k",
                "write -z 0 4k",
                "read -P 0 0 4k",
                "read -P 0xaa 4k 60k",
                "discard 1M 4k",
                "write -z -u 2M 64k",
                "read -P 0 2M 64k",
                "write -P 0x22 -f 3M 512",
                "read -P 0x22 3M 512",
                "flush",
                "readv -P 0x11 100k 4k 8k",
                "writev -P 0x33 200k 4k 4k",
                "read -P 0x33 200k 8k",
            ],
        )
    });
}

#[test]
fn qemu_io_many_aio_requests_in_flight() {
    same_output(json!({"writable": true}), |s| {
        let mut cmds: Vec<String> = Vec::new();
        for i in 0..64u64 {
            cmds.push(format!("aio_write -P {} {} 4k", i + 1, i * 8192));
        }
        cmds.push("aio_flush".into());
        for i in 0..64u64 {
            cmds.push(format!("aio_read -P {} {} 4k", i + 1, i * 8192));
        }
        cmds.push("aio_flush".into());
        let c: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let out = qemu_io(&s.uri(), &c);
        // Completion order may differ; compare the sorted lines.
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    });
}

#[test]
fn qemu_nbd_list() {
    same_output(
        json!({"description": "a disk", "allocation-depth": true}),
        |s| match s.tcp_port {
            Some(p) => run_ok(
                "qemu-nbd",
                &["--list", "-b", "127.0.0.1", "-p", &p.to_string()],
            ),
            None => run_ok("qemu-nbd", &["--list", "-k", s.sock.to_str().unwrap()]),
        },
    );
}

#[test]
fn nbdinfo_list_and_maps() {
    same_output(json!({"allocation-depth": true}), |s| {
        let uri = s.uri();
        let mut out = run_ok("nbdinfo", &["--list", &uri]);
        out += &run_ok("nbdinfo", &["--json", &uri]);
        out += &run_ok("nbdinfo", &["--map", &uri]);
        out += &run_ok("nbdinfo", &["--map=qemu:allocation-depth", &uri]);
        out += &run_ok("nbdinfo", &["--map", "--totals", &uri]);
        out
    });
}

#[test]
fn nbdcopy_with_four_connections() {
    for which in IMPLS {
        let s = Served::start(which, json!({"writable": true}), sparse_image);
        let dir = s.d.dir.path();
        let out = dir.join("out.img");
        run_ok(
            "nbdcopy",
            &["--connections=4", &s.uri(), out.to_str().unwrap()],
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&s.img).unwrap(),
            "{which:?}"
        );
        let src = dir.join("src.img");
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        run_ok(
            "nbdcopy",
            &["--connections=4", src.to_str().unwrap(), &s.uri()],
        );
        assert_eq!(std::fs::read(&s.img).unwrap(), data, "{which:?}");
    }
}

#[test]
fn eight_clients_write_disjoint_regions() {
    for which in IMPLS {
        let s = Served::start(json_which(which), json!({"writable": true}), |p| {
            make_image(p, 8 << 20, &[])
        });
        let uri = s.uri();
        let handles: Vec<_> = (0..8u64)
            .map(|i| {
                let uri = uri.clone();
                std::thread::spawn(move || {
                    let mut cmds = Vec::new();
                    for j in 0..16u64 {
                        cmds.push(format!(
                            "aio_write -P {} {} 64k",
                            i * 16 + j + 1,
                            (i << 20) + j * 65536
                        ));
                    }
                    cmds.push("aio_flush".into());
                    let c: Vec<&str> = cmds.iter().map(String::as_str).collect();
                    qemu_io(&uri, &c)
                })
            })
            .collect();
        for h in handles {
            h.join().expect("writer");
        }
        let mut reads = Vec::new();
        for i in 0..8u64 {
            for j in 0..16u64 {
                reads.push(format!(
                    "read -P {} {} 64k",
                    i * 16 + j + 1,
                    (i << 20) + j * 65536
                ));
            }
        }
        let c: Vec<&str> = reads.iter().map(String::as_str).collect();
        qemu_io(&uri, &c);
    }
}

fn json_which(w: Impl) -> Impl {
    w
}
