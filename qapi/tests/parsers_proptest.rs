//! Property tests: the option parsers never panic, whatever the input, and
//! well-formed keyval input round-trips.

use proptest::prelude::*;
use qapi::cutils;
use qapi::keyval::{self, scalar};
use qapi::qemuopts::{self, CHARDEV_IMPLIED_KEY, CHARDEV_OPTS};
use serde_json::{Map, Value};

/// Strings made of the characters and words the parsers react to, mixed with
/// arbitrary text.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(",".to_string()),
        Just(",,".to_string()),
        Just("=".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("_".to_string()),
        Just("__".to_string()),
        Just("-".to_string()),
        Just("?".to_string()),
        Just("help".to_string()),
        Just("no".to_string()),
        Just("id".to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("00".to_string()),
        Just("2147483648".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("0x".to_string()),
        Just("e".to_string()),
        Just("k".to_string()),
        Just(" ".to_string()),
        Just("é".to_string()),
        Just("a".repeat(130)),
        "[a-z0-9.,=_?-]{1,6}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn keyval_never_panics(s in tricky()) {
        for implied in [None, Some("driver"), Some("qom-type")] {
            if let Ok(p) = keyval::parse(&s, implied) {
                assert_tree(&Value::Object(p.value));
            }
            if let Err(e) = keyval::parse_rejecting_help(&s, implied) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn qemuopts_never_panics(s in tricky()) {
        let _ = qemuopts::parse(&s, Some(CHARDEV_IMPLIED_KEY), CHARDEV_OPTS)
            .map(|o| qemuopts::chardev_start(&o).is_ok());
        let _ = qemuopts::parse(&s, None, &[]);
    }

    #[test]
    fn scalars_never_panic(s in tricky()) {
        let _ = scalar::to_int("p", Some("p"), &s, scalar::IntKind::Int8);
        let _ = scalar::to_int("p", None, &s, scalar::IntKind::Int64);
        let _ = scalar::to_uint("p", Some("p"), &s, scalar::UintKind::Uint16);
        let _ = scalar::to_uint("p", None, &s, scalar::UintKind::Uint64);
        let _ = scalar::to_size("p", &s);
        let _ = scalar::to_bool("p", &s);
        let _ = scalar::to_number("p", &s);
        let _ = cutils::qemu_strtoi64(&s, 10);
        let _ = cutils::qemu_strtou64(&s, 16);
    }

    #[test]
    fn numbers_like_strings_never_panic(s in "[ +-]?(0[xX])?[0-9a-fA-F.]{0,30}([eEpP][+-]?[0-9]{0,5})?[kKmMgGtTpPeEbB]?") {
        let _ = scalar::to_size("p", &s);
        let _ = scalar::to_number("p", &s);
        let _ = scalar::to_int("p", Some("p"), &s, scalar::IntKind::Int32);
    }

    #[test]
    fn flat_keyval_round_trips(
        pairs in proptest::collection::vec(("[a-z][a-z0-9_-]{0,8}", "[^\u{0}]{0,12}"), 0..8)
    ) {
        let mut expected = Map::new();
        let mut text = Vec::new();
        for (k, v) in &pairs {
            expected.insert(k.clone(), Value::String(v.clone()));
            text.push(format!("{k}={}", v.replace(',', ",,")));
        }
        let parsed = keyval::parse(&text.join(","), None);
        prop_assert_eq!(parsed.map(|p| (p.value, p.help)), Ok((expected, false)));
    }
}

/// Leaves of a parse tree are strings; inner nodes are objects or arrays.
fn assert_tree(v: &Value) {
    match v {
        Value::String(_) => {}
        Value::Object(m) => m.values().for_each(assert_tree),
        Value::Array(a) => a.iter().for_each(assert_tree),
        other => panic!("not a keyval tree node: {other:?}"),
    }
}
