//! Types: enums, structs (and implicit argument types), unions, alternates.

use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{json, Value};

use super::names::{camel, ident, snake};
use super::Ctx;
use crate::model::*;

pub fn generate(cx: &Ctx) -> Result<TokenStream, String> {
    let mut out = TokenStream::new();
    for e in &cx.schema.entities {
        if !e.is_type() || !cx.enabled(&e.cond) {
            continue;
        }
        // Inline union bases are folded into their union.
        if e.implicit && e.name.ends_with("-base") {
            continue;
        }
        let doc = doc_paras(cx, e);
        out.extend(match &e.meta {
            Meta::Enum(en) => enum_type(cx, e, en, &doc),
            Meta::Struct(_) => struct_type(cx, e, &doc)?,
            Meta::Union(u) => union_type(cx, e, u, &doc)?,
            Meta::Alternate(a) => alternate_type(cx, e, a, &doc),
            _ => TokenStream::new(),
        });
    }
    Ok(out)
}

/// Summary paragraphs of an entity, plus its `Since:`.
fn doc_paras(cx: &Ctx, e: &Entity) -> Vec<String> {
    let mut v = Vec::new();
    match &e.doc {
        Some(d) => {
            v.extend(d.body.iter().cloned());
            if let Some(s) = d.section("Since") {
                v.push(format!("Since: {s}"));
            }
        }
        None if e.implicit => {
            let owner = e.name.trim_start_matches("q_obj_").trim_end_matches("-arg");
            let is_event = cx
                .schema
                .events()
                .any(|(_, ev)| ev.args.as_deref() == Some(e.name.as_str()));
            if is_event {
                v.push(format!("Data of event `{owner}`."));
            } else {
                v.push(format!("Arguments of command `{owner}`."));
            }
        }
        None => {}
    }
    v
}

/// The doc text of member `name` of entity `owner` (looked up in the doc
/// block that documents it: the owner, or the command/event/union that
/// declared it inline).
fn member_doc(cx: &Ctx, owner: &str, name: &str) -> Vec<String> {
    let doc_owner = documenting_entity(cx, owner);
    doc_owner
        .and_then(|e| e.doc.as_ref())
        .and_then(|d| d.member(name))
        .map(|m| m.text.split("\n\n").map(String::from).collect())
        .unwrap_or_default()
}

/// The explicit entity whose doc block documents the members of `name`.
fn documenting_entity<'a>(cx: &Ctx<'a>, name: &str) -> Option<&'a Entity> {
    let e = cx.schema.get(name)?;
    if !e.implicit {
        return Some(e);
    }
    cx.schema.entities.iter().find(|o| match &o.meta {
        Meta::Command(c) => c.args.as_deref() == Some(name),
        Meta::Event(ev) => ev.args.as_deref() == Some(name),
        Meta::Union(u) => u.base == name,
        _ => false,
    })
}

/// Which struct declares member `m` (for member docs), given the type whose
/// members are being generated.
fn declaring_struct<'a>(cx: &Ctx<'a>, ty: &str, m: &str) -> String {
    let mut cur = Some(ty.to_string());
    let mut last = ty.to_string();
    while let Some(n) = cur {
        last = n.clone();
        match cx.kind(&n) {
            Some(Meta::Struct(s)) => {
                if s.members.iter().any(|x| x.name == m) {
                    return n;
                }
                cur = s.base.clone();
            }
            Some(Meta::Union(u)) => cur = Some(u.base.clone()),
            _ => cur = None,
        }
    }
    last
}

fn enum_type(cx: &Ctx, e: &Entity, en: &EnumDef, doc: &[String]) -> TokenStream {
    let name = ident(&cx.rust_name(&e.name));
    let docs = cx.doc_attrs(doc);
    let values: Vec<&EnumValue> = en.values.iter().filter(|v| cx.enabled(&v.cond)).collect();
    let idents: Vec<_> = values.iter().map(|v| ident(&camel(&v.name))).collect();
    let strs: Vec<&str> = values.iter().map(|v| v.name.as_str()).collect();
    let vdocs: Vec<TokenStream> = values
        .iter()
        .map(|v| {
            let d = e
                .doc
                .as_ref()
                .and_then(|d| d.member(&v.name))
                .map(|m| vec![m.text.clone()])
                .unwrap_or_default();
            cx.doc_attrs(&d)
        })
        .collect();
    let schema = json!({
        "type": "string",
        "enum": strs,
        "description": doc.join("\n\n"),
    })
    .to_string();
    let type_name = e.name.as_str();
    quote! {
        #docs
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        pub enum #name {
            #( #vdocs #[serde(rename = #strs)] #idents, )*
        }

        impl #name {
            /// Every value, in schema order.
            pub const ALL: &'static [#name] = &[ #( #name::#idents ),* ];

            /// The value as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self { #( #name::#idents => #strs, )* }
            }

            /// The value named `s`, if any.
            #[allow(clippy::should_implement_trait)]
            pub fn parse(s: &str) -> ::std::option::Option<Self> {
                match s { #( #strs => ::std::option::Option::Some(#name::#idents), )* _ => ::std::option::Option::None }
            }
        }

        impl ::std::fmt::Display for #name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl crate::visit::Visit for #name {
            fn visit(v: &::serde_json::Value, p: &crate::visit::Path) -> crate::visit::Result<Self> {
                crate::visit::enumeration(v, p, #name::parse)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                crate::ser::deserialize(d)
            }
        }

        impl ::schemars::JsonSchema for #name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> { #type_name.into() }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                crate::ser::schema_from_json(#schema)
            }
        }
    }
}

/// Field declarations, visitor initialisers, serializers and schema
/// properties for a list of members of type `owner`.
struct MemberCode {
    fields: Vec<TokenStream>,
    inits: Vec<TokenStream>,
    sers: Vec<TokenStream>,
    props: Vec<TokenStream>,
    all_optional: bool,
}

fn member_code(
    cx: &Ctx,
    owner: &str,
    members: &[&Member],
    skip: Option<&str>,
) -> Result<MemberCode, String> {
    let mut mc = MemberCode {
        fields: Vec::new(),
        inits: Vec::new(),
        sers: Vec::new(),
        props: Vec::new(),
        all_optional: true,
    };
    let mut seen = std::collections::HashSet::new();
    for m in members {
        let wire = m.name.as_str();
        let visit = cx.visit_fn(owner, &m.ty);
        if Some(wire) == skip {
            // The union discriminator: read in place, kept as the branch.
            mc.inits
                .push(quote!(let discriminator = f.req(#wire, #visit)?;));
            mc.sers
                .push(quote!(m.serialize_entry(#wire, &self.u.discriminator())?;));
            let ty = cx.rust_type(owner, &m.ty);
            mc.props
                .push(quote!((#wire, g.subschema_for::<#ty>(), true)));
            continue;
        }
        let field_s = snake(wire);
        if !seen.insert(field_s.clone()) || field_s == "u" {
            return Err(format!(
                "{}: member '{wire}' of '{owner}' has a Rust name clash",
                m.loc
            ));
        }
        let field = ident(&field_s);
        let ty = cx.rust_type(owner, &m.ty);
        let decl = declaring_struct(cx, owner, wire);
        let docs = cx.doc_attrs(&member_doc(cx, &decl, wire));
        if m.optional {
            mc.fields
                .push(quote!(#docs pub #field: ::std::option::Option<#ty>,));
            mc.inits.push(quote!(let #field = f.opt(#wire, #visit)?;));
            mc.sers.push(quote!(if let ::std::option::Option::Some(x) = &self.#field { m.serialize_entry(#wire, x)?; }));
            mc.props
                .push(quote!((#wire, g.subschema_for::<#ty>(), false)));
        } else {
            mc.all_optional = false;
            mc.fields.push(quote!(#docs pub #field: #ty,));
            mc.inits.push(quote!(let #field = f.req(#wire, #visit)?;));
            mc.sers
                .push(quote!(m.serialize_entry(#wire, &self.#field)?;));
            mc.props
                .push(quote!((#wire, g.subschema_for::<#ty>(), true)));
        }
    }
    Ok(mc)
}

fn field_names(members: &[&Member], skip: Option<&str>) -> Vec<proc_macro2::Ident> {
    members
        .iter()
        .filter(|m| Some(m.name.as_str()) != skip)
        .map(|m| ident(&snake(&m.name)))
        .collect()
}

/// The trait impls every object type shares.
fn object_impls(
    name: &proc_macro2::Ident,
    type_name: &str,
    description: &str,
    schema_extra: TokenStream,
    props: &[TokenStream],
) -> TokenStream {
    let schema_extra = if schema_extra.is_empty() {
        quote!(crate::ser::object_schema(#description, props))
    } else {
        quote! {
            let mut s = crate::ser::object_schema(#description, props);
            #schema_extra
            s
        }
    };
    quote! {
        impl crate::visit::Visit for #name {
            fn visit(v: &::serde_json::Value, p: &crate::visit::Path) -> crate::visit::Result<Self> {
                crate::visit::object(v, p)
            }
        }

        impl ::serde::Serialize for #name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                crate::ser::serialize_object(self, s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                crate::ser::deserialize(d)
            }
        }

        impl ::schemars::JsonSchema for #name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> { #type_name.into() }
            #[allow(unused_variables)]
            fn json_schema(g: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                let props: ::std::vec::Vec<(&str, ::schemars::Schema, bool)> = ::std::vec![#(#props),*];
                #schema_extra
            }
        }
    }
}

fn struct_type(cx: &Ctx, e: &Entity, doc: &[String]) -> Result<TokenStream, String> {
    let rust = cx.rust_name(&e.name);
    let name = ident(&rust);
    let docs = cx.doc_attrs(doc);
    let members = cx.members(&e.name);
    let mc = member_code(cx, &e.name, &members, None)?;
    let MemberCode {
        fields,
        inits,
        sers,
        props,
        all_optional,
    } = mc;
    let names = field_names(&members, None);
    let default = if all_optional {
        quote!(Default,)
    } else {
        quote!()
    };
    let impls = object_impls(&name, &rust, &doc.join("\n\n"), quote!(), &props);
    Ok(quote! {
        #docs
        #[derive(Clone, Debug, PartialEq, #default)]
        pub struct #name {
            #(#fields)*
        }

        impl crate::visit::VisitMembers for #name {
            #[allow(unused_variables)]
            fn visit_members(f: &mut crate::visit::Fields) -> crate::visit::Result<Self> {
                #(#inits)*
                ::std::result::Result::Ok(#name { #(#names),* })
            }
        }

        impl crate::ser::SerializeMembers for #name {
            #[allow(unused_variables)]
            fn serialize_members<M: ::serde::ser::SerializeMap>(&self, m: &mut M) -> ::std::result::Result<(), M::Error> {
                #(#sers)*
                ::std::result::Result::Ok(())
            }
        }

        #impls
    })
}

fn union_type(cx: &Ctx, e: &Entity, u: &UnionDef, doc: &[String]) -> Result<TokenStream, String> {
    let rust = cx.rust_name(&e.name);
    let name = ident(&rust);
    let branch_name = ident(&format!("{rust}Branch"));
    let docs = cx.doc_attrs(doc);
    let members = cx.members(&u.base);
    let disc = members
        .iter()
        .find(|m| m.name == u.discriminator)
        .ok_or_else(|| format!("{}: discriminator of '{}' not found", e.loc, e.name))?;
    let disc_ty_name = disc.ty.base_name().to_string();
    let disc_ty = ident(&cx.rust_name(&disc_ty_name));
    let disc_fn = ident(&snake(&u.discriminator));
    let Some(Meta::Enum(en)) = cx.kind(&disc_ty_name) else {
        return Err(format!(
            "{}: discriminator of '{}' is not an enum",
            e.loc, e.name
        ));
    };
    let mc = member_code(cx, &e.name, &members, Some(&u.discriminator))?;
    let MemberCode {
        fields,
        inits,
        sers,
        props,
        ..
    } = mc;
    let names = field_names(&members, Some(&u.discriminator));

    let mut variants = Vec::new();
    let mut disc_arms = Vec::new();
    let mut visit_arms = Vec::new();
    let mut ser_arms = Vec::new();
    let mut one_of = Vec::new();
    for val in en.values.iter().filter(|v| cx.enabled(&v.cond)) {
        let vid = ident(&camel(&val.name));
        let wire = val.name.as_str();
        let branch = u
            .variants
            .iter()
            .find(|b| b.name == val.name && cx.enabled(&b.cond));
        match branch {
            Some(b) => {
                let ty = cx.rust_type(&e.name, &b.ty);
                let bty = cx.rust_type_name(b.ty.base_name());
                let d = cx.doc_attrs(&[format!("`{}`: {wire}", u.discriminator)]);
                variants.push(quote!(#d #vid(#ty),));
                disc_arms.push(quote!(#branch_name::#vid(_) => #disc_ty::#vid,));
                let read = if cx.is_boxed(&e.name, &b.ty) {
                    quote!(::std::boxed::Box::new(<#bty as crate::visit::VisitMembers>::visit_members(f)?))
                } else {
                    quote!(<#bty as crate::visit::VisitMembers>::visit_members(f)?)
                };
                visit_arms.push(quote!(#disc_ty::#vid => #branch_name::#vid(#read),));
                let inner = if cx.is_boxed(&e.name, &b.ty) {
                    quote!(&**x)
                } else {
                    quote!(x)
                };
                ser_arms.push(quote!(#branch_name::#vid(x) => crate::ser::SerializeMembers::serialize_members(#inner, m),));
                one_of
                    .push(quote!((#wire, ::std::option::Option::Some(g.subschema_for::<#bty>()))));
            }
            None => {
                let d = cx.doc_attrs(&[format!(
                    "`{}`: {wire} (no further members)",
                    u.discriminator
                )]);
                variants.push(quote!(#d #vid,));
                disc_arms.push(quote!(#branch_name::#vid => #disc_ty::#vid,));
                visit_arms.push(quote!(#disc_ty::#vid => #branch_name::#vid,));
                ser_arms.push(quote!(#branch_name::#vid => ::std::result::Result::Ok(()),));
                one_of.push(quote!((#wire, ::std::option::Option::None)));
            }
        }
    }
    let disc_wire = u.discriminator.as_str();
    let extra = quote! {
        let branches: ::std::vec::Vec<(&str, ::std::option::Option<::schemars::Schema>)> = ::std::vec![#(#one_of),*];
        crate::ser::add_union_branches(&mut s, #disc_wire, branches);
    };
    let impls = object_impls(&name, &e.name, &doc.join("\n\n"), extra, &props);
    let branch_doc =
        format!(" The branches of [`{rust}`], one per value of its discriminator `{disc_wire}`.");
    Ok(quote! {
        #docs
        #[derive(Clone, Debug, PartialEq)]
        pub struct #name {
            #(#fields)*
            /// The members that depend on the discriminator.
            pub u: #branch_name,
        }

        #[doc = #branch_doc]
        #[derive(Clone, Debug, PartialEq)]
        pub enum #branch_name {
            #(#variants)*
        }

        impl #branch_name {
            /// The discriminator value this branch belongs to.
            pub fn discriminator(&self) -> #disc_ty {
                match self { #(#disc_arms)* }
            }
        }

        impl #name {
            /// The discriminator, derived from the branch.
            pub fn #disc_fn(&self) -> #disc_ty {
                self.u.discriminator()
            }
        }

        impl crate::visit::VisitMembers for #name {
            #[allow(unused_variables)]
            fn visit_members(f: &mut crate::visit::Fields) -> crate::visit::Result<Self> {
                #(#inits)*
                let u = match discriminator { #(#visit_arms)* };
                ::std::result::Result::Ok(#name { #(#names,)* u })
            }
        }

        impl crate::ser::SerializeMembers for #name {
            fn serialize_members<M: ::serde::ser::SerializeMap>(&self, m: &mut M) -> ::std::result::Result<(), M::Error> {
                #(#sers)*
                match &self.u { #(#ser_arms)* }
            }
        }

        #impls
    })
}

fn alternate_type(cx: &Ctx, e: &Entity, a: &AlternateDef, doc: &[String]) -> TokenStream {
    let rust = cx.rust_name(&e.name);
    let name = ident(&rust);
    let docs = cx.doc_attrs(doc);
    let type_name = e.name.as_str();
    let mut variants = Vec::new();
    let mut ser_arms = Vec::new();
    let mut schemas = Vec::new();
    // Branch per JSON class.
    let mut by_class: Vec<(&'static str, TokenStream)> = Vec::new();
    let mut string_like: Option<TokenStream> = None;
    let mut scalar_fallback: Option<TokenStream> = None;
    for b in a.variants.iter().filter(|b| cx.enabled(&b.cond)) {
        let vid = ident(&camel(&b.name));
        let ty = cx.rust_type(&e.name, &b.ty);
        let visit = cx.visit_fn(&e.name, &b.ty);
        let d = e
            .doc
            .as_ref()
            .and_then(|d| d.member(&b.name))
            .map(|m| vec![m.text.clone()])
            .unwrap_or_default();
        let vd = cx.doc_attrs(&d);
        variants.push(quote!(#vd #vid(#ty),));
        ser_arms.push(quote!(#name::#vid(x) => ::serde::Serialize::serialize(x, s),));
        schemas.push(quote!(g.subschema_for::<#ty>()));
        let make = quote!(::std::result::Result::Ok(#name::#vid((#visit)(v, p)?)));
        let class = if b.ty.is_array() {
            "Array"
        } else {
            match (builtin(b.ty.base_name()), cx.kind(b.ty.base_name())) {
                (Some(bi), _) => match bi.json_type {
                    "string" => "String",
                    "int" | "number" => "Number",
                    "boolean" => "Boolean",
                    "null" => "Null",
                    _ => "Object",
                },
                (None, Some(Meta::Enum(_))) => "String",
                _ => "Object",
            }
        };
        match class {
            "String" => string_like = Some(make.clone()),
            "Number" | "Boolean" if scalar_fallback.is_none() => {
                scalar_fallback = Some(make.clone())
            }
            _ => {}
        }
        by_class.push((class, make));
    }
    let mut arms = Vec::new();
    for (class, make) in &by_class {
        let c = ident(class);
        arms.push(quote!(crate::visit::JsonClass::#c => #make,));
    }
    // In keyval mode every scalar arrives as a string: a string goes to the
    // string branch if there is one, else to the numeric/boolean branch.
    let keyval_string = match (&string_like, &scalar_fallback) {
        (None, Some(make)) => quote! {
            if p.mode() == crate::visit::Mode::Keyval && v.is_string() {
                return #make;
            }
        },
        _ => quote!(),
    };
    let description = doc.join("\n\n");
    quote! {
        #docs
        #[derive(Clone, Debug, PartialEq)]
        pub enum #name {
            #(#variants)*
        }

        impl crate::visit::Visit for #name {
            #[allow(unreachable_patterns)]
            fn visit(v: &::serde_json::Value, p: &crate::visit::Path) -> crate::visit::Result<Self> {
                #keyval_string
                match crate::visit::json_class(v) {
                    #(#arms)*
                    _ => ::std::result::Result::Err(crate::visit::invalid_alternate(p, #type_name)),
                }
            }
        }

        impl ::serde::Serialize for #name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                match self { #(#ser_arms)* }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                crate::ser::deserialize(d)
            }
        }

        impl ::schemars::JsonSchema for #name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> { #type_name.into() }
            fn json_schema(g: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                crate::ser::one_of_schema(#description, ::std::vec![#(#schemas),*])
            }
        }
    }
}

#[allow(dead_code)]
fn unused(_: Value) {}
