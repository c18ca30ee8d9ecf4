//! The QAPI schema front end: syntax and doc blocks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(items) = qapi_codegen::parse::parse_file("fuzz.json", text) {
            for item in items {
                if let qapi_codegen::parse::Item::Doc { line, lines } = item {
                    let _ = qapi_codegen::model::parse_doc("fuzz.json", line, &lines);
                }
            }
        }
    }
});
