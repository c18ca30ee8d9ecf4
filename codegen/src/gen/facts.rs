//! The interface facts of a schema, without prose: every module in
//! first-include order and every definition in order, as JSON in schema
//! syntax. Used to compare our schema with QSD's, definition by definition.

use serde_json::{json, Map, Value};

use crate::model::*;

fn cond(c: &Cond) -> Value {
    match c {
        Cond::Always => Value::Null,
        Cond::Name(n) => json!(n),
        Cond::All(v) => json!({ "all": v.iter().map(cond).collect::<Vec<_>>() }),
        Cond::Any(v) => json!({ "any": v.iter().map(cond).collect::<Vec<_>>() }),
        Cond::Not(c) => json!({ "not": cond(c) }),
    }
}

fn features(fs: &[Feature]) -> Value {
    Value::Array(
        fs.iter()
            .map(|f| {
                if f.cond.is_always() {
                    json!(f.name)
                } else {
                    json!({ "name": f.name, "if": cond(&f.cond) })
                }
            })
            .collect(),
    )
}

fn type_ref(t: &TypeRef) -> Value {
    match t {
        TypeRef::Named(n) => json!(n),
        TypeRef::Array(n) => json!([n]),
    }
}

fn members(ms: &[Member]) -> Value {
    let mut m = Map::new();
    for mem in ms {
        let key = if mem.optional {
            format!("*{}", mem.name)
        } else {
            mem.name.clone()
        };
        let v = if mem.cond.is_always() && mem.features.is_empty() {
            type_ref(&mem.ty)
        } else {
            let mut d = Map::new();
            d.insert("type".into(), type_ref(&mem.ty));
            if !mem.cond.is_always() {
                d.insert("if".into(), cond(&mem.cond));
            }
            if !mem.features.is_empty() {
                d.insert("features".into(), features(&mem.features));
            }
            Value::Object(d)
        };
        m.insert(key, v);
    }
    Value::Object(m)
}

fn variants(vs: &[Variant]) -> Value {
    let mut m = Map::new();
    for v in vs {
        let val = if v.cond.is_always() {
            type_ref(&v.ty)
        } else {
            json!({ "type": type_ref(&v.ty), "if": cond(&v.cond) })
        };
        m.insert(v.name.clone(), val);
    }
    Value::Object(m)
}

/// The inline members of an implicit type, or its name.
fn data_ref(schema: &Schema, name: &str) -> Value {
    match schema.get(name) {
        Some(Entity {
            implicit: true,
            meta: Meta::Struct(s),
            ..
        }) => members(&s.members),
        _ => json!(name),
    }
}

/// One definition as a schema expression.
pub fn definition(schema: &Schema, e: &Entity) -> Value {
    let mut d = Map::new();
    d.insert(e.meta.keyword().into(), json!(e.name));
    match &e.meta {
        Meta::Enum(en) => {
            let vals: Vec<Value> = en
                .values
                .iter()
                .map(|v| {
                    if v.cond.is_always() && v.features.is_empty() {
                        json!(v.name)
                    } else {
                        let mut o = Map::new();
                        o.insert("name".into(), json!(v.name));
                        if !v.cond.is_always() {
                            o.insert("if".into(), cond(&v.cond));
                        }
                        if !v.features.is_empty() {
                            o.insert("features".into(), features(&v.features));
                        }
                        Value::Object(o)
                    }
                })
                .collect();
            d.insert("data".into(), Value::Array(vals));
            if let Some(p) = &en.prefix {
                d.insert("prefix".into(), json!(p));
            }
        }
        Meta::Struct(s) => {
            if let Some(b) = &s.base {
                d.insert("base".into(), json!(b));
            }
            d.insert("data".into(), members(&s.members));
        }
        Meta::Union(u) => {
            d.insert("base".into(), data_ref(schema, &u.base));
            d.insert("discriminator".into(), json!(u.discriminator));
            d.insert("data".into(), variants(&u.variants));
        }
        Meta::Alternate(a) => {
            d.insert("data".into(), variants(&a.variants));
        }
        Meta::Command(c) => {
            if let Some(a) = &c.args {
                d.insert("data".into(), data_ref(schema, a));
            }
            if let Some(r) = &c.returns {
                d.insert("returns".into(), type_ref(r));
            }
            let flags = [
                ("boxed", c.boxed, false),
                ("gen", c.gen, true),
                ("success-response", c.success_response, true),
                ("allow-oob", c.allow_oob, false),
                ("allow-preconfig", c.allow_preconfig, false),
                ("coroutine", c.coroutine, false),
            ];
            for (k, v, default) in flags {
                if v != default {
                    d.insert(k.into(), json!(v));
                }
            }
        }
        Meta::Event(ev) => {
            if let Some(a) = &ev.args {
                d.insert("data".into(), data_ref(schema, a));
            }
            if ev.boxed {
                d.insert("boxed".into(), json!(true));
            }
        }
    }
    if !e.cond.is_always() {
        d.insert("if".into(), cond(&e.cond));
    }
    if !e.features.is_empty() {
        d.insert("features".into(), features(&e.features));
    }
    Value::Object(d)
}

/// The pragma as an expression.
fn pragma(p: &Pragma) -> Value {
    json!({
        "doc-required": p.doc_required,
        "command-name-exceptions": p.command_name_exceptions,
        "command-returns-exceptions": p.command_returns_exceptions,
        "documentation-exceptions": p.documentation_exceptions,
        "member-name-exceptions": p.member_name_exceptions,
    })
}

/// All modules with their definitions, in order. Pragmas are reported once,
/// merged, on the module list.
pub fn facts(schema: &Schema) -> Value {
    let modules: Vec<Value> = schema
        .modules
        .iter()
        .map(|m| {
            let defs: Vec<Value> = m
                .items
                .iter()
                .filter_map(|it| match it {
                    ModuleItem::Entity(i) => Some(definition(schema, &schema.entities[*i])),
                    ModuleItem::Doc(_) => None,
                })
                .collect();
            json!({ "file": m.name, "definitions": defs })
        })
        .collect();
    json!({ "pragma": pragma(&schema.pragma), "modules": modules })
}
