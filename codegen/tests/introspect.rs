//! The introspection data equals QSD 10.0.2's `query-qmp-schema` reply,
//! byte for byte once written the way QEMU's JSON writer writes it, and
//! follows QEMU's rules on small schemas.

use std::path::PathBuf;

use qapi_codegen::gen::introspect::{introspect, introspect_json};
use qapi_codegen::{Profile, Schema};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------
// A local stand-in for QEMU's JSON writer (the production one lives in the
// runtime): QDict keys come out in hash table order.

/// QEMU's `tdb_hash` (qobject/qdict.c).
fn tdb_hash(key: &str) -> u32 {
    let mut v = 0x238F_13AF_u32.wrapping_mul(key.len() as u32);
    for (i, b) in key.bytes().enumerate() {
        v = v.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243_u32.wrapping_mul(v).wrapping_add(12345)
}

/// Keys in QDict iteration order: buckets ascending, and within a bucket
/// the key inserted last first.
fn qdict_order(keys: &[&String]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by_key(|&i| (tdb_hash(keys[i]) % 512, std::cmp::Reverse(i)));
    idx
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_qemu(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_qemu(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let entries: Vec<(&String, &Value)> = m.iter().collect();
            let keys: Vec<&String> = entries.iter().map(|e| e.0).collect();
            out.push('{');
            for (n, i) in qdict_order(&keys).into_iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                write_str(out, entries[i].0);
                out.push_str(": ");
                write_qemu(out, entries[i].1);
            }
            out.push('}');
        }
    }
}

/// The reply line QSD sends: `return` inserted before `id`.
fn reply(ret: Value) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("return".into(), ret);
    m.insert("id".into(), json!(1));
    let mut out = String::new();
    write_qemu(&mut out, &Value::Object(m));
    out.push_str("\r\n");
    out.into_bytes()
}

// ---------------------------------------------------------------------------

fn main_schema() -> Schema {
    let main = std::env::var("QAPI_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("qapi/schema/qapi-schema.json"));
    qapi_codegen::load(&main, Profile::default())
        .unwrap_or_else(|e| panic!("schema does not load:\n{e}"))
}

/// The first difference between two byte strings, with context.
fn first_diff(a: &[u8], b: &[u8]) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let ctx = |s: &[u8]| {
        let lo = i.saturating_sub(300);
        let hi = (i + 200).min(s.len());
        String::from_utf8_lossy(&s[lo..hi]).into_owned()
    };
    format!(
        "lengths ours {} qsd {}; first difference at byte {i}\nours: …{}\nqsd:  …{}",
        a.len(),
        b.len(),
        ctx(a),
        ctx(b)
    )
}

#[test]
fn reply_is_byte_identical_to_qsd() {
    let schema = main_schema();
    let ours = reply(introspect(&schema));
    let golden = std::fs::read(root().join("tests/golden/qsd-10.0.2/query-qmp-schema.reply"))
        .expect("golden reply");
    if ours != golden {
        let out = std::env::temp_dir().join("qsd-introspect-ours.json");
        let _ = std::fs::write(
            &out,
            serde_json::to_string_pretty(&introspect(&schema)).unwrap(),
        );
        panic!(
            "reply differs (our data in {}):\n{}",
            out.display(),
            first_diff(&ours, &golden)
        );
    }
}

#[test]
fn json_text_is_the_value() {
    let schema = main_schema();
    let text = introspect_json(&schema);
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v, introspect(&schema));
    // Insertion order survives the round trip.
    assert_eq!(v.to_string(), text);
}

// ---------------------------------------------------------------------------
// Small schemas.

struct TempSchema(PathBuf);

impl TempSchema {
    fn new(tag: &str, files: &[(&str, &str)]) -> TempSchema {
        let dir =
            std::env::temp_dir().join(format!("qapi-introspect-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write schema");
        }
        TempSchema(dir)
    }

    fn load(&self, profile: Profile) -> Schema {
        qapi_codegen::load(&self.0.join("main.json"), profile)
            .unwrap_or_else(|e| panic!("test schema does not load:\n{e}"))
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small(tag: &str, text: &str, profile: Profile) -> Value {
    let t = TempSchema::new(tag, &[("main.json", text)]);
    introspect(&t.load(profile))
}

fn entry<'v>(v: &'v Value, name: &str) -> &'v Value {
    v.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no entry {name} in {v:#}"))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn masking_order_arrays_and_integer_folding() {
    let v = small(
        "mask",
        "{ 'enum': 'Color', 'data': ['red', 'blue'] }
         { 'struct': 'Point', 'data': { 'x': 'int32', '*y': 'uint8', 'c': ['Color'] } }
         { 'struct': 'Unused', 'data': { 'a': 'str' } }
         { 'event': 'MOVED', 'data': { 'p': 'Point' } }
         { 'command': 'get', 'data': { 'n': 'size', 'l': ['uint16'] }, 'returns': ['Point'] }
         { 'command': 'ping' }",
        Profile::default(),
    );
    assert_eq!(
        names(&v),
        [
            "MOVED", "get", "ping",  // commands and events first
            "0",     // q_obj_MOVED-arg
            "1",     // q_obj_get-arg
            "[2]",   // [Point], before Point
            "2",     // Point
            "3",     // q_empty
            "int",   // size folds to int
            "[int]", // [uint16] folds to [int]
            "[4]",   // [Color]
            "4",     // Color
        ]
    );
    assert_eq!(entry(&v, "get")["arg-type"], "1");
    assert_eq!(entry(&v, "get")["ret-type"], "[2]");
    assert_eq!(entry(&v, "ping")["arg-type"], "3");
    assert_eq!(entry(&v, "ping")["ret-type"], "3");
    assert_eq!(
        entry(&v, "2"),
        &json!({"members": [
            {"name": "x", "type": "int"},
            {"default": null, "name": "y", "type": "int"},
            {"name": "c", "type": "[4]"}],
            "meta-type": "object", "name": "2"})
    );
    assert_eq!(
        entry(&v, "1")["members"],
        json!([{"name": "n", "type": "int"}, {"name": "l", "type": "[int]"}])
    );
    assert_eq!(
        entry(&v, "[int]"),
        &json!({"element-type": "int", "meta-type": "array", "name": "[int]"})
    );
    assert_eq!(
        entry(&v, "int"),
        &json!({"json-type": "int", "meta-type": "builtin", "name": "int"})
    );
    assert_eq!(entry(&v, "3")["members"], json!([]));
    // Keys are inserted sorted, as QEMU's generated literals list them.
    assert_eq!(
        keys(entry(&v, "get")),
        ["arg-type", "meta-type", "name", "ret-type"]
    );
    assert_eq!(
        keys(&entry(&v, "2")["members"][1]),
        ["default", "name", "type"]
    );
    assert!(!v.to_string().contains("Unused"));
}

#[test]
fn conditions_leave_gaps() {
    let text = "{ 'struct': 'Linux', 'data': { 'a': 'str' }, 'if': 'CONFIG_LINUX' }
         { 'struct': 'Win', 'data': { 'a': 'str' }, 'if': 'CONFIG_WIN32' }
         { 'enum': 'E', 'data': ['a', { 'name': 'w', 'if': 'CONFIG_WIN32' }, 'c'] }
         { 'struct': 'S', 'data': { 'w': { 'type': 'Win', 'if': 'CONFIG_WIN32' },
                                    'l': 'Linux', 'e': 'E', 'n': 'number' } }
         { 'command': 'win-only', 'data': { 'x': 'bool' }, 'if': 'CONFIG_WIN32' }
         { 'command': 'go', 'data': { 's': 'S' },
           'features': [ 'unstable', { 'name': 'odd', 'if': 'CONFIG_WIN32' } ] }";
    let v = small("cond", text, Profile::default());
    // The disabled win-only still numbers its arguments (0) and uses
    // q_empty (1) and bool; the disabled member's type Win (4) is still
    // visited and uses str.
    let expect = ["go", "1", "2", "bool", "3", "5", "6", "number", "str"];
    assert_eq!(names(&v), expect);
    assert_eq!(entry(&v, "go")["arg-type"], "2");
    assert_eq!(entry(&v, "go")["features"], json!(["unstable"]));
    let s = entry(&v, "3");
    assert_eq!(
        s["members"],
        json!([{"name": "l", "type": "5"}, {"name": "e", "type": "6"},
               {"name": "n", "type": "number"}])
    );
    let e = entry(&v, "6");
    assert_eq!(e["values"], json!(["a", "c"]));
    assert_eq!(e["members"], json!([{"name": "a"}, {"name": "c"}]));
    assert_eq!(keys(e), ["members", "meta-type", "name", "values"]);

    // With CONFIG_WIN32 everything is there, with the same numbers.
    let all = small(
        "cond-all",
        text,
        Profile::new(["CONFIG_LINUX", "CONFIG_WIN32"]),
    );
    let expect = [
        "win-only", "go", "0", "1", "2", "bool", "3", "4", "5", "6", "number", "str",
    ];
    assert_eq!(names(&all), expect);
    assert_eq!(entry(&all, "go")["features"], json!(["unstable", "odd"]));
    assert_eq!(entry(&all, "6")["values"], json!(["a", "w", "c"]));
}

#[test]
fn unions_alternates_and_implicit_types() {
    let v = small(
        "union",
        "{ 'enum': 'Kind', 'data': ['file', 'net', { 'name': 'gone', 'if': 'NOPE' }, 'none'] }
         { 'struct': 'FileOpts', 'data': { 'path': 'str' } }
         { 'struct': 'NetOpts', 'data': { 'host': 'str' }, 'if': 'NOPE' }
         { 'union': 'Dev', 'base': { 'kind': 'Kind', '*id': 'str' },
           'discriminator': 'kind',
           'data': { 'net': { 'type': 'NetOpts', 'if': 'NOPE' }, 'file': 'FileOpts' } }
         { 'alternate': 'DevRef', 'data': { 'name': 'str', 'dev': 'Dev' } }
         { 'command': 'add', 'data': { 'd': 'DevRef' }, 'allow-oob': true }
         { 'event': 'GONE', 'if': 'NOPE' }
         { 'command': 'none', 'data': {} }",
        Profile::new(Vec::<String>::new()),
    );
    // The union's inline base is never named; the disabled event's
    // q_empty is the commands' one.
    assert_eq!(
        names(&v),
        ["add", "none", "0", "1", "2", "str", "3", "4", "6"]
    );
    assert_eq!(
        entry(&v, "add"),
        &json!({"allow-oob": true, "arg-type": "0", "meta-type": "command",
                "name": "add", "ret-type": "1"})
    );
    // An empty inline argument object is q_empty.
    assert_eq!(entry(&v, "none")["arg-type"], "1");
    assert_eq!(
        entry(&v, "2"),
        &json!({"members": [{"type": "str"}, {"type": "3"}],
                "meta-type": "alternate", "name": "2"})
    );
    // Base members first; explicit branches, then q_empty for the values
    // without one; disabled branch 'net' (NetOpts is 5) and value 'gone'
    // left out.
    assert_eq!(
        entry(&v, "3"),
        &json!({"members": [{"name": "kind", "type": "4"},
                            {"default": null, "name": "id", "type": "str"}],
                "meta-type": "object", "name": "3", "tag": "kind",
                "variants": [{"case": "file", "type": "6"},
                             {"case": "none", "type": "1"}]})
    );
    assert_eq!(entry(&v, "4")["values"], json!(["file", "net", "none"]));
}
