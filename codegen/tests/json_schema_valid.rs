//! `docs/qmp-schema.json` as generated from the schema (`$QAPI_SCHEMA`,
//! default `qapi/schema/qapi-schema.json`) is a valid JSON Schema that
//! accepts and rejects sample QMP messages as expected. The checks run in
//! Python with the `jsonschema` package (`validate_qmp_schema.py`); the test
//! is skipped when that is not installed, unless `QAPI_REQUIRE_JSONSCHEMA`
//! is set.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[test]
fn json_schema_validates_with_python_jsonschema() {
    let main = std::env::var_os("QAPI_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("qapi/schema/qapi-schema.json"));
    let schema = qapi_codegen::load(&main, qapi_codegen::Profile::default())
        .unwrap_or_else(|e| panic!("schema {} does not load:\n{e}", main.display()));
    let json = serde_json::to_string_pretty(&qapi_codegen::gen::docs::json_schema(&schema))
        .expect("serialisable");
    let file = std::env::temp_dir().join(format!("qmp-schema-{}.json", std::process::id()));
    std::fs::write(&file, json).expect("write temp file");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/validate_qmp_schema.py");
    let out = Command::new("python3").arg(&script).arg(&file).output();
    let _ = std::fs::remove_file(&file);
    let required = std::env::var_os("QAPI_REQUIRE_JSONSCHEMA").is_some();
    let out = match out {
        Ok(o) => o,
        Err(e) if !required => {
            eprintln!("skipped: can't run python3: {e}");
            return;
        }
        Err(e) => panic!("can't run python3: {e}"),
    };
    if out.status.code() == Some(3) && !required {
        eprintln!("skipped: {}", String::from_utf8_lossy(&out.stderr).trim());
        return;
    }
    assert!(
        out.status.success(),
        "validate_qmp_schema.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
