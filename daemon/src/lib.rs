//! The `qsd` program: command line and start-up of a drop-in replacement for
//! qemu-storage-daemon 10.0.2.
//!
//! Start-up follows QSD step by step, because the order is observable:
//!
//! 1. The command line is scanned once ([`options::scan`], glibc
//!    `getopt_long` rules) and walked twice.
//! 2. First pass: a scanner error stops with status 1 (message
//!    `ARGV0: …`), `-h`/`--help` and `-V`/`--version` print and stop with 0
//!    (whatever comes before or after them, so `--blockdev x -V` prints the
//!    version), `--daemonize` and `--pidfile` are noted.
//! 3. With `--daemonize`, the process detaches now, before any thread exists
//!    ([`daemonize`]); the original process waits to exit with the outcome of
//!    start-up.
//! 4. The async runtime starts; SIGINT, SIGTERM, SIGHUP are caught from here
//!    on ([`signals`]).
//! 5. Second pass: every other option is applied in command-line order
//!    ([`apply`]); the first error stops with status 1
//!    (`PROG: WORDS: MESSAGE`).
//! 6. The pid file is written and locked ([`pidfile`]); a daemon finishes
//!    detaching (directory `/`, stdio to `/dev/null`, parent released).
//! 7. Monitors start serving. The daemon runs until `quit` or a signal, then
//!    cancels the jobs, closes the monitors, removes its UNIX socket files,
//!    stops the user-created objects, removes the pid file, and exits with 0.
//!
//! Messages use the base name of `argv[0]` as program name, like QSD.

pub mod apply;
mod chardev_cli;
pub mod daemonize;
pub mod help;
pub mod options;
pub mod pidfile;
pub mod report;
pub mod signals;
pub mod trace;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use qsd_runtime::Daemon;
use tracing::debug;

use crate::apply::{location, Startup, Stop};
use crate::options::{Item, Opt};
use crate::pidfile::PidFile;
use crate::report::{write_stderr, write_stdout, Location, Reporter};

/// What the first pass found.
struct PreInit {
    daemonize: bool,
    pidfile: Option<PathBuf>,
}

/// The first pass; `Err` is the exit status when the program stops here.
fn pre_init(items: &[Item], rep: &Reporter) -> Result<PreInit, i32> {
    let mut pre = PreInit {
        daemonize: false,
        pidfile: None,
    };
    for item in items {
        match item {
            Item::Error(m) => {
                rep.scanner_error(m);
                return Err(1);
            }
            Item::Opt { opt, arg, .. } => match opt {
                Opt::Help => {
                    write_stdout(&help::help_text(&rep.prog()));
                    return Err(0);
                }
                Opt::Version => {
                    write_stdout(&help::version_text());
                    return Err(0);
                }
                Opt::Daemonize => pre.daemonize = true,
                Opt::Pidfile => pre.pidfile = arg.as_deref().map(pidfile::path_from_arg),
                _ => {}
            },
            Item::NonOption(_) => {}
        }
    }
    Ok(pre)
}

/// Runs the program with command line `args` (including `argv[0]`);
/// returns the exit status.
pub fn run(args: Vec<OsString>) -> i32 {
    let argv: Vec<Vec<u8>> = args.into_iter().map(OsStringExt::into_vec).collect();
    let rep = Reporter::new(argv.first().map_or(b"qsd".as_slice(), Vec::as_slice));
    let items = options::scan(&argv);
    let pre = match pre_init(&items, &rep) {
        Ok(p) => p,
        Err(code) => return code,
    };
    trace::init();
    // Fork before the runtime starts any thread.
    let detached = pre.daemonize.then(daemonize::detach);
    // A daemonized process can't use stdio chardevs (QSD refuses them).
    qsd_runtime::chardev::set_daemonized(pre.daemonize);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            rep.error(
                &Location::None,
                &format!("cannot start the async runtime: {}", report::strerror(&e)),
            );
            return 1;
        }
    };
    let code = rt.block_on(serve(items, rep, pre.pidfile, detached));
    rt.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Steps 4 to 7 of the start-up (see the crate documentation).
async fn serve(
    items: Vec<Item>,
    rep: Reporter,
    pidfile: Option<PathBuf>,
    detached: Option<daemonize::Detached>,
) -> i32 {
    let mut signals = match signals::TermSignals::install() {
        Ok(s) => s,
        Err(e) => {
            rep.error(
                &Location::None,
                &format!("cannot install signal handlers: {}", report::strerror(&e)),
            );
            return 1;
        }
    };
    let daemon = Daemon::new();
    let mut st = Startup::new(daemon.clone(), rep.clone());
    for item in &items {
        match st.apply(item).await {
            Ok(()) => {}
            Err(Stop::Exit(code)) => return code,
            Err(Stop::Error { msg, hint }) => {
                rep.error(&location(item), &msg);
                if let Some(h) = hint {
                    write_stderr(h.as_bytes());
                }
                return 1;
            }
        }
    }
    let pid = match pidfile {
        None => None,
        Some(path) => match PidFile::write(&path) {
            Ok(mut f) => {
                if let Err(m) = f.resolve() {
                    rep.error(&Location::None, &m);
                    return 1;
                }
                Some(f)
            }
            Err(e) => {
                rep.error(&Location::None, &format!("cannot create PID file: {e}"));
                return 1;
            }
        },
    };
    if let Some(d) = detached {
        if let Err(m) = d.finish(trace::to_file()) {
            rep.error(&Location::None, &m);
            return 1;
        }
    }
    let monitors = st.start_monitors();
    debug!("start-up complete");
    tokio::select! {
        _ = daemon.wait_quit() => debug!("quit requested"),
        sig = signals.recv() => debug!("{sig} received"),
    }
    daemon.request_quit();
    // QSD's order: exports are closed (clients disconnected, requests in
    // flight finished, FUSE files unmounted), jobs are cancelled (and
    // waited for), then monitors, chardevs and user-created objects are
    // cleaned up.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        qsd_runtime::export::close_all(&daemon),
    )
    .await;
    qsd_runtime::jobs::shutdown(&daemon).await;
    // Let every monitor finish writing (the reply to `quit` included).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for m in monitors {
            let _ = m.await;
        }
    })
    .await;
    st.remove_sockets();
    // Removes socket files and restores a terminal taken by `stdio`.
    daemon.chardevs.close_all();
    daemon.objects.shutdown();
    if let Some(p) = pid {
        p.remove();
    }
    0
}
