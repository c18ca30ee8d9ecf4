//! Random and mutated input never panics the schema front end: it either
//! loads or reports errors.

use proptest::prelude::*;

const SAMPLE: &str = include_str!("golden/sample.json");

fn load_text(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("main.json"), text).map_err(|e| e.to_string())?;
    qapi_codegen::load(
        &dir.path().join("main.json"),
        qapi_codegen::Profile::default(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_text_does_not_panic(s in "[{}\\[\\]',:#@a-z \n'*-]{0,200}") {
        let _ = qapi_codegen::parse::parse_file("t.json", &s);
        let _ = load_text(&s);
    }

    #[test]
    fn mutated_schema_does_not_panic(edits in proptest::collection::vec((0usize..4000, 0u8..4, any::<u8>()), 1..6)) {
        let mut bytes = SAMPLE.as_bytes().to_vec();
        for (pos, op, byte) in edits {
            let pos = pos % (bytes.len() + 1);
            let c = b"{}[]':,#@ \nabcXYZ*-"[byte as usize % 19];
            match op {
                0 if pos < bytes.len() => { bytes.remove(pos); }
                1 => bytes.insert(pos, c),
                2 if pos < bytes.len() => bytes[pos] = c,
                _ => {
                    // Duplicate a line, a common structural mutation.
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    let lines: Vec<&str> = text.lines().collect();
                    if !lines.is_empty() {
                        let i = pos % lines.len();
                        let mut v = lines.clone();
                        v.insert(i, lines[i]);
                        bytes = v.join("\n").into_bytes();
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Err(e) = load_text(&text) {
            // Every error names a location.
            prop_assert!(e.lines().all(|l| l.starts_with("main.json:")), "{}", e);
        }
    }
}
