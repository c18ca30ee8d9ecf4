//! qcow2 on-disk structures: header and extensions (read-only and
//! read-write checks), then the L1/L2 tables, compressed cluster
//! descriptors and refcount blocks found in the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qsd_runtime::block::qcow2::fuzz::walk_image(data);
});
