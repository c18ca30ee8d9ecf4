//! The man page `qsd-qmp-ref(7)`: the content of the Markdown reference,
//! compact, in roff with the `man` macros. Modules are sections (`.SH`),
//! their sub-headings subsections (`.SS`), definitions bold paragraphs with
//! an indented description and tagged paragraphs (`.TP`) for members.

use super::common::*;
use crate::model::*;

/// Escapes text for roff: backslashes, minus signs, quotes and non-ASCII
/// characters, so that the page is plain ASCII and renders literally.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '"' => out.push_str("\\(dq"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            '\t' => out.push(' '),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c if c.is_ascii_control() => {}
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out
}

/// A text line: protects a leading `.` or `'` that would make it a request.
fn text_line(s: String) -> String {
    if s.starts_with('.') || s.starts_with('\'') || s.starts_with(' ') {
        format!("\\&{}", s.trim_start_matches(' '))
    } else {
        s
    }
}

/// Prose with `@name` references set in bold.
fn prose(text: &str) -> String {
    split_refs(text)
        .into_iter()
        .map(|s| match s {
            Seg::Text(t) => esc(t),
            Seg::Ref(n) => format!("\\fB{}\\fR", esc(n)),
        })
        .collect::<Vec<_>>()
        .concat()
}

fn type_ref(t: &TypeRef) -> String {
    match t {
        TypeRef::Named(n) => esc(n),
        TypeRef::Array(n) => format!("array of {}", esc(n)),
    }
}

struct Man<'a> {
    schema: &'a Schema,
    out: String,
}

impl Man<'_> {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A dash list as bulleted indented paragraphs.
    fn list(&mut self, items: &[&str]) {
        for i in items {
            self.line(".IP \\(bu 2");
            self.line(&text_line(prose(i)));
        }
    }

    /// A new paragraph of (possibly multi-paragraph) prose.
    fn paras(&mut self, text: &str) {
        for p in text.split("\n\n").filter(|p| !p.is_empty()) {
            match list_items(p) {
                Some(items) => self.list(&items),
                None => {
                    self.line(".PP");
                    self.line(&text_line(prose(p)));
                }
            }
        }
    }

    /// Continuation text of a tagged paragraph (paragraphs kept apart);
    /// `text` is already escaped.
    fn tp_body(&mut self, text: &str) {
        let mut first = true;
        for p in text.split("\n\n").filter(|p| !p.is_empty()) {
            if !first {
                self.line(".IP");
            }
            first = false;
            self.line(&text_line(p.to_string()));
        }
    }

    fn cond(&self, cond: &Cond) -> Option<String> {
        cond_note(self.schema, cond).map(|(c, on)| {
            let state = if on { "enabled" } else { "not enabled" };
            format!("only if {} ({state} in this build)", esc(&c))
        })
    }

    fn feature_notes(
        &self,
        features: &[Feature],
        text: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        features
            .iter()
            .map(|f| {
                let mut s = match special_feature(&f.name) {
                    Some(s) => format!("\\fB{s}\\fR"),
                    None => format!("Feature \\fB{}\\fR", esc(&f.name)),
                };
                if let Some(t) = text(&f.name).filter(|t| !t.is_empty()) {
                    s.push_str(&format!(": {}", prose(&t)));
                }
                if let Some(c) = self.cond(&f.cond) {
                    s.push_str(&format!(" (feature {c})"));
                }
                s.push('.');
                s
            })
            .collect()
    }

    /// `.TP` entry: bold tag, then the description paragraphs.
    fn entry(&mut self, tag: &str, head: &str, text: &str, notes: &[String]) {
        self.line(".TP");
        self.line(&format!(".B \"{tag}\""));
        let mut body = head.to_string();
        let paras: Vec<String> = text
            .split("\n\n")
            .map(|p| match list_items(p) {
                Some(items) => items
                    .iter()
                    .map(|i| format!("\\(bu {}", prose(i)))
                    .collect::<Vec<_>>()
                    .join("\n.br\n"),
                None => prose(p),
            })
            .collect();
        if let Some(p) = paras.first().filter(|p| !p.is_empty()) {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(p);
        }
        let mut rest: Vec<String> = paras.into_iter().skip(1).collect();
        if !notes.is_empty() {
            rest.push(notes.join(" "));
        }
        if body.is_empty() {
            body = rest.first().cloned().unwrap_or_default();
            rest = rest.into_iter().skip(1).collect();
        }
        self.tp_body(&[vec![body], rest].concat().join("\n\n"));
    }

    fn members(&mut self, owner: &Entity, ms: &[MemberRef]) {
        if ms.is_empty() {
            self.line(".IP");
            self.line("No members.");
            return;
        }
        for m in ms {
            let head = format!(
                "({}{})",
                type_ref(&m.member.ty),
                if m.member.optional { ", optional" } else { "" }
            );
            let mut notes = Vec::new();
            let origin = doc_owner(self.schema, m.origin);
            if origin.name != owner.name && !m.origin.implicit {
                notes.push(format!("(From {}.)", esc(&origin.name)));
            }
            if let Some(c) = self.cond(&m.member.cond) {
                notes.push(format!("Available {c}."));
            }
            notes.extend(self.feature_notes(&m.member.features, |f| {
                m.feature_text(self.schema, f).map(String::from)
            }));
            let text = m.text(self.schema).unwrap_or("").to_string();
            self.entry(&esc(&m.member.name), &head, &text, &notes);
        }
    }

    fn label(&mut self, s: &str) {
        self.line(".PP");
        self.line(s);
    }

    fn union(&mut self, e: &Entity, u: &UnionDef) {
        let (_, branches) = union_branches(self.schema, e, u);
        self.label(&format!(
            "Discriminator: \\fB{}\\fR. Common members:",
            esc(&u.discriminator)
        ));
        self.members(e, &members(self.schema, &e.name));
        self.label(&format!(
            "Branches, by value of \\fB{}\\fR:",
            esc(&u.discriminator)
        ));
        for b in branches {
            let mut text = match b.variant {
                Some(v) => {
                    let names: Vec<String> = members(self.schema, v.ty.base_name())
                        .iter()
                        .map(|m| esc(&m.member.name))
                        .collect();
                    let added = if names.is_empty() {
                        "no members".to_string()
                    } else {
                        names.join(", ")
                    };
                    format!("{}: adds {added}.", type_ref(&v.ty))
                }
                None => "adds no members.".to_string(),
            };
            if is_deprecated(self.schema, b.features) {
                text.push_str(" \\fBDeprecated\\fR.");
            }
            if let Some(c) = self.cond(b.cond) {
                text.push_str(&format!(" Available {c}."));
            }
            self.line(".TP");
            self.line(&format!(".B \"{}\"", esc(b.value)));
            self.tp_body(&text);
        }
    }

    fn data(&mut self, e: &Entity, label: &str, args: Option<&str>, boxed: bool) {
        let Some(a) = args else {
            self.label(&format!("{label}: none."));
            return;
        };
        match self.schema.get(a) {
            Some(t) if t.implicit => {
                self.label(&format!("{label}:"));
                let ms = members(self.schema, a);
                self.members(e, &ms);
            }
            _ => {
                let b = if boxed { " (boxed)" } else { "" };
                self.label(&format!("{label}: the members of \\fB{}\\fR{b}.", esc(a)));
            }
        }
    }

    fn command(&mut self, e: &Entity, c: &CommandDef) {
        self.data(e, "Arguments", c.args.as_deref(), c.boxed);
        let text = section(e, "Returns").filter(|t| !t.is_empty()).map(prose);
        let ret = match (&c.returns, text) {
            (Some(t), Some(x)) => Some(format!("Returns: {}: {x}", type_ref(t))),
            (Some(t), None) => Some(format!("Returns: {}.", type_ref(t))),
            (None, Some(x)) => Some(format!("Returns: {x}")),
            (None, None) if c.success_response => Some("Returns: nothing.".to_string()),
            (None, None) => None,
        };
        if let Some(r) = ret {
            self.label(&r);
        }
        if let Some(t) = section(e, "Errors") {
            self.label("Errors:");
            self.paras(t);
        }
        let mut flags = Vec::new();
        if c.allow_oob {
            flags.push("allow\\-oob (may be sent with exec\\-oob)");
        }
        if c.allow_preconfig {
            flags.push("allow\\-preconfig");
        }
        if !c.success_response {
            flags.push("no response on success");
        }
        if !flags.is_empty() {
            self.label(&format!("Flags: {}.", flags.join(", ")));
        }
    }

    fn definition(&mut self, e: &Entity) {
        let mut tags = vec![kind(e).to_lowercase()];
        for f in &e.features {
            if let Some(s) = special_feature(&f.name) {
                tags.push(format!("\\fB{}\\fR", s.to_lowercase()));
            }
        }
        if let Some(c) = self.cond(&e.cond) {
            tags.push(c);
        }
        self.line(".PP");
        self.line(&format!(".B \"{}\"", esc(&e.name)));
        self.line(&format!("\\(em {}", tags.join(", ")));
        self.line(".RS 4");
        for p in body(e) {
            self.paras(p);
        }
        match &e.meta {
            Meta::Enum(en) => {
                self.label("Values:");
                for v in &en.values {
                    let mut notes = Vec::new();
                    if let Some(c) = self.cond(&v.cond) {
                        notes.push(format!("Available {c}."));
                    }
                    notes.extend(
                        self.feature_notes(&v.features, |f| feature_text(e, f).map(String::from)),
                    );
                    let text = item_text(e, &v.name).unwrap_or("").to_string();
                    self.entry(&esc(&v.name), "", &text, &notes);
                }
            }
            Meta::Struct(s) => {
                match &s.base {
                    Some(b) => self.label(&format!("Base: \\fB{}\\fR. Members:", esc(b))),
                    None => self.label("Members:"),
                }
                let ms = members(self.schema, &e.name);
                self.members(e, &ms);
            }
            Meta::Union(u) => self.union(e, u),
            Meta::Alternate(a) => {
                self.label("One of, by JSON type:");
                for v in &a.variants {
                    let notes: Vec<String> = self
                        .cond(&v.cond)
                        .map(|c| format!("Available {c}."))
                        .into_iter()
                        .collect();
                    let text = item_text(e, &v.name).unwrap_or("").to_string();
                    self.entry(
                        &esc(&v.name),
                        &format!("({})", type_ref(&v.ty)),
                        &text,
                        &notes,
                    );
                }
            }
            Meta::Command(c) => self.command(e, c),
            Meta::Event(ev) => self.data(e, "Data", ev.args.as_deref(), ev.boxed),
        }
        if !e.features.is_empty() {
            self.label("Features:");
            for f in &e.features {
                let mut notes = Vec::new();
                if let Some(c) = self.cond(&f.cond) {
                    notes.push(format!("Available {c}."));
                }
                let text = feature_text(e, &f.name).unwrap_or("").to_string();
                self.entry(&esc(&f.name), "", &text, &notes);
            }
        }
        for s in other_sections(e) {
            self.paras(&format!("{}: {}", s.tag, s.text));
        }
        if let Some(s) = section(e, "Since") {
            self.label(&format!("Since: {}", prose(s)));
        }
        self.line(".RE");
    }
}

const DESCRIPTION: &str = "QMP, the QEMU Machine Protocol, is the JSON protocol through which \
programs control qsd, a drop\\-in replacement for qemu\\-storage\\-daemon 10.0.2. \
A client connects to a monitor, receives a greeting, sends \\fBqmp_capabilities\\fR, \
and then sends commands as {\\(dqexecute\\(dq: NAME, \\(dqarguments\\(dq: {...}}; \
each is answered with {\\(dqreturn\\(dq: ...} or {\\(dqerror\\(dq: {...}}. \
The daemon also sends events as {\\(dqevent\\(dq: NAME, \\(dqdata\\(dq: {...}, \
\\(dqtimestamp\\(dq: {...}}.";

const CONVENTIONS: &str = "Members marked optional may be left out; their description states \
the default. Parts marked \\(lqonly if\\(rq exist only in builds with that configuration; \
the note tells whether it is enabled in this build (the profile of Debian's \
qemu\\-storage\\-daemon 10.0.2). \\fBDeprecated\\fR parts will be removed; \
\\fBUnstable\\fR ones may change without notice. Commands flagged allow\\-oob may \
be sent with \\(dqexec\\-oob\\(dq once the oob capability is enabled.";

/// The whole page.
pub(crate) fn render(schema: &Schema, layout: &Layout) -> String {
    let mut m = Man {
        schema,
        out: String::new(),
    };
    m.line(".\\\" Generated from the QAPI schema by qapi-gen; do not edit.");
    m.line(".TH QSD\\-QMP\\-REF 7 \"\" \"qsd\" \"QMP Reference\"");
    // Identifiers and JSON read badly when hyphenated. (No .EX/.EE below:
    // they turn hyphenation back on.)
    m.line(".nh");
    m.line(".SH NAME");
    m.line("qsd\\-qmp\\-ref \\- QMP commands, events and types of qsd");
    m.line(".SH DESCRIPTION");
    m.line(DESCRIPTION);
    if let Some(main) = layout.main.and_then(|i| schema.modules.get(i)) {
        for item in &main.items {
            if let ModuleItem::Doc(d) = item {
                for p in &d.body {
                    m.paras(p);
                }
            }
        }
    }
    m.line(".PP");
    m.line("To serve QMP on a Unix socket:");
    m.line(".PP");
    m.line(".nf");
    m.line("qsd \\e");
    m.line("    \\-\\-chardev socket,id=qmp0,path=/run/qsd/qmp.sock,server=on,wait=off \\e");
    m.line("    \\-\\-monitor chardev=qmp0");
    m.line(".fi");
    m.line(".PP");
    m.line(CONVENTIONS);
    m.line(".SS Built-in types");
    for b in BUILTINS {
        let mut s = builtin_description(b.name).to_string();
        if let Some((lo, hi)) = builtin_range(b.name) {
            s.push_str(&format!(", {lo} to {hi}"));
        }
        m.line(".TP");
        m.line(&format!(".B {}", esc(b.name)));
        m.line(&format!("{}.", esc(&s)));
    }
    for (pi, page) in layout.pages.iter().enumerate() {
        let module = &schema.modules[page.module];
        m.line(&format!(".SH \"{}\"", esc(&page.title.to_uppercase())));
        for (i, item) in module.items.iter().enumerate() {
            match item {
                ModuleItem::Doc(d) => {
                    if let Some(h) = layout.doc_heading(pi, i) {
                        m.line(&format!(".SS \"{}\"", esc(&h.title)));
                    }
                    for p in &d.body {
                        m.paras(p);
                    }
                }
                ModuleItem::Entity(ei) => m.definition(&schema.entities[*ei]),
            }
        }
    }
    m.line(".SH SEE ALSO");
    m.line(".BR qemu\\-storage\\-daemon (1),");
    m.line(".BR qemu\\-storage\\-daemon\\-qmp\\-ref (7)");
    m.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(esc("a-b \\ \"c\" é"), "a\\-b \\e \\(dqc\\(dq \\[u00E9]");
        assert_eq!(text_line(".x".into()), "\\&.x");
        assert_eq!(text_line("'x".into()), "\\&'x");
        assert_eq!(prose("see @foo-bar"), "see \\fBfoo\\-bar\\fR");
    }
}
