//! Messages on stderr in QEMU's `error_report` format.
//!
//! QEMU prefixes a message with the program name and the command-line
//! option being processed, except while a monitor command runs: then the
//! message goes out bare.

use std::path::Path;

/// Where a chardev is being created, which decides how messages printed
/// meanwhile are prefixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// By a QMP command (`chardev-add`, `chardev-change`).
    Qmp,
    /// By the command line; `location` is the option as QEMU names it in
    /// messages, e.g. `--chardev socket,id=c,path=/tmp/s,server=on`.
    Cli { location: Option<String> },
}

impl Origin {
    /// Prints `info: MSG` with this origin's prefix.
    pub fn info(&self, msg: &str) {
        match self {
            Origin::Qmp => eprintln!("info: {msg}"),
            Origin::Cli { location: Some(l) } => eprintln!("{}: {l}: info: {msg}", progname()),
            Origin::Cli { location: None } => eprintln!("{}: info: {msg}", progname()),
        }
    }
}

/// Prints an error found outside any command or option (a background
/// reconnect, for instance).
pub fn error(msg: &str) {
    eprintln!("{}: {msg}", progname());
}

/// The program name QEMU uses: the last component of `argv[0]`.
pub fn progname() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "qemu-storage-daemon".to_string())
}
