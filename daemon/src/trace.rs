//! `-T`/`--trace [[enable=]PATTERN][,events=FILE][,file=FILE]`.
//!
//! QSD's syntax, errors and warnings, mapped onto our `tracing` events.
//!
//! # Trace event names
//!
//! QEMU has one trace point per event name (`monitor_qmp_cmd_in_band`). Our
//! code logs with `tracing`, and an event's name is derived from its
//! `tracing` target (the module that logs it), with `::` replaced by `_`:
//! `qsd_runtime::qmp::monitor` is `qmp_monitor`, `qsd_runtime::chardev` is
//! `chardev`, anything in the `qsd` binary crate is `cli…` (`qsd::apply` is
//! `cli_apply`), `qapi::…` is `qapi_…`. Enabling a name turns on every
//! level (error to trace) of that module and the modules below it
//! (`qmp` covers `qmp_monitor`). The groups are listed by `-T help`
//! ([`GROUPS`]; add a line there for a new top-level module).
//!
//! # Rules (as QSD)
//!
//! * `enable=PATTERN` (or a first value without `enable=`) enables the
//!   events matching PATTERN; a leading `-` disables them instead. A
//!   pattern with `*` or `?` is a glob over event names; any other text is an
//!   exact name, and if no such event exists the daemon warns
//!   `PROG: -T VALUE: warning: trace event 'NAME' does not exist` and goes on.
//! * `enable=help` or `enable=?` lists the event groups on stdout and exits
//!   with 0.
//! * `events=FILE` reads one pattern per line; empty lines and lines starting
//!   with `#` are skipped, and the last character of every line is dropped
//!   (the newline, or the last letter of an unterminated last line, as QEMU
//!   does). Warnings read `PROG:FILE:LINE: warning: …`; a file that cannot be
//!   opened stops start-up with `PROG:FILE: STRERROR`.
//! * `file=FILE` writes trace output to FILE (created or truncated) instead
//!   of stderr; failure stops start-up with `Error opening logfile FILE:
//!   STRERROR`.
//! * Options are parsed as QemuOpts (implied key `enable`), so an unknown key
//!   is `Invalid parameter 'KEY'`, a pair without `=` is a deprecated
//!   short-form boolean (warning first), and `help` as such a pair lists the
//!   three options (`trace options:` …) and exits with status 1.
//! * Several `-T` options apply in command-line order; rules apply in order,
//!   so a later `-x` disables what an earlier `*` enabled.
//!
//! Output lines look like QEMU's log backend: `PID@SECONDS.MICROSECONDS:NAME
//! MESSAGE FIELD=VALUE…`. Without `-T`, nothing is traced.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use qapi::qemuopts::{OptDesc, OptKind};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::apply::{parse_qemuopts, Stop};
use crate::report::{strerror, write_stdout, Location, Reporter};

/// The options of `-T` (QEMU's `qemu_trace_opts`).
pub const TRACE_OPTS: &[OptDesc] = &[
    OptDesc {
        name: "enable",
        kind: OptKind::String,
    },
    OptDesc {
        name: "events",
        kind: OptKind::String,
    },
    OptDesc {
        name: "file",
        kind: OptKind::String,
    },
];

/// The top-level event groups, with what they cover (the `-T help` list).
pub const GROUPS: &[(&str, &str)] = &[
    ("cli", "command line, start-up and shutdown"),
    ("chardev", "character devices"),
    ("daemon", "daemon state and QMP command implementations"),
    ("objects", "user-creatable objects"),
    ("qapi", "QAPI parsing and conversion"),
    ("qmp", "QMP monitors"),
];

struct Rule {
    pattern: String,
    enable: bool,
}

static RULES: RwLock<Vec<Rule>> = RwLock::new(Vec::new());
/// Set once any rule exists: the fast path for the common case.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// `None`: stderr.
static SINK: Mutex<Option<File>> = Mutex::new(None);
/// A `file=` was given (then a daemon keeps its stderr, as QSD does).
static TO_FILE: AtomicBool = AtomicBool::new(false);

/// The event name of a `tracing` target, if it is one of ours.
pub fn event_name(target: &str) -> Option<String> {
    let name = if let Some(rest) = target.strip_prefix("qsd_runtime::") {
        rest.to_string()
    } else if target == "qsd" {
        "cli".to_string()
    } else if let Some(rest) = target.strip_prefix("qsd::") {
        format!("cli_{rest}")
    } else if target == "qapi" || target.starts_with("qapi::") {
        target.to_string()
    } else {
        return None;
    };
    Some(name.replace("::", "_"))
}

fn is_pattern(p: &str) -> bool {
    p.contains(['*', '?'])
}

/// QEMU's glob: `*` any run of characters, `?` any one character.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Whether an exact (non-glob) name covers event `name`.
fn covers(exact: &str, name: &str) -> bool {
    name == exact
        || (name.len() > exact.len()
            && name.starts_with(exact)
            && name[exact.len()..].starts_with('_'))
}

fn rule_matches(pattern: &str, name: &str) -> bool {
    if is_pattern(pattern) {
        glob(pattern.as_bytes(), name.as_bytes())
    } else {
        covers(pattern, name)
    }
}

/// Whether an exact name is an event of ours: a group or something below one.
fn exists(exact: &str) -> bool {
    GROUPS.iter().any(|(g, _)| covers(g, exact))
}

/// Whether events named `name` are traced under the current rules.
pub fn enabled(name: &str) -> bool {
    let Ok(rules) = RULES.read() else {
        return false;
    };
    rules
        .iter()
        .rev()
        .find(|r| rule_matches(&r.pattern, name))
        .is_some_and(|r| r.enable)
}

fn target_enabled(target: &str) -> bool {
    ACTIVE.load(Ordering::Acquire) && event_name(target).is_some_and(|n| enabled(&n))
}

/// Whether trace output goes to a file.
pub fn to_file() -> bool {
    TO_FILE.load(Ordering::Acquire)
}

/// Installs the subscriber that writes enabled events. Called once, early.
pub fn init() {
    let _ = tracing_subscriber::registry().with(TraceLayer).try_init();
}

struct TraceLayer;

impl<S: Subscriber> Layer<S> for TraceLayer {
    fn register_callsite(&self, _meta: &'static Metadata<'static>) -> Interest {
        // Rules change while the program runs (each -T adds some), so the
        // decision is made per event in `enabled`.
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _cx: Context<'_, S>) -> bool {
        target_enabled(meta.target())
    }

    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let meta = event.metadata();
        let Some(name) = event_name(meta.target()) else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format!(
            "{}@{}.{:06}:{name} {}{}\n",
            std::process::id(),
            now.as_secs(),
            now.subsec_micros(),
            fields.message,
            fields.rest
        );
        if let Ok(mut sink) = SINK.lock() {
            let _ = match sink.as_mut() {
                Some(f) => f.write_all(line.as_bytes()),
                None => std::io::stderr().lock().write_all(line.as_bytes()),
            };
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

fn list_groups() {
    let mut out = String::new();
    for (g, _) in GROUPS {
        out.push_str(g);
        out.push('\n');
    }
    write_stdout(&out);
}

/// Adds the rule written as `line` (QEMU's `trace_enable_events()`); a help
/// request lists the groups and stops with 0.
fn enable_events(line: &str, rep: &Reporter, loc: &Location) -> Result<(), Stop> {
    if line == "help" || line == "?" {
        list_groups();
        return Err(Stop::Exit(0));
    }
    let (pattern, enable) = match line.strip_prefix('-') {
        Some(p) => (p, false),
        None => (line, true),
    };
    if !is_pattern(pattern) && !exists(pattern) {
        rep.warning(loc, &format!("trace event '{pattern}' does not exist"));
        return Ok(());
    }
    if let Ok(mut rules) = RULES.write() {
        rules.push(Rule {
            pattern: pattern.to_string(),
            enable,
        });
    }
    ACTIVE.store(true, Ordering::Release);
    Ok(())
}

/// Applies the patterns of an events file (QEMU's `trace_init_events()`).
fn read_events_file(fname: &str, rep: &Reporter) -> Result<(), Stop> {
    let name = fname.as_bytes().to_vec();
    let data = match std::fs::read(fname) {
        Ok(d) => d,
        Err(e) => {
            rep.error(&Location::File(name, 0), &strerror(&e));
            return Err(Stop::Exit(1));
        }
    };
    for (i, line) in data.split_inclusive(|&c| c == b'\n').enumerate() {
        // QEMU drops the last character of every line longer than one.
        if line.len() <= 1 {
            continue;
        }
        let line = &line[..line.len() - 1];
        if line.first() == Some(&b'#') {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        enable_events(&text, rep, &Location::File(name.clone(), i + 1))?;
    }
    Ok(())
}

/// Applies one `-T` option value.
pub fn apply(arg: &str, rep: &Reporter, loc: &Location) -> Result<(), Stop> {
    let opts = parse_qemuopts(arg, "enable", TRACE_OPTS, "trace", rep, loc)?;
    if let Some(enable) = opts.get("enable") {
        enable_events(enable, rep, loc)?;
    }
    if let Some(events) = opts.get("events") {
        read_events_file(events, rep)?;
    }
    if let Some(file) = opts.get("file") {
        let f = File::create(file).map_err(|e| Stop::Error {
            msg: format!("Error opening logfile {file}: {}", strerror(&e)),
            hint: None,
        })?;
        if let Ok(mut sink) = SINK.lock() {
            *sink = Some(f);
        }
        TO_FILE.store(true, Ordering::Release);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_targets() {
        assert_eq!(
            event_name("qsd_runtime::qmp::monitor").as_deref(),
            Some("qmp_monitor")
        );
        assert_eq!(event_name("qsd").as_deref(), Some("cli"));
        assert_eq!(event_name("qsd::apply").as_deref(), Some("cli_apply"));
        assert_eq!(event_name("qapi::keyval").as_deref(), Some("qapi_keyval"));
        assert_eq!(event_name("tokio::runtime"), None);
    }

    #[test]
    fn globs() {
        assert!(glob(b"qmp*", b"qmp_monitor"));
        assert!(glob(b"*", b""));
        assert!(glob(b"q?p", b"qmp"));
        assert!(!glob(b"q?p", b"qp"));
        assert!(!glob(b"chardev", b"chardevx"));
    }

    #[test]
    fn exact_names_cover_submodules() {
        assert!(covers("qmp", "qmp_monitor"));
        assert!(!covers("qm", "qmp_monitor"));
        assert!(exists("qmp_monitor"));
        assert!(!exists("bdrv_open_common"));
    }
}
