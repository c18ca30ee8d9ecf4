//! Random JSON values never panic the generated visitors (the QMP input
//! path after parsing), in JSON and keyval modes, and accepted values
//! serialize and read back to the same value.

use proptest::prelude::*;
use qapi::types::*;
use qapi::visit::{from_value, Mode, Visit};
use serde_json::{json, Map, Value};

/// Keys that occur in real arguments, so random objects often get past the
/// first member and exercise deeper visitor code.
const KEYS: &[&str] = &[
    "driver",
    "node-name",
    "file",
    "filename",
    "backing",
    "type",
    "data",
    "id",
    "addr",
    "path",
    "host",
    "port",
    "qom-type",
    "size",
    "cache",
    "direct",
    "read-only",
    "options",
    "actions",
    "backend",
    "format",
    "writable",
    "null-co",
    "qcow2",
    "raw",
    "unix",
    "inet",
    "iothread",
    "secret",
    "nbd",
    "x",
];

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(KEYS).prop_map(Value::from),
        "[a-z0-9 .,=-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }),
        ]
    })
}

fn check<T: Visit + serde::Serialize + PartialEq + std::fmt::Debug>(v: &Value) {
    for mode in [Mode::Json, Mode::Keyval] {
        if let Ok(t) = from_value::<T>(v, mode) {
            if mode == Mode::Json {
                let back = serde_json::to_value(&t).expect("serializes");
                let again = from_value::<T>(&back, Mode::Json).expect("reads back");
                assert_eq!(again, t);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn visitors_never_panic(v in value()) {
        check::<BlockdevOptions>(&v);
        check::<BlockExportOptions>(&v);
        check::<ObjectOptions>(&v);
        check::<ChardevAddArgs>(&v);
        check::<TransactionArgs>(&v);
        check::<NbdServerOptionsLegacy>(&v);
        check::<BlockdevCreateArgs>(&v);
        let _ = json!(null);
    }
}
