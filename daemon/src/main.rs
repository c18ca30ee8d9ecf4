//! `qsd`: a drop-in replacement for qemu-storage-daemon.

fn main() {
    std::process::exit(qsd::run(std::env::args_os().collect()));
}

/// The C library's `pow`, defined here so that the binary does not need
/// `libm.so` at all: tokio's scheduler statistics are its only caller, and
/// mapping the whole library for it cost about 0.55 MB of resident memory
/// in every daemon (docs/PERFORMANCE.md, NBD idle RSS). The `libm` crate
/// is a port of musl's implementation (results within 1 ulp).
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
