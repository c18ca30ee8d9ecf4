//! The documentation committed under `docs/` is exactly what the generator
//! makes of the schema. The schema is `$QAPI_SCHEMA` (default
//! `qapi/schema/qapi-schema.json`), the docs directory `$QAPI_DOCS_DIR`
//! (default `docs/`), both relative to the workspace root.

use std::path::{Path, PathBuf};

use qapi_codegen::gen::docs::{self, Stale};

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default))
}

/// The first line where the committed file and the generated text differ.
fn first_difference(path: &Path, generated: &str) -> Option<usize> {
    let old = std::fs::read_to_string(path).ok()?;
    let mut a = old.lines();
    let mut b = generated.lines();
    let mut n = 1;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return None,
            (x, y) if x != y => return Some(n),
            _ => n += 1,
        }
    }
}

/// A path for the regeneration command, relative to the workspace root when
/// possible.
fn shown(p: &Path) -> String {
    p.strip_prefix(root())
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

#[test]
fn committed_docs_are_fresh() {
    let main = env_path("QAPI_SCHEMA", "qapi/schema/qapi-schema.json");
    let dir = env_path("QAPI_DOCS_DIR", "docs");
    let schema = qapi_codegen::load(&main, qapi_codegen::Profile::default())
        .unwrap_or_else(|e| panic!("schema {} does not load:\n{e}", main.display()));
    let files = docs::generate(&schema);
    let stale = docs::check(&files, &dir);
    if stale.is_empty() {
        return;
    }
    let lines: Vec<String> = stale
        .iter()
        .map(|s| {
            let path = dir.join(s.path());
            match s {
                Stale::Differs(p) => {
                    let generated = files
                        .iter()
                        .find(|f| &f.path == p)
                        .map(|f| f.contents.as_str())
                        .unwrap_or("");
                    match first_difference(&path, generated) {
                        Some(l) => format!(
                            "  {}: out of date (first difference at line {l})",
                            shown(&path)
                        ),
                        None => format!("  {}: out of date", shown(&path)),
                    }
                }
                _ => format!("  {}: {}", shown(&path), s.reason()),
            }
        })
        .collect();
    panic!(
        "{} documentation file(s) under {} do not match the schema:\n{}\n\
         regenerate them with:\n  cargo run -p qapi-codegen --bin qapi-gen -- {} --docs {}",
        stale.len(),
        shown(&dir),
        lines.join("\n"),
        shown(&main),
        shown(&dir)
    );
}
