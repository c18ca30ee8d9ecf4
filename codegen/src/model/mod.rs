//! The semantic model of a QAPI schema: what the generators consume.
//!
//! A [`Schema`] holds every definition in definition order, including the
//! implicit object types QAPI creates for inline command arguments, inline
//! event data and inline union bases. Conditions are kept on every element;
//! generators decide what to do with disabled ones (introspection numbers them
//! and then drops them, the Rust generator skips them).

mod check;
mod cond;
mod define;
mod doc;
mod load;

use std::collections::HashMap;

pub use cond::{Cond, Profile, QSD_10_0_2_DEBIAN};
pub use doc::{parse_doc, Doc, DocItem, DocSection};
pub use load::load;

use crate::error::Loc;

/// A reference to a type: a name, or an array of a named element type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeRef {
    Named(String),
    Array(String),
}

impl TypeRef {
    /// The element name of an array, or the name itself.
    pub fn base_name(&self) -> &str {
        match self {
            TypeRef::Named(n) | TypeRef::Array(n) => n,
        }
    }

    pub fn is_array(&self) -> bool {
        matches!(self, TypeRef::Array(_))
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Named(n) => write!(f, "{n}"),
            TypeRef::Array(n) => write!(f, "[{n}]"),
        }
    }
}

/// A feature of a definition, member or enum value.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub cond: Cond,
}

impl Feature {
    /// `deprecated` and `unstable` have meaning to the QMP server.
    pub fn is_special(&self) -> bool {
        self.name == "deprecated" || self.name == "unstable"
    }
}

/// A member of an object type (struct, union base, command arguments, event
/// data).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub ty: TypeRef,
    pub optional: bool,
    pub cond: Cond,
    pub features: Vec<Feature>,
    pub loc: Loc,
}

/// A value of an enum.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumValue {
    pub name: String,
    pub cond: Cond,
    pub features: Vec<Feature>,
    pub loc: Loc,
}

/// A branch of a union or alternate.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The discriminator value (union) or the branch name (alternate).
    pub name: String,
    pub ty: TypeRef,
    pub cond: Cond,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnumDef {
    pub values: Vec<EnumValue>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructDef {
    pub base: Option<String>,
    /// Own members only; see [`Schema::all_members`] for base members too.
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnionDef {
    /// The base struct (an implicit `q_obj_NAME-base` type when inline).
    pub base: String,
    pub discriminator: String,
    /// Branches in schema order. Enum values without a branch have none here.
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlternateDef {
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandDef {
    /// The argument type (an implicit `q_obj_NAME-arg` type when inline).
    pub args: Option<String>,
    pub boxed: bool,
    pub returns: Option<TypeRef>,
    pub gen: bool,
    pub success_response: bool,
    pub allow_oob: bool,
    pub allow_preconfig: bool,
    pub coroutine: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// The data type (an implicit `q_obj_NAME-arg` type when inline).
    pub args: Option<String>,
    pub boxed: bool,
}

/// What kind of definition an entity is.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Enum(EnumDef),
    Struct(StructDef),
    Union(UnionDef),
    Alternate(AlternateDef),
    Command(CommandDef),
    Event(EventDef),
}

impl Meta {
    /// The schema keyword of this kind.
    pub fn keyword(&self) -> &'static str {
        match self {
            Meta::Enum(_) => "enum",
            Meta::Struct(_) => "struct",
            Meta::Union(_) => "union",
            Meta::Alternate(_) => "alternate",
            Meta::Command(_) => "command",
            Meta::Event(_) => "event",
        }
    }
}

/// One definition of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub name: String,
    pub meta: Meta,
    pub cond: Cond,
    pub features: Vec<Feature>,
    pub doc: Option<Doc>,
    pub loc: Loc,
    /// Index into [`Schema::modules`].
    pub module: usize,
    /// True for types QAPI creates for inline definitions.
    pub implicit: bool,
}

impl Entity {
    pub fn is_type(&self) -> bool {
        !matches!(self.meta, Meta::Command(_) | Meta::Event(_))
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.name == name)
    }
}

/// What a module's page is made of, in source order.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleItem {
    /// A free documentation block (heading and/or text).
    Doc(Doc),
    /// An explicit definition (index into [`Schema::entities`]).
    Entity(usize),
}

/// One schema file.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// File name relative to the directory of the main schema file.
    pub name: String,
    pub items: Vec<ModuleItem>,
}

/// The schema pragmas.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pragma {
    pub doc_required: bool,
    pub command_name_exceptions: Vec<String>,
    pub command_returns_exceptions: Vec<String>,
    pub documentation_exceptions: Vec<String>,
    pub member_name_exceptions: Vec<String>,
}

/// A built-in type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    /// The JSON type reported by introspection.
    pub json_type: &'static str,
}

/// The built-in types, in QAPI's order.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "str",
        json_type: "string",
    },
    Builtin {
        name: "number",
        json_type: "number",
    },
    Builtin {
        name: "int",
        json_type: "int",
    },
    Builtin {
        name: "int8",
        json_type: "int",
    },
    Builtin {
        name: "int16",
        json_type: "int",
    },
    Builtin {
        name: "int32",
        json_type: "int",
    },
    Builtin {
        name: "int64",
        json_type: "int",
    },
    Builtin {
        name: "uint8",
        json_type: "int",
    },
    Builtin {
        name: "uint16",
        json_type: "int",
    },
    Builtin {
        name: "uint32",
        json_type: "int",
    },
    Builtin {
        name: "uint64",
        json_type: "int",
    },
    Builtin {
        name: "size",
        json_type: "int",
    },
    Builtin {
        name: "bool",
        json_type: "boolean",
    },
    Builtin {
        name: "null",
        json_type: "null",
    },
    Builtin {
        name: "any",
        json_type: "value",
    },
];

/// Looks up a built-in type by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// A checked schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub modules: Vec<Module>,
    pub entities: Vec<Entity>,
    pub pragma: Pragma,
    pub profile: Profile,
    index: HashMap<String, usize>,
}

impl Schema {
    pub(crate) fn new(
        modules: Vec<Module>,
        entities: Vec<Entity>,
        pragma: Pragma,
        profile: Profile,
    ) -> Schema {
        let index = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Schema {
            modules,
            entities,
            pragma,
            profile,
            index,
        }
    }

    /// The definition named `name` (not built-ins).
    pub fn get(&self, name: &str) -> Option<&Entity> {
        self.index.get(name).map(|&i| &self.entities[i])
    }

    /// Whether `cond` holds in this schema's profile.
    pub fn enabled(&self, cond: &Cond) -> bool {
        cond.eval(&self.profile)
    }

    /// All members of a struct or union base, base members first, following
    /// the base chain. Empty for other kinds.
    pub fn all_members(&self, name: &str) -> Vec<&Member> {
        let mut chain = Vec::new();
        let mut cur = self.get(name);
        while let Some(e) = cur {
            match &e.meta {
                Meta::Struct(s) => {
                    chain.push(&s.members);
                    cur = s.base.as_deref().and_then(|b| self.get(b));
                }
                Meta::Union(u) => {
                    cur = self.get(&u.base);
                }
                _ => break,
            }
            if chain.len() > 64 {
                break;
            }
        }
        chain.into_iter().rev().flatten().collect()
    }

    /// Commands in definition order.
    pub fn commands(&self) -> impl Iterator<Item = (&Entity, &CommandDef)> {
        self.entities.iter().filter_map(|e| match &e.meta {
            Meta::Command(c) => Some((e, c)),
            _ => None,
        })
    }

    /// Events in definition order.
    pub fn events(&self) -> impl Iterator<Item = (&Entity, &EventDef)> {
        self.entities.iter().filter_map(|e| match &e.meta {
            Meta::Event(c) => Some((e, c)),
            _ => None,
        })
    }
}
