//! Expression shape, naming rules and conversion of expressions into
//! entities (including the implicit types of inline definitions).

use std::collections::HashMap;

use super::load::{bool_of, str_of, Expr};
use super::*;
use crate::error::{Error, Loc};
use crate::parse::{Raw, RawDict, RawNode};

pub(super) struct Builder {
    pub(super) entities: Vec<Entity>,
    pub(super) index: HashMap<String, usize>,
    pub(super) pragma: Pragma,
    pub(super) errors: Vec<Error>,
    pub(super) modules: Vec<Module>,
}

const ALLOWED: &[(&str, &[&str], &[&str])] = &[
    ("enum", &["data"], &["prefix", "if", "features"]),
    ("struct", &["data"], &["base", "if", "features"]),
    (
        "union",
        &["base", "discriminator", "data"],
        &["if", "features"],
    ),
    ("alternate", &["data"], &["if", "features"]),
    (
        "command",
        &[],
        &[
            "data",
            "returns",
            "boxed",
            "if",
            "features",
            "gen",
            "success-response",
            "allow-oob",
            "allow-preconfig",
            "coroutine",
        ],
    ),
    ("event", &[], &["data", "boxed", "if", "features"]),
];

fn is_camel(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase()) && c.all(|ch| ch.is_ascii_alphanumeric())
}

fn strip_x(name: &str) -> &str {
    name.strip_prefix("x-").unwrap_or(name)
}

/// Lower-case name with dashes; `underscore_ok` relaxes to `[A-Za-z0-9_-]`.
fn is_lower(name: &str, relaxed: bool, digit_start: bool) -> bool {
    let n = strip_x(name);
    let Some(first) = n.chars().next() else {
        return false;
    };
    let first_ok = first.is_ascii_lowercase()
        || (digit_start && first.is_ascii_digit())
        || (relaxed && first.is_ascii_alphanumeric());
    first_ok
        && n.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (relaxed && (c.is_ascii_uppercase() || c == '_'))
                || (digit_start && c == '.')
        })
}

fn is_event_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_uppercase())
        && c.all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
}

impl Builder {
    pub(super) fn err(&mut self, loc: &Loc, msg: String) {
        self.errors.push(Error::new(loc.clone(), msg));
    }

    pub(super) fn at(loc: &Loc, line: usize) -> Loc {
        Loc::new(&loc.file, line)
    }

    fn cond(&mut self, v: &RawNode, loc: &Loc) -> Cond {
        let l = Self::at(loc, v.line);
        match &v.value {
            Raw::Str(s) => {
                if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.err(
                        &l,
                        format!("'if' condition '{s}' is not a valid identifier"),
                    );
                }
                Cond::Name(s.clone())
            }
            Raw::Dict(d) if d.len() == 1 => {
                let (op, arg) = &d[0];
                match op.as_str() {
                    "not" => Cond::Not(Box::new(self.cond(arg, loc))),
                    "all" | "any" => {
                        let Raw::List(items) = &arg.value else {
                            self.err(
                                &l,
                                format!("'if' operator '{op}' takes a list of conditions"),
                            );
                            return Cond::Always;
                        };
                        if items.is_empty() {
                            self.err(
                                &l,
                                format!("'if' operator '{op}' needs at least one condition"),
                            );
                        }
                        let v = items.iter().map(|i| self.cond(i, loc)).collect();
                        if op == "all" {
                            Cond::All(v)
                        } else {
                            Cond::Any(v)
                        }
                    }
                    _ => {
                        self.err(
                            &l,
                            format!(
                                "unknown 'if' operator '{op}' (expected 'all', 'any' or 'not')"
                            ),
                        );
                        Cond::Always
                    }
                }
            }
            Raw::Dict(_) => {
                self.err(
                    &l,
                    "an 'if' object must have exactly one of 'all', 'any', 'not'".into(),
                );
                Cond::Always
            }
            _ => {
                self.err(&l, "'if' must be a string or an object".into());
                Cond::Always
            }
        }
    }

    fn features(&mut self, v: &RawNode, loc: &Loc) -> Vec<Feature> {
        let l = Self::at(loc, v.line);
        let Raw::List(items) = &v.value else {
            self.err(&l, "'features' must be a list".into());
            return Vec::new();
        };
        let mut out: Vec<Feature> = Vec::new();
        for it in items {
            let il = Self::at(loc, it.line);
            let f = match &it.value {
                Raw::Str(s) => Feature {
                    name: s.clone(),
                    cond: Cond::Always,
                },
                Raw::Dict(d) => {
                    let mut name = None;
                    let mut cond = Cond::Always;
                    for (k, v) in d {
                        match k.as_str() {
                            "name" => name = str_of(v).map(String::from),
                            "if" => cond = self.cond(v, loc),
                            _ => self.err(&il, format!("feature has unknown key '{k}'")),
                        }
                    }
                    let Some(name) = name else {
                        self.err(&il, "feature needs a 'name' string".into());
                        continue;
                    };
                    Feature { name, cond }
                }
                _ => {
                    self.err(&il, "a feature must be a string or an object".into());
                    continue;
                }
            };
            if !is_lower(&f.name, false, false) {
                self.err(
                    &il,
                    format!("feature name '{}' must be lower case with dashes", f.name),
                );
            }
            if out.iter().any(|o| o.name == f.name) {
                self.err(&il, format!("duplicate feature '{}'", f.name));
            }
            out.push(f);
        }
        out
    }

    fn type_ref(&mut self, v: &RawNode, loc: &Loc, what: &str) -> Option<TypeRef> {
        let l = Self::at(loc, v.line);
        match &v.value {
            Raw::Str(s) => Some(TypeRef::Named(s.clone())),
            Raw::List(items) => match items.as_slice() {
                [one] => match str_of(one) {
                    Some(s) => Some(TypeRef::Array(s.to_string())),
                    None => {
                        self.err(
                            &l,
                            format!("{what}: an array type must name its element type"),
                        );
                        None
                    }
                },
                _ => {
                    self.err(
                        &l,
                        format!("{what}: an array type must have exactly one element type"),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    &l,
                    format!("{what}: expected a type name or an array of one"),
                );
                None
            }
        }
    }

    /// Members of an inline `data`/`base` object.
    fn members(&mut self, d: &RawDict, loc: &Loc, owner: &str) -> Vec<Member> {
        let relaxed = self
            .pragma
            .member_name_exceptions
            .iter()
            .any(|n| n == owner);
        let mut out: Vec<Member> = Vec::new();
        for (k, v) in d {
            let l = Self::at(loc, v.line);
            let (name, optional) = match k.strip_prefix('*') {
                Some(n) => (n.to_string(), true),
                None => (k.clone(), false),
            };
            if !is_lower(&name, relaxed, false) {
                self.err(
                    &l,
                    format!("'{owner}': member name '{name}' must be lower case with dashes"),
                );
            }
            if name.starts_with("has-") || name.starts_with("has_") {
                self.err(
                    &l,
                    format!("'{owner}': member name '{name}' must not start with 'has-'"),
                );
            }
            let what = format!("'{owner}' member '{name}'");
            let (ty, cond, features) = match &v.value {
                Raw::Dict(md) => {
                    let mut ty = None;
                    let mut cond = Cond::Always;
                    let mut features = Vec::new();
                    for (mk, mv) in md {
                        match mk.as_str() {
                            "type" => ty = self.type_ref(mv, loc, &what),
                            "if" => cond = self.cond(mv, loc),
                            "features" => features = self.features(mv, loc),
                            _ => self.err(&l, format!("{what} has unknown key '{mk}'")),
                        }
                    }
                    match ty {
                        Some(t) => (t, cond, features),
                        None => {
                            self.err(&l, format!("{what} needs a 'type'"));
                            continue;
                        }
                    }
                }
                _ => match self.type_ref(v, loc, &what) {
                    Some(t) => (t, Cond::Always, Vec::new()),
                    None => continue,
                },
            };
            if out.iter().any(|m| m.name == name) {
                self.err(&l, format!("'{owner}': duplicate member '{name}'"));
            }
            out.push(Member {
                name,
                ty,
                optional,
                cond,
                features,
                loc: l,
            });
        }
        out
    }

    fn add(&mut self, e: Entity) {
        if let Some(b) = builtin(&e.name) {
            self.err(&e.loc, format!("'{}' is a built-in type", b.name));
            return;
        }
        if let Some(&i) = self.index.get(&e.name) {
            let prev = self.entities[i].loc.clone();
            self.err(&e.loc, format!("'{}' is already defined at {prev}", e.name));
            return;
        }
        self.index.insert(e.name.clone(), self.entities.len());
        if !e.implicit {
            // Free doc blocks were recorded while reading the file; keep the
            // module's items in source order.
            let idx = self.entities.len();
            let entities = &self.entities;
            let items = &mut self.modules[e.module].items;
            let line = |it: &ModuleItem| match it {
                ModuleItem::Doc(d) => d.loc.line,
                ModuleItem::Entity(i) => entities[*i].loc.line,
            };
            let at = items
                .iter()
                .position(|it| line(it) > e.loc.line)
                .unwrap_or(items.len());
            items.insert(at, ModuleItem::Entity(idx));
        }
        self.entities.push(e);
    }

    fn implicit_struct(
        &mut self,
        name: String,
        members: Vec<Member>,
        cond: Cond,
        loc: &Loc,
        module: usize,
    ) {
        self.add(Entity {
            name,
            meta: Meta::Struct(StructDef {
                base: None,
                members,
            }),
            // An implicit type exists exactly when its owner does.
            cond,
            features: Vec::new(),
            doc: None,
            loc: loc.clone(),
            module,
            implicit: true,
        });
    }

    /// Shape checks and conversion of one expression into entities.
    pub(super) fn define(&mut self, x: Expr) {
        let loc = x.loc.clone();
        let Some((kw, namev)) = x.dict.first() else {
            self.err(&loc, "empty expression".into());
            return;
        };
        let Some(&(_, required, optional)) = ALLOWED.iter().find(|(k, _, _)| k == kw) else {
            self.err(
                &loc,
                format!(
                    "expression must start with one of 'include', 'pragma', 'enum', 'struct', 'union', 'alternate', 'command', 'event', not '{kw}'"
                ),
            );
            return;
        };
        let kw = kw.clone();
        let Some(name) = str_of(namev).map(String::from) else {
            self.err(&loc, format!("'{kw}' takes a name string"));
            return;
        };
        let get = |k: &str| x.dict.iter().find(|(dk, _)| dk == k).map(|(_, v)| v);
        for (k, _) in x.dict.iter().skip(1) {
            if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                self.err(&loc, format!("{kw} '{name}' has unknown key '{k}'"));
            }
        }
        for r in required {
            if get(r).is_none() {
                self.err(&loc, format!("{kw} '{name}' lacks key '{r}'"));
                return;
            }
        }
        // Naming.
        match kw.as_str() {
            "command" => {
                let exc = self.pragma.command_name_exceptions.contains(&name);
                if !is_lower(&name, exc, false) {
                    self.err(
                        &loc,
                        format!("command name '{name}' must be lower case with dashes"),
                    );
                }
            }
            "event" => {
                if !is_event_name(&name) {
                    self.err(
                        &loc,
                        format!("event name '{name}' must be upper case with underscores"),
                    );
                }
            }
            _ => {
                if !is_camel(&name) {
                    self.err(&loc, format!("type name '{name}' must be CamelCase"));
                } else if name.ends_with("List") {
                    self.err(&loc, format!("type name '{name}' must not end in 'List'"));
                }
            }
        }
        let cond = get("if").map(|v| self.cond(v, &loc)).unwrap_or_default();
        let features = get("features")
            .map(|v| self.features(v, &loc))
            .unwrap_or_default();
        let flag = |b: &mut Builder, k: &str, default: bool| -> bool {
            match get(k) {
                None => default,
                Some(v) => match bool_of(v) {
                    Some(b) => b,
                    None => {
                        b.err(
                            &Self::at(&loc, v.line),
                            format!("'{k}' of '{name}' must be true or false"),
                        );
                        default
                    }
                },
            }
        };
        let meta = match kw.as_str() {
            "enum" => {
                let relaxed = self.pragma.member_name_exceptions.contains(&name);
                let Some(Raw::List(items)) = get("data").map(|v| &v.value) else {
                    self.err(&loc, format!("enum '{name}': 'data' must be a list"));
                    return;
                };
                let mut values: Vec<EnumValue> = Vec::new();
                for it in items {
                    let l = Self::at(&loc, it.line);
                    let (vname, vcond, vfeat) = match &it.value {
                        Raw::Str(s) => (s.clone(), Cond::Always, Vec::new()),
                        Raw::Dict(d) => {
                            let mut n = None;
                            let mut c = Cond::Always;
                            let mut f = Vec::new();
                            for (k, v) in d {
                                match k.as_str() {
                                    "name" => n = str_of(v).map(String::from),
                                    "if" => c = self.cond(v, &loc),
                                    "features" => f = self.features(v, &loc),
                                    _ => self.err(
                                        &l,
                                        format!("enum '{name}' value has unknown key '{k}'"),
                                    ),
                                }
                            }
                            let Some(n) = n else {
                                self.err(&l, format!("enum '{name}': value needs a 'name'"));
                                continue;
                            };
                            (n, c, f)
                        }
                        _ => {
                            self.err(
                                &l,
                                format!("enum '{name}': values must be strings or objects"),
                            );
                            continue;
                        }
                    };
                    if !is_lower(&vname, relaxed, true) {
                        self.err(
                            &l,
                            format!(
                                "enum '{name}': value '{vname}' must be lower case with dashes"
                            ),
                        );
                    }
                    if values.iter().any(|v| v.name == vname) {
                        self.err(&l, format!("enum '{name}': duplicate value '{vname}'"));
                    }
                    values.push(EnumValue {
                        name: vname,
                        cond: vcond,
                        features: vfeat,
                        loc: l,
                    });
                }
                let prefix = match get("prefix") {
                    Some(v) => match str_of(v) {
                        Some(s) => Some(s.to_string()),
                        None => {
                            self.err(&loc, format!("enum '{name}': 'prefix' must be a string"));
                            None
                        }
                    },
                    None => None,
                };
                Meta::Enum(EnumDef { values, prefix })
            }
            "struct" => {
                let Some(Raw::Dict(d)) = get("data").map(|v| &v.value) else {
                    self.err(&loc, format!("struct '{name}': 'data' must be an object"));
                    return;
                };
                let members = self.members(d, &loc, &name);
                let base = match get("base") {
                    None => None,
                    Some(v) => match str_of(v) {
                        Some(s) => Some(s.to_string()),
                        None => {
                            self.err(&loc, format!("struct '{name}': 'base' must be a type name"));
                            None
                        }
                    },
                };
                Meta::Struct(StructDef { base, members })
            }
            "union" => {
                let base = match get("base").map(|v| &v.value) {
                    Some(Raw::Str(s)) => s.clone(),
                    Some(Raw::Dict(d)) => {
                        let members = self.members(d, &loc, &name);
                        let bname = format!("q_obj_{name}-base");
                        self.implicit_struct(bname.clone(), members, cond.clone(), &loc, x.module);
                        bname
                    }
                    _ => {
                        self.err(
                            &loc,
                            format!("union '{name}': 'base' must be a type name or an object"),
                        );
                        return;
                    }
                };
                let Some(disc) = get("discriminator").and_then(str_of).map(String::from) else {
                    self.err(
                        &loc,
                        format!("union '{name}': 'discriminator' must be a member name"),
                    );
                    return;
                };
                let Some(Raw::Dict(d)) = get("data").map(|v| &v.value) else {
                    self.err(&loc, format!("union '{name}': 'data' must be an object"));
                    return;
                };
                let variants = self.variants(d, &loc, &name);
                Meta::Union(UnionDef {
                    base,
                    discriminator: disc,
                    variants,
                })
            }
            "alternate" => {
                let Some(Raw::Dict(d)) = get("data").map(|v| &v.value) else {
                    self.err(
                        &loc,
                        format!("alternate '{name}': 'data' must be an object"),
                    );
                    return;
                };
                if d.is_empty() {
                    self.err(&loc, format!("alternate '{name}' has no branches"));
                }
                let variants = self.variants(d, &loc, &name);
                Meta::Alternate(AlternateDef { variants })
            }
            "command" | "event" => {
                let boxed = flag(self, "boxed", false);
                let args = match get("data").map(|v| &v.value) {
                    None => None,
                    Some(Raw::Str(s)) => Some(s.clone()),
                    Some(Raw::Dict(d)) => {
                        if boxed {
                            self.err(
                                &loc,
                                format!("'{name}': 'boxed' requires 'data' to be a type name"),
                            );
                        }
                        let members = self.members(d, &loc, &name);
                        let aname = format!("q_obj_{name}-arg");
                        self.implicit_struct(aname.clone(), members, cond.clone(), &loc, x.module);
                        Some(aname)
                    }
                    Some(_) => {
                        self.err(
                            &loc,
                            format!("'{name}': 'data' must be a type name or an object"),
                        );
                        None
                    }
                };
                if boxed && args.is_none() {
                    self.err(&loc, format!("'{name}': 'boxed' requires 'data'"));
                }
                if kw == "event" {
                    Meta::Event(EventDef { args, boxed })
                } else {
                    let returns = get("returns")
                        .and_then(|v| self.type_ref(v, &loc, &format!("command '{name}' returns")));
                    let gen = flag(self, "gen", true);
                    let success_response = flag(self, "success-response", true);
                    let allow_oob = flag(self, "allow-oob", false);
                    let allow_preconfig = flag(self, "allow-preconfig", false);
                    let coroutine = flag(self, "coroutine", false);
                    Meta::Command(CommandDef {
                        args,
                        boxed,
                        returns,
                        gen,
                        success_response,
                        allow_oob,
                        allow_preconfig,
                        coroutine,
                    })
                }
            }
            _ => return,
        };
        self.add(Entity {
            name,
            meta,
            cond,
            features,
            doc: x.doc,
            loc,
            module: x.module,
            implicit: false,
        });
    }

    fn variants(&mut self, d: &RawDict, loc: &Loc, owner: &str) -> Vec<Variant> {
        let mut out = Vec::new();
        for (k, v) in d {
            let l = Self::at(loc, v.line);
            let what = format!("'{owner}' branch '{k}'");
            let (ty, cond) = match &v.value {
                Raw::Dict(md) => {
                    let mut ty = None;
                    let mut cond = Cond::Always;
                    for (mk, mv) in md {
                        match mk.as_str() {
                            "type" => ty = self.type_ref(mv, loc, &what),
                            "if" => cond = self.cond(mv, loc),
                            _ => self.err(&l, format!("{what} has unknown key '{mk}'")),
                        }
                    }
                    match ty {
                        Some(t) => (t, cond),
                        None => {
                            self.err(&l, format!("{what} needs a 'type'"));
                            continue;
                        }
                    }
                }
                _ => match self.type_ref(v, loc, &what) {
                    Some(t) => (t, Cond::Always),
                    None => continue,
                },
            };
            out.push(Variant {
                name: k.clone(),
                ty,
                cond,
                loc: l,
            });
        }
        out
    }
}
