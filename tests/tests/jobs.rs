//! Jobs and `blockdev-create` (driver `file`), differential against
//! qemu-storage-daemon 10.0.2: the same QMP lines go to both daemons and the
//! transcripts (replies and JOB_STATUS_CHANGE events, in order, timestamps
//! masked) must be byte-identical; the files both create must match.
//!
//! Image paths are relative: each daemon runs in its own directory, so the
//! texts are the same.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};

/// One line to send, and optionally text whose arrival ends the step (an
/// event that comes after the reply).
struct Step {
    line: String,
    until: Option<String>,
}

fn step(line: impl Into<String>) -> Step {
    Step {
        line: line.into(),
        until: None,
    }
}

/// A step that also waits for job `id` to reach `status`.
fn step_until(line: impl Into<String>, id: &str, status: &str) -> Step {
    Step {
        line: line.into(),
        until: Some(format!(r#""status": "{status}", "id": "{id}""#)),
    }
}

fn create(id: &str, options: &str) -> String {
    format!(
        r#"{{"execute":"blockdev-create","arguments":{{"job-id":"{id}","options":{options}}}}}"#
    )
}

fn file_opts(filename: &str, size: u64, extra: &str) -> String {
    format!(r#"{{"driver":"file","filename":"{filename}","size":{size}{extra}}}"#)
}

/// A `blockdev-create` of a file that waits until the job concluded.
fn create_file(id: &str, filename: &str, size: u64, extra: &str) -> Step {
    step_until(
        create(id, &file_opts(filename, size, extra)),
        id,
        "concluded",
    )
}

fn verb(cmd: &str, member: &str, id: &str) -> Step {
    step(format!(
        r#"{{"execute":"{cmd}","arguments":{{"{member}":"{id}"}}}}"#
    ))
}

fn query_jobs() -> Step {
    step(r#"{"execute":"query-jobs"}"#)
}

/// A step that sends nothing and waits for job `id` to reach `status`.
fn wait_for(id: &str, status: &str) -> Step {
    step_until("", id, status)
}

/// Sends a step (unless its line is empty); returns the normalized lines it
/// produced.
fn run_step(q: &mut Qmp, s: &Step) -> Vec<String> {
    let mut replied = s.line.is_empty();
    if !replied {
        q.send_line(&s.line);
    }
    let mut out = Vec::new();
    let mut reached = s.until.is_none();
    while !(replied && reached) {
        let l = q.read_line();
        if !l.contains(r#""event": "#) {
            assert!(!replied, "two replies to {}: {out:?} {l}", s.line);
            replied = true;
        }
        if let Some(u) = &s.until {
            reached |= l.contains(u.as_str());
        }
        out.push(normalize(&l));
    }
    out
}

/// Runs `steps` on both daemons, asserting identical transcripts step by
/// step. Returns the daemons (QSD, ours) for further checks.
fn differential(steps: &[Step]) -> (Daemon, Daemon) {
    differential_in(steps, |_| {})
}

/// [`differential`], with `setup` run on each daemon's directory first.
fn differential_in(steps: &[Step], setup: impl Fn(&Path)) -> (Daemon, Daemon) {
    let (t, o, _) = differential_transcript(steps, setup);
    (t, o)
}

/// [`differential_in`], also returning the (common) transcript, one entry
/// per step.
fn differential_transcript(
    steps: &[Step],
    setup: impl Fn(&Path),
) -> (Daemon, Daemon, Vec<Vec<String>>) {
    let theirs = Daemon::start(Impl::Qsd);
    let ours = Daemon::start(Impl::Ours);
    setup(theirs.dir.path());
    setup(ours.dir.path());
    let mut qt = theirs.qmp();
    let mut qo = ours.qmp();
    let mut transcript = Vec::new();
    for s in steps {
        let t = run_step(&mut qt, s);
        let o = run_step(&mut qo, s);
        assert_eq!(o, t, "transcripts differ after {}", s.line);
        transcript.push(o);
    }
    (theirs, ours, transcript)
}

/// Size, allocated blocks, mode and content of `name` in each daemon's
/// directory must be the same.
fn same_file(theirs: &Daemon, ours: &Daemon, name: &str) {
    let t = theirs.dir.path().join(name);
    let o = ours.dir.path().join(name);
    let (mt, mo) = (t.metadata().unwrap(), o.metadata().unwrap());
    assert_eq!(mo.len(), mt.len(), "{name}: size");
    assert_eq!(mo.blocks(), mt.blocks(), "{name}: allocated blocks");
    assert_eq!(mo.mode(), mt.mode(), "{name}: mode");
    if mt.len() <= 1 << 20 {
        assert_eq!(
            std::fs::read(&o).unwrap(),
            std::fs::read(&t).unwrap(),
            "{name}: content"
        );
    }
}

#[test]
fn create_success_query_and_dismiss() {
    let (t, o) = differential(&[
        create_file("j1", "a.img", 1 << 20, ""),
        query_jobs(),
        verb("job-dismiss", "id", "j1"),
        query_jobs(),
        verb("job-dismiss", "id", "j1"),
    ]);
    same_file(&t, &o, "a.img");
    // Sparse: only the first block is written.
    let m = o.dir.path().join("a.img").metadata().unwrap();
    assert!(m.blocks() * 512 < 1 << 20, "a.img should be sparse");
}

#[test]
fn preallocation_modes_and_sizes() {
    let (t, o) = differential_in(
        &[
            create_file("off", "off.img", 1_000_000, ""),
            create_file("small", "small.img", 100, ""),
            create_file("zero", "zero.img", 0, ""),
            create_file(
                "falloc",
                "falloc.img",
                1_000_000,
                r#","preallocation":"falloc""#,
            ),
            create_file(
                "falloc-small",
                "falloc-small.img",
                100,
                r#","preallocation":"falloc""#,
            ),
            create_file("full", "full.img", 1_000_000, r#","preallocation":"full""#),
            create_file(
                "off-explicit",
                "off2.img",
                4096,
                r#","preallocation":"off""#,
            ),
            create_file("nocow", "nocow.img", 65536, r#","nocow":true"#),
            create_file("hint", "hint.img", 65536, r#","extent-size-hint":0"#),
            create_file(
                "hint2",
                "hint2.img",
                65536,
                r#","extent-size-hint":4294967295"#,
            ),
            create_file("exist", "exist.img", 8192, ""),
            query_jobs(),
        ],
        |dir| {
            let p = dir.join("exist.img");
            std::fs::write(&p, vec![0xaau8; 100_000]).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        },
    );
    for f in [
        "off.img",
        "small.img",
        "zero.img",
        "falloc.img",
        "falloc-small.img",
        "full.img",
        "off2.img",
        "nocow.img",
        "hint.img",
        "hint2.img",
        "exist.img",
    ] {
        same_file(&t, &o, f);
    }
    let full = o.dir.path().join("full.img").metadata().unwrap();
    assert!(full.blocks() * 512 >= 1_000_000, "full.img is preallocated");
    let exist = o.dir.path().join("exist.img").metadata().unwrap();
    assert_eq!(
        exist.mode() & 0o777,
        0o600,
        "an existing file keeps its mode"
    );
}

#[test]
fn failing_creates() {
    let (t, o) = differential(&[
        create_file("missing", "/nonexistent-qsd-test-dir/x.img", 0, ""),
        create_file("dir", ".", 0, ""),
        create_file("empty", "", 0, ""),
        create_file("meta", "meta.img", 4096, r#","preallocation":"metadata""#),
        create_file("hint", "hint.img", 0, r#","extent-size-hint":4294967296"#),
        create_file("fdset", "/dev/fdset/x", 0, ""),
        create_file("fdset1", "/dev/fdset/1", 0, ""),
        create_file("huge", "huge.img", 1 << 63, ""),
        create_file(
            "huge-falloc",
            "huge2.img",
            1 << 63,
            r#","preallocation":"falloc""#,
        ),
        create_file(
            "huge-full",
            "huge3.img",
            1 << 63,
            r#","preallocation":"full""#,
        ),
        create_file("too-big", "big.img", 1 << 62, ""),
        create_file("devnull", "/dev/null", 4096, ""),
        query_jobs(),
        verb("job-dismiss", "id", "meta"),
        verb("job-dismiss", "id", "missing"),
        query_jobs(),
    ]);
    // The file is created before a failure after the open.
    same_file(&t, &o, "meta.img");
    same_file(&t, &o, "huge.img");
    assert!(!o.dir.path().join("hint.img").exists());
}

#[test]
fn verbs_on_concluded_and_unknown_jobs() {
    let mut steps = vec![create_file("j1", "a.img", 0, "")];
    for v in ["pause", "resume", "cancel", "complete", "finalize"] {
        steps.push(verb(&format!("job-{v}"), "id", "j1"));
        steps.push(verb(&format!("job-{v}"), "id", "nope"));
    }
    // A create job is no block job.
    for v in ["pause", "resume", "cancel", "complete"] {
        steps.push(verb(&format!("block-job-{v}"), "device", "j1"));
    }
    for v in ["finalize", "dismiss"] {
        steps.push(verb(&format!("block-job-{v}"), "id", "j1"));
    }
    steps.push(step(
        r#"{"execute":"block-job-set-speed","arguments":{"device":"j1","speed":1}}"#,
    ));
    steps.push(step(
        r#"{"execute":"block-job-change","arguments":{"id":"j1","type":"mirror","copy-mode":"background"}}"#,
    ));
    steps.push(step(
        r#"{"execute":"block-job-cancel","arguments":{"device":"j1","force":true}}"#,
    ));
    steps.push(verb("job-dismiss", "id", "nope"));
    steps.push(verb("job-dismiss", "id", "j1"));
    for v in [
        "pause", "resume", "cancel", "complete", "finalize", "dismiss",
    ] {
        steps.push(verb(&format!("job-{v}"), "id", "j1"));
    }
    steps.push(query_jobs());
    differential(&steps);
}

#[test]
fn job_ids_and_drivers() {
    let ok = file_opts("x.img", 0, "");
    let mut steps = vec![create_file("a-._Z9", "x.img", 0, "")];
    for id in ["a-._Z9", "1x", "", "a b", "é", "-a", "a@b"] {
        steps.push(step(create(id, &ok)));
    }
    // Drivers that qemu-storage-daemon lacks, or that cannot create.
    for d in [
        "raw",
        "nbd",
        "null-co",
        "throttle",
        "vvfat",
        "host_device",
        "iscsi",
        "http",
        "blkreplay",
        "io_uring",
    ] {
        steps.push(step(create("1x", &format!(r#"{{"driver":"{d}"}}"#))));
    }
    steps.push(step(create(
        "j",
        r#"{"driver":"rbd","location":{"pool":"p","image":"i"},"size":0}"#,
    )));
    // Argument errors come first.
    steps.push(step(create("j", r#"{"driver":"file","filename":"x"}"#)));
    steps.push(step(create("j", r#"{"driver":"file","size":1}"#)));
    steps.push(step(create(
        "j",
        r#"{"driver":"file","filename":"x","size":1,"preallocation":"bad"}"#,
    )));
    // -1 is taken as 2^64 - 1 (and fails after the reply).
    steps.push(step_until(
        create("j", r#"{"driver":"file","filename":"x","size":-1}"#),
        "j",
        "concluded",
    ));
    steps.push(step(
        r#"{"execute":"blockdev-create","arguments":{"options":{"driver":"raw"}}}"#,
    ));
    steps.push(query_jobs());
    differential(&steps);
}

#[test]
fn query_jobs_lists_newest_first() {
    differential(&[
        create_file("first", "1.img", 0, ""),
        create_file("second", "/nonexistent-qsd-test-dir/2.img", 0, ""),
        create_file("third", "3.img", 512, ""),
        query_jobs(),
        verb("job-dismiss", "id", "second"),
        query_jobs(),
        create_file("second", "2.img", 0, ""),
        query_jobs(),
    ]);
}

#[test]
fn quit_dismisses_concluded_jobs() {
    differential(&[
        create_file("a", "a.img", 0, ""),
        create_file("b", "b.img", 0, ""),
        step(r#"{"execute":"quit"}"#),
    ]);
}

/// Takes a shared OFD lock on `byte` of `path`, as another QEMU user of the
/// image would; the lock lasts as long as the returned file.
fn hold_lock(path: &Path, byte: i64) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    // SAFETY: test code; a zeroed flock is valid and the descriptor is open.
    unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = byte;
        fl.l_len = 1;
        assert_eq!(libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl), 0);
    }
    f
}

#[test]
fn image_locks_of_other_users() {
    let t = Daemon::start(Impl::Qsd);
    let o = Daemon::start(Impl::Ours);
    let mut held = Vec::new();
    for d in [&t, &o] {
        let dir = d.dir.path();
        // Someone refuses to share "write", uses "resize", refuses "resize".
        held.push(hold_lock(&dir.join("w.img"), 201));
        held.push(hold_lock(&dir.join("r.img"), 103));
        held.push(hold_lock(&dir.join("s.img"), 203));
        // Someone only reads: no conflict.
        held.push(hold_lock(&dir.join("ok.img"), 100));
    }
    let steps = [
        create_file("w", "w.img", 4096, ""),
        create_file("r", "r.img", 4096, ""),
        create_file("s", "s.img", 4096, ""),
        create_file("ok", "ok.img", 4096, ""),
        query_jobs(),
    ];
    let mut qt = t.qmp();
    let mut qo = o.qmp();
    for s in &steps {
        assert_eq!(
            run_step(&mut qo, s),
            run_step(&mut qt, s),
            "after {}",
            s.line
        );
    }
    drop(held);
}

#[test]
fn cancel_and_pause_while_creating() {
    // A large fully preallocated file keeps the job busy for a while (far
    // longer than the verbs take) on both daemons; verbs sent meanwhile
    // must be answered alike. The job ends as cancelled.
    let size = 1u64 << 29;
    let (_, _, transcript) = differential_transcript(
        &[
            step(create(
                "big",
                &file_opts("big.img", size, r#","preallocation":"full""#),
            )),
            verb("job-pause", "id", "big"),
            verb("job-pause", "id", "big"),
            verb("job-cancel", "id", "big"),
            verb("job-resume", "id", "big"),
            verb("job-dismiss", "id", "big"),
            wait_for("big", "concluded"),
            query_jobs(),
            verb("job-dismiss", "id", "big"),
        ],
        |_| {},
    );
    // The verbs really met a running job.
    assert!(
        transcript[5][0].contains("in state 'running' cannot accept command verb 'dismiss'"),
        "the job ended too early: {:?}",
        transcript[5]
    );
}
