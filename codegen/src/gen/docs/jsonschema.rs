//! The JSON Schema (draft 2020-12) document for client authors.
//!
//! Layout of `$defs`:
//! - every built-in type by its QAPI name (`int8`, `size`, ...);
//! - every enabled type by its QAPI name: structs as closed objects, enums
//!   as string enumerations, unions as `allOf` (common members) plus `oneOf`
//!   (one branch per discriminator value, keyed on its `const`) closed with
//!   `unevaluatedProperties`, alternates as `oneOf`;
//! - `command:NAME`: a request `{"execute": NAME, "arguments": ...}`; its
//!   own `$defs` hold `arguments` and `return` (the value of `"return"` in
//!   the success response);
//! - `event:NAME`: an event message; its own `$defs` hold `data`.
//!
//! The document itself validates any command request.

use serde_json::{json, Map, Value};

use super::common::*;
use crate::model::*;

const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{}", pointer_escape(name)) })
}

/// Escapes a `$defs` key for use in a JSON pointer fragment.
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn type_schema(t: &TypeRef) -> Value {
    match t {
        TypeRef::Named(n) => reference(n),
        TypeRef::Array(n) => json!({ "type": "array", "items": reference(n) }),
    }
}

fn builtin_schema(name: &str) -> Value {
    let mut m = Map::new();
    match name {
        "str" => {
            m.insert("type".into(), json!("string"));
        }
        "number" => {
            m.insert("type".into(), json!("number"));
        }
        "bool" => {
            m.insert("type".into(), json!("boolean"));
        }
        "null" => {
            m.insert("type".into(), json!("null"));
        }
        "any" => {}
        _ => {
            m.insert("type".into(), json!("integer"));
            if let Some((lo, hi)) = builtin_range(name) {
                let num = |v: i128| -> Value {
                    if let Ok(i) = i64::try_from(v) {
                        json!(i)
                    } else if let Ok(u) = u64::try_from(v) {
                        json!(u)
                    } else {
                        Value::Null
                    }
                };
                m.insert("minimum".into(), num(lo));
                m.insert("maximum".into(), num(hi));
            }
        }
    }
    m.insert("description".into(), json!(builtin_description(name)));
    Value::Object(m)
}

/// Paragraphs joined with blank lines, `@name` as `` `name` ``.
fn text(paras: &[String]) -> String {
    paras
        .iter()
        .map(|p| plain_text(p))
        .collect::<Vec<_>>()
        .join("\n\n")
}

struct Gen<'a> {
    schema: &'a Schema,
}

impl Gen<'_> {
    fn on(&self, c: &Cond) -> bool {
        self.schema.enabled(c)
    }

    /// Feature notes appended to descriptions; `deprecated` also sets the
    /// standard annotation.
    fn features(&self, m: &mut Map<String, Value>, fs: &[Feature], desc: &mut Vec<String>) {
        for f in fs.iter().filter(|f| self.on(&f.cond)) {
            match f.name.as_str() {
                "deprecated" => {
                    m.insert("deprecated".into(), json!(true));
                    desc.push("Deprecated.".into());
                }
                "unstable" => desc.push("Unstable: may change without notice.".into()),
                n => desc.push(format!("Feature `{n}`.")),
            }
        }
    }

    fn description(m: &mut Map<String, Value>, desc: Vec<String>) {
        let d: Vec<String> = desc.into_iter().filter(|s| !s.is_empty()).collect();
        if !d.is_empty() {
            m.insert("description".into(), json!(d.join("\n\n")));
        }
    }

    fn member(&self, m: &MemberRef) -> Value {
        let mut s = match type_schema(&m.member.ty) {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let mut desc = vec![m.text(self.schema).map(plain_text).unwrap_or_default()];
        self.features(&mut s, &m.member.features, &mut desc);
        Self::description(&mut s, desc);
        Value::Object(s)
    }

    /// `properties` and `required` of enabled members.
    fn properties(&self, ms: &[MemberRef]) -> (Map<String, Value>, Vec<Value>) {
        let mut props = Map::new();
        let mut req = Vec::new();
        for m in ms.iter().filter(|m| self.on(&m.member.cond)) {
            props.insert(m.member.name.clone(), self.member(m));
            if !m.member.optional {
                req.push(json!(m.member.name));
            }
        }
        (props, req)
    }

    /// A closed object of the members of struct `name`.
    fn object(&self, name: &str) -> Map<String, Value> {
        let (props, req) = self.properties(&members(self.schema, name));
        let mut o = Map::new();
        o.insert("type".into(), json!("object"));
        o.insert("properties".into(), Value::Object(props));
        if !req.is_empty() {
            o.insert("required".into(), Value::Array(req));
        }
        o.insert("additionalProperties".into(), json!(false));
        o
    }

    fn union(&self, e: &Entity, u: &UnionDef) -> Map<String, Value> {
        let common = members(self.schema, &e.name);
        let (props, req) = self.properties(&common);
        let mut base = Map::new();
        base.insert("properties".into(), Value::Object(props));
        base.insert("required".into(), Value::Array(req));
        let mut branches = Vec::new();
        for b in union_branches(self.schema, e, u).1 {
            if !self.on(b.cond) || !self.on(b.value_cond) {
                continue;
            }
            let (mut props, mut req) = match b.variant {
                Some(v) => self.properties(&members(self.schema, v.ty.base_name())),
                None => (Map::new(), Vec::new()),
            };
            props.insert(u.discriminator.clone(), json!({ "const": b.value }));
            req.insert(0, json!(u.discriminator));
            let mut br = Map::new();
            br.insert(
                "title".into(),
                json!(format!("{} = {}", u.discriminator, b.value)),
            );
            if let Some(v) = b.variant {
                br.insert(
                    "description".into(),
                    json!(format!("Adds the members of {}.", v.ty.base_name())),
                );
            }
            if is_deprecated(self.schema, b.features) {
                br.insert("deprecated".into(), json!(true));
            }
            br.insert("properties".into(), Value::Object(props));
            br.insert("required".into(), Value::Array(req));
            branches.push(Value::Object(br));
        }
        let mut o = Map::new();
        o.insert("type".into(), json!("object"));
        o.insert("allOf".into(), json!([base]));
        o.insert("oneOf".into(), Value::Array(branches));
        o.insert("unevaluatedProperties".into(), json!(false));
        o
    }

    fn enum_values(&self, e: &Entity, en: &EnumDef, desc: &mut Vec<String>) -> Map<String, Value> {
        let vals: Vec<&EnumValue> = en.values.iter().filter(|v| self.on(&v.cond)).collect();
        let lines: Vec<String> = vals
            .iter()
            .map(|v| {
                let mut s = format!("- `{}`", v.name);
                if let Some(t) = item_text(e, &v.name).filter(|t| !t.is_empty()) {
                    s.push_str(&format!(": {}", plain_text(t)));
                }
                for f in v.features.iter().filter(|f| self.on(&f.cond)) {
                    s.push_str(&format!(" ({})", f.name));
                }
                s
            })
            .collect();
        if !lines.is_empty() {
            desc.push(lines.join("\n"));
        }
        let mut o = Map::new();
        o.insert("type".into(), json!("string"));
        o.insert(
            "enum".into(),
            Value::Array(vals.iter().map(|v| json!(v.name)).collect()),
        );
        o
    }

    fn alternate(
        &self,
        e: &Entity,
        a: &AlternateDef,
        desc: &mut Vec<String>,
    ) -> Map<String, Value> {
        let mut branches = Vec::new();
        let mut lines = Vec::new();
        for v in a.variants.iter().filter(|v| self.on(&v.cond)) {
            let mut b = match type_schema(&v.ty) {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            b.insert("title".into(), json!(v.name));
            if let Some(t) = item_text(e, &v.name).filter(|t| !t.is_empty()) {
                b.insert("description".into(), json!(plain_text(t)));
                lines.push(format!("- `{}`: {}", v.name, plain_text(t)));
            }
            branches.push(Value::Object(b));
        }
        if !lines.is_empty() {
            desc.push(lines.join("\n"));
        }
        let mut o = Map::new();
        o.insert("oneOf".into(), Value::Array(branches));
        o
    }

    fn type_def(&self, e: &Entity) -> Value {
        let mut desc = vec![text(body(e))];
        let body = match &e.meta {
            Meta::Enum(en) => self.enum_values(e, en, &mut desc),
            Meta::Struct(_) => self.object(&e.name),
            Meta::Union(u) => self.union(e, u),
            Meta::Alternate(a) => self.alternate(e, a, &mut desc),
            Meta::Command(_) | Meta::Event(_) => Map::new(),
        };
        let mut o = Map::new();
        o.insert("title".into(), json!(e.name));
        self.features(&mut o, &e.features, &mut desc);
        if let Some(s) = section(e, "Since") {
            desc.push(format!("Since: {s}"));
        }
        Self::description(&mut o, desc);
        o.extend(body);
        Value::Object(o)
    }

    /// The schema of command arguments or event data.
    fn data(&self, args: Option<&str>) -> Value {
        match args {
            None => json!({ "type": "object", "maxProperties": 0 }),
            Some(a) => match self.schema.get(a) {
                Some(t) if t.implicit => Value::Object(self.object(a)),
                _ => reference(a),
            },
        }
    }

    fn command(&self, e: &Entity, c: &CommandDef) -> Value {
        let key = format!("command:{}", e.name);
        let here = format!("#/$defs/{}/$defs", pointer_escape(&key));
        let mut props = Map::new();
        props.insert("execute".into(), json!({ "const": e.name }));
        if c.allow_oob {
            props.insert("exec-oob".into(), json!({ "const": e.name }));
        }
        props.insert(
            "arguments".into(),
            json!({ "$ref": format!("{here}/arguments") }),
        );
        props.insert(
            "id".into(),
            json!({ "description": "Any JSON value; copied into the response." }),
        );
        let mut req = Vec::new();
        if c.args
            .as_deref()
            .is_some_and(|a| has_required(self.schema, a))
        {
            req.push(json!("arguments"));
        }
        let mut ret = match &c.returns {
            Some(t) => type_schema(t),
            None => json!({ "type": "object", "maxProperties": 0 }),
        };
        if let (Some(t), Value::Object(r)) = (section(e, "Returns"), &mut ret) {
            r.insert("description".into(), json!(plain_text(t)));
        }
        let mut o = Map::new();
        o.insert("title".into(), json!(e.name));
        let mut desc = vec![text(body(e))];
        if let Some(t) = section(e, "Errors") {
            desc.push(format!("Errors: {}", plain_text(t)));
        }
        if c.allow_oob {
            desc.push("May be sent with `exec-oob` instead of `execute`.".into());
        }
        self.features(&mut o, &e.features, &mut desc);
        if let Some(s) = section(e, "Since") {
            desc.push(format!("Since: {s}"));
        }
        Self::description(&mut o, desc);
        o.insert("type".into(), json!("object"));
        o.insert("properties".into(), Value::Object(props));
        if c.allow_oob {
            o.insert(
                "oneOf".into(),
                json!([{ "required": ["execute"] }, { "required": ["exec-oob"] }]),
            );
        } else {
            req.insert(0, json!("execute"));
        }
        if !req.is_empty() {
            o.insert("required".into(), Value::Array(req));
        }
        o.insert("additionalProperties".into(), json!(false));
        o.insert(
            "$defs".into(),
            json!({ "arguments": self.data(c.args.as_deref()), "return": ret }),
        );
        Value::Object(o)
    }

    fn event(&self, e: &Entity, ev: &EventDef) -> Value {
        let key = format!("event:{}", e.name);
        let mut props = Map::new();
        props.insert("event".into(), json!({ "const": e.name }));
        let mut req = vec![json!("event"), json!("timestamp")];
        if ev.args.is_some() {
            let here = format!("#/$defs/{}/$defs/data", pointer_escape(&key));
            props.insert("data".into(), json!({ "$ref": here }));
            req.push(json!("data"));
        }
        props.insert(
            "timestamp".into(),
            json!({
                "type": "object",
                "properties": {
                    "seconds": { "type": "integer" },
                    "microseconds": { "type": "integer", "minimum": 0, "maximum": 999999 }
                },
                "required": ["seconds", "microseconds"],
                "additionalProperties": false
            }),
        );
        let mut o = Map::new();
        o.insert("title".into(), json!(e.name));
        let mut desc = vec![text(body(e))];
        self.features(&mut o, &e.features, &mut desc);
        if let Some(s) = section(e, "Since") {
            desc.push(format!("Since: {s}"));
        }
        Self::description(&mut o, desc);
        o.insert("type".into(), json!("object"));
        o.insert("properties".into(), Value::Object(props));
        o.insert("required".into(), Value::Array(req));
        o.insert("additionalProperties".into(), json!(false));
        if ev.args.is_some() {
            o.insert(
                "$defs".into(),
                json!({ "data": self.data(ev.args.as_deref()) }),
            );
        }
        Value::Object(o)
    }
}

/// The root schema: validates any command request by dispatching on
/// `execute` (or `exec-oob`) to `command:NAME`.
fn root_dispatch(commands: &[(&Entity, &CommandDef)]) -> Map<String, Value> {
    let names: Vec<Value> = commands.iter().map(|(e, _)| json!(e.name)).collect();
    let oob: Vec<Value> = commands
        .iter()
        .filter(|(_, c)| c.allow_oob)
        .map(|(e, _)| json!(e.name))
        .collect();
    let mut all = Vec::new();
    for (e, c) in commands {
        let target = reference(&format!("command:{}", e.name));
        all.push(json!({
            "if": { "required": ["execute"], "properties": { "execute": { "const": e.name } } },
            "then": target
        }));
        if c.allow_oob {
            all.push(json!({
                "if": { "required": ["exec-oob"], "properties": { "exec-oob": { "const": e.name } } },
                "then": target
            }));
        }
    }
    let mut o = Map::new();
    o.insert("type".into(), json!("object"));
    o.insert(
        "properties".into(),
        json!({ "execute": { "enum": names }, "exec-oob": { "enum": oob } }),
    );
    o.insert(
        "oneOf".into(),
        json!([{ "required": ["execute"] }, { "required": ["exec-oob"] }]),
    );
    o.insert("allOf".into(), Value::Array(all));
    o
}

/// The whole document.
pub(crate) fn render(schema: &Schema) -> Value {
    let g = Gen { schema };
    let mut defs = Map::new();
    for b in BUILTINS {
        defs.insert(b.name.to_string(), builtin_schema(b.name));
    }
    let enabled = |e: &&Entity| !e.implicit && schema.enabled(&e.cond);
    for e in schema
        .entities
        .iter()
        .filter(enabled)
        .filter(|e| e.is_type())
    {
        defs.insert(e.name.clone(), g.type_def(e));
    }
    let commands: Vec<(&Entity, &CommandDef)> = schema
        .commands()
        .filter(|(e, _)| schema.enabled(&e.cond))
        .collect();
    for (e, c) in &commands {
        defs.insert(format!("command:{}", e.name), g.command(e, c));
    }
    for (e, ev) in schema.events().filter(|(e, _)| schema.enabled(&e.cond)) {
        defs.insert(format!("event:{}", e.name), g.event(e, ev));
    }
    let mut root = Map::new();
    root.insert("$schema".into(), json!(DIALECT));
    root.insert("$id".into(), json!("urn:qsd:qmp-schema"));
    root.insert("title".into(), json!("qsd QMP interface"));
    root.insert(
        "description".into(),
        json!(
            "The QMP interface of qsd, generated from its QAPI schema by qapi-gen. \
             The document validates a command request ({\"execute\": NAME, \"arguments\": ...}). \
             $defs holds every type by its QAPI name (built-in types included); \
             command:NAME a request for command NAME, whose $defs hold `arguments` \
             and `return` (the value of \"return\" in the success response); \
             event:NAME an event message, whose $defs hold `data`. Only what is \
             enabled in this build is described."
        ),
    );
    root.extend(root_dispatch(&commands));
    root.insert("$defs".into(), Value::Object(defs));
    Value::Object(root)
}
