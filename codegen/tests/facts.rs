//! Our schema states exactly the interface of QSD 10.0.2: same modules in the
//! same order, same definitions in the same order, same members, types,
//! features, conditions and flags.

use std::path::PathBuf;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Schema expressions compared without regard to key order, except member
/// order inside 'data'/'base' objects and list order, which are facts.
fn canon(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            // Keep member order: encode objects as [key, value] lists.
            Value::Array(
                m.iter()
                    .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), canon(v)]))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
        _ => v.clone(),
    }
}

/// Top-level keys of an expression in a fixed order; nested objects keep
/// their order.
fn canon_expr(v: &Value) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    Value::Array(
        keys.into_iter()
            .map(|k| Value::Array(vec![Value::String(k.clone()), canon(&m[k])]))
            .collect(),
    )
}

#[test]
fn schema_states_qsd_interface_facts() {
    let main = std::env::var("QAPI_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("qapi/schema/qapi-schema.json"));
    let schema = qapi_codegen::load(&main, qapi_codegen::Profile::default())
        .unwrap_or_else(|e| panic!("schema does not load:\n{e}"));
    let ours = qapi_codegen::gen::facts::facts(&schema);
    let text = std::fs::read_to_string(root().join("tests/golden/qsd-10.0.2/interface-facts.json"))
        .expect("golden interface facts");
    let reference: Value = serde_json::from_str(&text).expect("valid JSON");
    let (Some(our_mods), Some(ref_mods)) =
        (ours["modules"].as_array(), reference["modules"].as_array())
    else {
        panic!("no modules");
    };
    let names = |mods: &Vec<Value>| -> Vec<String> {
        mods.iter()
            .map(|m| m["file"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(our_mods), names(ref_mods), "module order");
    let mut diffs = Vec::new();
    for (o, r) in our_mods.iter().zip(ref_mods) {
        let od: Vec<&Value> = o["definitions"].as_array().unwrap().iter().collect();
        let rd: Vec<&Value> = r["definitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d.get("pragma").is_none())
            .collect();
        if od.len() != rd.len() {
            diffs.push(format!(
                "{}: {} definitions, QSD has {}",
                o["file"],
                od.len(),
                rd.len()
            ));
        }
        for (a, b) in od.iter().zip(&rd) {
            if canon_expr(a) != canon_expr(b) {
                diffs.push(format!("{}:\n  ours: {a}\n  qsd:  {b}", o["file"]));
            }
        }
    }
    // Pragmas.
    let mut pragma = serde_json::Map::new();
    for m in ref_mods {
        for d in m["definitions"].as_array().unwrap() {
            if let Some(Value::Object(p)) = d.get("pragma") {
                for (k, v) in p {
                    pragma.insert(k.clone(), v.clone());
                }
            }
        }
    }
    for (k, v) in &pragma {
        if ours["pragma"][k] != *v {
            diffs.push(format!("pragma {k}: ours {} qsd {v}", ours["pragma"][k]));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
