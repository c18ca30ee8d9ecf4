//! Differential test of `qapi::json` against the real qemu-storage-daemon.
//!
//! Every case is sent as raw bytes to a QSD 10.0.2 QMP monitor; the same
//! bytes go through our `JsonStreamParser`, a model of QMP's request
//! checks, and our `to_json`, and the replies must match byte for byte.
//! Commands are `query-version` with a random `id`, which QSD echoes with
//! its own writer, so both parsing and writing are compared.
//!
//! qemu-storage-daemon must be installed (Debian: package `qemu-utils`,
//! version 10.0.2); without it these tests FAIL.  Set `QSD_BIN` to use
//! another binary and `JSON_DIFF_SEED` to change the random cases.  The
//! 64 MiB token-size cases are `#[ignore]`d because QSD reads its monitor
//! socket one byte per system call (about ten minutes); run them with
//! `cargo test -p qapi --test json_differential -- --ignored`.

#[path = "json_common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Rng;
use qapi::json::{from_str, qdict_order, to_json, JsonError, JsonStreamParser};
use serde_json::{json, Map, Value};

fn qsd_bin() -> String {
    std::env::var("QSD_BIN").unwrap_or_else(|_| "qemu-storage-daemon".into())
}

fn seed() -> u64 {
    std::env::var("JSON_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001)
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// A running QSD with a negotiated QMP connection.
struct Qsd {
    child: Child,
    dir: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    pretty: bool,
}

impl Qsd {
    fn start(pretty: bool) -> Qsd {
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("qapi-json-diff-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sock = dir.join("qmp.sock");
        let chardev = format!("socket,id=m,path={},server=on,wait=off", sock.display());
        let monitor = if pretty {
            "chardev=m,pretty=on"
        } else {
            "chardev=m"
        };
        let child = Command::new(qsd_bin())
            .args(["--chardev", &chardev, "--monitor", monitor])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the JSON differential test needs \
                     qemu-storage-daemon 10.0.2 (Debian package qemu-utils)",
                    qsd_bin()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("QSD socket never appeared: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut qsd = Qsd {
            child,
            dir,
            writer: stream,
            reader,
            pretty,
        };
        qsd.read_reply(); // greeting
        qsd.send(b"{\"execute\": \"qmp_capabilities\"}\n");
        let r = qsd.read_reply();
        assert!(r.starts_with(b"{"), "negotiation failed: {}", show(&r));
        qsd
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to QSD");
    }

    /// One reply, including its line ending(s).
    fn read_reply(&mut self) -> Vec<u8> {
        let mut reply = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .unwrap_or_else(|e| panic!("reading from QSD: {e}; got so far {}", show(&reply)));
            assert!(n > 0, "QSD closed the connection");
            reply.extend_from_slice(&line);
            if !self.pretty || line == b"}\r\n" {
                return reply;
            }
        }
    }

    /// Send a command and parse the reply with our own parser.
    fn query(&mut self, command: &str) -> Value {
        self.send(command.as_bytes());
        let reply = self.read_reply();
        let mut values = JsonStreamParser::new().feed(&reply);
        match values.pop() {
            Some(Ok(v)) => v,
            other => panic!("bad reply to {command}: {other:?}"),
        }
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Printable form of some bytes, shortened to keep failure reports small.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 400;
    if bytes.len() <= MAX {
        return bytes.escape_ascii().to_string();
    }
    let tail = &bytes[bytes.len() - 100..];
    format!(
        "{}...<{} bytes>...{}",
        bytes[..MAX - 100].escape_ascii(),
        bytes.len(),
        tail.escape_ascii()
    )
}

/// What QSD knows that the model needs.
struct Model {
    version: Value,
    commands: HashSet<String>,
    pretty: bool,
}

impl Model {
    fn new(qsd: &mut Qsd) -> Model {
        // Rebuilt in QEMU's insertion order: "minor" and "micro" share a
        // hash bucket, so the printed order alone would not reproduce it.
        let printed = qsd.query("{\"execute\": \"query-version\"}\n")["return"].clone();
        let qemu = &printed["qemu"];
        let version = json!({
            "qemu": {"major": qemu["major"], "minor": qemu["minor"], "micro": qemu["micro"]},
            "package": printed["package"],
        });
        let commands = qsd.query("{\"execute\": \"query-commands\"}\n")["return"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Model {
            version,
            commands,
            pretty: qsd.pretty,
        }
    }

    fn render(&self, rsp: Value) -> Vec<u8> {
        let mut text = to_json(&rsp, self.pretty).replace('\n', "\r\n");
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// The expected reply to one parse result.
enum Expect {
    Reply(Vec<u8>),
    /// QSD's answer depends on things outside this module (the order of a
    /// GLib hash table); not compared.
    Unmodelled,
    /// A real command other than query-version: the case is not sent.
    Unsafe,
}

fn error(class: &str, desc: &str) -> Value {
    json!({"error": {"class": class, "desc": desc}})
}

fn expect(model: &Model, result: &Result<Value, JsonError>) -> Expect {
    let (mut rsp, id) = match result {
        Err(e) => (error("GenericError", &e.to_string()), None),
        Ok(Value::Object(m)) => match dispatch(model, m) {
            Ok(rsp) => (rsp, m.get("id")),
            Err(other) => return other,
        },
        Ok(_) => (
            error("GenericError", "QMP input must be a JSON object"),
            None,
        ),
    };
    if let (Some(id), Some(map)) = (id, rsp.as_object_mut()) {
        map.insert("id".into(), id.clone());
    }
    Expect::Reply(model.render(rsp))
}

/// QMP's request checks, in QEMU's member order.
fn dispatch(model: &Model, m: &Map<String, Value>) -> Result<Value, Expect> {
    let generic = |desc: String| Ok(error("GenericError", &desc));
    for key in qdict_order(m) {
        match (key, &m[key]) {
            ("execute", Value::String(_)) | ("arguments", Value::Object(_)) | ("id", _) => {}
            ("execute", _) => return generic("QMP input member 'execute' must be a string".into()),
            ("arguments", _) => {
                return generic("QMP input member 'arguments' must be an object".into())
            }
            (other, _) => return generic(format!("QMP input member '{other}' is unexpected")),
        }
    }
    let Some(Value::String(command)) = m.get("execute") else {
        return generic("QMP input lacks member 'execute'".into());
    };
    if command != "query-version" {
        if model.commands.contains(command) {
            return Err(Expect::Unsafe);
        }
        let desc = format!("The command {command} has not been found");
        return Ok(error("CommandNotFound", &desc));
    }
    match m.get("arguments").and_then(Value::as_object) {
        Some(args) if args.len() > 1 => Err(Expect::Unmodelled),
        Some(args) if args.len() == 1 => {
            let key = args.keys().next().map(String::as_str).unwrap_or("");
            generic(format!("Parameter '{key}' is unexpected"))
        }
        _ => Ok(json!({"return": model.version.clone()})),
    }
}

/// The one known deviation: QEMU echoes overflowing doubles as `inf`,
/// which `serde_json` cannot hold; we clamp them to the largest double.
fn is_infinity_deviation(want: &[u8], got: &[u8]) -> bool {
    let want = String::from_utf8_lossy(want).replace("1.7976931348623157e+308", "inf");
    want.as_bytes() == got
}

/// Short name of the kind of a reply, for the coverage summary.
fn reply_kind(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let Some((_, desc)) = text.split_once("\"desc\": \"") else {
        return "(success)".into();
    };
    let desc = desc.trim_end_matches(['}', '\r', '\n', '"', ' ']);
    if desc.ends_with(" is not a valid Unicode character") {
        return "JSON parse error, \\uXXXX is not a valid Unicode character".into();
    }
    if desc.starts_with("The command ") {
        return "The command X has not been found".into();
    }
    // Elide quoted specifics: 'x' -> 'X'.
    match (desc.find('\''), desc.rfind('\'')) {
        (Some(a), Some(b)) if a < b => format!("{}'X'{}", &desc[..a], &desc[b + 1..]),
        (Some(a), _) => format!("{}'X...", &desc[..a]),
        _ => desc.to_string(),
    }
}

#[derive(Default)]
struct Tally {
    /// How often each kind of reply was seen.
    kinds: std::collections::BTreeMap<String, usize>,
    /// Replies that differ only by the infinity deviation.
    infinities: usize,
    cases: usize,
    replies: usize,
    unmodelled: usize,
    unsafe_skipped: usize,
    failures: Vec<String>,
}

/// Send one case (split into `chunks` writes) and compare all replies.
fn run_case(qsd: &mut Qsd, model: &Model, tally: &mut Tally, case: &[u8], chunks: &[usize]) {
    let n = tally.cases + tally.unsafe_skipped;
    let marker = format!("{{\"execute\":\"query-version\",\"id\":\"end-{n}\"}}\n");
    // FF then LF always brings the parser back to its start state.
    let input = [case, b"\xFF\n", marker.as_bytes()].concat();
    let mut parser = JsonStreamParser::new();
    let mut results = Vec::new();
    let mut pieces = Vec::new();
    let mut at = 0usize;
    for &len in chunks.iter().chain(std::iter::once(&usize::MAX)) {
        let end = at.saturating_add(len).min(input.len());
        results.extend(parser.feed(&input[at..end]));
        pieces.push(&input[at..end]);
        at = end;
    }
    let expects: Vec<Expect> = results.iter().map(|r| expect(model, r)).collect();
    if expects.iter().any(|e| matches!(e, Expect::Unsafe)) {
        tally.unsafe_skipped += 1;
        return;
    }
    tally.cases += 1;
    for piece in pieces {
        qsd.send(piece);
        if chunks.len() > 1 && piece.len() > 3 {
            // Give QSD a chance to read the chunks separately.
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let end_id = format!("\"id\": \"end-{n}\"");
    let mut got = Vec::new();
    loop {
        let reply = qsd.read_reply();
        let done = reply.windows(end_id.len()).any(|w| w == end_id.as_bytes());
        got.push(reply);
        if done {
            break;
        }
    }
    let mut mismatch = got.len() != expects.len();
    for (e, g) in expects.iter().zip(&got) {
        match e {
            Expect::Reply(want) if want == g => {}
            Expect::Reply(want) if is_infinity_deviation(want, g) => tally.infinities += 1,
            Expect::Reply(_) => mismatch = true,
            _ => tally.unmodelled += 1,
        }
    }
    tally.replies += got.len();
    for g in &got {
        *tally.kinds.entry(reply_kind(g)).or_default() += 1;
    }
    if mismatch {
        let want: Vec<String> = expects
            .iter()
            .map(|e| match e {
                Expect::Reply(r) => show(r),
                _ => "<unmodelled>".into(),
            })
            .collect();
        let got: Vec<String> = got.iter().map(|g| show(g)).collect();
        tally.failures.push(format!(
            "input: {}\n  ours: {want:#?}\n  qsd:  {got:#?}",
            show(case)
        ));
    }
}

fn report(name: &str, tally: &Tally) {
    println!(
        "{name}: {} cases, {} replies identical, {} differ only by inf (known), \
         {} unmodelled, {} unsafe skipped, {} failures",
        tally.cases,
        tally.replies - tally.unmodelled - tally.infinities,
        tally.infinities,
        tally.unmodelled,
        tally.unsafe_skipped,
        tally.failures.len()
    );
    for (kind, count) in &tally.kinds {
        println!("  {count:6}  {kind}");
    }
    for f in tally.failures.iter().take(15) {
        println!("{f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{name}: {} mismatches with QSD",
        tally.failures.len()
    );
}

/// Hand-picked inputs covering each rule.
const FIXED: &[&[u8]] = &[
    b"",
    b"   \t\r\n",
    b"{\"execute\": \"query-version\", \"id\": 1}",
    b"{'execute': 'query-version', 'id': 'it\\'s \"q\"'}",
    b"{\"execute\": \"nope\"}",
    b"{\"id\": 1}",
    b"{\"execute\": 1}",
    b"{\"execute\": \"query-version\", \"arguments\": []}",
    b"{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}",
    b"{\"execute\": \"query-version\", \"exec-oob\": \"x\", \"zz\": 1, \"control\": 1}",
    b"{\"b\": 1, \"a\": 2, \"c\": 3, \"k10\": 4, \"k11\": 5}",
    b"[1, 2]",
    b"1 2 3 ",
    b"\"str\"",
    b"null true false",
    b"abc",
    b"nul1",
    b"TRUE",
    b"}",
    b"]]]",
    b"[}",
    b"{]",
    b"{\"a\": 1]",
    b"[[1 2], 3]",
    b"{\"a\" 1} {\"b\": 2}",
    b"{1: 2}",
    b"{,}",
    b"[1,]",
    b"[,1]",
    b"{\"a\":1,}",
    b"{\"a\":1,\"a\":2}",
    b"{\"a\":1,\"a\":x}",
    b"%d",
    b"[1, %x, 2]\n{}",
    b"\"abc\ndef\"",
    b"{\"a\": \"b\n\"}",
    b"\x00",
    b"\"ab\x00cd\"",
    b"\x01\x01",
    b"%\x01",
    b"%\t%",
    b"\xFF\xFE\xFD",
    b"\xC3\xA9",
    b"01",
    b"-",
    b"-a",
    b"1.",
    b"1.e5",
    b".5",
    b"+1",
    b"1e",
    b"1e+",
    b"0x10",
    b"1.5e3 -0 -0.0 1E+2 1e999 -1e999 1e-999 ",
    b"18446744073709551615 18446744073709551616 -9223372036854775809 ",
    b"\"\\u\"",
    b"\"\\u12\"",
    b"\"\\u12x4\"",
    b"\"\\uD800\"",
    b"\"\\uDC00\"",
    b"\"\\uD800\\u0041\"",
    b"\"\\uD800\\uD800\"",
    b"\"\\uD83D\\uDE00\"",
    b"\"\\uD83F\\uDFFF\"",
    b"\"\\uFFFF\" \"\\ufdd0\" \"\\u0000\"",
    b"\"\\a\" \"\\x41\" \"\\\xC3\xA9\"",
    b"\"\xC3\" \"\x80\" \"\xED\xA0\x80\" \"\xEF\xBF\xBF\" \"\xC0\x80\" \"\xC1\xBF\"",
    b"\"abc\xC3\x01",
    b"'a\\\"b\"c'",
    b"[\"a\", 'b', \"\\/\\b\\f\\n\\r\\t\\\\\"]",
    b"{\"execute\": \"query-version\", \"id\": {\"\\u0000\": 1, \"a\\u0000\": 2, \"b\": 3}}",
    b"{\"execute\": \"query-version\", \"\\u0000x\": 1}",
    b"{\"execute\": \"query-version\", \"\xC3\xA9\\u20ac\": 1}",
    b"{\"execute\": \"query-\\u0000\"}",
    b"\"\xE2\x82\x01",
    b"\"\xF8\x88\x80\x80\x80\x01",
    b"\"\xC0\x80\x01",
    b"\"\xEF\xBF\xBF\xED\xA0\x80\x01",
    b"{\"a\": 'x\xFE",
    b"[1, 2\x00, 3]",
    b"\t\t%%%\t\t1 ",
];

fn fixed_cases() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = FIXED.iter().map(|c| c.to_vec()).collect();
    // Each FIXED input also as the id of a command, where it parses.
    for c in FIXED {
        let mut cmd = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
        cmd.extend_from_slice(c);
        cmd.push(b'}');
        cases.push(cmd);
    }
    // "invalid keyword '...'" is cut after 1023 bytes.
    for len in [1005, 1006, 1100] {
        cases.push(vec![b'a'; len]);
    }
    let mut deep_objects = b"{\"a\": ".repeat(1025);
    deep_objects.extend(b"1}".repeat(1025));
    cases.push(deep_objects);
    let mut deep = vec![b'['; 1024];
    deep.extend(vec![b']'; 1024]);
    cases.push(deep);
    let mut too_deep = vec![b'['; 1025];
    too_deep.extend(vec![b']'; 1025]);
    cases.push(too_deep);
    let mut mixed = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
    mixed.extend(b"[{\"a\": ".repeat(511));
    mixed.extend(b"1}]".repeat(511));
    mixed.push(b'}');
    cases.push(mixed);
    cases
}

fn random_chunks(rng: &mut Rng, len: usize) -> Vec<usize> {
    match rng.below(4) {
        0 => vec![1; len],
        1 => (0..len / 3 + 1).map(|_| 1 + rng.below(7)).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn qmp_stream_matches_qsd() {
    let mut qsd = Qsd::start(false);
    let model = Model::new(&mut qsd);
    let mut tally = Tally::default();
    let mut rng = Rng::new(seed());
    for case in fixed_cases() {
        run_case(&mut qsd, &model, &mut tally, &case, &[]);
    }
    for round in 0..1200 {
        let mut case = match round % 6 {
            0 => common::noise(&mut rng),
            _ => common::command(&mut rng),
        };
        match round % 6 {
            1 | 2 => common::mutate(&mut rng, &mut case),
            3 => {
                let at = rng.below(case.len() + 1);
                case.truncate(at);
            }
            _ => {}
        }
        let chunks = random_chunks(&mut rng, case.len());
        run_case(&mut qsd, &model, &mut tally, &case, &chunks);
    }
    report("qmp_stream_matches_qsd", &tally);
}

#[test]
fn pretty_output_matches_qsd() {
    let mut qsd = Qsd::start(true);
    let model = Model::new(&mut qsd);
    let mut tally = Tally::default();
    let mut rng = Rng::new(seed() ^ 0xABCD);
    for case in &FIXED[..12] {
        run_case(&mut qsd, &model, &mut tally, case, &[]);
    }
    for _ in 0..150 {
        let case = common::command(&mut rng);
        run_case(&mut qsd, &model, &mut tally, &case, &[]);
    }
    report("pretty_output_matches_qsd", &tally);
}

#[test]
fn token_count_limit_matches_qsd() {
    let mut qsd = Qsd::start(false);
    let model = Model::new(&mut qsd);
    let mut tally = Tally::default();
    // 2 Mi tokens are allowed per value, one more is not.
    for k in [1_048_575usize, 1_048_576] {
        let mut case = b"[0".to_vec();
        case.extend(b",0".repeat(k - 1));
        case.push(b']');
        run_case(&mut qsd, &model, &mut tally, &case, &[]);
    }
    report("token_count_limit_matches_qsd", &tally);
}

/// Slow (about ten minutes): QSD's monitor reads its socket one byte per
/// system call, and this sends 192 MiB.  Run with `--ignored`.
#[test]
#[ignore = "sends 192 MiB to QSD, which takes about ten minutes"]
fn token_size_limit_matches_qsd() {
    let mut qsd = Qsd::start(false);
    let model = Model::new(&mut qsd);
    let mut tally = Tally::default();
    // A token of 64 MiB - 1 bytes is fine, 64 MiB is not; past 64 MiB the
    // lexer abandons the string and lexes the rest of it as new input.
    for len in [(64 << 20) - 3, (64 << 20) - 2, (64 << 20) + 1] {
        let mut case = b"\"".to_vec();
        case.extend(std::iter::repeat_n(b'a', len));
        case.extend(b"\"\n");
        run_case(&mut qsd, &model, &mut tally, &case, &[]);
    }
    report("token_size_limit_matches_qsd", &tally);
}

/// `from_str` against QSD's JSON command-line parsing (`--blockdev {...}`).
#[test]
fn from_str_matches_qsd_command_line() {
    const ARGS: &[&str] = &[
        "{}",
        "{'a': 1}",
        "{} ",
        "{\"a\":1} 2",
        "{\"a\":1",
        "{",
        "{\"a\" 1}",
        "{} }",
        "{}}",
        "{}{",
        "{} %",
        "{%} {}",
        "{\"a\":1,\"a\":2}",
        "{\"a\": tru}",
        "{\"a\": [1,]}",
        "{\"a\": \"\\uD800\"}",
        "{\"a\": \"x",
        "{\"a\": 1.}",
        "{\"a\": -}",
        "{\"a\": 12",
        "{\"a\": [",
        "{\"a\": {} } extra",
        "{}\n\n",
        "{ \"a\" : 01 }",
        "{'a': 'b\\q'}",
    ];
    let mut failures = Vec::new();
    for arg in ARGS {
        let want = match from_str(arg) {
            Ok(_) => "Parameter 'driver' is missing".to_string(),
            Err(e) => e.to_string(),
        };
        let want = format!("qemu-storage-daemon: --blockdev {arg}: {want}\n");
        let out = Command::new(qsd_bin())
            .args(["--blockdev", arg])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): qemu-storage-daemon is required",
                    qsd_bin()
                )
            });
        let got = String::from_utf8_lossy(&out.stderr).into_owned();
        if got != want {
            failures.push(format!("{arg:?}\n  ours: {want:?}\n  qsd:  {got:?}"));
        }
    }
    println!(
        "from_str: {} cases, {} failures",
        ARGS.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
