//! Every command and event of the schema is generated; commands that are
//! not implemented yet answer a clear error naming them. This test builds
//! valid minimal arguments for each command from the daemon's own
//! introspection data, sends them, and lists the commands that answer "not
//! implemented".

use std::collections::HashMap;

use qsd_blackbox_tests::{Daemon, Impl};
use serde_json::{json, Map, Value};

struct Schema(HashMap<String, Value>);

impl Schema {
    fn minimal(&self, ty: &str, depth: usize) -> Value {
        let Some(info) = self.0.get(ty) else {
            return json!({});
        };
        match info["meta-type"].as_str().unwrap_or("") {
            "builtin" => match info["json-type"].as_str().unwrap_or("") {
                "string" => json!("x"),
                "int" | "number" => json!(0),
                "boolean" => json!(false),
                "null" => Value::Null,
                _ => json!({}),
            },
            "enum" => info["values"][0].clone(),
            "array" => json!([]),
            "alternate" => {
                let members = info["members"].as_array().cloned().unwrap_or_default();
                // Prefer a scalar branch, to keep recursion finite.
                let pick = members
                    .iter()
                    .find(|m| {
                        let t = m["type"].as_str().unwrap_or("");
                        self.0.get(t).is_some_and(|i| i["meta-type"] != "object")
                    })
                    .or(members.first())
                    .map(|m| m["type"].as_str().unwrap_or("").to_string())
                    .unwrap_or_default();
                self.minimal(&pick, depth + 1)
            }
            "object" => {
                let mut out = Map::new();
                if depth > 8 {
                    return Value::Object(out);
                }
                let mut variant_type = None;
                let tag = info.get("tag").and_then(Value::as_str);
                for m in info["members"].as_array().into_iter().flatten() {
                    if m.get("default").is_some() {
                        continue;
                    }
                    let name = m["name"].as_str().unwrap_or("");
                    if Some(name) == tag {
                        let v0 = &info["variants"][0];
                        out.insert(name.into(), v0["case"].clone());
                        variant_type = v0["type"].as_str().map(String::from);
                        continue;
                    }
                    let t = m["type"].as_str().unwrap_or("");
                    out.insert(name.into(), self.minimal(t, depth + 1));
                }
                if let Some(vt) = variant_type {
                    if let Value::Object(extra) = self.minimal(&vt, depth + 1) {
                        out.extend(extra);
                    }
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }
}

#[test]
fn every_command_exists_and_unimplemented_ones_say_so() {
    let d = Daemon::start(Impl::Ours);
    let mut q = d.qmp();
    let schema = q.cmd(r#"{"execute":"query-qmp-schema"}"#);
    let entries = schema["return"].as_array().expect("schema list").clone();
    let by_name: HashMap<String, Value> = entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    let commands: Vec<&Value> = entries
        .iter()
        .filter(|e| e["meta-type"] == "command")
        .collect();
    let events = entries.iter().filter(|e| e["meta-type"] == "event").count();
    assert_eq!(commands.len(), 76, "commands in the schema");
    assert_eq!(events, 13, "events in the schema");
    let listed = q.cmd(r#"{"execute":"query-commands"}"#)["return"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 76, "query-commands lists every command");

    let s = Schema(by_name);
    let mut not_implemented = Vec::new();
    for c in commands {
        let name = c["name"].as_str().unwrap();
        if name == "quit" {
            continue;
        }
        let args = s.minimal(c["arg-type"].as_str().unwrap(), 0);
        let req = json!({"execute": name, "arguments": args});
        let reply = q.cmd(&req.to_string());
        let desc = reply["error"]["desc"].as_str().unwrap_or("");
        assert!(
            !desc.starts_with("Parameter") && !desc.starts_with("Invalid parameter"),
            "{name}: synthesized arguments were rejected: {desc} ({req})"
        );
        if desc.contains("not implemented") {
            assert_eq!(reply["error"]["class"], "GenericError");
            assert_eq!(
                desc,
                format!("Command '{name}' is not implemented by this daemon yet")
            );
            not_implemented.push(name.to_string());
        }
    }
    println!(
        "{} of 76 commands are not implemented yet:",
        not_implemented.len()
    );
    for n in &not_implemented {
        println!("  {n}");
    }
    // The core of the control plane is implemented.
    for n in [
        "qmp_capabilities",
        "query-version",
        "query-commands",
        "query-qmp-schema",
    ] {
        assert!(
            !not_implemented.iter().any(|x| x == n),
            "{n} must be implemented"
        );
    }
}
