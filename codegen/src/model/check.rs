//! Semantic rules: type references, bases, unions, alternates, command
//! arguments and returns, and documentation coverage.

use super::define::Builder;
use super::*;
use crate::error::Loc;

impl Builder {
    fn kind_of(&self, name: &str) -> Option<&Meta> {
        self.index.get(name).map(|&i| &self.entities[i].meta)
    }

    fn check_ref(&mut self, t: &TypeRef, loc: &Loc, what: &str) {
        let n = t.base_name();
        if builtin(n).is_some() {
            return;
        }
        match self.kind_of(n) {
            None => self.err(loc, format!("{what} uses unknown type '{n}'")),
            Some(Meta::Command(_)) | Some(Meta::Event(_)) => {
                self.err(loc, format!("{what} uses '{n}', which is not a type"))
            }
            _ => {}
        }
    }

    /// Members of a struct including base chain, for collision checks.
    fn struct_members(&self, name: &str, depth: usize) -> Option<Vec<(String, String)>> {
        if depth > 32 {
            return None;
        }
        match self.kind_of(name)? {
            Meta::Struct(s) => {
                let mut v = match &s.base {
                    Some(b) => self.struct_members(b, depth + 1)?,
                    None => Vec::new(),
                };
                v.extend(s.members.iter().map(|m| (m.name.clone(), name.to_string())));
                Some(v)
            }
            Meta::Union(u) => self.struct_members(&u.base, depth + 1),
            _ => None,
        }
    }

    pub(super) fn check(&mut self) {
        let entities = self.entities.clone();
        for e in &entities {
            let loc = &e.loc;
            match &e.meta {
                Meta::Enum(_) => {}
                Meta::Struct(s) => {
                    for m in &s.members {
                        self.check_ref(&m.ty, &m.loc, &format!("'{}' member '{}'", e.name, m.name));
                    }
                    if let Some(b) = &s.base {
                        match self.kind_of(b) {
                            Some(Meta::Struct(_)) => {}
                            None => self.err(loc, format!("'{}' has unknown base '{b}'", e.name)),
                            _ => self
                                .err(loc, format!("base '{b}' of '{}' must be a struct", e.name)),
                        }
                        if self.struct_members(&e.name, 0).is_none() {
                            self.err(loc, format!("'{}' has a base chain that loops", e.name));
                        } else if let Some(bm) = self.struct_members(b, 0) {
                            for m in &s.members {
                                if let Some((_, owner)) = bm.iter().find(|(n, _)| *n == m.name) {
                                    self.err(
                                        &m.loc,
                                        format!("member '{}' of '{}' collides with member '{}' of base '{owner}'", m.name, e.name, m.name),
                                    );
                                }
                            }
                        }
                    }
                }
                Meta::Union(u) => self.check_union(e, u),
                Meta::Alternate(a) => self.check_alternate(e, a),
                Meta::Command(c) => {
                    if let Some(a) = &c.args {
                        self.check_args(e, a, c.boxed);
                    }
                    if let Some(r) = &c.returns {
                        self.check_ref(r, loc, &format!("command '{}' returns", e.name));
                        let obj = matches!(
                            self.kind_of(r.base_name()),
                            Some(Meta::Struct(_)) | Some(Meta::Union(_))
                        );
                        let exc = self.pragma.command_returns_exceptions.contains(&e.name);
                        if !obj
                            && !exc
                            && (builtin(r.base_name()).is_some()
                                || self.kind_of(r.base_name()).is_some())
                        {
                            self.err(loc, format!("command '{}' returns '{r}': only object types or arrays of them may be returned", e.name));
                        }
                    }
                }
                Meta::Event(ev) => {
                    if let Some(a) = &ev.args {
                        self.check_args(e, a, ev.boxed);
                    }
                }
            }
        }
        self.check_docs();
    }

    fn check_args(&mut self, e: &Entity, a: &str, boxed: bool) {
        match self.kind_of(a) {
            Some(Meta::Struct(_)) => {}
            Some(Meta::Union(_)) if boxed => {}
            Some(Meta::Union(_)) => self.err(
                &e.loc,
                format!("'{}': a union as 'data' requires 'boxed': true", e.name),
            ),
            None => self.err(
                &e.loc,
                format!("'{}' has unknown 'data' type '{a}'", e.name),
            ),
            _ => self.err(
                &e.loc,
                format!("'{}': 'data' type '{a}' must be an object type", e.name),
            ),
        }
    }

    fn check_union(&mut self, e: &Entity, u: &UnionDef) {
        let loc = &e.loc;
        match self.kind_of(&u.base) {
            Some(Meta::Struct(_)) => {}
            None => {
                self.err(
                    loc,
                    format!("union '{}' has unknown base '{}'", e.name, u.base),
                );
                return;
            }
            _ => {
                self.err(
                    loc,
                    format!("base '{}' of union '{}' must be a struct", u.base, e.name),
                );
                return;
            }
        }
        if let Some(Meta::Struct(s)) = self.kind_of(&u.base) {
            let ms = s.members.clone();
            for m in &ms {
                self.check_ref(&m.ty, &m.loc, &format!("'{}' member '{}'", e.name, m.name));
            }
        }
        let Some(base_members) = self.struct_members(&u.base, 0) else {
            return;
        };
        let all: Vec<Member> = {
            let mut v = Vec::new();
            let mut cur = Some(u.base.clone());
            let mut chain = Vec::new();
            while let Some(b) = cur {
                match self.kind_of(&b) {
                    Some(Meta::Struct(s)) => {
                        chain.push(s.members.clone());
                        cur = s.base.clone();
                    }
                    _ => break,
                }
            }
            for c in chain.into_iter().rev() {
                v.extend(c);
            }
            v
        };
        let Some(disc) = all.iter().find(|m| m.name == u.discriminator) else {
            self.err(
                loc,
                format!(
                    "discriminator '{}' is not a member of the base of union '{}'",
                    u.discriminator, e.name
                ),
            );
            return;
        };
        if disc.optional {
            self.err(
                loc,
                format!(
                    "discriminator '{}' of union '{}' must not be optional",
                    disc.name, e.name
                ),
            );
        }
        if !disc.cond.is_always() {
            self.err(
                loc,
                format!(
                    "discriminator '{}' of union '{}' must not be conditional",
                    disc.name, e.name
                ),
            );
        }
        let values: Vec<String> = match (&disc.ty, self.kind_of(disc.ty.base_name())) {
            (TypeRef::Named(_), Some(Meta::Enum(en))) => {
                en.values.iter().map(|v| v.name.clone()).collect()
            }
            _ => {
                self.err(
                    loc,
                    format!(
                        "discriminator '{}' of union '{}' must be of enum type",
                        disc.name, e.name
                    ),
                );
                return;
            }
        };
        for v in &u.variants {
            if !values.contains(&v.name) {
                self.err(
                    &v.loc,
                    format!(
                        "union '{}' branch '{}' is not a value of '{}'",
                        e.name,
                        v.name,
                        disc.ty.base_name()
                    ),
                );
            }
            self.check_ref(
                &v.ty,
                &v.loc,
                &format!("union '{}' branch '{}'", e.name, v.name),
            );
            if v.ty.is_array() {
                self.err(
                    &v.loc,
                    format!("union '{}' branch '{}' can't be an array", e.name, v.name),
                );
                continue;
            }
            match self.kind_of(v.ty.base_name()) {
                Some(Meta::Struct(_)) => {
                    if let Some(vm) = self.struct_members(v.ty.base_name(), 0) {
                        for (n, owner) in vm {
                            if base_members.iter().any(|(b, _)| *b == n) {
                                self.err(&v.loc, format!("member '{n}' of branch type '{owner}' collides with the base of union '{}'", e.name));
                            }
                        }
                    }
                }
                Some(Meta::Union(_)) => {}
                _ if builtin(v.ty.base_name()).is_some() => self.err(
                    &v.loc,
                    format!(
                        "union '{}' branch '{}' must be an object type",
                        e.name, v.name
                    ),
                ),
                None => {}
                _ => self.err(
                    &v.loc,
                    format!(
                        "union '{}' branch '{}' must be an object type",
                        e.name, v.name
                    ),
                ),
            }
        }
    }

    fn check_alternate(&mut self, e: &Entity, a: &AlternateDef) {
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for v in &a.variants {
            self.check_ref(
                &v.ty,
                &v.loc,
                &format!("alternate '{}' branch '{}'", e.name, v.name),
            );
            let class = if v.ty.is_array() {
                "array"
            } else {
                let n = v.ty.base_name();
                match (builtin(n), self.kind_of(n)) {
                    (Some(b), _) => match b.json_type {
                        "string" => "string",
                        "int" | "number" => "number",
                        "boolean" => "boolean",
                        "null" => "null",
                        _ => {
                            self.err(
                                &v.loc,
                                format!(
                                    "alternate '{}' branch '{}' can't be of type '{n}'",
                                    e.name, v.name
                                ),
                            );
                            continue;
                        }
                    },
                    (None, Some(Meta::Enum(_))) => "string",
                    (None, Some(Meta::Struct(_))) | (None, Some(Meta::Union(_))) => "object",
                    (None, Some(Meta::Alternate(_))) => {
                        self.err(
                            &v.loc,
                            format!(
                                "alternate '{}' branch '{}' can't be another alternate",
                                e.name, v.name
                            ),
                        );
                        continue;
                    }
                    _ => continue,
                }
            };
            if let Some((_, other)) = seen.iter().find(|(c, _)| *c == class) {
                self.err(&v.loc, format!("alternate '{}' branch '{}' can't be distinguished from branch '{other}' (both are JSON {class}s)", e.name, v.name));
            }
            seen.push((class, v.name.clone()));
        }
    }

    fn check_docs(&mut self) {
        let required = self.pragma.doc_required;
        let entities = self.entities.clone();
        for e in entities.iter().filter(|e| !e.implicit) {
            let Some(doc) = &e.doc else {
                if required {
                    self.err(&e.loc, format!("definition '{}' has no doc block", e.name));
                }
                continue;
            };
            if doc.symbol.as_deref() != Some(e.name.as_str()) {
                self.err(
                    &doc.loc,
                    format!(
                        "doc block names '{}' but documents '{}'",
                        doc.symbol.clone().unwrap_or_default(),
                        e.name
                    ),
                );
                continue;
            }
            // What must be documented.
            let mut want: Vec<String> = Vec::new();
            let mut feats: Vec<String> = e.features.iter().map(|f| f.name.clone()).collect();
            let add_feats = |fs: &[Feature], feats: &mut Vec<String>| {
                for f in fs {
                    if !feats.contains(&f.name) {
                        feats.push(f.name.clone());
                    }
                }
            };
            let own_members = |name: &str| -> Vec<Member> {
                match self.kind_of(name) {
                    Some(Meta::Struct(s)) => s.members.clone(),
                    _ => Vec::new(),
                }
            };
            let mut members: Vec<Member> = Vec::new();
            match &e.meta {
                Meta::Enum(en) => {
                    want = en.values.iter().map(|v| v.name.clone()).collect();
                    for v in &en.values {
                        add_feats(&v.features, &mut feats);
                    }
                }
                Meta::Struct(s) => members = s.members.clone(),
                Meta::Union(u) if u.base.starts_with("q_obj_") => {
                    members = own_members(&u.base);
                }
                Meta::Alternate(a) => want = a.variants.iter().map(|v| v.name.clone()).collect(),
                Meta::Command(CommandDef { args: Some(a), .. })
                | Meta::Event(EventDef { args: Some(a), .. })
                    if a.starts_with("q_obj_") =>
                {
                    members = own_members(a);
                }
                _ => {}
            }
            for m in &members {
                want.push(m.name.clone());
                add_feats(&m.features, &mut feats);
            }
            let exception = self.pragma.documentation_exceptions.contains(&e.name);
            for w in &want {
                if doc.member(w).is_none() && required && !exception {
                    self.err(
                        &doc.loc,
                        format!("'{}': member '{w}' is not documented", e.name),
                    );
                }
            }
            for d in &doc.members {
                if !want.contains(&d.name) {
                    self.err(
                        &d.loc,
                        format!(
                            "'{}': documented member '{}' does not exist",
                            e.name, d.name
                        ),
                    );
                }
            }
            for f in &feats {
                if doc.feature(f).is_none() && required {
                    self.err(
                        &doc.loc,
                        format!("'{}': feature '{f}' is not documented", e.name),
                    );
                }
            }
            for d in &doc.features {
                if !feats.contains(&d.name) {
                    self.err(
                        &d.loc,
                        format!(
                            "'{}': documented feature '{}' does not exist",
                            e.name, d.name
                        ),
                    );
                }
            }
            if let Meta::Command(c) = &e.meta {
                if c.returns.is_none() && doc.section("Returns").is_some() {
                    self.err(
                        &doc.loc,
                        format!("'{}' returns nothing but documents 'Returns:'", e.name),
                    );
                }
            }
        }
    }
}
