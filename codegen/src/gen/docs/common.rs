//! Helpers shared by the documentation renderers: the page layout (which
//! module goes to which page, heading anchors), member lookup with the doc
//! text that belongs to each member, and `@name` references in prose.

use std::collections::{HashMap, HashSet};

use crate::model::*;

/// The file name of the Markdown index page.
pub(crate) const INDEX_PAGE: &str = "README.md";

/// The anchor of the built-in types section on the index page.
pub(crate) const BUILTINS_ANCHOR: &str = "built-in-types";

/// A heading of a free doc block on a page.
#[derive(Debug, Clone)]
pub(crate) struct Heading {
    /// Markdown heading level (1 = page title).
    pub level: usize,
    pub title: String,
}

/// One module page.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// Index into [`Schema::modules`].
    pub module: usize,
    /// File name in the Markdown directory, e.g. `block-core.md`.
    pub file: String,
    /// The page title: the module's first level-1 heading, or its file stem.
    pub title: String,
}

/// Where each module and definition is documented.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The main schema file, whose free doc blocks introduce the index page.
    pub main: Option<usize>,
    pub pages: Vec<Page>,
    /// Explicit definition name -> (page index, anchor).
    anchors: HashMap<String, (usize, String)>,
    /// Per page: the free doc headings, by item position.
    doc_anchors: Vec<HashMap<usize, Heading>>,
    /// Per page: heading level of each definition, by item position.
    def_levels: Vec<HashMap<usize, usize>>,
}

/// GitHub-style heading slug: lower case, letters, digits, `-` and `_`
/// kept, spaces become `-`, everything else dropped.
pub(crate) fn slug(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// Hands out unique anchors on one page the way GitHub does (`x`, `x-1`, ...).
#[derive(Default)]
struct Slugger {
    used: HashSet<String>,
}

impl Slugger {
    fn take(&mut self, title: &str) -> String {
        let base = slug(title);
        let mut s = base.clone();
        let mut n = 0;
        while !self.used.insert(s.clone()) {
            n += 1;
            s = format!("{base}-{n}");
        }
        s
    }
}

fn page_file(module: &str) -> String {
    let stem = module.strip_suffix(".json").unwrap_or(module);
    let stem = stem.replace(['/', '\\'], "-");
    if stem.eq_ignore_ascii_case("README") {
        format!("{stem}-module.md")
    } else {
        format!("{stem}.md")
    }
}

fn first_heading(m: &Module) -> Option<&(usize, String)> {
    match m.items.first() {
        Some(ModuleItem::Doc(d)) => d.heading.as_ref().filter(|(l, _)| *l == 1),
        _ => None,
    }
}

impl Layout {
    /// Assigns pages and anchors: every module but the main file gets a page;
    /// definitions sit one level below the heading they follow.
    pub(crate) fn new(schema: &Schema) -> Layout {
        let main = if schema.modules.is_empty() {
            None
        } else {
            Some(0)
        };
        let mut pages = Vec::new();
        let mut anchors = HashMap::new();
        let mut doc_anchors = Vec::new();
        let mut def_levels = Vec::new();
        for (mi, m) in schema.modules.iter().enumerate() {
            if Some(mi) == main {
                continue;
            }
            let page_idx = pages.len();
            let (title, from_doc) = match first_heading(m) {
                Some((_, t)) => (t.clone(), true),
                None => (
                    page_file(&m.name).trim_end_matches(".md").to_string(),
                    false,
                ),
            };
            let mut slugger = Slugger::default();
            slugger.take(&title);
            let mut docs = HashMap::new();
            let mut levels = HashMap::new();
            let mut cur = 1;
            for (i, item) in m.items.iter().enumerate() {
                match item {
                    ModuleItem::Doc(d) => {
                        if i == 0 && from_doc {
                            continue;
                        }
                        if let Some((l, t)) = &d.heading {
                            let level = (*l).clamp(2, 5);
                            cur = level;
                            slugger.take(t);
                            docs.insert(
                                i,
                                Heading {
                                    level,
                                    title: t.clone(),
                                },
                            );
                        }
                    }
                    ModuleItem::Entity(e) => {
                        let name = &schema.entities[*e].name;
                        levels.insert(i, cur + 1);
                        anchors.insert(name.clone(), (page_idx, slugger.take(name)));
                    }
                }
            }
            pages.push(Page {
                module: mi,
                file: page_file(&m.name),
                title,
            });
            doc_anchors.push(docs);
            def_levels.push(levels);
        }
        Layout {
            main,
            pages,
            anchors,
            doc_anchors,
            def_levels,
        }
    }

    /// The page and anchor documenting definition `name`.
    pub(crate) fn anchor(&self, name: &str) -> Option<(&Page, &str)> {
        self.anchors
            .get(name)
            .map(|(p, a)| (&self.pages[*p], a.as_str()))
    }

    /// Link target for definition `name` as seen from page `from` (`None`
    /// for the index page).
    pub(crate) fn link(&self, name: &str, from: Option<&str>) -> Option<String> {
        let (page, anchor) = self.anchor(name)?;
        if from == Some(page.file.as_str()) {
            Some(format!("#{anchor}"))
        } else {
            Some(format!("{}#{anchor}", page.file))
        }
    }

    /// The heading of the free doc block at `item` of page `page`.
    pub(crate) fn doc_heading(&self, page: usize, item: usize) -> Option<&Heading> {
        self.doc_anchors.get(page).and_then(|m| m.get(&item))
    }

    /// The heading level of the definition at `item` of page `page`.
    pub(crate) fn def_level(&self, page: usize, item: usize) -> usize {
        self.def_levels
            .get(page)
            .and_then(|m| m.get(&item))
            .copied()
            .unwrap_or(2)
            .min(6)
    }
}

/// The definition whose doc block documents the members of `e`: `e` itself,
/// or for an implicit type the command, event or union it was made for.
pub(crate) fn doc_owner<'a>(schema: &'a Schema, e: &'a Entity) -> &'a Entity {
    if !e.implicit {
        return e;
    }
    e.name
        .strip_prefix("q_obj_")
        .and_then(|n| n.strip_suffix("-arg").or_else(|| n.strip_suffix("-base")))
        .and_then(|n| schema.get(n))
        .unwrap_or(e)
}

/// A member together with the type that declares it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberRef<'a> {
    pub member: &'a Member,
    /// The struct (possibly implicit) that declares the member.
    pub origin: &'a Entity,
}

impl<'a> MemberRef<'a> {
    /// The documentation text of the member, if any.
    pub(crate) fn text(&self, schema: &'a Schema) -> Option<&'a str> {
        doc_owner(schema, self.origin)
            .doc
            .as_ref()
            .and_then(|d| d.member(&self.member.name))
            .map(|d| d.text.as_str())
    }

    /// The documentation text of feature `name` of the member.
    pub(crate) fn feature_text(&self, schema: &'a Schema, name: &str) -> Option<&'a str> {
        doc_owner(schema, self.origin)
            .doc
            .as_ref()
            .and_then(|d| d.feature(name))
            .map(|d| d.text.as_str())
    }
}

/// All members of the struct or union `name` (base members first), each with
/// the type declaring it. Empty for other kinds.
pub(crate) fn members<'a>(schema: &'a Schema, name: &str) -> Vec<MemberRef<'a>> {
    let mut chain: Vec<&'a Entity> = Vec::new();
    let mut cur = schema.get(name);
    while let Some(e) = cur {
        if chain.len() > 64 {
            break;
        }
        match &e.meta {
            Meta::Struct(s) => {
                chain.push(e);
                cur = s.base.as_deref().and_then(|b| schema.get(b));
            }
            Meta::Union(u) => cur = schema.get(&u.base),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for e in chain.into_iter().rev() {
        if let Meta::Struct(s) = &e.meta {
            out.extend(
                s.members
                    .iter()
                    .map(|member| MemberRef { member, origin: e }),
            );
        }
    }
    out
}

/// One possible value of a union's discriminator and what it selects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Branch<'a> {
    pub value: &'a str,
    /// The branch, or `None` when the value adds no members.
    pub variant: Option<&'a Variant>,
    /// The condition of the branch (or of the value when it has no branch).
    pub cond: &'a Cond,
    /// The enum value's features.
    pub features: &'a [Feature],
    /// The enum value's own condition.
    pub value_cond: &'a Cond,
}

/// The type of a union's discriminator and its branches: one per value of
/// the discriminator enum in enum order, then any branch naming no value.
pub(crate) fn union_branches<'a>(
    schema: &'a Schema,
    e: &Entity,
    u: &'a UnionDef,
) -> (Option<&'a str>, Vec<Branch<'a>>) {
    let disc_ty = members(schema, &e.name)
        .into_iter()
        .find(|m| m.member.name == u.discriminator)
        .map(|m| m.member.ty.base_name());
    let values: &[EnumValue] = match disc_ty.and_then(|t| schema.get(t)).map(|t| &t.meta) {
        Some(Meta::Enum(en)) => &en.values,
        _ => &[],
    };
    let mut out: Vec<Branch> = values
        .iter()
        .map(|v| {
            let variant = u.variants.iter().find(|b| b.name == v.name);
            Branch {
                value: &v.name,
                variant,
                cond: variant.map(|b| &b.cond).unwrap_or(&v.cond),
                features: &v.features,
                value_cond: &v.cond,
            }
        })
        .collect();
    for b in &u.variants {
        if !values.iter().any(|v| v.name == b.name) {
            out.push(Branch {
                value: &b.name,
                variant: Some(b),
                cond: &b.cond,
                features: &[],
                value_cond: &b.cond,
            });
        }
    }
    (disc_ty, out)
}

/// Whether `features` include `deprecated` (enabled in the profile).
pub(crate) fn is_deprecated(schema: &Schema, features: &[Feature]) -> bool {
    features
        .iter()
        .any(|f| f.name == "deprecated" && schema.enabled(&f.cond))
}

/// Whether an object of type `name` (struct or union) has a mandatory member.
pub(crate) fn has_required(schema: &Schema, name: &str) -> bool {
    match schema.get(name).map(|e| &e.meta) {
        Some(Meta::Union(_)) => true,
        Some(Meta::Struct(_)) => members(schema, name)
            .iter()
            .any(|m| !m.member.optional && schema.enabled(&m.member.cond)),
        _ => false,
    }
}

/// The doc text of value/branch `name` of `e` (enum values, alternate
/// branches).
pub(crate) fn item_text<'a>(e: &'a Entity, name: &str) -> Option<&'a str> {
    e.doc
        .as_ref()
        .and_then(|d| d.member(name))
        .map(|d| d.text.as_str())
}

/// The doc text of feature `name` of definition `e`.
pub(crate) fn feature_text<'a>(e: &'a Entity, name: &str) -> Option<&'a str> {
    e.doc
        .as_ref()
        .and_then(|d| d.feature(name))
        .map(|d| d.text.as_str())
}

/// The doc section `tag` of `e`.
pub(crate) fn section<'a>(e: &'a Entity, tag: &str) -> Option<&'a str> {
    e.doc.as_ref().and_then(|d| d.section(tag))
}

/// The body paragraphs of `e`.
pub(crate) fn body(e: &Entity) -> &[String] {
    e.doc.as_ref().map(|d| d.body.as_slice()).unwrap_or(&[])
}

/// A piece of prose: plain text or an `@name` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Text(&'a str),
    Ref(&'a str),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Splits prose into text and `@name` references (or `@Type.member`). An
/// `@` only starts a reference at the start of a word and when followed by a
/// name.
pub(crate) fn split_refs(text: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' && (i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric()) {
            let rest = &text[i + 1..];
            let mut len = 0;
            // A name, possibly qualified: `@Type.member`.
            loop {
                len += rest[len..]
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(rest.len() - len);
                let more = rest[len..].strip_prefix('.');
                if more.is_some_and(|m| m.starts_with(|c: char| c.is_ascii_alphabetic())) {
                    len += 1;
                } else {
                    break;
                }
            }
            let name = rest[..len].trim_end_matches('-');
            if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                if start < i {
                    out.push(Seg::Text(&text[start..i]));
                }
                out.push(Seg::Ref(name));
                i += 1 + name.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    if start < text.len() {
        out.push(Seg::Text(&text[start..]));
    }
    out
}

/// Prose with `@name` written as `` `name` `` (for plain-text outputs).
pub(crate) fn plain_text(text: &str) -> String {
    let refs = |t: &str| -> String {
        split_refs(t)
            .into_iter()
            .map(|s| match s {
                Seg::Text(t) => t.to_string(),
                Seg::Ref(n) => format!("`{n}`"),
            })
            .collect()
    };
    text.split("\n\n")
        .map(|p| match list_items(p) {
            Some(items) => items
                .iter()
                .map(|i| format!("- {}", refs(i)))
                .collect::<Vec<_>>()
                .join("\n"),
            None => refs(p),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The items of a paragraph written as a dash list (`- a` lines, which the
/// doc parser joins with spaces into `- a - b`), or `None` for prose.
pub(crate) fn list_items(para: &str) -> Option<Vec<&str>> {
    let rest = para.strip_prefix("- ")?;
    Some(rest.split(" - ").map(str::trim).collect())
}

/// The first sentence of a paragraph (for index summaries).
pub(crate) fn first_sentence(text: &str) -> &str {
    let mut from = 0;
    while let Some(p) = text[from..].find(". ") {
        let end = from + p + 1;
        // Skip abbreviations such as "e.g." and "i.e.".
        let word = text[..end].rsplit(' ').next().unwrap_or("");
        if word.len() > 1 && !word[..word.len() - 1].contains('.') {
            return &text[..end];
        }
        from = end;
    }
    text
}

/// What client authors are told about a condition: its text and whether it
/// holds in the schema's build profile. `None` when unconditional.
pub(crate) fn cond_note(schema: &Schema, cond: &Cond) -> Option<(String, bool)> {
    if cond.is_always() {
        None
    } else {
        Some((cond.describe(), schema.enabled(cond)))
    }
}

/// The human-readable kind of a definition.
pub(crate) fn kind(e: &Entity) -> &'static str {
    match e.meta {
        Meta::Enum(_) => "Enum",
        Meta::Struct(_) => "Struct",
        Meta::Union(_) => "Union",
        Meta::Alternate(_) => "Alternate",
        Meta::Command(_) => "Command",
        Meta::Event(_) => "Event",
    }
}

/// The wording used for the special features.
pub(crate) fn special_feature(name: &str) -> Option<&'static str> {
    match name {
        "deprecated" => Some("Deprecated"),
        "unstable" => Some("Unstable"),
        _ => None,
    }
}

/// Sections rendered by the generic "other sections" step, in doc order
/// (Returns, Errors and Since are placed explicitly).
pub(crate) fn other_sections(e: &Entity) -> impl Iterator<Item = &DocSection> {
    e.doc
        .iter()
        .flat_map(|d| d.sections.iter())
        .filter(|s| !matches!(s.tag.as_str(), "Returns" | "Errors" | "Since"))
}

/// The explicit definitions sorted for the alphabetical index.
pub(crate) fn sorted(schema: &Schema, pick: impl Fn(&Entity) -> bool) -> Vec<&Entity> {
    let mut v: Vec<&Entity> = schema
        .entities
        .iter()
        .filter(|e| !e.implicit && pick(e))
        .collect();
    v.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.name.cmp(&b.name))
    });
    v
}

/// The value range of an integer built-in type.
pub(crate) fn builtin_range(name: &str) -> Option<(i128, i128)> {
    Some(match name {
        "int" | "int64" => (i64::MIN as i128, i64::MAX as i128),
        "int8" => (i8::MIN as i128, i8::MAX as i128),
        "int16" => (i16::MIN as i128, i16::MAX as i128),
        "int32" => (i32::MIN as i128, i32::MAX as i128),
        "uint8" => (0, u8::MAX as i128),
        "uint16" => (0, u16::MAX as i128),
        "uint32" => (0, u32::MAX as i128),
        "uint64" | "size" => (0, u64::MAX as i128),
        _ => return None,
    })
}

/// One-line description of each built-in type for client authors.
pub(crate) fn builtin_description(name: &str) -> &'static str {
    match name {
        "str" => "JSON string",
        "number" => "JSON number (floating point)",
        "int" => "JSON integer, signed 64-bit",
        "int8" => "JSON integer, signed 8-bit",
        "int16" => "JSON integer, signed 16-bit",
        "int32" => "JSON integer, signed 32-bit",
        "int64" => "JSON integer, signed 64-bit",
        "uint8" => "JSON integer, unsigned 8-bit",
        "uint16" => "JSON integer, unsigned 16-bit",
        "uint32" => "JSON integer, unsigned 32-bit",
        "uint64" => "JSON integer, unsigned 64-bit",
        "size" => "JSON integer, unsigned 64-bit, a size in bytes",
        "bool" => "JSON true or false",
        "null" => "JSON null",
        "any" => "any JSON value",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("BlockdevOptions"), "blockdevoptions");
        assert_eq!(slug("blockdev-add"), "blockdev-add");
        assert_eq!(slug("QEMU Object Model (QOM)"), "qemu-object-model-qom");
        let mut s = Slugger::default();
        assert_eq!(s.take("Foo"), "foo");
        assert_eq!(s.take("foo"), "foo-1");
        assert_eq!(s.take("FOO"), "foo-2");
    }

    #[test]
    fn references() {
        assert_eq!(
            split_refs("see @foo-bar, not me@host or @ alone; @x."),
            vec![
                Seg::Text("see "),
                Seg::Ref("foo-bar"),
                Seg::Text(", not me@host or @ alone; "),
                Seg::Ref("x"),
                Seg::Text("."),
            ]
        );
        assert_eq!(plain_text("@a and @b-"), "`a` and `b`-");
        assert_eq!(
            split_refs("@T.m. @U."),
            vec![
                Seg::Ref("T.m"),
                Seg::Text(". "),
                Seg::Ref("U"),
                Seg::Text(".")
            ]
        );
        assert_eq!(
            plain_text("x\n\n- @a if b - c, d"),
            "x\n\n- `a` if b\n- c, d"
        );
        assert_eq!(list_items("a - b"), None);
    }

    #[test]
    fn sentences() {
        assert_eq!(first_sentence("One, e.g. this. Two."), "One, e.g. this.");
        assert_eq!(first_sentence("No end"), "No end");
    }
}
