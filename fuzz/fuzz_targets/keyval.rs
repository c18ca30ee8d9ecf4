//! Command-line keyval syntax, then the typed keyval visitors.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qapi::types::{BlockExportOptions, BlockdevOptions, NbdServerOptions, ObjectOptions};
use qapi::visit::{from_value, Mode};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for implied in [Some("driver"), Some("type"), Some("qom-type"), None] {
        if let Ok(parsed) = qapi::keyval::parse(text, implied) {
            let v = Value::Object(parsed.value);
            let _ = from_value::<BlockdevOptions>(&v, Mode::Keyval);
            let _ = from_value::<BlockExportOptions>(&v, Mode::Keyval);
            let _ = from_value::<NbdServerOptions>(&v, Mode::Keyval);
            let _ = from_value::<ObjectOptions>(&v, Mode::Keyval);
        }
    }
});
