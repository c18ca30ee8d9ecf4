//! The QemuOpts syntax used by --chardev.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = qapi::qemuopts::parse(text, Some(qapi::qemuopts::CHARDEV_IMPLIED_KEY), qapi::qemuopts::CHARDEV_OPTS);
    }
});
