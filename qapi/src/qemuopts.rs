//! QEMU's older "QemuOpts" option syntax, used by qemu-storage-daemon 10.0.2
//! for `--chardev` (implied key `backend`, options [`CHARDEV_OPTS`]).
//!
//! Facts (checked against the installed `qemu-storage-daemon`, see
//! `qapi/tests/keyval_differential.rs`):
//!
//! * Pairs are `name=value` separated by `,`, with `,,` for a `,` in a value.
//!   Names are not validated for syntax, only looked up in the description list.
//! * The first pair may omit `name=`: its text (with `,,` escapes) is the value
//!   of the implied key (`null,,x` is `backend="null,x"`).
//! * Any other pair without `=` is a deprecated short-form boolean: `name` means
//!   `name=on`, `noname` means `name=off`. Each one prints a warning (even when
//!   the name turns out to be invalid) before the parse goes on.
//! * `help` or `?` as such a short-form pair stops the parse: QSD prints
//!   [`help_text`] on stdout and exits with status **1**. As the implied first
//!   value it is just the `backend` (chardev then lists its backends, exit 0).
//! * `id` is looked for first, over the whole string (the first `id` wins, the
//!   first pair counting as a flag there, so `null,id` has id `on`) and must be
//!   well formed before anything else is checked; later `id` pairs are
//!   ignored. Other repeated names are all kept; the last one wins on lookup.
//! * Pairs are then checked from left to right; the first error stops.
//!
//! | situation | example | message (+ hint line) |
//! |---|---|---|
//! | bad `id` | `id=1x`, `id=`, `id=a,,b` | `Parameter 'id' expects an identifier` + `Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.` |
//! | unknown name | `serve=on`, `=x` | `Invalid parameter 'serve'` |
//! | bool not `on/yes/true/y/off/no/false/n` | `server=maybe` | `Parameter 'server' expects 'on' or 'off'` |
//! | number not a `strtoull` base-0 number | `debug=1.5`, `to=` | `Parameter 'debug' expects a number` |
//! | number magnitude ≥ 2^64 | `to=99999999999999999999` | `Value '99999999999999999999' is too large for parameter 'to'` |
//! | size invalid (see [`crate::cutils::qemu_strtosz`]) | `size=1x` | `Parameter 'size' expects a non-negative number below 2^64` + `Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-` / `and exabytes, respectively.` |
//! | size negative or ≥ 2^64 | `size=-1`, `size=16E` | `Value '16E' is out of range for parameter 'size'` |
//! | short-form boolean (warning) | `server`, `noserver` | `warning: short-form boolean option 'noserver' deprecated` + `Please use server=off instead` (`delay`/`nodelay` suggest `nodelay=off`/`nodelay=on`) |
//!
//! Errors print as `PROG: --chardev VALUE: MESSAGE`, then the hint lines
//! without prefix. Warnings print as `PROG: --chardev VALUE: warning: MESSAGE`,
//! then the hint line.
//!
//! After parsing, chardev itself checks (see [`chardev_start`]): `help` as
//! backend lists the backends (exit 0); no id: `chardev: no id specified`; no
//! backend: `chardev: "ID" missing backend`; an unknown backend:
//! `'NAME' is not a valid char driver name` (not checked here).

use crate::cutils::{qemu_strtosz, qemu_strtou64, StrtoError};
use crate::keyval::scalar::parse_bool;

/// The type of an option, as QemuOpts knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    /// Any string.
    String,
    /// `on`/`off` and synonyms.
    Bool,
    /// An unsigned 64-bit number (`strtoull`, base 0).
    Number,
    /// A byte size with optional suffix.
    Size,
}

/// One accepted option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptDesc {
    /// The option's name.
    pub name: &'static str,
    /// Its type.
    pub kind: OptKind,
}

const fn d(name: &'static str, kind: OptKind) -> OptDesc {
    OptDesc { name, kind }
}

/// The implied first key of `--chardev`.
pub const CHARDEV_IMPLIED_KEY: &str = "backend";

/// The options of `--chardev` (QEMU's `qemu_chardev_opts`) in QSD 10.0.2, in the
/// order of its help listing.
pub const CHARDEV_OPTS: &[OptDesc] = {
    use OptKind::{Bool, Number, Size, String};
    &[
        d("abstract", Bool),
        d("append", Bool),
        d("backend", String),
        d("chardev", String),
        d("chardevs.0", String),
        d("chardevs.1", String),
        d("chardevs.2", String),
        d("chardevs.3", String),
        d("clipboard", Bool),
        d("cols", Number),
        d("debug", Number),
        d("delay", Bool),
        d("fd", String),
        d("height", Number),
        d("host", String),
        d("input-path", String),
        d("ipv4", Bool),
        d("ipv6", Bool),
        d("localaddr", String),
        d("localport", String),
        d("logappend", Bool),
        d("logfile", String),
        d("mouse", Bool),
        d("mux", Bool),
        d("name", String),
        d("nodelay", Bool),
        d("path", String),
        d("port", String),
        d("reconnect-ms", Number),
        d("reconnect", Number),
        d("rows", Number),
        d("server", Bool),
        d("signal", Bool),
        d("size", Size),
        d("telnet", Bool),
        d("tight", Bool),
        d("tls-authz", String),
        d("tls-creds", String),
        d("tn3270", Bool),
        d("to", Number),
        d("wait", Bool),
        d("websocket", Bool),
        d("width", Number),
    ]
};

/// The typed value of one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptValue {
    /// A string option (or any option of a list that accepts anything).
    Str,
    /// A boolean option.
    Bool(bool),
    /// A number option.
    Number(u64),
    /// A size option.
    Size(u64),
}

/// One parsed option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOpt {
    /// Its name (after removing a `no` prefix of a short-form boolean).
    pub name: String,
    /// The value as written (`on`/`off` for short-form booleans).
    pub text: String,
    /// The value converted according to its description.
    pub value: OptValue,
}

/// A deprecated short-form boolean (`name` or `noname` without `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagWarning {
    /// As written, e.g. `noserver`.
    pub written: String,
    /// The option it sets, e.g. `server`.
    pub name: String,
    /// `on` or `off`.
    pub value: &'static str,
}

impl FlagWarning {
    /// The warning, printed after `PROG: --chardev VALUE: warning: `.
    pub fn message(&self) -> String {
        format!("short-form boolean option '{}' deprecated", self.written)
    }

    /// The line printed after the warning, without prefix (ends in `\n`).
    pub fn hint(&self) -> String {
        if self.name == "delay" {
            let v = if self.value == "off" { "on" } else { "off" };
            format!("Please use nodelay={v} instead\n")
        } else {
            format!("Please use {}={} instead\n", self.name, self.value)
        }
    }
}

/// A successful parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QemuOpts {
    /// The `id`, if given.
    pub id: Option<String>,
    /// The options other than `id`, in the order given.
    pub opts: Vec<QemuOpt>,
    /// Short-form booleans met, to print as warnings.
    pub warnings: Vec<FlagWarning>,
}

impl QemuOpts {
    /// The last option called `name`.
    pub fn get_opt(&self, name: &str) -> Option<&QemuOpt> {
        self.opts.iter().rev().find(|o| o.name == name)
    }

    /// The text of the last option called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_opt(name).map(|o| o.text.as_str())
    }

    /// The last boolean option called `name`.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        match self.get_opt(name)?.value {
            OptValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The last number or size option called `name`.
    pub fn get_number(&self, name: &str) -> Option<u64> {
        match self.get_opt(name)?.value {
            OptValue::Number(n) | OptValue::Size(n) => Some(n),
            _ => None,
        }
    }
}

/// What went wrong; `Display` is QEMU's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QemuOptsErrorKind {
    /// The `id` is not an identifier (holds the id).
    #[error("Parameter 'id' expects an identifier")]
    InvalidId(String),
    /// A name not in the description list.
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// A boolean option with another value.
    #[error("Parameter '{0}' expects 'on' or 'off'")]
    BadBool(String),
    /// A number option with a malformed value.
    #[error("Parameter '{0}' expects a number")]
    BadNumber(String),
    /// A number option whose value does not fit in 64 bits.
    #[error("Value '{value}' is too large for parameter '{name}'")]
    NumberTooLarge {
        /// The option.
        name: String,
        /// Its value.
        value: String,
    },
    /// A size option with a malformed value.
    #[error("Parameter '{0}' expects a non-negative number below 2^64")]
    BadSize(String),
    /// A size option that is negative or too large.
    #[error("Value '{value}' is out of range for parameter '{name}'")]
    SizeOutOfRange {
        /// The option.
        name: String,
        /// Its value.
        value: String,
    },
    /// `help` or `?` was given: not an error message. QSD prints
    /// [`help_text`] on stdout and exits with status 1.
    #[error("help requested")]
    HelpWanted,
}

impl QemuOptsErrorKind {
    /// Text QEMU prints after the message, without prefix, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            QemuOptsErrorKind::InvalidId(_) => Some(
                "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n",
            ),
            QemuOptsErrorKind::BadSize(_) => Some(
                "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n\
                 and exabytes, respectively.\n",
            ),
            _ => None,
        }
    }
}

/// A failed parse: the error, and the warnings printed before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct QemuOptsError {
    /// The error.
    pub kind: QemuOptsErrorKind,
    /// Short-form booleans met before the error (printed before it).
    pub warnings: Vec<FlagWarning>,
}

/// QEMU's `id_wellformed`: an ASCII letter, then letters, digits, `-`, `.`, `_`.
pub fn id_wellformed(id: &str) -> bool {
    let b = id.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

/// One `name=value` pair as QemuOpts reads it.
struct Pair {
    name: String,
    value: String,
    flag: Option<FlagWarning>,
    is_help: bool,
    next: usize,
}

/// Read the value at byte `from` of `s` up to a single `,` (consumed), with
/// `,,` standing for `,`.
fn read_value(s: &str, from: usize) -> (String, usize) {
    let mut value = String::new();
    let mut i = from;
    loop {
        let seg = s[i..].find(',').unwrap_or(s.len() - i);
        value.push_str(&s[i..i + seg]);
        i += seg;
        if i >= s.len() {
            return (value, i);
        }
        if s[i + 1..].starts_with(',') {
            value.push(',');
            i += 2;
        } else {
            return (value, i + 1);
        }
    }
}

fn next_pair(params: &str, start: usize, firstname: Option<&str>) -> Pair {
    let rest = &params[start..];
    let len = rest.find(['=', ',']).unwrap_or(rest.len());
    if rest[len..].starts_with('=') {
        let (value, next) = read_value(rest, len + 1);
        return Pair {
            name: rest[..len].to_string(),
            value,
            flag: None,
            is_help: false,
            next: start + next,
        };
    }
    if let Some(first) = firstname {
        let (value, next) = read_value(rest, 0);
        return Pair {
            name: first.to_string(),
            value,
            flag: None,
            is_help: false,
            next: start + next,
        };
    }
    let written = &rest[..len];
    let next = if rest[len..].starts_with(',') {
        len + 1
    } else {
        len
    };
    let (name, value) = match written.strip_prefix("no") {
        Some(n) => (n, "off"),
        None => (written, "on"),
    };
    let is_help = value == "on" && (name == "help" || name == "?");
    Pair {
        name: name.to_string(),
        value: value.to_string(),
        flag: (!is_help).then(|| FlagWarning {
            written: written.to_string(),
            name: name.to_string(),
            value,
        }),
        is_help,
        next: start + next,
    }
}

/// The first `id` of `params` (all pairs read as `name=value` or flags).
fn find_id(params: &str) -> Option<String> {
    let mut pos = 0;
    while pos < params.len() {
        let pair = next_pair(params, pos, None);
        if pair.name == "id" {
            return Some(pair.value);
        }
        pos = pair.next;
    }
    None
}

fn convert(name: &str, text: &str, kind: OptKind) -> Result<OptValue, QemuOptsErrorKind> {
    match kind {
        OptKind::String => Ok(OptValue::Str),
        OptKind::Bool => parse_bool(text)
            .map(OptValue::Bool)
            .ok_or_else(|| QemuOptsErrorKind::BadBool(name.to_string())),
        OptKind::Number => match qemu_strtou64(text, 0) {
            Ok(n) => Ok(OptValue::Number(n)),
            Err(StrtoError::Range) => Err(QemuOptsErrorKind::NumberTooLarge {
                name: name.to_string(),
                value: text.to_string(),
            }),
            Err(StrtoError::Invalid) => Err(QemuOptsErrorKind::BadNumber(name.to_string())),
        },
        OptKind::Size => match qemu_strtosz(text) {
            Ok(n) => Ok(OptValue::Size(n)),
            Err(StrtoError::Range) => Err(QemuOptsErrorKind::SizeOutOfRange {
                name: name.to_string(),
                value: text.to_string(),
            }),
            Err(StrtoError::Invalid) => Err(QemuOptsErrorKind::BadSize(name.to_string())),
        },
    }
}

/// Parse `params` like QEMU's `qemu_opts_parse_noisily()` for a list whose
/// first key may be implied (`implied_key`) and whose options are `desc`. An
/// empty `desc` accepts any name as a string and has no help.
pub fn parse(
    params: &str,
    implied_key: Option<&str>,
    desc: &[OptDesc],
) -> Result<QemuOpts, QemuOptsError> {
    let mut out = QemuOpts {
        id: find_id(params),
        ..QemuOpts::default()
    };
    if let Some(id) = &out.id {
        if !id_wellformed(id) {
            return Err(QemuOptsError {
                kind: QemuOptsErrorKind::InvalidId(id.clone()),
                warnings: Vec::new(),
            });
        }
    }
    let accepts_any = desc.is_empty();
    let mut firstname = implied_key;
    let mut pos = 0;
    while pos < params.len() {
        let pair = next_pair(params, pos, firstname);
        pos = pair.next;
        firstname = None;
        if let Some(w) = pair.flag {
            out.warnings.push(w);
        }
        let fail = |kind, out: QemuOpts| QemuOptsError {
            kind,
            warnings: out.warnings,
        };
        if pair.is_help && !accepts_any {
            return Err(fail(QemuOptsErrorKind::HelpWanted, out));
        }
        if pair.name == "id" {
            continue;
        }
        let value = match desc.iter().find(|d| d.name == pair.name) {
            Some(dsc) => match convert(&pair.name, &pair.value, dsc.kind) {
                Ok(v) => v,
                Err(kind) => return Err(fail(kind, out)),
            },
            None if accepts_any => OptValue::Str,
            None => {
                return Err(fail(
                    QemuOptsErrorKind::InvalidParameter(pair.name.clone()),
                    out,
                ))
            }
        };
        out.opts.push(QemuOpt {
            name: pair.name,
            text: pair.value,
            value,
        });
    }
    Ok(out)
}

/// The text QEMU prints on stdout for `help` (`qemu_opts_print_help` with a
/// caption): `"<list> options:\n"`, then `"  name=<type>\n"` lines sorted
/// bytewise, types being `str`, `bool (on/off)`, `num` and `size`.
pub fn help_text(list_name: &str, desc: &[OptDesc]) -> String {
    let mut lines: Vec<String> = desc
        .iter()
        .map(|o| {
            let ty = match o.kind {
                OptKind::String => "str",
                OptKind::Bool => "bool (on/off)",
                OptKind::Number => "num",
                OptKind::Size => "size",
            };
            format!("  {}=<{ty}>\n", o.name)
        })
        .collect();
    lines.sort();
    if lines.is_empty() {
        return format!("There are no options for {list_name}.\n");
    }
    format!("{list_name} options:\n{}", lines.concat())
}

/// What `--chardev` does with parsed options before creating the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChardevStart<'a> {
    /// `backend` is `help` or `?`: QSD lists the backends and exits with 0.
    ListBackends,
    /// Create backend `backend` (not yet checked to exist) with id `id`.
    Create {
        /// The backend's name.
        backend: &'a str,
        /// The chardev's id.
        id: &'a str,
    },
}

/// The checks `--chardev` makes on parsed options, in QEMU's order: help,
/// then `chardev: no id specified`, then `chardev: "ID" missing backend`.
pub fn chardev_start(opts: &QemuOpts) -> Result<ChardevStart<'_>, String> {
    let backend = opts.get(CHARDEV_IMPLIED_KEY);
    if matches!(backend, Some("help" | "?")) {
        return Ok(ChardevStart::ListBackends);
    }
    let Some(id) = opts.id.as_deref() else {
        return Err("chardev: no id specified".to_string());
    };
    match backend {
        Some(backend) => Ok(ChardevStart::Create { backend, id }),
        None => Err(format!("chardev: \"{id}\" missing backend")),
    }
}

#[cfg(test)]
#[path = "qemuopts_tests.rs"]
mod tests;
