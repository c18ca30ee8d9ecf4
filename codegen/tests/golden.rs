//! Golden files of the generated Rust code for `golden/sample.json`: a change
//! in the generator shows up as a diff of checked-in, readable code.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p qapi-codegen --test golden`.

use std::path::PathBuf;

#[test]
fn generated_rust_matches_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let schema = qapi_codegen::load(&dir.join("sample.json"), qapi_codegen::Profile::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = qapi_codegen::gen::rust::generate(&schema).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (name, text) in [
        ("sample.types.rs", &out.types),
        ("sample.commands.rs", &out.commands),
        ("sample.events.rs", &out.events),
    ] {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(stale.is_empty(), "generated code differs from {stale:?}; if intended, run UPDATE_GOLDEN=1 cargo test -p qapi-codegen --test golden and review the diff");
}
