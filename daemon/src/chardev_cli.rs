//! `--chardev`: TEMPORARY adapter until the chardev module offers command-line
//! creation (`parse_cli_chardev` / `create`, branch `chardev`).
//!
//! What is final here is the parsing, which is QSD's: QemuOpts syntax with
//! implied key `backend` ([`qapi::qemuopts`]), warnings for short-form
//! booleans, `help` as a pair (option list on stdout, exit status 1), `help`
//! as the backend (backend list, exit status 0), `chardev: no id specified`,
//! `chardev: "ID" missing backend`, `'NAME' is not a valid char driver name`.
//!
//! What is temporary is the backend support: only `socket` in server mode,
//! on a UNIX path, a TCP host and port, or an inherited listening socket
//! (`fd=N`), with `wait` (default on: start-up waits for the first client,
//! after `info: QEMU waiting for connection on: disconnected:unix:PATH,server=on`).
//! Every other backend, and client mode, answer an error naming what is not
//! implemented.

use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::PathBuf;
use std::sync::Arc;

use qapi::qemuopts::{self, ChardevStart, QemuOpts, CHARDEV_IMPLIED_KEY, CHARDEV_OPTS};
use qapi::types::ChardevBackend;
use qapi::visit::{from_value, Mode};
use qsd_runtime::chardev::{CharConn, Chardev, SocketServer};
use serde_json::json;
use tokio::sync::mpsc;

use crate::apply::{parse_qemuopts, Startup, Stop};
use crate::report::{strerror, write_stdout, Location};

/// The chardev backends of QSD 10.0.2, in the order `--chardev help` lists
/// them.
pub const BACKENDS: &[&str] = &[
    "pty", "file", "udp", "memory", "stdio", "socket", "ringbuf", "null", "parallel", "pipe",
    "mux", "serial", "hub",
];

fn error(msg: impl Into<String>) -> Stop {
    Stop::Error {
        msg: msg.into(),
        hint: None,
    }
}

/// Applies one `--chardev` value.
pub async fn add(st: &mut Startup, arg: &str, loc: &Location) -> Result<(), Stop> {
    let opts = parse_qemuopts(
        arg,
        CHARDEV_IMPLIED_KEY,
        CHARDEV_OPTS,
        "chardev",
        &st.rep,
        loc,
    )?;
    let (backend, id) = match qemuopts::chardev_start(&opts).map_err(error)? {
        ChardevStart::ListBackends => {
            let mut out = String::from("Available chardev backend types: \n");
            for b in BACKENDS {
                out.push_str(&format!("  {b}\n"));
            }
            write_stdout(&out);
            return Err(Stop::Exit(0));
        }
        ChardevStart::Create { backend, id } => (backend, id),
    };
    if !BACKENDS.contains(&backend) {
        return Err(error(format!(
            "'{backend}' is not a valid char driver name"
        )));
    }
    if backend != "socket" {
        return Err(error(format!(
            "chardev backend '{backend}' is not implemented yet"
        )));
    }
    socket(st, &opts, id, loc).await
}

/// The listening socket a `socket` chardev asks for, and its address as
/// the backend description and QEMU's "waiting" message show it.
struct Listener {
    server: SocketServer,
    addr: serde_json::Value,
    shown: String,
    unix_path: Option<PathBuf>,
}

fn unix_listener(server: SocketServer, addr: serde_json::Value) -> Listener {
    let path = match &server {
        SocketServer::Unix(l) => l
            .local_addr()
            .ok()
            .and_then(|a: tokio::net::unix::SocketAddr| {
                let a: UnixAddr = a.into();
                a.as_pathname().map(|p| p.to_path_buf())
            }),
        SocketServer::Tcp(_) => None,
    };
    let shown = match (&server, &path) {
        (SocketServer::Unix(_), Some(p)) => format!("unix:{}", p.display()),
        (SocketServer::Unix(_), None) => "unix:".to_string(),
        (SocketServer::Tcp(l), _) => match l.local_addr() {
            Ok(a) => format!("tcp:{}:{}", a.ip(), a.port()),
            Err(_) => "tcp:".to_string(),
        },
    };
    Listener {
        server,
        addr,
        shown,
        unix_path: path,
    }
}

/// Whether `fd` is an open socket (QEMU's `fd_is_socket()`).
fn fd_is_socket(fd: i32) -> bool {
    // SAFETY: `st` is a plain C struct for which all-zero is valid; fstat
    // only writes into it and fails cleanly on a bad descriptor.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

async fn listen(opts: &QemuOpts) -> Result<Listener, Stop> {
    if let Some(path) = opts.get("path") {
        let server = SocketServer::bind_unix(path)
            .map_err(|e| error(format!("Failed to bind socket to {path}: {}", strerror(&e))))?;
        return Ok(unix_listener(
            server,
            json!({"type": "unix", "data": {"path": path}}),
        ));
    }
    if opts.get("host").is_some() || opts.get("port").is_some() {
        let host = opts.get("host").unwrap_or("");
        let port = opts.get("port").unwrap_or("");
        let server = SocketServer::bind_tcp(host, port)
            .await
            .map_err(|e| error(format!("Failed to bind socket: {}", strerror(&e))))?;
        return Ok(unix_listener(
            server,
            json!({"type": "inet", "data": {"host": host, "port": port}}),
        ));
    }
    let text = opts.get("fd").unwrap_or("");
    let fd = match qapi::cutils::qemu_strtoi64(text, 10) {
        Ok(n) => i32::try_from(n).map_err(|_| {
            error(format!(
                "Unable to parse FD number {text}: Numerical result out of range"
            ))
        })?,
        Err(qapi::cutils::StrtoError::Range) => {
            return Err(error(format!(
                "Unable to parse FD number {text}: Numerical result out of range"
            )))
        }
        Err(_) => return Err(error(format!("Unable to parse FD number {text}"))),
    };
    if !fd_is_socket(fd) {
        return Err(error(format!("File descriptor '{text}' is not a socket")));
    }
    let server = SocketServer::from_fd(fd)
        .map_err(|_| error(format!("File descriptor '{text}' is not a socket")))?;
    Ok(unix_listener(
        server,
        json!({"type": "fd", "data": {"str": text}}),
    ))
}

/// Waits for the first client, then hands it and every later one on.
async fn wait_first(mut conns: mpsc::Receiver<CharConn>) -> mpsc::Receiver<CharConn> {
    let (tx, rx) = mpsc::channel(1);
    if let Some(first) = conns.recv().await {
        let _ = tx.send(first).await;
        tokio::spawn(async move {
            while let Some(c) = conns.recv().await {
                if tx.send(c).await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}

async fn socket(st: &mut Startup, opts: &QemuOpts, id: &str, loc: &Location) -> Result<(), Stop> {
    if opts.get_bool("server") != Some(true) {
        return Err(error(
            "client-mode socket chardevs are not implemented yet (use server=on)",
        ));
    }
    let wait = opts.get_bool("wait").unwrap_or(true);
    // QEMU registers a socket chardev for "yank" before anything else, and
    // that registration is the first to see a duplicate id.
    if st.daemon.chardevs.get(id).is_some() {
        return Err(error("duplicate yank instance"));
    }
    let listener = listen(opts).await?;
    if let Some(p) = &listener.unix_path {
        st.socket_paths.push(p.clone());
    }
    let backend_json = json!({
        "type": "socket",
        "data": {"addr": listener.addr, "server": true, "wait": wait},
    });
    let backend: ChardevBackend = from_value(&backend_json, Mode::Json).map_err(|e| error(e.0))?;
    let mut conns = listener.server.serve();
    if wait {
        st.rep.info(
            loc,
            &format!(
                "QEMU waiting for connection on: disconnected:{},server=on",
                listener.shown
            ),
        );
        conns = wait_first(conns).await;
    }
    st.daemon
        .chardevs
        .insert(Arc::new(Chardev::new(id.to_string(), backend, conns)))
        .map_err(|e| error(e.desc))
}
