//! Documentation generators for client authors, all derived from a checked
//! [`Schema`] and its doc comments:
//!
//! - [`markdown()`]: the reference in `qmp/` — `README.md` (QMP, connecting,
//!   conventions, built-in types, modules, alphabetical index) and one page
//!   per module in source order;
//! - [`man_page`]: the same content, compact, as the roff page
//!   `man/qsd-qmp-ref.7`;
//! - [`json_schema`]: `qmp-schema.json`, a JSON Schema (draft 2020-12)
//!   document of every type, command and event enabled in the build profile.
//!
//! Conditions are shown, and evaluated, against the schema's profile
//! ([`Schema::profile`]); `qapi-gen` loads with [`crate::Profile::default`].
//! Output is deterministic: it depends on the schema only.
//!
//! [`generate`] returns all files with paths relative to the docs directory;
//! [`write()`] and [`check()`] apply them to a directory.

mod common;
mod index;
mod jsonschema;
mod man;
mod markdown;

use std::fmt;
use std::path::Path;

use crate::model::Schema;

/// Path of the man page, relative to the docs directory.
pub const MAN_PAGE: &str = "man/qsd-qmp-ref.7";
/// Path of the JSON Schema document, relative to the docs directory.
pub const JSON_SCHEMA: &str = "qmp-schema.json";
/// Directory of the Markdown pages, relative to the docs directory.
pub const MARKDOWN_DIR: &str = "qmp";

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocFile {
    /// Path relative to the docs directory, `/`-separated (e.g.
    /// `qmp/block-core.md`).
    pub path: String,
    /// The complete text of the file.
    pub contents: String,
}

/// The Markdown reference: `qmp/README.md` first, then one page per module
/// in include order.
pub fn markdown(schema: &Schema) -> Vec<DocFile> {
    let layout = common::Layout::new(schema);
    let mut v = vec![index::index_page(schema, &layout)];
    v.extend((0..layout.pages.len()).map(|i| markdown::module_page(schema, &layout, i)));
    v
}

/// The man page `qsd-qmp-ref(7)` in roff.
pub fn man_page(schema: &Schema) -> String {
    man::render(schema, &common::Layout::new(schema))
}

/// The JSON Schema document (draft 2020-12). Only what is enabled in the
/// schema's profile is described.
pub fn json_schema(schema: &Schema) -> serde_json::Value {
    jsonschema::render(schema)
}

/// All documentation files, in a fixed order.
pub fn generate(schema: &Schema) -> Vec<DocFile> {
    let mut v = markdown(schema);
    v.push(DocFile {
        path: MAN_PAGE.to_string(),
        contents: man_page(schema),
    });
    let mut json = serde_json::to_string_pretty(&json_schema(schema))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    v.push(DocFile {
        path: JSON_SCHEMA.to_string(),
        contents: json,
    });
    v
}

/// Why a file in the docs directory does not match the generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// A generated file is absent.
    Missing(String),
    /// A file's contents differ from the generated ones.
    Differs(String),
    /// A Markdown page in the reference directory that is no longer
    /// generated (e.g. a module was removed or renamed).
    Obsolete(String),
}

impl Stale {
    /// The path relative to the docs directory.
    pub fn path(&self) -> &str {
        match self {
            Stale::Missing(p) | Stale::Differs(p) | Stale::Obsolete(p) => p,
        }
    }

    /// What is wrong, in a few words.
    pub fn reason(&self) -> &'static str {
        match self {
            Stale::Missing(_) => "missing",
            Stale::Differs(_) => "out of date",
            Stale::Obsolete(_) => "no longer generated",
        }
    }
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path(), self.reason())
    }
}

/// Markdown pages present in `dir/qmp` that `files` does not contain.
fn obsolete(files: &[DocFile], dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join(MARKDOWN_DIR)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("{MARKDOWN_DIR}/{n}"))
        .filter(|p| !files.iter().any(|f| &f.path == p))
        .collect();
    v.sort();
    v
}

/// Compares `files` with the contents of `dir`; empty when up to date.
pub fn check(files: &[DocFile], dir: &Path) -> Vec<Stale> {
    let mut v = Vec::new();
    for f in files {
        match std::fs::read_to_string(dir.join(&f.path)) {
            Ok(t) if t == f.contents => {}
            Ok(_) => v.push(Stale::Differs(f.path.clone())),
            Err(_) => v.push(Stale::Missing(f.path.clone())),
        }
    }
    v.extend(obsolete(files, dir).into_iter().map(Stale::Obsolete));
    v
}

/// Writes `files` under `dir`, creating directories, leaving identical files
/// untouched and deleting obsolete Markdown pages. Returns what changed.
pub fn write(files: &[DocFile], dir: &Path) -> std::io::Result<Vec<Stale>> {
    let changes = check(files, dir);
    for c in &changes {
        let path = dir.join(c.path());
        match c {
            Stale::Obsolete(_) => std::fs::remove_file(&path)?,
            Stale::Missing(p) | Stale::Differs(p) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if let Some(f) = files.iter().find(|f| &f.path == p) {
                    std::fs::write(&path, &f.contents)?;
                }
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests;
