//! The FUSE export of a growable qcow2 node, compared with
//! qemu-storage-daemon 10.0.2: `fallocate` (mode 0) past the end grows the
//! image with the new clusters allocated (QEMU's resize with
//! `preallocation=falloc`), `truncate` and growing writes leave the new
//! clusters reading as zeroes (zero flags on version 3 images). Exit
//! statuses, sizes, contents, `qemu-img check` and `qemu-img map` must be
//! the same. Host layout is not compared: QEMU's preallocation first
//! writes a new refcount table at the end of the file, so its data lands
//! a cluster later, and each preallocation splits the host runs.

mod fuse_support;

use std::process::Command;

use fuse_support::{assert_same, mask, require_fuse, sh, wait_mount, Run};
use qsd_blackbox_tests::{normalize, Daemon, Impl};

/// While exported: the requests, with the size and contents after each.
const SCRIPT: &str = r#"
sz() { stat -c "size=%s" "$M"; cmp -n "$(stat -c %s "$M")" "$M" /dev/zero && echo zeroes; }
t fallocate -l 2M "$M"
sz
t fallocate -o 2M -l 1M "$M"
sz
t fallocate -o 3M -l 64k "$M"
sz
t truncate -s 4M "$M"
sz
t fallocate -o 5M -l 192k "$M"
sz
t fallocate -o 6M -l 0 "$M"
sz
t dd if=/dev/zero of="$M" bs=64k seek=100 count=1 conv=notrunc
sz
t fallocate -o 1M -l 1M "$M"
t fallocate -n -o 0 -l 64k "$M"
sz
"#;

/// Once the export is gone: the image is consistent and mapped alike.
/// Host layout is left out: offsets, the fragmentation figure, and
/// map runs that only differ in being host-contiguous are merged.
const AFTER: &str = r#"
t qemu-img check "$DIR/a.qcow2" | grep -v '^Image end offset' | sed -e 's/, [0-9.]*% fragmented//'
qemu-img info --output=json "$DIR/a.qcow2" | python3 -c 'import json, sys
i = json.load(sys.stdin); print(i["virtual-size"], i["format-specific"]["data"]["compat"])'
qemu-img map --output=json "$DIR/a.qcow2" | python3 -c 'import json, sys
out = []
for e in json.load(sys.stdin):
    e.pop("offset", None)
    p = out[-1] if out else None
    if p and all(p[k] == e[k] for k in e if k not in ("start", "length")):
        p["length"] += e["length"]
    else:
        out.append(e)
for e in out: print(json.dumps(e))'
t qemu-img compare -f qcow2 "$DIR/a.qcow2" "$DIR/zero.raw"
"#;

fn run(which: Impl, compat: &str) -> String {
    let run = Run {
        d: Daemon::start(which),
    };
    let dir = run.dir().to_path_buf();
    let img = dir.join("a.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-o"])
        .arg(format!("compat={compat}"))
        .arg(&img)
        .arg("1M")
        .status()
        .expect("qemu-img must be installed");
    assert!(st.success(), "qemu-img create failed");
    std::fs::write(dir.join("mnt"), b"").expect("mnt");
    let mut q = run.d.qmp();
    let mut out = String::new();
    for l in [
        format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","node-name":"f","filename":"{}"}}}}"#,
            img.display()
        ),
        r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"q","file":"f"}}"#
            .to_string(),
        format!(
            r#"{{"execute":"block-export-add","arguments":{{"type":"fuse","id":"e","node-name":"q","mountpoint":"{}","writable":true,"growable":true}}}}"#,
            dir.join("mnt").display()
        ),
    ] {
        out.push_str(&normalize(&q.cmd(&l).to_string()));
        out.push('\n');
    }
    let m = dir.join("mnt");
    wait_mount(&m, true);
    out.push_str(&sh(&dir, &dir, SCRIPT));
    let size = std::fs::metadata(&m).expect("stat mnt").len();
    out.push_str(&normalize(
        &q.cmd(r#"{"execute":"block-export-del","arguments":{"id":"e"}}"#)
            .to_string(),
    ));
    out.push('\n');
    wait_mount(&m, false);
    out.push_str(&normalize(
        &q.cmd(r#"{"execute":"blockdev-del","arguments":{"node-name":"q"}}"#)
            .to_string(),
    ));
    out.push('\n');
    std::fs::File::create(dir.join("zero.raw"))
        .and_then(|f| f.set_len(size))
        .expect("zero.raw");
    out.push_str(&sh(&dir, &dir, AFTER));
    mask(&out, &dir, &dir)
}

fn differential(name: &str, compat: &str) {
    require_fuse();
    let theirs = run(Impl::Qsd, compat);
    let ours = run(Impl::Ours, compat);
    assert!(
        theirs.contains("No errors were found on the image."),
        "{name}: qemu-storage-daemon's image is not clean:\n{theirs}"
    );
    assert_same(name, &theirs, &ours);
}

#[test]
fn fallocate_past_the_end_of_a_qcow2_export() {
    differential("fuse_qcow2_v3", "1.1");
}

#[test]
fn fallocate_past_the_end_of_a_qcow2_v2_export() {
    differential("fuse_qcow2_v2", "0.10");
}
