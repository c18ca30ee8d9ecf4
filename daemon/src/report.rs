//! Messages on stderr in QEMU's `error_report()` format.
//!
//! A message is `PROG:` followed by its location and the text:
//!
//! | location | output |
//! |---|---|
//! | none | `PROG: TEXT` |
//! | command-line words | `PROG: --blockdev x: TEXT` (the words as given, joined by spaces) |
//! | a file | `PROG:FILE: TEXT`, or `PROG:FILE:LINE: TEXT` |
//!
//! Warnings and informational messages put `warning: ` or `info: ` before
//! the text. PROG is the part of `argv[0]` after its last `/` (QEMU's
//! `error_init()`), so `qsd` when run as `qsd` or `/usr/bin/qsd`.

use std::io::Write;

/// Where a message comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Location {
    /// Nowhere in particular.
    #[default]
    None,
    /// The command-line words of an option.
    Cmdline(Vec<Vec<u8>>),
    /// A line of a file (`0`: the file as a whole).
    File(Vec<u8>, usize),
}

/// Prints messages with the program name.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `argv[0]` as given, for the option scanner's messages.
    pub argv0: Vec<u8>,
    /// Its last path component, for everything else.
    pub prog: Vec<u8>,
}

impl Reporter {
    /// A reporter for a program started as `argv0`.
    pub fn new(argv0: &[u8]) -> Reporter {
        let prog = match argv0.iter().rposition(|&c| c == b'/') {
            Some(i) => argv0[i + 1..].to_vec(),
            None => argv0.to_vec(),
        };
        Reporter {
            argv0: argv0.to_vec(),
            prog,
        }
    }

    /// The program name used in `--help` and error messages.
    pub fn prog(&self) -> String {
        String::from_utf8_lossy(&self.prog).into_owned()
    }

    /// The prefix of a message at `loc`, up to the text.
    fn prefix(&self, loc: &Location) -> Vec<u8> {
        let mut out = self.prog.clone();
        out.push(b':');
        match loc {
            Location::None => out.push(b' '),
            Location::Cmdline(words) => {
                for w in words {
                    out.push(b' ');
                    out.extend_from_slice(w);
                }
                out.extend_from_slice(b": ");
            }
            Location::File(name, line) => {
                out.extend_from_slice(name);
                out.push(b':');
                if *line > 0 {
                    out.extend_from_slice(format!("{line}:").as_bytes());
                }
                out.push(b' ');
            }
        }
        out
    }

    /// The full text of an error at `loc`.
    pub fn format(&self, loc: &Location, text: &str) -> Vec<u8> {
        let mut out = self.prefix(loc);
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        out
    }

    /// `PROG: LOC: TEXT`.
    pub fn error(&self, loc: &Location, text: &str) {
        write_stderr(&self.format(loc, text));
    }

    /// `PROG: LOC: warning: TEXT`.
    pub fn warning(&self, loc: &Location, text: &str) {
        self.error(loc, &format!("warning: {text}"));
    }

    /// `PROG: LOC: info: TEXT`.
    pub fn info(&self, loc: &Location, text: &str) {
        self.error(loc, &format!("info: {text}"));
    }

    /// A message of the option scanner: `ARGV0: TEXT` with `argv[0]` as given.
    pub fn scanner_error(&self, text: &[u8]) {
        let mut out = self.argv0.clone();
        out.extend_from_slice(b": ");
        out.extend_from_slice(text);
        out.push(b'\n');
        write_stderr(&out);
    }
}

/// Writes `bytes` to stderr as they are (QEMU prints bytes, not text).
pub fn write_stderr(bytes: &[u8]) {
    let mut e = std::io::stderr().lock();
    // Nothing sensible can be done if stderr is gone.
    let _ = e.write_all(bytes);
    let _ = e.flush();
}

/// Writes `text` to stdout and flushes it.
pub fn write_stdout(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// The C library's text for `err` (`strerror`), without Rust's
/// ` (os error N)` suffix.
pub fn strerror(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_name_is_the_last_path_component() {
        assert_eq!(Reporter::new(b"/usr/bin/qsd").prog, b"qsd");
        assert_eq!(Reporter::new(b"qsd").prog, b"qsd");
        assert_eq!(Reporter::new(b"/a/b/").prog, b"");
        assert_eq!(Reporter::new(b"").prog, b"");
    }

    #[test]
    fn locations() {
        let r = Reporter::new(b"/x/qsd");
        assert_eq!(r.format(&Location::None, "m"), b"qsd: m\n");
        let words = vec![b"--blockdev".to_vec(), b"x".to_vec()];
        assert_eq!(
            r.format(&Location::Cmdline(words), "m"),
            b"qsd: --blockdev x: m\n"
        );
        assert_eq!(
            r.format(&Location::Cmdline(vec![Vec::new()]), "m"),
            b"qsd: : m\n"
        );
        assert_eq!(
            r.format(&Location::File(b"/f".to_vec(), 0), "m"),
            b"qsd:/f: m\n"
        );
        assert_eq!(
            r.format(&Location::File(b"/f".to_vec(), 3), "m"),
            b"qsd:/f:3: m\n"
        );
    }

    #[test]
    fn strerror_drops_the_os_error_suffix() {
        let e = std::io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(strerror(&e), "Resource temporarily unavailable");
    }
}
