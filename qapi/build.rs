//! Runs the QAPI generator over `schema/` and writes the Rust sources the
//! crate includes: types, commands, events and introspection data.

use std::path::{Path, PathBuf};

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let schema_dir = dir.join("schema");
    println!("cargo:rerun-if-changed={}", schema_dir.display());
    if let Ok(entries) = std::fs::read_dir(&schema_dir) {
        for e in entries.flatten() {
            println!("cargo:rerun-if-changed={}", e.path().display());
        }
    }
    let schema = match qapi_codegen::load(
        &schema_dir.join("qapi-schema.json"),
        qapi_codegen::Profile::default(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            panic!("the QAPI schema has errors (see above)");
        }
    };
    let code = qapi_codegen::gen::rust::generate(&schema).unwrap_or_else(|e| panic!("{e}"));
    write(&out, "types.rs", &code.types);
    write(&out, "commands.rs", &code.commands);
    write(&out, "events.rs", &code.events);
    let intro = qapi_codegen::gen::introspect::introspect_json(&schema);
    write(
        &out,
        "introspect.rs",
        &format!(
            "/// The `query-qmp-schema` return value as JSON text, with every object's keys\n\
             /// in the order QEMU inserts them.\n\
             pub const SCHEMA_JSON: &str = {intro:?};\n"
        ),
    );
}

fn write(out: &Path, name: &str, text: &str) {
    let path = out.join(name);
    // Keep the timestamp when nothing changed, so dependents don't rebuild.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}
