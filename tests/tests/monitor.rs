//! Several monitors at once, pretty output, and events delivered to every
//! negotiated monitor: byte-identical to qemu-storage-daemon (timestamps
//! and package string masked).

use std::time::Duration;

use qsd_blackbox_tests::{normalize, wait_for_path, Daemon, Impl, Qmp};

/// Runs a job on monitor A while B (pretty, TCP or UNIX) listens; returns
/// what each monitor received.
fn scenario(which: Impl) -> (String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let b_path = scratch.path().join("b.sock");
    let chardev_b = format!("socket,id=b,path={},server=on,wait=off", b_path.display());
    let d = Daemon::start_with(
        which,
        false,
        &["--chardev", &chardev_b, "--monitor", "chardev=b,pretty=on"],
    );
    wait_for_path(&b_path);
    let mut a = d.qmp();
    let mut b = Qmp::connect(&b_path);
    let mut b_out = b.read_line();
    b.send_line(r#"{"execute":"qmp_capabilities","id":"b"}"#);
    b_out.push_str(&b.drain_until(r#""id": "b""#, Duration::from_secs(5)).0);
    let img = d.dir.path().join("img");
    let mut a_out = String::new();
    a.send_line(&format!(
        r#"{{"execute":"blockdev-create","arguments":{{"job-id":"j","options":{{"driver":"file","filename":"{}","size":65536}}}},"id":1}}"#,
        img.display()
    ));
    a_out.push_str(
        &a.drain_until(r#""status": "concluded""#, Duration::from_secs(10))
            .0,
    );
    a.send_line(r#"{"execute":"query-jobs","id":2}"#);
    a_out.push_str(&a.drain_until(r#""id": 2"#, Duration::from_secs(5)).0);
    a.send_line(r#"{"execute":"job-dismiss","arguments":{"id":"j"},"id":3}"#);
    a_out.push_str(&a.drain_until(r#""id": 3"#, Duration::from_secs(5)).0);
    // B saw the same events, pretty-printed; then a pretty reply.
    b.send_line(r#"{"execute":"query-version","id":"v"}"#);
    b_out.push_str(&b.drain_until(r#""id": "v""#, Duration::from_secs(5)).0);
    let dir = d.dir.path().display().to_string();
    (
        normalize(&a_out).replace(&dir, "DIR"),
        normalize(&b_out).replace(&dir, "DIR"),
    )
}

#[test]
fn events_reach_every_monitor_and_pretty_output_matches() {
    let theirs = scenario(Impl::Qsd);
    let ours = scenario(Impl::Ours);
    assert_eq!(ours.0, theirs.0, "monitor A differs");
    assert_eq!(ours.1, theirs.1, "pretty monitor B differs");
    assert_eq!(
        theirs.1.matches("JOB_STATUS_CHANGE").count(),
        6,
        "B got every event"
    );
}
