//! Introspection data: the list of `SchemaInfo` objects that the
//! `query-qmp-schema` command returns, as QEMU 10.0's QAPI generator
//! produces it.
//!
//! The rules this module reproduces:
//!
//! - Commands and events are emitted first, module by module in
//!   first-include order and in definition order within a module. A
//!   command's argument type is used before its return type; a missing
//!   argument or return type, or an empty inline argument object, is the
//!   empty object type `q_empty`.
//! - Every type used is appended to a work list (once); the work list is
//!   then emitted in order, and emitting a type may append more types
//!   (breadth first). An array type is appended before its element type.
//! - All integer built-ins fold to `int`, and arrays of them to `[int]`.
//! - Names of non-built-in, non-array types are masked as decimal numbers
//!   in order of first use; arrays are named `[E]` after their (masked)
//!   element name.
//! - Conditions are applied after numbering: disabled definitions,
//!   members, branches, enum values and features are used, numbered and
//!   visited like enabled ones, then left out of the output. An implicit
//!   type (`q_obj_NAME-arg`, `q_obj_NAME-base`) has the condition of its
//!   owner; an array has its element's condition.
//! - A union lists its explicit branches in schema order, followed by one
//!   `q_empty` branch for every discriminator value without a branch (with
//!   that value's condition).
//! - Every feature is listed, not only the special ones. A `features` key
//!   is present whenever the schema declares features there, even if all
//!   of them are disabled.
//! - QEMU's generator writes each object's keys in sorted order, and its
//!   run-time converts them into dictionaries in that order; so every
//!   object here has its keys inserted in sorted (byte) order. QEMU's
//!   JSON writer then prints them in its hash table's order, which is the
//!   writer's business, not this module's.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::model::*;

/// The name QAPI gives its empty object type.
const EMPTY: &str = "q_empty";

/// A type as introspection sees it: integer types already folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Builtin(&'static str),
    /// The empty object type `q_empty`.
    Empty,
    /// A definition of the schema, by name.
    Def(String),
    /// An array of a non-array element.
    Array(Box<Key>),
}

struct Gen<'a> {
    schema: &'a Schema,
    /// The conditions of implicit types: those of their owners.
    implicit_cond: HashMap<&'a str, &'a Cond>,
    /// Masked names in order of first use.
    masks: HashMap<String, usize>,
    used: Vec<Key>,
    seen: HashSet<Key>,
    out: Vec<Value>,
}

/// An object with its keys inserted in sorted order, as QEMU does.
fn object(mut pairs: Vec<(&'static str, Value)>) -> Value {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<String, Value>>(),
    )
}

impl<'a> Gen<'a> {
    fn new(schema: &'a Schema) -> Gen<'a> {
        let mut implicit_cond = HashMap::new();
        for e in &schema.entities {
            let owned = match &e.meta {
                Meta::Command(CommandDef { args, .. }) | Meta::Event(EventDef { args, .. }) => {
                    args.as_deref()
                }
                Meta::Union(u) => Some(u.base.as_str()),
                _ => None,
            };
            if let Some(name) = owned {
                if schema.get(name).is_some_and(|t| t.implicit) {
                    implicit_cond.insert(name, &e.cond);
                }
            }
        }
        Gen {
            schema,
            implicit_cond,
            masks: HashMap::new(),
            used: Vec::new(),
            seen: HashSet::new(),
            out: Vec::new(),
        }
    }

    fn enabled(&self, cond: &Cond) -> bool {
        self.schema.enabled(cond)
    }

    /// The key of a type name, integer types folded to `int`.
    fn named_key(name: &str) -> Key {
        match builtin(name) {
            Some(b) if b.json_type == "int" => Key::Builtin("int"),
            Some(b) => Key::Builtin(b.name),
            None => Key::Def(name.to_string()),
        }
    }

    fn key(t: &TypeRef) -> Key {
        match t {
            TypeRef::Named(n) => Self::named_key(n),
            TypeRef::Array(n) => Key::Array(Box::new(Self::named_key(n))),
        }
    }

    /// The key of a command's or event's argument type.
    fn args_key(&self, args: Option<&str>) -> Key {
        match args {
            None => Key::Empty,
            Some(a) => match self.schema.get(a) {
                // QAPI makes no implicit type for an empty inline object.
                Some(Entity {
                    implicit: true,
                    meta: Meta::Struct(s),
                    ..
                }) if s.members.is_empty() => Key::Empty,
                _ => Self::named_key(a),
            },
        }
    }

    /// The masked name of a definition, numbered on first use.
    fn mask(&mut self, name: &str) -> String {
        let next = self.masks.len();
        self.masks
            .entry(name.to_string())
            .or_insert(next)
            .to_string()
    }

    /// Uses a type: queues it if new and returns its name in the output.
    fn use_type(&mut self, k: &Key) -> String {
        if self.seen.insert(k.clone()) {
            self.used.push(k.clone());
        }
        match k {
            Key::Builtin(n) => (*n).to_string(),
            Key::Empty => self.mask(EMPTY),
            Key::Def(n) => self.mask(n),
            Key::Array(e) => format!("[{}]", self.use_type(e)),
        }
    }

    /// Whether a type's condition holds.
    fn type_enabled(&self, k: &Key) -> bool {
        match k {
            Key::Builtin(_) | Key::Empty => true,
            Key::Array(e) => self.type_enabled(e),
            Key::Def(n) => match self.implicit_cond.get(n.as_str()) {
                Some(c) => self.enabled(c),
                None => self.schema.get(n).is_none_or(|e| self.enabled(&e.cond)),
            },
        }
    }

    /// The `features` value of an element, if it declares any.
    fn features(&self, fs: &[Feature]) -> Option<Value> {
        if fs.is_empty() {
            return None;
        }
        Some(Value::Array(
            fs.iter()
                .filter(|f| self.enabled(&f.cond))
                .map(|f| Value::String(f.name.clone()))
                .collect(),
        ))
    }

    /// Completes a SchemaInfo object and appends it if enabled.
    fn emit(
        &mut self,
        name: String,
        meta: &str,
        mut pairs: Vec<(&'static str, Value)>,
        enabled: bool,
        features: &[Feature],
    ) {
        pairs.push(("name", Value::String(name)));
        pairs.push(("meta-type", Value::String(meta.to_string())));
        if let Some(f) = self.features(features) {
            pairs.push(("features", f));
        }
        if enabled {
            self.out.push(object(pairs));
        }
    }

    fn run(mut self) -> Vec<Value> {
        let schema = self.schema;
        for m in &schema.modules {
            for item in &m.items {
                let ModuleItem::Entity(i) = item else {
                    continue;
                };
                let Some(e) = schema.entities.get(*i) else {
                    continue;
                };
                match &e.meta {
                    Meta::Command(c) => self.command(e, c),
                    Meta::Event(ev) => {
                        let arg = self.args_key(ev.args.as_deref());
                        let arg = self.use_type(&arg);
                        let pairs = vec![("arg-type", Value::String(arg))];
                        self.emit(
                            e.name.clone(),
                            "event",
                            pairs,
                            self.enabled(&e.cond),
                            &e.features,
                        );
                    }
                    _ => {}
                }
            }
        }
        // The work list grows while it is walked.
        let mut i = 0;
        while let Some(k) = self.used.get(i).cloned() {
            self.visit_type(&k);
            i += 1;
        }
        self.out
    }

    fn command(&mut self, e: &Entity, c: &CommandDef) {
        let arg = self.args_key(c.args.as_deref());
        let arg = self.use_type(&arg);
        let ret = c.returns.as_ref().map_or(Key::Empty, Self::key);
        let ret = self.use_type(&ret);
        let mut pairs = vec![
            ("arg-type", Value::String(arg)),
            ("ret-type", Value::String(ret)),
        ];
        if c.allow_oob {
            pairs.push(("allow-oob", Value::Bool(true)));
        }
        let enabled = self.enabled(&e.cond);
        self.emit(e.name.clone(), "command", pairs, enabled, &e.features);
    }

    fn visit_type(&mut self, k: &Key) {
        let enabled = self.type_enabled(k);
        match k {
            Key::Builtin(n) => {
                let json_type = builtin(n).map_or("value", |b| b.json_type);
                let pairs = vec![("json-type", Value::String(json_type.to_string()))];
                self.emit((*n).to_string(), "builtin", pairs, true, &[]);
            }
            Key::Empty => {
                let name = self.mask(EMPTY);
                let pairs = vec![("members", Value::Array(Vec::new()))];
                self.emit(name, "object", pairs, true, &[]);
            }
            Key::Array(el) => {
                let el = self.use_type(el);
                let pairs = vec![("element-type", Value::String(el.clone()))];
                self.emit(format!("[{el}]"), "array", pairs, enabled, &[]);
            }
            Key::Def(n) => {
                let schema = self.schema;
                // A checked schema defines every name it uses.
                let Some(e) = schema.get(n) else {
                    return;
                };
                let pairs = match &e.meta {
                    Meta::Enum(en) => self.enum_type(en),
                    Meta::Struct(_) => vec![("members", self.members(n))],
                    Meta::Union(u) => self.union_type(n, u),
                    Meta::Alternate(a) => self.alternate(a),
                    Meta::Command(_) | Meta::Event(_) => return,
                };
                let meta = match &e.meta {
                    Meta::Enum(_) => "enum",
                    Meta::Alternate(_) => "alternate",
                    _ => "object",
                };
                let name = self.mask(n);
                self.emit(name, meta, pairs, enabled, &e.features);
            }
        }
    }

    fn enum_type(&self, en: &EnumDef) -> Vec<(&'static str, Value)> {
        let on: Vec<&EnumValue> = en.values.iter().filter(|v| self.enabled(&v.cond)).collect();
        let members = on
            .iter()
            .map(|v| {
                let mut p = vec![("name", Value::String(v.name.clone()))];
                if let Some(f) = self.features(&v.features) {
                    p.push(("features", f));
                }
                object(p)
            })
            .collect();
        let values = on.iter().map(|v| Value::String(v.name.clone())).collect();
        vec![
            ("members", Value::Array(members)),
            ("values", Value::Array(values)),
        ]
    }

    /// The `members` of a struct or union: base members first.
    fn members(&mut self, name: &str) -> Value {
        let schema = self.schema;
        let mut out = Vec::new();
        for m in schema.all_members(name) {
            let ty = self.use_type(&Self::key(&m.ty));
            let mut p = vec![
                ("name", Value::String(m.name.clone())),
                ("type", Value::String(ty)),
            ];
            if m.optional {
                p.push(("default", Value::Null));
            }
            if let Some(f) = self.features(&m.features) {
                p.push(("features", f));
            }
            if self.enabled(&m.cond) {
                out.push(object(p));
            }
        }
        Value::Array(out)
    }

    fn union_type(&mut self, name: &str, u: &UnionDef) -> Vec<(&'static str, Value)> {
        let schema = self.schema;
        let members = self.members(name);
        // The branches: explicit ones, then the discriminator values
        // without a branch, which get the empty object.
        let mut branches: Vec<(&str, Key, &Cond)> = u
            .variants
            .iter()
            .map(|v| (v.name.as_str(), Self::key(&v.ty), &v.cond))
            .collect();
        let tag_enum = schema
            .all_members(name)
            .into_iter()
            .find(|m| m.name == u.discriminator)
            .and_then(|m| schema.get(m.ty.base_name()));
        if let Some(Entity {
            meta: Meta::Enum(en),
            ..
        }) = tag_enum
        {
            for v in &en.values {
                if !u.variants.iter().any(|b| b.name == v.name) {
                    branches.push((v.name.as_str(), Key::Empty, &v.cond));
                }
            }
        }
        let mut variants = Vec::new();
        for (case, k, cond) in branches {
            let ty = self.use_type(&k);
            if self.enabled(cond) {
                variants.push(object(vec![
                    ("case", Value::String(case.to_string())),
                    ("type", Value::String(ty)),
                ]));
            }
        }
        vec![
            ("members", members),
            ("tag", Value::String(u.discriminator.clone())),
            ("variants", Value::Array(variants)),
        ]
    }

    fn alternate(&mut self, a: &AlternateDef) -> Vec<(&'static str, Value)> {
        let mut members = Vec::new();
        for v in &a.variants {
            let ty = self.use_type(&Self::key(&v.ty));
            if self.enabled(&v.cond) {
                members.push(object(vec![("type", Value::String(ty))]));
            }
        }
        vec![("members", Value::Array(members))]
    }
}

/// The introspection data of `schema` in its profile: the JSON array of
/// `SchemaInfo` objects that `query-qmp-schema` returns, in QEMU's order,
/// with QEMU's masked type names, and with each object's keys inserted in
/// the order QEMU inserts them (sorted).
///
/// `schema` must be checked (as [`crate::load`] returns it): a type name
/// without a definition is numbered but gets no entry.
pub fn introspect(schema: &Schema) -> Value {
    Value::Array(Gen::new(schema).run())
}

/// [`introspect`] as compact JSON text (`,` and `:` without spaces), keys
/// in insertion order. This is data, not QEMU's wire format: the QMP
/// writer re-orders keys and adds its own separators.
pub fn introspect_json(schema: &Schema) -> String {
    introspect(schema).to_string()
}
