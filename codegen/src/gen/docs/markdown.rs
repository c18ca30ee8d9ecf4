//! The Markdown reference: one page per module (see [`super::index`] for the
//! index page). Definitions appear in source order under the headings of the
//! module's free doc blocks.

use super::common::*;
use super::DocFile;
use crate::model::*;

/// Text accumulated line by line, with at most one blank line in a row.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) text: String,
}

impl Out {
    pub(crate) fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// A paragraph: a blank line, then `s`.
    pub(crate) fn para(&mut self, s: &str) {
        self.blank();
        self.line(s);
    }

    pub(crate) fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    pub(crate) fn finish(mut self) -> String {
        while self.text.ends_with("\n\n") {
            self.text.pop();
        }
        self.text
    }
}

/// Escapes Markdown syntax in prose so that it renders literally.
pub(crate) fn escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let word = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' => {
                out.push('\\');
                out.push(c);
            }
            // Intraword underscores never start emphasis; others might.
            '_' if !(word(i.checked_sub(1)) && word(Some(i + 1))) => out.push_str("\\_"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes what would start a block construct at the start of a line.
fn escape_line_start(s: String) -> String {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let after = s[digits..].chars().next();
    if digits > 0 && matches!(after, Some('.') | Some(')')) {
        return format!("{}\\{}", &s[..digits], &s[digits..]);
    }
    match s.chars().next() {
        Some('#' | '-' | '+' | '=' | '~') => format!("\\{s}"),
        _ => s,
    }
}

/// Renders Markdown for one page (`page` is `None` for the index page).
pub(crate) struct Md<'a> {
    pub(crate) schema: &'a Schema,
    pub(crate) layout: &'a Layout,
    pub(crate) page: Option<&'a str>,
}

impl<'a> Md<'a> {
    /// A link to definition `name`, or the name as code when it has no page.
    pub(crate) fn def_link(&self, name: &str) -> String {
        if builtin(name).is_some() {
            let target = match self.page {
                None => format!("#{BUILTINS_ANCHOR}"),
                Some(_) => format!("{INDEX_PAGE}#{BUILTINS_ANCHOR}"),
            };
            return format!("[`{name}`]({target})");
        }
        match self.layout.link(name, self.page) {
            Some(l) => format!("[`{name}`]({l})"),
            None => format!("`{name}`"),
        }
    }

    fn type_ref(&self, t: &TypeRef) -> String {
        match t {
            TypeRef::Named(n) => self.def_link(n),
            TypeRef::Array(n) => format!("array of {}", self.def_link(n)),
        }
    }

    /// One paragraph of prose with `@name` references linked.
    pub(crate) fn prose(&self, text: &str) -> String {
        split_refs(text)
            .into_iter()
            .map(|s| match s {
                Seg::Text(t) => escape(t),
                Seg::Ref(n) => {
                    let def = n.split('.').next().unwrap_or(n);
                    match self.layout.link(def, self.page) {
                        Some(l) => format!("[`{n}`]({l})"),
                        None => format!("`{n}`"),
                    }
                }
            })
            .collect()
    }

    /// Prose that may have several paragraphs, on one line (table cells).
    fn cell(&self, text: &str) -> String {
        text.split("\n\n")
            .map(|p| match list_items(p) {
                Some(items) => items
                    .iter()
                    .map(|i| format!("• {}", self.prose(i)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                None => self.prose(p),
            })
            .collect::<Vec<_>>()
            .join("<br><br>")
    }

    /// Prose paragraphs (and dash lists) as Markdown blocks.
    pub(crate) fn paragraphs(&self, out: &mut Out, text: &str) {
        for p in text.split("\n\n") {
            match list_items(p) {
                Some(items) => {
                    out.blank();
                    for i in items {
                        out.line(&format!("- {}", self.prose(i)));
                    }
                }
                None => out.para(&escape_line_start(self.prose(p))),
            }
        }
    }

    fn cond(&self, cond: &Cond) -> Option<String> {
        cond_note(self.schema, cond).map(|(c, on)| {
            let state = if on { "enabled" } else { "not enabled" };
            format!("only if `{c}` ({state} in this build)")
        })
    }

    /// The notes for a member, value or branch: condition and features.
    fn notes(
        &self,
        cond: &Cond,
        features: &[Feature],
        text: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(c) = self.cond(cond) {
            v.push(format!("*Available {c}.*"));
        }
        for f in features {
            let name = match special_feature(&f.name) {
                Some(s) => format!("**{s}**"),
                None => format!("Feature `{}`", f.name),
            };
            let mut s = match text(&f.name) {
                Some(t) if !t.is_empty() => format!("{name}: {}", self.cell(&t)),
                _ => name,
            };
            if let Some(c) = self.cond(&f.cond) {
                s.push_str(&format!(" (feature {c})"));
            }
            v.push(s);
        }
        v
    }

    fn members_table(&self, out: &mut Out, owner: &Entity, ms: &[MemberRef]) {
        if ms.is_empty() {
            out.para("No members.");
            return;
        }
        out.blank();
        out.line("| Member | Type | Optional | Description |");
        out.line("| --- | --- | --- | --- |");
        for m in ms {
            let mut desc = vec![self.cell(m.text(self.schema).unwrap_or(""))];
            let origin = doc_owner(self.schema, m.origin);
            if origin.name != owner.name && !m.origin.implicit {
                desc.push(format!("*(from {})*", self.def_link(&origin.name)));
            }
            desc.extend(self.notes(&m.member.cond, &m.member.features, |f| {
                m.feature_text(self.schema, f).map(String::from)
            }));
            let desc: Vec<String> = desc.into_iter().filter(|s| !s.is_empty()).collect();
            out.line(&format!(
                "| `{}` | {} | {} | {} |",
                m.member.name,
                self.type_ref(&m.member.ty),
                if m.member.optional {
                    "optional"
                } else {
                    "required"
                },
                desc.join("<br>")
            ));
        }
    }

    fn enum_values(&self, out: &mut Out, e: &Entity, en: &EnumDef) {
        out.blank();
        out.line("| Value | Description |");
        out.line("| --- | --- |");
        for v in &en.values {
            let mut desc = vec![self.cell(item_text(e, &v.name).unwrap_or(""))];
            desc.extend(self.notes(&v.cond, &v.features, |f| {
                feature_text(e, f).map(String::from)
            }));
            let desc: Vec<String> = desc.into_iter().filter(|s| !s.is_empty()).collect();
            out.line(&format!("| `{}` | {} |", v.name, desc.join("<br>")));
        }
    }

    fn union(&self, out: &mut Out, e: &Entity, u: &UnionDef) {
        let (disc_ty, branches) = union_branches(self.schema, e, u);
        let mut s = format!("**Discriminator:** `{}`", u.discriminator);
        if let Some(t) = disc_ty {
            s.push_str(&format!(", of type {}", self.def_link(t)));
        }
        s.push_str(". Its value selects the branch, which adds members to the common ones.");
        out.para(&s);
        out.para("**Common members:**");
        self.members_table(out, e, &members(self.schema, &e.name));
        out.para(&format!(
            "**Branches** (by value of `{}`):",
            u.discriminator
        ));
        out.blank();
        out.line("| Value | Type | Members added |");
        out.line("| --- | --- | --- |");
        for b in branches {
            let (ty, mut added) = match b.variant {
                Some(v) => {
                    let names: Vec<String> = members(self.schema, v.ty.base_name())
                        .iter()
                        .map(|m| {
                            if m.member.optional {
                                format!("`{}` (optional)", m.member.name)
                            } else {
                                format!("`{}`", m.member.name)
                            }
                        })
                        .collect();
                    let added = if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    };
                    (self.type_ref(&v.ty), added)
                }
                None => ("—".to_string(), "none".to_string()),
            };
            if let Some(c) = self.cond(b.cond) {
                added.push_str(&format!("<br>*Branch available {c}.*"));
            }
            let mut value = format!("`{}`", b.value);
            if is_deprecated(self.schema, b.features) {
                value.push_str(" (**Deprecated**)");
            }
            out.line(&format!("| {value} | {ty} | {added} |"));
        }
    }

    fn alternate(&self, out: &mut Out, e: &Entity, a: &AlternateDef) {
        out.para("**Alternatives** (the JSON type of the value tells which one applies):");
        out.blank();
        out.line("| Alternative | Type | Description |");
        out.line("| --- | --- | --- |");
        for v in &a.variants {
            let mut desc = vec![self.cell(item_text(e, &v.name).unwrap_or(""))];
            if let Some(c) = self.cond(&v.cond) {
                desc.push(format!("*Available {c}.*"));
            }
            let desc: Vec<String> = desc.into_iter().filter(|s| !s.is_empty()).collect();
            out.line(&format!(
                "| `{}` | {} | {} |",
                v.name,
                self.type_ref(&v.ty),
                desc.join("<br>")
            ));
        }
    }

    /// Arguments of a command or data of an event.
    fn data(&self, out: &mut Out, e: &Entity, label: &str, args: Option<&str>, boxed: bool) {
        let Some(a) = args else {
            out.para(&format!("**{label}:** none."));
            return;
        };
        match self.schema.get(a) {
            Some(t) if t.implicit => {
                out.para(&format!("**{label}:**"));
                self.members_table(out, e, &members(self.schema, a));
            }
            _ => {
                let mut s = format!("**{label}:** the members of {}", self.def_link(a));
                if boxed {
                    s.push_str(" (boxed: the object as a whole is of that type)");
                }
                s.push('.');
                out.para(&s);
            }
        }
    }

    fn command(&self, out: &mut Out, e: &Entity, c: &CommandDef) {
        self.data(out, e, "Arguments", c.args.as_deref(), c.boxed);
        let text = section(e, "Returns").filter(|t| !t.is_empty());
        match (&c.returns, text) {
            (Some(t), Some(text)) => out.para(&format!(
                "**Returns:** {}: {}",
                self.type_ref(t),
                self.cell(text)
            )),
            (Some(t), None) => out.para(&format!("**Returns:** {}.", self.type_ref(t))),
            (None, Some(text)) => out.para(&format!("**Returns:** {}", self.cell(text))),
            (None, None) if c.success_response => {
                out.para("**Returns:** nothing (the success response is `{\"return\": {}}`).")
            }
            (None, None) => {}
        }
        if let Some(t) = section(e, "Errors") {
            out.para("**Errors:**");
            self.paragraphs(out, t);
        }
        let mut flags = Vec::new();
        if c.allow_oob {
            flags.push("`allow-oob`: may be sent with `exec-oob` to run out of band");
        }
        if c.allow_preconfig {
            flags.push("`allow-preconfig`: allowed before machine setup in QEMU's preconfig state (the storage daemon has no such state)");
        }
        if !c.success_response {
            flags.push("no response is sent on success");
        }
        if !flags.is_empty() {
            out.para("**Flags:**");
            out.blank();
            for f in flags {
                out.line(&format!("- {f}"));
            }
        }
    }

    fn features(&self, out: &mut Out, e: &Entity) {
        if e.features.is_empty() {
            return;
        }
        out.para("**Features:**");
        out.blank();
        for f in &e.features {
            let name = match special_feature(&f.name) {
                Some(s) => format!("`{}` (**{s}**)", f.name),
                None => format!("`{}`", f.name),
            };
            let mut s = format!("- {name}");
            if let Some(t) = feature_text(e, &f.name).filter(|t| !t.is_empty()) {
                s.push_str(&format!(": {}", self.cell(t)));
            }
            if let Some(c) = self.cond(&f.cond) {
                s.push_str(&format!(" *(feature available {c})*"));
            }
            out.line(&s);
        }
    }

    /// One definition with its heading at `level`.
    pub(crate) fn definition(&self, out: &mut Out, e: &Entity, level: usize) {
        out.para(&format!("{} {}", "#".repeat(level), e.name));
        let mut tags = vec![format!("*{}*", kind(e))];
        for f in &e.features {
            if let Some(s) = special_feature(&f.name) {
                tags.push(format!("**{s}**"));
            }
        }
        if let Some(c) = self.cond(&e.cond) {
            tags.push(format!("available {c}"));
        }
        out.para(&tags.join(" · "));
        for p in body(e) {
            self.paragraphs(out, p);
        }
        match &e.meta {
            Meta::Enum(en) => self.enum_values(out, e, en),
            Meta::Struct(s) => {
                if let Some(b) = &s.base {
                    out.para(&format!("**Base:** {}", self.def_link(b)));
                }
                out.para("**Members:**");
                self.members_table(out, e, &members(self.schema, &e.name));
            }
            Meta::Union(u) => self.union(out, e, u),
            Meta::Alternate(a) => self.alternate(out, e, a),
            Meta::Command(c) => self.command(out, e, c),
            Meta::Event(ev) => self.data(out, e, "Data", ev.args.as_deref(), ev.boxed),
        }
        self.features(out, e);
        for s in other_sections(e) {
            out.para(&format!("**{}:**", s.tag));
            self.paragraphs(out, &s.text);
        }
        if let Some(s) = section(e, "Since") {
            out.para(&format!("**Since:** {}", self.prose(s)));
        }
    }
}

/// The page of one module.
pub(crate) fn module_page(schema: &Schema, layout: &Layout, page_idx: usize) -> DocFile {
    let page = &layout.pages[page_idx];
    let md = Md {
        schema,
        layout,
        page: Some(&page.file),
    };
    let module = &schema.modules[page.module];
    let mut out = Out::default();
    out.line(&format!("# {}", escape(&page.title)));
    out.para(&format!(
        "*Generated from `{}` by `qapi-gen`; do not edit. [Index]({INDEX_PAGE})*",
        module.name
    ));
    let mut defs = 0;
    for (i, item) in module.items.iter().enumerate() {
        match item {
            ModuleItem::Doc(d) => {
                if let Some(h) = layout.doc_heading(page_idx, i) {
                    out.para(&format!("{} {}", "#".repeat(h.level), escape(&h.title)));
                }
                for p in &d.body {
                    md.paragraphs(&mut out, p);
                }
            }
            ModuleItem::Entity(ei) => {
                defs += 1;
                md.definition(
                    &mut out,
                    &schema.entities[*ei],
                    layout.def_level(page_idx, i),
                );
            }
        }
    }
    if defs == 0 {
        out.para("This module contains no definitions.");
    }
    DocFile {
        path: format!("qmp/{}", page.file),
        contents: out.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("a_b _c *d* <e> [f] |"),
            "a_b \\_c \\*d\\* \\<e\\> \\[f\\] \\|"
        );
        assert_eq!(escape_line_start("1. x".into()), "1\\. x");
        assert_eq!(escape_line_start("- x".into()), "\\- x");
        assert_eq!(escape_line_start("x".into()), "x");
    }
}
