//! The index page of the Markdown reference (`docs/qmp/README.md`): what QMP
//! is, how to talk to qsd, the conventions of the pages, the built-in types,
//! the module list and an alphabetical index of all definitions.

use super::common::*;
use super::markdown::{escape, Md, Out};
use super::DocFile;
use crate::model::*;

const INTRO: &str = "\
QMP, the QEMU Machine Protocol, is the JSON-based protocol through which \
programs control qsd, our drop-in replacement for qemu-storage-daemon \
10.0.2. A client connects to a monitor, receives a greeting, leaves \
capabilities negotiation with `qmp_capabilities`, and then sends commands \
(`{\"execute\": NAME, \"arguments\": {...}}`) that are answered with \
`{\"return\": ...}` or `{\"error\": {\"class\": ..., \"desc\": ...}}`. The \
daemon also sends asynchronous events (`{\"event\": NAME, \"data\": {...}, \
\"timestamp\": {...}}`).";

const CONNECT: &[&str] = &[
    "Start the daemon with a QMP monitor on a Unix socket (the same options as qemu-storage-daemon):",
    "",
    "```sh",
    "qsd \\",
    "    --chardev socket,id=qmp0,path=/run/qsd/qmp.sock,server=on,wait=off \\",
    "    --monitor chardev=qmp0",
    "```",
    "",
    "Connect, for instance with `socat - UNIX-CONNECT:/run/qsd/qmp.sock`. The daemon greets the client; \
     lines starting with `->` are sent by the client, `<-` by the daemon:",
    "",
    "```",
    "<- {\"QMP\": {\"version\": {\"qemu\": {\"major\": 10, \"minor\": 0, \"micro\": 2}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}",
    "-> {\"execute\": \"qmp_capabilities\"}",
    "<- {\"return\": {}}",
    "-> {\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"file\", \"node-name\": \"disk0\", \"filename\": \"/srv/disk.img\"}, \"id\": 1}",
    "<- {\"return\": {}, \"id\": 1}",
    "```",
    "",
    "Block nodes, exports, objects and the NBD server can also be set up at startup with \
     `--blockdev`, `--export`, `--object` and `--nbd-server`, whose values have the structure of \
     the arguments of `blockdev-add`, `block-export-add`, `object-add` and `nbd-server-start`.",
];

const CONVENTIONS: &[&str] = &[
    "- Each definition is a *command*, an *event*, or a type: *struct* (a JSON object with fixed \
     members), *union* (an object whose discriminator member selects a branch adding more members), \
     *alternate* (a value whose JSON type selects one of several types), or *enum* (a string from \
     a fixed set).",
    "- Members marked *optional* may be left out; the description states the default.",
    "- *Available only if* marks parts that exist only when qsd is built with a configuration \
     option; the note tells whether it is enabled in this build (the profile of Debian's \
     qemu-storage-daemon 10.0.2). Disabled parts are not offered by the daemon.",
    "- The feature **Deprecated** marks something that will go away: do not use it in new code. \
     **Unstable** marks experimental interfaces (usually with an `x-` prefix) that may change \
     without notice.",
    "- `allow-oob` commands can be sent with `exec-oob` instead of `execute` once the `oob` \
     capability is enabled, and then run immediately even while other commands are in progress.",
    "- The same interface is described by the JSON Schema document \
     [`qmp-schema.json`](../qmp-schema.json) and by the manual page `qsd-qmp-ref(7)`; at run \
     time `query-qmp-schema` reports it.",
];

fn module_title(p: &Page) -> String {
    format!("[{}]({})", escape(&p.title), p.file)
}

fn index_list(md: &Md, out: &mut Out, title: &str, entries: &[&Entity], layout: &Layout) {
    out.para(&format!("### {title}"));
    out.blank();
    for e in entries {
        let module = layout
            .anchor(&e.name)
            .map(|(p, _)| p.file.trim_end_matches(".md").to_string())
            .unwrap_or_default();
        let mut s = format!("- {}", md.def_link(&e.name));
        // Commands and events are recognisable by name; types get a kind.
        if e.is_type() {
            s.push_str(&format!(" ({})", kind(e).to_lowercase()));
        }
        s.push_str(&format!(" — *{module}*"));
        if let Some(first) = body(e).first() {
            s.push_str(&format!(": {}", md.prose(first_sentence(first))));
        }
        out.line(&s);
    }
}

/// The index page.
pub(crate) fn index_page(schema: &Schema, layout: &Layout) -> DocFile {
    let md = Md {
        schema,
        layout,
        page: None,
    };
    let mut out = Out::default();
    out.line("# qsd QMP reference");
    out.para("*Generated from the QAPI schema by `qapi-gen`; do not edit.*");
    if let Some(main) = layout.main.and_then(|m| schema.modules.get(m)) {
        for item in &main.items {
            if let ModuleItem::Doc(d) = item {
                if let Some((l, t)) = &d.heading {
                    out.para(&format!("{} {}", "#".repeat((*l + 1).min(6)), escape(t)));
                }
                for p in &d.body {
                    md.paragraphs(&mut out, p);
                }
            }
        }
    }
    out.para("## What QMP is");
    out.para(INTRO);
    out.para("## Connecting to qsd");
    out.blank();
    for l in CONNECT {
        out.line(l);
    }
    out.para("## Reading this reference");
    out.blank();
    for l in CONVENTIONS {
        out.line(l);
    }
    out.para("## Built-in types");
    out.blank();
    out.line("| Type | JSON |");
    out.line("| --- | --- |");
    for b in BUILTINS {
        let mut s = builtin_description(b.name).to_string();
        if let Some((lo, hi)) = builtin_range(b.name) {
            s.push_str(&format!(", {lo} to {hi}"));
        }
        out.line(&format!("| `{}` | {s} |", b.name));
    }
    out.para("## Modules");
    out.blank();
    for p in &layout.pages {
        let n = schema.modules[p.module]
            .items
            .iter()
            .filter(|i| matches!(i, ModuleItem::Entity(_)))
            .count();
        out.line(&format!(
            "- {} (`{}`, {n} definitions)",
            module_title(p),
            schema.modules[p.module].name
        ));
    }
    out.para("## Index");
    let commands = sorted(schema, |e| matches!(e.meta, Meta::Command(_)));
    let events = sorted(schema, |e| matches!(e.meta, Meta::Event(_)));
    let types = sorted(schema, Entity::is_type);
    index_list(&md, &mut out, "Commands", &commands, layout);
    index_list(&md, &mut out, "Events", &events, layout);
    index_list(&md, &mut out, "Types", &types, layout);
    DocFile {
        path: format!("qmp/{INDEX_PAGE}"),
        contents: out.finish(),
    }
}
