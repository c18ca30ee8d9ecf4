//! Character devices: byte-stream endpoints that frontends (QMP monitors)
//! run on.
//!
//! A chardev delivers its connections to the frontend as [`CharConn`]s, one
//! at a time: a server socket accepts the next client only after the
//! frontend is done with the previous one, as QEMU's socket chardev does;
//! most other backends have a single session from creation on.
//!
//! Backends of QSD 10.0.2: `socket` (module `socket`), `ringbuf`/`memory`
//! ([`ringbuf`]), `file`, `pipe`, `serial`, `stdio` (module `fd`), `pty`,
//! `udp`, `null`; `parallel`, `mux` and `hub` are refused after QEMU's own
//! checks, and so is a websocket server.
//!
//! - [`create`] makes a chardev for the command line and `chardev-add`;
//! - [`cli`] converts `--chardev` options into a [`ChardevBackend`];
//! - [`qmp`] implements the chardev commands.

pub mod cli;
mod fd;
mod pty;
pub mod qmp;
mod registry;
pub(crate) mod report;
pub mod ringbuf;
mod session;
pub(crate) mod socket;
mod udp;

use std::sync::{Arc, Mutex};

use qapi::types::{ChardevBackend, ChardevBackendBranch, ChardevBackendKind};
use qapi::QmpError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::Daemon;
use ringbuf::Ringbuf;
use session::{LogFile, Sessions};

pub use fd::set_daemonized;
pub use registry::Registry;
pub use report::Origin;
pub use socket::{listen_flat, Serving, SocketServer};

/// One connection ("session") of a chardev. The frontend drops it (with
/// `closed`) when done, which lets the chardev serve the next one.
pub struct CharConn {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub closed: oneshot::Sender<()>,
    /// The chardev can run in a separate I/O context; QEMU offers a QMP
    /// monitor the `oob` capability only on such chardevs (all but
    /// `ringbuf`, `memory` and `null`).
    pub oob_capable: bool,
}

/// The name a chardev shows in `query-chardev`, updated by its backend.
pub(crate) type Filename = Arc<Mutex<String>>;

pub(crate) fn set_filename(f: &Filename, name: String) {
    if let Ok(mut g) = f.lock() {
        *g = name;
    }
}

/// The C library's text for an OS error (`strerror`), as QEMU prints it.
pub(crate) fn os_error(e: &std::io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: strerror_r writes a NUL-terminated string into `buf`.
    let r = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return format!("Unknown error {code}");
    }
    // SAFETY: strerror_r succeeded, so `buf` holds a C string.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Separates an error message from its hint in backend errors: QEMU
/// prints hints (on the next line) for command-line errors only.
pub(crate) const HINT: char = '\0';

/// The message of a backend error without its hint (for QMP).
fn without_hint(e: String) -> String {
    match e.split_once(HINT) {
        Some((m, _)) => m.to_string(),
        None => e,
    }
}

/// A backend error as the command line prints it: the hint on the next
/// line.
fn with_hint(e: String) -> String {
    e.replace(HINT, "\n")
}

/// Resources a backend holds while its chardev exists: background tasks
/// (aborted), objects kept alive, and clean-ups (run) when the chardev goes
/// away.
#[derive(Default)]
pub(crate) struct Driver {
    tasks: Vec<tokio::task::AbortHandle>,
    kept: Vec<Box<dyn Send + Sync>>,
    cleanups: Vec<Box<dyn FnOnce() + Send + Sync>>,
    /// A socket chardev's address: where it listens (as bound) or what it
    /// connects to.
    pub(crate) socket_addr: Option<qapi::types::SocketAddress>,
}

impl Driver {
    /// Runs `fut` until the chardev goes away.
    pub fn spawn(&mut self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(fut).abort_handle());
    }

    /// Keeps `x` alive as long as the chardev.
    pub fn keep(&mut self, x: Box<dyn Send + Sync>) {
        self.kept.push(x);
    }

    /// Runs `f` when the chardev goes away.
    pub fn on_drop(&mut self, f: Box<dyn FnOnce() + Send + Sync>) {
        self.cleanups.push(f);
    }

    /// Forgets the clean-ups (QEMU leaves the socket file of a chardev it
    /// failed to register on the command line).
    fn disarm(&mut self) {
        self.cleanups.clear();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.kept.clear();
        for f in self.cleanups.drain(..) {
            f();
        }
    }
}

/// A configured chardev.
pub struct Chardev {
    pub id: String,
    /// The configuration it was created with.
    pub backend: ChardevBackend,
    filename: Filename,
    /// Sessions for the frontend; taken when a frontend attaches.
    conns: session::Slot,
    driver: Mutex<Driver>,
    ringbuf: Option<Arc<Ringbuf>>,
}

impl Chardev {
    /// A chardev serving the connections of `serving` (the temporary
    /// command line's way; see [`create`]).
    pub fn new(id: String, backend: ChardevBackend, serving: Serving) -> Chardev {
        Chardev {
            id,
            backend,
            filename: serving.filename,
            conns: serving.conns,
            driver: Mutex::new(serving.driver),
            ringbuf: None,
        }
    }

    /// The backend type.
    pub fn kind(&self) -> ChardevBackendKind {
        self.backend.type_()
    }

    /// The name `query-chardev` shows, e.g. `unix:/run/qmp.sock,server=on`.
    pub fn filename(&self) -> String {
        self.filename.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Whether a frontend is attached (`frontend-open`; it also makes the
    /// chardev busy).
    pub fn has_frontend(&self) -> bool {
        self.conns.lock().map(|c| c.is_none()).unwrap_or(true)
    }

    /// The address of a socket chardev, as its QOM `addr` property shows
    /// it; `None` for other backends.
    pub fn socket_address(&self) -> Option<qapi::types::SocketAddress> {
        self.driver.lock().ok()?.socket_addr.clone()
    }

    /// The ring of a `ringbuf`/`memory` chardev.
    pub(crate) fn ringbuf(&self) -> Option<&Arc<Ringbuf>> {
        self.ringbuf.as_ref()
    }

    /// Attaches a frontend, which then receives the sessions.
    pub fn attach(&self) -> Result<mpsc::Receiver<CharConn>, QmpError> {
        self.conns
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .ok_or_else(|| QmpError::generic(format!("Device '{}' is in use", self.id)))
    }
}

/// The backends this build has, in `query-chardev-backends` order.
pub const BACKENDS: [&str; 13] = [
    "hub", "serial", "mux", "pipe", "parallel", "null", "ringbuf", "socket", "stdio", "memory",
    "udp", "file", "pty",
];

/// QEMU's error for a backend type this build does not have.
fn check_class(kind: ChardevBackendKind) -> Result<(), String> {
    let name = kind.as_str();
    if BACKENDS.contains(&name) {
        Ok(())
    } else {
        Err(format!("'{name}' is not a valid char driver name"))
    }
}

/// The `logfile`/`logappend` settings every backend has.
fn common(b: &ChardevBackend) -> (Option<&str>, Option<bool>) {
    use ChardevBackendBranch as B;
    macro_rules! c {
        ($w:expr) => {
            ($w.data.logfile.as_deref(), $w.data.logappend)
        };
    }
    match &b.u {
        B::File(w) => c!(w),
        B::Serial(w) | B::Parallel(w) | B::Pipe(w) => c!(w),
        B::Socket(w) => c!(w),
        B::Udp(w) => c!(w),
        B::Pty(w) => c!(w),
        B::Null(w) | B::Msmouse(w) | B::Wctablet(w) | B::Braille(w) | B::Testdev(w) => c!(w),
        B::Mux(w) => c!(w),
        B::Hub(w) => c!(w),
        B::Stdio(w) => c!(w),
        B::Spicevmc(w) => c!(w),
        B::Spiceport(w) => c!(w),
        B::QemuVdagent(w) => c!(w),
        B::Dbus(w) => c!(w),
        B::Vc(w) => c!(w),
        B::Ringbuf(w) | B::Memory(w) => c!(w),
    }
}

/// Opens the backend: the log file first, then the backend itself.
fn open(
    registry: &Registry,
    id: &str,
    backend: ChardevBackend,
    origin: &Origin,
) -> Result<(Chardev, Option<String>), String> {
    use ChardevBackendBranch as B;
    let kind = backend.type_();
    let (logfile, logappend) = common(&backend);
    let log = match logfile {
        Some(p) => Some(Arc::new(LogFile::open(p, logappend == Some(true))?)),
        None => None,
    };
    let filename: Filename = Arc::new(Mutex::new(kind.as_str().to_string()));
    let oob_capable = !matches!(
        kind,
        ChardevBackendKind::Ringbuf | ChardevBackendKind::Memory | ChardevBackendKind::Null
    );
    let (sessions, conns) = Sessions::new(log, oob_capable);
    let mut ring = None;
    let mut pty_name = None;
    let driver = match &backend.u {
        B::Null(_) => {
            // QEMU never opens a null chardev for its frontend.
            let mut d = Driver::default();
            d.keep(Box::new(sessions));
            d
        }
        B::Ringbuf(w) | B::Memory(w) => {
            let r = Arc::new(Ringbuf::new(w.data.size)?);
            sessions.open_now(
                Box::new(session::NoInput),
                Box::new(ringbuf::RingWriter(r.clone())),
            );
            ring = Some(r);
            Driver::default()
        }
        B::File(w) => fd::open_file(&w.data, &sessions)?,
        B::Pipe(w) => fd::open_pipe(&w.data, &sessions)?,
        B::Serial(w) => fd::open_serial(&w.data, &sessions)?,
        B::Parallel(w) => fd::open_parallel(&w.data)?,
        B::Stdio(w) => fd::open_stdio(&w.data, &sessions)?,
        B::Socket(w) => socket::open(id, &w.data, origin, sessions, &filename)?,
        B::Pty(w) => {
            let (d, name) = pty::open(id, &w.data, sessions, &filename)?;
            pty_name = Some(name);
            d
        }
        B::Udp(w) => udp::open(&w.data)?,
        B::Mux(w) => {
            if registry.get(&w.data.chardev).is_none() {
                return Err(format!("mux: base chardev {} not found", w.data.chardev));
            }
            return Err("qsd does not implement the 'mux' chardev backend".into());
        }
        B::Hub(w) => {
            if w.data.chardevs.is_empty() {
                return Err("hub: 'chardevs' list is not defined".into());
            }
            for c in &w.data.chardevs {
                if registry.get(c).is_none() {
                    return Err(format!("hub: chardev can't be found by id '{c}'"));
                }
            }
            return Err("qsd does not implement the 'hub' chardev backend".into());
        }
        _ => {
            check_class(kind)?;
            return Err(format!(
                "qsd does not implement the '{}' chardev backend",
                kind.as_str()
            ));
        }
    };
    let dev = Chardev {
        id: id.to_string(),
        backend,
        filename,
        conns,
        driver: Mutex::new(driver),
        ringbuf: ring,
    };
    Ok((dev, pty_name))
}

/// Creates chardev `id` with `backend`, for the command line (`from_cli`)
/// or `chardev-add`.
///
/// Errors are QSD's texts: on the command line the backend's own message
/// (or `attempt to add duplicate property 'ID' to object (type
/// 'container')` for a duplicate id, found after opening, like QEMU); for
/// QMP `Chardev with id 'ID' already exists` or `Failed to add chardev
/// 'ID': MESSAGE`. A socket server with `wait` blocks until its first
/// client connects, printing QEMU's notice on stderr.
pub fn create(
    daemon: &Daemon,
    id: String,
    backend: ChardevBackend,
    from_cli: bool,
) -> Result<(), QmpError> {
    let origin = if from_cli {
        Origin::Cli { location: None }
    } else {
        Origin::Qmp
    };
    create_with(daemon, id, backend, &origin).map(|_| ())
}

/// [`create`] with the origin spelled out: on the command line, `location`
/// (e.g. `--chardev socket,id=m,path=/tmp/m,server=on`) prefixes messages
/// printed while creating, as QEMU does. Returns the pty name of a `pty`
/// chardev.
pub fn create_with(
    daemon: &Daemon,
    id: String,
    backend: ChardevBackend,
    origin: &Origin,
) -> Result<Option<String>, QmpError> {
    let reg = &daemon.chardevs;
    match origin {
        Origin::Qmp => {
            if reg.get(&id).is_some() {
                return Err(QmpError::generic(format!(
                    "Chardev with id '{id}' already exists"
                )));
            }
            let prefixed = |e: String| {
                QmpError::generic(format!("Failed to add chardev '{id}': {}", without_hint(e)))
            };
            check_class(backend.type_()).map_err(prefixed)?;
            let (dev, pty) = open(reg, &id, backend, origin).map_err(prefixed)?;
            reg.insert(Arc::new(dev))?;
            Ok(pty)
        }
        Origin::Cli { .. } => {
            let plain = |e: String| QmpError::generic(with_hint(e));
            check_class(backend.type_()).map_err(plain)?;
            if socket::registers_yank(backend.type_())
                && reg
                    .get(&id)
                    .is_some_and(|d| socket::registers_yank(d.kind()))
            {
                return Err(QmpError::generic("duplicate yank instance"));
            }
            let (dev, pty) = open(reg, &id, backend, origin).map_err(plain)?;
            let dev = Arc::new(dev);
            if let Err(e) = reg.insert(dev.clone()) {
                if let Ok(mut d) = dev.driver.lock() {
                    d.disarm();
                }
                return Err(e);
            }
            Ok(pty)
        }
    }
}

#[cfg(test)]
mod tests;
