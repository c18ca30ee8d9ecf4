//! Command-line scanning, as qemu-storage-daemon 10.0.2 does it with glibc's
//! `getopt_long` (option string `-hT:V`, so arguments come back in order and
//! a non-option argument is reported instead of permuted).
//!
//! [`scan`] turns the whole command line into a list of [`Item`]s once; the
//! start-up code then walks that list twice, as QSD does (see
//! [`Opt::is_pre_init`]). Everything here was checked against the installed
//! `qemu-storage-daemon`:
//!
//! | input | result |
//! |---|---|
//! | `--blockdev X`, `--blockdev=X` | option with argument `X` |
//! | `--blo X`, `--b=X` (any unique prefix; every long option has its own first letter) | same as the full name |
//! | `--=x`, `--=` | `option '--=x' is ambiguous; possibilities: '--blockdev' … '--version'` |
//! | `--bogus`, `--bogus=1`, `---help`, `--Help` | `unrecognized option '--bogus=1'` (the text as written) |
//! | `--help=1`, `--he=1` | `option '--help' doesn't allow an argument` (the full name) |
//! | `--blockdev` last, `--p` last | `option '--blockdev' requires an argument` |
//! | `-x`, `-blockdev` | `invalid option -- 'x'` / `-- 'b'` (single-dash words are clusters of short options) |
//! | `-T` last | `option requires an argument -- 'T'` |
//! | `-Tfoo`, `-T foo`, `-hTfoo` | `-T` with argument `foo` (after `-h`) |
//! | `--blockdev -V` | the next word is the argument, even if it starts with `-` |
//! | `foo`, `-`, `` (empty word) | a non-option argument, reported later as `foo: Unexpected argument` |
//! | `--` | ends the scan; every word after it is ignored |
//!
//! Scanner messages are printed as `ARGV0: MESSAGE` with `argv[0]` exactly as
//! given (not its base name).

/// The options of qemu-storage-daemon, in the order of QSD's option table
/// (which is also the order of the "possibilities" of an ambiguous prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// `--blockdev`: add a block node.
    Blockdev,
    /// `--chardev`: add a character device.
    Chardev,
    /// `--daemonize`: detach once start-up completed.
    Daemonize,
    /// `--export`: add a block export.
    Export,
    /// `-h`, `--help`: print the help text and exit.
    Help,
    /// `--monitor`: add a QMP monitor.
    Monitor,
    /// `--nbd-server`: start the NBD server.
    NbdServer,
    /// `--object`: add a user-creatable object.
    Object,
    /// `--pidfile`: write and lock a pid file.
    Pidfile,
    /// `-T`, `--trace`: trace options.
    Trace,
    /// `-V`, `--version`: print the version and exit.
    Version,
}

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HasArg {
    No,
    Required,
}

/// QSD's long option table.
const LONG_OPTIONS: &[(&str, HasArg, Opt)] = &[
    ("blockdev", HasArg::Required, Opt::Blockdev),
    ("chardev", HasArg::Required, Opt::Chardev),
    ("daemonize", HasArg::No, Opt::Daemonize),
    ("export", HasArg::Required, Opt::Export),
    ("help", HasArg::No, Opt::Help),
    ("monitor", HasArg::Required, Opt::Monitor),
    ("nbd-server", HasArg::Required, Opt::NbdServer),
    ("object", HasArg::Required, Opt::Object),
    ("pidfile", HasArg::Required, Opt::Pidfile),
    ("trace", HasArg::Required, Opt::Trace),
    ("version", HasArg::No, Opt::Version),
];

/// QSD's short options (`hT:V`).
fn short_option(c: u8) -> Option<(HasArg, Opt)> {
    match c {
        b'h' => Some((HasArg::No, Opt::Help)),
        b'T' => Some((HasArg::Required, Opt::Trace)),
        b'V' => Some((HasArg::No, Opt::Version)),
        _ => None,
    }
}

impl Opt {
    /// The long name, without `--`.
    pub fn long_name(self) -> &'static str {
        LONG_OPTIONS
            .iter()
            .find(|(_, _, o)| *o == self)
            .map_or("", |(n, _, _)| n)
    }

    /// Options QSD handles in its first pass over the command line, before
    /// anything else is set up: a scanner error, `--help` and `--version`
    /// (so `--blockdev x -V` prints the version), `--daemonize` and
    /// `--pidfile`. Everything else (including `-T`) is applied in the second
    /// pass, in command-line order.
    pub fn is_pre_init(self) -> bool {
        matches!(
            self,
            Opt::Help | Opt::Version | Opt::Daemonize | Opt::Pidfile
        )
    }
}

/// One result of scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An option. `arg` is its argument, `loc` the command-line words that
    /// spelled it (`--blockdev x` is two words, `--blockdev=x` one), which
    /// error messages quote; both are empty for options without argument.
    Opt {
        opt: Opt,
        arg: Option<Vec<u8>>,
        loc: Vec<Vec<u8>>,
    },
    /// A word that is not an option (QSD: `WORD: Unexpected argument`).
    NonOption(Vec<u8>),
    /// A scanner error; the message without the `ARGV0: ` prefix.
    Error(Vec<u8>),
}

/// The scanner's position: the word being read and, inside a cluster of
/// short options (`-hV`), the offset of the next letter.
struct Scanner<'a> {
    argv: &'a [Vec<u8>],
    optind: usize,
    nextchar: Option<usize>,
}

/// Scans `argv` (including `argv[0]`) the way QSD's `getopt_long` loop does.
/// The list ends at `--` or after the last word.
pub fn scan(argv: &[Vec<u8>]) -> Vec<Item> {
    let mut s = Scanner {
        argv,
        optind: 1,
        nextchar: None,
    };
    let mut items = Vec::new();
    loop {
        let start = s.optind;
        let Some(step) = s.next() else { break };
        items.push(match step {
            Step::Opt(opt, None) => Item::Opt {
                opt,
                arg: None,
                loc: Vec::new(),
            },
            Step::Opt(opt, Some(arg)) => {
                let count = s.optind.saturating_sub(start).max(1);
                Item::Opt {
                    opt,
                    arg: Some(arg),
                    loc: argv[start..(start + count).min(argv.len())].to_vec(),
                }
            }
            Step::NonOption(w) => Item::NonOption(w),
            Step::Error(m) => Item::Error(m),
        });
    }
    items
}

enum Step {
    Opt(Opt, Option<Vec<u8>>),
    NonOption(Vec<u8>),
    Error(Vec<u8>),
}

fn msg(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl Scanner<'_> {
    fn next(&mut self) -> Option<Step> {
        if let Some(pos) = self.nextchar {
            return Some(self.short(pos));
        }
        let word = self.argv.get(self.optind)?;
        if word.as_slice() == b"--" {
            self.optind += 1;
            return None;
        }
        if word.len() < 2 || word[0] != b'-' {
            self.optind += 1;
            return Some(Step::NonOption(word.clone()));
        }
        if word[1] == b'-' {
            return Some(self.long(&word[2..]));
        }
        Some(self.short(1))
    }

    /// A `--name[=value]` word; `text` is what follows `--`.
    fn long(&mut self, text: &[u8]) -> Step {
        self.optind += 1;
        let (name, value) = match text.iter().position(|&c| c == b'=') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let exact = LONG_OPTIONS.iter().find(|(n, _, _)| n.as_bytes() == name);
        let found = match exact {
            Some(o) => o,
            None => {
                let candidates: Vec<_> = LONG_OPTIONS
                    .iter()
                    .filter(|(n, _, _)| n.as_bytes().starts_with(name))
                    .collect();
                match candidates.as_slice() {
                    [] => return Step::Error(msg(&[b"unrecognized option '--", text, b"'"])),
                    [one] => *one,
                    many => {
                        let mut m = msg(&[b"option '--", text, b"' is ambiguous; possibilities:"]);
                        for (n, _, _) in many {
                            m.extend_from_slice(format!(" '--{n}'").as_bytes());
                        }
                        return Step::Error(m);
                    }
                }
            }
        };
        let (full, has_arg, opt) = *found;
        match (has_arg, value) {
            (HasArg::No, None) => Step::Opt(opt, None),
            (HasArg::No, Some(_)) => {
                Step::Error(format!("option '--{full}' doesn't allow an argument").into_bytes())
            }
            (HasArg::Required, Some(v)) => Step::Opt(opt, Some(v.to_vec())),
            (HasArg::Required, None) => match self.argv.get(self.optind) {
                Some(v) => {
                    self.optind += 1;
                    Step::Opt(opt, Some(v.clone()))
                }
                None => Step::Error(format!("option '--{full}' requires an argument").into_bytes()),
            },
        }
    }

    /// The letter at offset `pos` of the current word (a cluster like `-hV`).
    fn short(&mut self, pos: usize) -> Step {
        let word = &self.argv[self.optind];
        let c = word[pos];
        let rest_start = pos + 1;
        let at_end = rest_start >= word.len();
        self.nextchar = (!at_end).then_some(rest_start);
        if at_end {
            self.optind += 1;
        }
        match short_option(c) {
            None => Step::Error(msg(&[b"invalid option -- '", &[c], b"'"])),
            Some((HasArg::No, opt)) => Step::Opt(opt, None),
            Some((HasArg::Required, opt)) => {
                if !at_end {
                    // The rest of the word is the argument.
                    self.nextchar = None;
                    self.optind += 1;
                    return Step::Opt(opt, Some(word[rest_start..].to_vec()));
                }
                match self.argv.get(self.optind) {
                    Some(v) => {
                        self.optind += 1;
                        Step::Opt(opt, Some(v.clone()))
                    }
                    None => Step::Error(msg(&[b"option requires an argument -- '", &[c], b"'"])),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
