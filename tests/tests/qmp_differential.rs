//! Differential QMP test: the same raw lines are sent to qemu-storage-daemon
//! 10.0.2 and to qsd, and every reply must be byte-identical (after masking
//! the package string and event timestamps).
//!
//! Each scenario runs on a fresh connection of a long-lived daemon (state
//! such as chardevs and objects carries over from scenario to scenario, in
//! the same order for both daemons). After each line a sentinel command is
//! sent; everything before its reply belongs to that line. A line that
//! leaves the JSON parser inside an unfinished value swallows the sentinel:
//! both daemons must then behave the same until the read times out.

use std::time::Duration;

use qsd_blackbox_tests::{normalize, Daemon, Impl, Qmp};

struct Scenario {
    name: &'static str,
    negotiate: bool,
    lines: &'static [&'static str],
}

const fn s(name: &'static str, lines: &'static [&'static str]) -> Scenario {
    Scenario {
        name,
        negotiate: true,
        lines,
    }
}

const fn raw(name: &'static str, lines: &'static [&'static str]) -> Scenario {
    Scenario {
        name,
        negotiate: false,
        lines,
    }
}

const SCENARIOS: &[Scenario] = &[
    // Capabilities negotiation.
    raw(
        "command before negotiation",
        &[
            r#"{"execute":"query-version"}"#,
            r#"{"execute":"nope","id":1}"#,
        ],
    ),
    raw(
        "negotiation with bad capability",
        &[r#"{"execute":"qmp_capabilities","arguments":{"enable":["nope"]}}"#],
    ),
    raw(
        "negotiation with wrong type",
        &[r#"{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"#],
    ),
    raw(
        "negotiation with extra member",
        &[r#"{"execute":"qmp_capabilities","arguments":{"x":1}}"#],
    ),
    raw(
        "negotiation with id",
        &[
            r#"{"execute":"qmp_capabilities","id":{"a":[1,2]}}"#,
            r#"{"execute":"qmp_capabilities"}"#,
        ],
    ),
    raw(
        "oob negotiated",
        &[
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
            r#"{"exec-oob":"query-version","id":5}"#,
            r#"{"exec-oob":"nonexist","id":6}"#,
            r#"{"exec-oob":"qmp_capabilities"}"#,
            r#"{"exec-oob":7}"#,
            r#"{"execute":"query-version","exec-oob":"query-version"}"#,
        ],
    ),
    // Ids of every JSON type are echoed.
    s(
        "ids",
        &[
            r#"{"execute":"query-version","id":1}"#,
            r#"{"execute":"query-version","id":-5}"#,
            r#"{"execute":"query-version","id":1.5}"#,
            r#"{"execute":"query-version","id":"text"}"#,
            r#"{"execute":"query-version","id":true}"#,
            r#"{"execute":"query-version","id":null}"#,
            r#"{"execute":"query-version","id":[1,"a",{},[]]}"#,
            r#"{"execute":"query-version","id":{"x":{"y":[false]}}}"#,
            r#"{"execute":"query-version","id":18446744073709551615}"#,
            r#"{"execute":"query-version","id":"caf\u00e9 \ud83d\ude00 \t\n"}"#,
            r#"{"execute":"nope","id":{"b":2,"a":1}}"#,
        ],
    ),
    // Malformed JSON and values that are not objects.
    s("unbalanced", &["}", "]", r#"{"execute":"query-version"}}"#]),
    s("bad keywords", &["abc", "nul", "tru", "[truex]"]),
    s(
        "bad syntax",
        &[
            r#"{"a" 1}"#,
            "{1:2}",
            r#"{"a":1,}"#,
            "[1,]",
            "[,1]",
            r#"{"a":}"#,
            "@",
        ],
    ),
    s(
        "bad strings",
        &[r#""\x""#, r#""\u12G4""#, r#""\ud800""#, "'single quoted'"],
    ),
    s(
        "not objects",
        &["[]", "1", r#""str""#, "null", "true", "[1, {}]"],
    ),
    s(
        "several values on a line",
        &[
            "1 2 3",
            r#"{"execute":"query-version"} {"execute":"query-version","id":2}"#,
        ],
    ),
    s(
        "single-quoted request",
        &["{'execute':'query-version','id':'q'}"],
    ),
    s("unfinished object", &[r#"{"execute":"query-version""#]),
    // Request members.
    s(
        "request members",
        &[
            "{}",
            r#"{"exec":1}"#,
            r#"{"execute":1}"#,
            r#"{"execute":"nope"}"#,
            r#"{"execute":"query-version","arguments":[]}"#,
            r#"{"execute":"query-version","arguments":null}"#,
            r#"{"execute":"query-version","extra":1,"another":2}"#,
            r#"{"exec-oob":"query-version"}"#,
            r#"{"execute":"x","exec-oob":"y","id":3}"#,
            r#"{"id":4}"#,
            r#"{"execute":"qmp_capabilities"}"#,
        ],
    ),
    // Argument checking: wrong and nested member types, unknown, missing
    // and extra members.
    s(
        "arguments",
        &[
            r#"{"execute":"query-version","arguments":{"x":1,"y":2}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":{"driver":"file","filename":1}}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":{"driver":"file","filename":"a","aio":"nope"}}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":{"driver":"file"}}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":{"driver":"file","filename":"a","zz":1}}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":1}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"x","file":{"driver":"qcow2","file":[]}}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":"nope"}}"#,
            r#"{"execute":"blockdev-add","arguments":{"driver":7}}"#,
            r#"{"execute":"blockdev-add","arguments":{}}"#,
            r#"{"execute":"blockdev-reopen","arguments":{"options":[{"driver":"file","filename":"a","aio-max-batch":"x"}]}}"#,
            r#"{"execute":"blockdev-reopen","arguments":{"options":[{"driver":"file","filename":"a","cache":{"direct":1}}]}}"#,
            r#"{"execute":"blockdev-reopen","arguments":{"options":1}}"#,
            r#"{"execute":"blockdev-reopen","arguments":{"options":[1]}}"#,
            r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"a","port":"1","to":70000}}}}"#,
            r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"a","port":"1","to":1.5}}}}"#,
            r#"{"execute":"nbd-server-start","arguments":{"addr":{"type":"nope"}}}"#,
            r#"{"execute":"block-job-set-speed","arguments":{"device":"a","speed":1.5}}"#,
            r#"{"execute":"block-job-set-speed","arguments":{"device":"a","speed":9223372036854775808}}"#,
            r#"{"execute":"block-job-set-speed","arguments":{"device":null,"speed":1}}"#,
            r#"{"execute":"query-blockstats","arguments":{"query-nodes":"x"}}"#,
            r#"{"execute":"x-blockdev-set-iothread","arguments":{"node-name":"a","iothread":1}}"#,
            r#"{"execute":"object-add","arguments":{"qom-type":"secret_keyring","id":"k","serial":3000000000}}"#,
            r#"{"execute":"object-add","arguments":{"id":"x"}}"#,
            r#"{"execute":"blockdev-create","arguments":{"job-id":"j","options":{"driver":"file","filename":"x","size":1.5}}}"#,
            r#"{"execute":"blockdev-create","arguments":{"job-id":"j","options":{"filename":"a","zzz":1,"aaa":2,"driver":"file","size":5}}}"#,
            r#"{"execute":"blockdev-create","arguments":{"options":{}}}"#,
            r#"{"execute":"transaction","arguments":{"actions":[{"type":"nope"}]}}"#,
            r#"{"execute":"transaction","arguments":{"actions":[{"type":"abort","data":{"x":1}}]}}"#,
        ],
    ),
    // Chardevs.
    s(
        "chardevs",
        &[
            r#"{"execute":"query-chardev-backends"}"#,
            r#"{"execute":"chardev-add","arguments":{"id":"rb0","backend":{"type":"ringbuf","data":{"size":1024}}}}"#,
            r#"{"execute":"chardev-add","arguments":{"id":"rb0","backend":{"type":"null","data":{}}}}"#,
            r#"{"execute":"chardev-add","arguments":{"id":"rb1","backend":{"type":"ringbuf","data":{"size":1000}}}}"#,
            r#"{"execute":"chardev-add","arguments":{"id":"n0","backend":{"type":"null","data":{}}}}"#,
            r#"{"execute":"ringbuf-write","arguments":{"device":"rb0","data":"hello \u00e9"}}"#,
            r#"{"execute":"ringbuf-read","arguments":{"device":"rb0","size":4}}"#,
            r#"{"execute":"ringbuf-read","arguments":{"device":"rb0","size":100,"format":"base64"}}"#,
            r#"{"execute":"ringbuf-write","arguments":{"device":"rb0","data":"aGVsbG8=","format":"base64"}}"#,
            r#"{"execute":"ringbuf-read","arguments":{"device":"rb0","size":100}}"#,
            r#"{"execute":"ringbuf-read","arguments":{"device":"n0","size":1}}"#,
            r#"{"execute":"ringbuf-read","arguments":{"device":"nope","size":1}}"#,
            r#"{"execute":"query-chardev"}"#,
            r#"{"execute":"chardev-remove","arguments":{"id":"n0"}}"#,
            r#"{"execute":"chardev-remove","arguments":{"id":"n0"}}"#,
            r#"{"execute":"chardev-remove","arguments":{"id":"qmp0"}}"#,
        ],
    ),
    // QOM objects.
    s(
        "objects",
        &[
            r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io0","poll-max-ns":1000}}"#,
            r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"io0"}}"#,
            r#"{"execute":"object-add","arguments":{"qom-type":"iothread","id":"bad id"}}"#,
            r#"{"execute":"qom-list","arguments":{"path":"/objects"}}"#,
            r#"{"execute":"qom-get","arguments":{"path":"/objects/io0","property":"poll-max-ns"}}"#,
            r#"{"execute":"qom-set","arguments":{"path":"/objects/io0","property":"poll-max-ns","value":5}}"#,
            r#"{"execute":"qom-get","arguments":{"path":"/objects/io0","property":"poll-max-ns"}}"#,
            r#"{"execute":"qom-get","arguments":{"path":"/objects/io0","property":"nope"}}"#,
            r#"{"execute":"qom-get","arguments":{"path":"/nope","property":"x"}}"#,
            r#"{"execute":"object-add","arguments":{"qom-type":"secret","id":"sec0","data":"letmein"}}"#,
            r#"{"execute":"qom-get","arguments":{"path":"/objects/sec0","property":"loaded"}}"#,
            r#"{"execute":"qom-list-types","arguments":{"implements":"secret_common"}}"#,
            r#"{"execute":"qom-list-properties","arguments":{"typename":"iothread"}}"#,
            r#"{"execute":"object-del","arguments":{"id":"io0"}}"#,
            r#"{"execute":"object-del","arguments":{"id":"io0"}}"#,
            r#"{"execute":"object-del","arguments":{"id":"sec0"}}"#,
        ],
    ),
];

const SENTINEL: &str = r#"{"execute":"query-version","id":"sentinel"}"#;

/// Sends `line` then the sentinel; returns the replies to `line`.
fn exchange(q: &mut Qmp, line: &str) -> String {
    q.send_raw(format!("{line}\n{SENTINEL}\n").as_bytes());
    // If the sentinel was swallowed by an unfinished value, what arrived
    // until the timeout is the transcript.
    let (out, _) = q.drain_until(r#""id": "sentinel""#, Duration::from_millis(1500));
    // Drop the sentinel's own reply line.
    match out.rfind("{\"return\"") {
        Some(i) if out[i..].contains(r#""id": "sentinel""#) => out[..i].to_string(),
        _ => out,
    }
}

fn transcript(which: Impl) -> Vec<(String, Vec<String>)> {
    let d = Daemon::start(which);
    let mut all = Vec::new();
    for sc in SCENARIOS {
        let mut q = d.connect();
        q.read_line();
        if sc.negotiate {
            q.send_line(r#"{"execute":"qmp_capabilities"}"#);
            q.read_line();
        }
        let replies = sc
            .lines
            .iter()
            .map(|l| normalize(&exchange(&mut q, l)))
            .collect();
        all.push((sc.name.to_string(), replies));
    }
    all
}

#[test]
fn replies_are_byte_identical_to_qsd() {
    let n: usize = SCENARIOS.iter().map(|s| s.lines.len()).sum();
    assert!(
        n >= 60,
        "the differential test should send at least 60 lines, has {n}"
    );
    let theirs = transcript(Impl::Qsd);
    let ours = transcript(Impl::Ours);
    let mut diffs = Vec::new();
    for ((name, t), (_, o)) in theirs.iter().zip(&ours) {
        let sc = SCENARIOS.iter().find(|s| s.name == name).unwrap();
        for ((line, t), o) in sc.lines.iter().zip(t).zip(o) {
            if t != o {
                diffs.push(format!("[{name}] {line}\n   qsd: {t:?}\n  ours: {o:?}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {n} lines differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
