//! The Python `qemu.qmp` library (what many clients use) works with our
//! daemon: connection, negotiation, commands, errors and events. The same
//! script passes against qemu-storage-daemon, which keeps it honest.

use std::process::Command;

use qsd_blackbox_tests::{root, Impl};

fn run_client(which: Impl) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/python/qemu_qmp_client.py"))
        .arg(which.program())
        .arg(dir.path())
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "qemu.qmp client failed against {which:?} (is the qemu.qmp package installed? .ci/run installs it)\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn qemu_qmp_client_works_with_qsd_reference() {
    run_client(Impl::Qsd);
}

#[test]
fn qemu_qmp_client_works_with_ours() {
    run_client(Impl::Ours);
}
