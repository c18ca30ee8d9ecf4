//! The QMP input path: QEMU-compatible JSON stream parsing (in arbitrary
//! chunks), the typed visitors of large argument types, and the writer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qapi::types::{BlockExportOptions, BlockdevOptions, ChardevAddArgs, ObjectOptions, TransactionArgs};
use qapi::visit::{from_value, Mode};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map(|b| *b as usize).unwrap_or(0);
    let mut parser = qapi::json::JsonStreamParser::new();
    let mut results = Vec::new();
    let cut = split.min(data.len());
    results.extend(parser.feed(&data[..cut]));
    results.extend(parser.feed(&data[cut..]));
    results.extend(parser.flush());
    for r in results.into_iter().flatten() {
        let _ = qapi::json::to_json(&r, false);
        let _ = qapi::json::to_json(&r, true);
        let args = r.get("arguments").cloned().unwrap_or(r);
        let _ = from_value::<BlockdevOptions>(&args, Mode::Json);
        let _ = from_value::<BlockExportOptions>(&args, Mode::Json);
        let _ = from_value::<ObjectOptions>(&args, Mode::Json);
        let _ = from_value::<ChardevAddArgs>(&args, Mode::Json);
        let _ = from_value::<TransactionArgs>(&args, Mode::Json);
    }
});
