//! Applying the options of the second pass, in command-line order, as QSD
//! does: each one is parsed, type-checked and handed to the runtime before
//! the next is looked at, so a later option can refer to what an earlier one
//! created (`--monitor chardev=c` after `--chardev …,id=c`).
//!
//! # Values
//!
//! A value starting with `{` is JSON (QEMU's JSON parser,
//! [`qapi::json::from_str`]), checked with the QMP input rules; anything
//! else is keyval ([`qapi::keyval`]) with an implied key, checked with the
//! command-line rules ([`Mode::Keyval`]):
//!
//! | option | implied key | type | runtime entry point |
//! |---|---|---|---|
//! | `--blockdev` | `driver` | `BlockdevOptions` | `blockdev-add` |
//! | `--export` | `type` | `BlockExportOptions` | `block-export-add` |
//! | `--monitor` | `chardev` | `MonitorOptions` | QMP monitor (below) |
//! | `--nbd-server` | none | `NbdServerOptions` | `nbd-server-start` |
//! | `--object` | `qom-type` | `ObjectOptions` | object registry (`create_from_cli`) |
//! | `--chardev` | `backend` | QemuOpts | [`crate::chardev_cli`] |
//! | `-T`, `--trace` | `enable` | QemuOpts | [`crate::trace`] |
//!
//! The runtime entry points are the QMP command implementations (QSD calls
//! the same functions), so an option works as soon as its command does; until
//! then the error is the command's "not implemented" message, e.g.
//! `qsd: --blockdev driver=null-co,node-name=n: Command 'blockdev-add' is not
//! implemented by this daemon yet`.
//!
//! # Errors
//!
//! `PROG: WORDS: MESSAGE` with the option's words as written (`--blockdev x`
//! or `--blockdev=x`), exit status 1. A non-option word is
//! `PROG: WORD: Unexpected argument`.
//!
//! # Monitors
//!
//! `--monitor [chardev=]ID[,id=NAME][,mode=control][,pretty=on|off]`: in
//! QSD's order, `chardev "ID" not found`, then `mode=readline` is refused
//! with `Only QMP is supported`, then a chardev that already has a monitor
//! is `chardev 'ID' is already in use`. Monitors start serving only when
//! start-up is complete (after the pid file is written), see
//! [`Startup::start_monitors`].

use std::path::PathBuf;
use std::sync::Mutex;

use qapi::commands::Commands;
use qapi::keyval::QsdOption;
use qapi::qemuopts::{self, FlagWarning, OptDesc, QemuOpts, QemuOptsErrorKind};
use qapi::types::{
    BlockExportOptions, BlockdevOptions, MonitorMode, MonitorOptions, NbdServerOptions,
    ObjectOptions,
};
use qapi::visit::{from_value, Mode, Visit};
use qsd_runtime::chardev::CharConn;
use qsd_runtime::objects;
use qsd_runtime::qmp::{spawn_monitor, CommandContext, MonitorOptions as MonitorSettings};
use qsd_runtime::Daemon;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::options::{Item, Opt};
use crate::report::{write_stderr, write_stdout, Location, Reporter};

/// Why applying an option stops start-up.
#[derive(Debug)]
pub enum Stop {
    /// An error at the option's location: `PROG: WORDS: msg`, then `hint`
    /// as it is (it ends with a newline); exit status 1.
    Error { msg: String, hint: Option<String> },
    /// Output was already printed (help texts, errors with their own
    /// location); exit with this status.
    Exit(i32),
}

fn error(msg: impl Into<String>) -> Stop {
    Stop::Error {
        msg: msg.into(),
        hint: None,
    }
}

/// The daemon being set up by the command line.
pub struct Startup {
    pub daemon: Daemon,
    pub rep: Reporter,
    /// Monitors to start once start-up is complete.
    monitors: Vec<(mpsc::Receiver<CharConn>, MonitorSettings)>,
    /// UNIX socket files to remove at a clean exit, as QSD does.
    pub socket_paths: Vec<PathBuf>,
}

/// Parses an option value as JSON or keyval and converts it to `T`.
fn parse_value<T: Visit>(arg: &str, kind: QsdOption) -> Result<T, Stop> {
    let (tree, mode) = if arg.starts_with('{') {
        let v = qapi::json::from_str(arg).map_err(|e| error(e.to_string()))?;
        (v, Mode::Json)
    } else {
        let parsed = kind.parse(arg).map_err(|e| error(e.to_string()))?;
        (Value::Object(parsed.value), Mode::Keyval)
    };
    from_value::<T>(&tree, mode).map_err(|e| error(e.0))
}

/// Parses a QemuOpts option value (`--chardev`, `-T`) as QSD does on the
/// command line: short-form boolean warnings are printed as
/// `PROG: WORDS: warning: …` plus their hint line, even before an error;
/// `help` as a pair prints the option list (`LIST options:` …) on stdout and
/// stops with status 1.
pub fn parse_qemuopts(
    arg: &str,
    implied_key: &str,
    desc: &[OptDesc],
    list_name: &str,
    rep: &Reporter,
    loc: &Location,
) -> Result<QemuOpts, Stop> {
    let warn = |warnings: &[FlagWarning]| {
        for w in warnings {
            rep.warning(loc, &w.message());
            write_stderr(w.hint().as_bytes());
        }
    };
    match qemuopts::parse(arg, Some(implied_key), desc) {
        Ok(opts) => {
            warn(&opts.warnings);
            Ok(opts)
        }
        Err(e) => {
            warn(&e.warnings);
            if e.kind == QemuOptsErrorKind::HelpWanted {
                write_stdout(&qemuopts::help_text(list_name, desc));
                return Err(Stop::Exit(1));
            }
            Err(Stop::Error {
                msg: e.kind.to_string(),
                hint: e.kind.hint().map(str::to_string),
            })
        }
    }
}

/// The context the QMP command implementations get when called for an
/// option.
fn cli_context() -> CommandContext {
    CommandContext {
        negotiating: false,
        offered: Vec::new(),
        accepted: Mutex::new(None),
    }
}

impl Startup {
    pub fn new(daemon: Daemon, rep: Reporter) -> Startup {
        Startup {
            daemon,
            rep,
            monitors: Vec::new(),
            socket_paths: Vec::new(),
        }
    }

    /// Applies one scanned item of the second pass; pre-init options were
    /// handled in the first pass and are skipped here.
    pub async fn apply(&mut self, item: &Item) -> Result<(), Stop> {
        let (opt, arg) = match item {
            Item::NonOption(_) => return Err(error("Unexpected argument")),
            // The first pass stopped at every scanner error already.
            Item::Error(_) => return Err(Stop::Exit(1)),
            Item::Opt { opt, .. } if opt.is_pre_init() => return Ok(()),
            Item::Opt { opt, arg, .. } => (*opt, arg.as_deref().unwrap_or_default()),
        };
        // QEMU works on bytes; our parsers take text. Every syntax character
        // is ASCII, so replacing invalid UTF-8 changes only the bytes of
        // names and values themselves.
        let arg = String::from_utf8_lossy(arg);
        let loc = location(item);
        let cx = cli_context();
        let d = &self.daemon;
        match opt {
            Opt::Blockdev => {
                let o: BlockdevOptions = parse_value(&arg, QsdOption::Blockdev)?;
                d.blockdev_add(&cx, o).await.map_err(|e| error(e.desc))
            }
            Opt::Export => {
                let o: BlockExportOptions = parse_value(&arg, QsdOption::Export)?;
                // From the command line, `fd` addresses name inherited
                // descriptors by number.
                let origin = qsd_runtime::chardev::Origin::Cli { location: None };
                qsd_runtime::export::block_export_add_from(d, o, &origin).map_err(|e| error(e.desc))
            }
            Opt::NbdServer => {
                // The command line's own entry point: unlike QMP, it can
                // take a passed listening socket (`addr.type=fd`).
                let o: NbdServerOptions = parse_value(&arg, QsdOption::NbdServer)?;
                qsd_runtime::export::nbd::server::nbd_server_start(d, o).map_err(|e| error(e.desc))
            }
            Opt::Object => self.object(&arg).await,
            Opt::Monitor => {
                let o: MonitorOptions = parse_value(&arg, QsdOption::Monitor)?;
                self.monitor(o)
            }
            Opt::Chardev => crate::chardev_cli::add(self, &arg, &loc).await,
            Opt::Trace => crate::trace::apply(&arg, &self.rep, &loc),
            Opt::Help | Opt::Version | Opt::Daemonize | Opt::Pidfile => Ok(()),
        }
    }

    /// `--object`: keyval syntax errors first, then `help` (`--object help`,
    /// `--object TYPE,help`: the object help on stdout, exit status 0), then
    /// the type check and creation by the object registry. Errors may carry
    /// a hint line (`Identifiers consist of …`).
    async fn object(&mut self, arg: &str) -> Result<(), Stop> {
        if !arg.starts_with('{') {
            // Every keyval error, list errors included, comes before help.
            QsdOption::Object
                .parse(arg)
                .map_err(|e| error(e.to_string()))?;
        }
        if let Some(text) = objects::cli_object_help(arg) {
            write_stdout(&text);
            return Err(Stop::Exit(0));
        }
        let o: ObjectOptions = parse_value(arg, QsdOption::Object)?;
        objects::create_from_cli(&self.daemon, o).map_err(|e| Stop::Error {
            hint: objects::cli_error_hint(&e).map(|h| format!("{h}\n")),
            msg: e.desc,
        })
    }

    fn monitor(&mut self, o: MonitorOptions) -> Result<(), Stop> {
        let Some(dev) = self.daemon.chardevs.get(&o.chardev) else {
            return Err(error(format!("chardev \"{}\" not found", o.chardev)));
        };
        if o.mode == Some(MonitorMode::Readline) {
            return Err(error("Only QMP is supported"));
        }
        let conns = dev
            .attach()
            .map_err(|_| error(format!("chardev '{}' is already in use", o.chardev)))?;
        self.monitors.push((
            conns,
            MonitorSettings {
                pretty: o.pretty.unwrap_or(false),
            },
        ));
        Ok(())
    }

    /// Starts serving the monitors (once start-up is complete).
    pub fn start_monitors(&mut self) -> Vec<JoinHandle<()>> {
        self.monitors
            .drain(..)
            .map(|(conns, opts)| spawn_monitor(self.daemon.clone(), conns, opts))
            .collect()
    }

    /// Removes the UNIX socket files of our chardevs (at a clean exit).
    /// Relative paths are resolved against the current directory, which is
    /// `/` for a daemonized process, exactly as in QSD.
    pub fn remove_sockets(&mut self) {
        for p in self.socket_paths.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Where errors about `item` are reported.
pub fn location(item: &Item) -> Location {
    match item {
        Item::Opt { loc, .. } if !loc.is_empty() => Location::Cmdline(loc.clone()),
        Item::NonOption(w) => Location::Cmdline(vec![w.clone()]),
        _ => Location::None,
    }
}
