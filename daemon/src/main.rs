//! `qsd`: a drop-in replacement for qemu-storage-daemon.

fn main() {
    std::process::exit(qsd::run(std::env::args_os().collect()));
}
