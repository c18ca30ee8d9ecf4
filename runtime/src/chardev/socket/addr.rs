//! Socket addresses of socket chardevs: resolving, listening, connecting,
//! and the textual forms QEMU shows in `query-chardev`.
//!
//! Listening follows QEMU: an internet address is resolved passively and a
//! socket is opened on every result that can be bound (trying the port
//! range up to `to`); a UNIX path is unlinked before binding; a passed
//! descriptor is put in listening state as it is.

use std::ffi::{CStr, CString};
use std::mem::size_of;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use qapi::types::{InetSocketAddress, SocketAddressLegacy, SocketAddressLegacyBranch};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::chardev::os_error;
use crate::chardev::report::Origin;

/// A flattened socket address, as QEMU keeps it for a chardev.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Addr {
    Inet(InetSocketAddress),
    Unix {
        path: String,
        abstract_: bool,
        tight: bool,
    },
    Vsock {
        cid: String,
        port: String,
    },
    Fd(String),
}

impl Addr {
    pub fn from_legacy(a: &SocketAddressLegacy) -> Addr {
        match &a.u {
            SocketAddressLegacyBranch::Inet(i) => Addr::Inet(i.data.clone()),
            SocketAddressLegacyBranch::Unix(u) => Addr::Unix {
                path: u.data.path.clone(),
                abstract_: u.data.abstract_.unwrap_or(false),
                tight: u.data.tight.unwrap_or(true),
            },
            SocketAddressLegacyBranch::Vsock(v) => Addr::Vsock {
                cid: v.data.cid.clone(),
                port: v.data.port.clone(),
            },
            SocketAddressLegacyBranch::Fd(f) => Addr::Fd(f.data.str.clone()),
        }
    }

    /// The address of a flat `SocketAddress` (as exports and the NBD
    /// server take it).
    pub fn from_flat(a: &qapi::types::SocketAddress) -> Addr {
        use qapi::types::SocketAddressBranch as B;
        match &a.u {
            B::Inet(i) => Addr::Inet(i.clone()),
            B::Unix(u) => Addr::Unix {
                path: u.path.clone(),
                abstract_: u.abstract_.unwrap_or(false),
                tight: u.tight.unwrap_or(true),
            },
            B::Vsock(v) => Addr::Vsock {
                cid: v.cid.clone(),
                port: v.port.clone(),
            },
            B::Fd(f) => Addr::Fd(f.str.clone()),
        }
    }

    /// The address as a flat `SocketAddress`, as the QOM `addr` property of
    /// a socket chardev shows it (abstract-socket details only for abstract
    /// sockets, as QEMU's getsockname-based conversion gives them).
    pub fn to_socket_address(&self) -> qapi::types::SocketAddress {
        use qapi::types::{
            FdSocketAddress, SocketAddress, SocketAddressBranch, UnixSocketAddress,
            VsockSocketAddress,
        };
        let u = match self {
            Addr::Inet(i) => SocketAddressBranch::Inet(i.clone()),
            Addr::Unix {
                path,
                abstract_,
                tight,
            } => SocketAddressBranch::Unix(UnixSocketAddress {
                path: path.clone(),
                abstract_: abstract_.then_some(true),
                tight: abstract_.then_some(*tight),
            }),
            Addr::Vsock { cid, port } => SocketAddressBranch::Vsock(VsockSocketAddress {
                cid: cid.clone(),
                port: port.clone(),
            }),
            Addr::Fd(s) => SocketAddressBranch::Fd(FdSocketAddress { str: s.clone() }),
        };
        SocketAddress { u }
    }

    /// QEMU's description of the address, e.g. `tcp:127.0.0.1:4444,server=on`
    /// or `unix:/run/x.sock`; `proto` names an internet socket's protocol.
    pub fn describe(&self, proto: &str, listen: bool) -> String {
        let server = if listen { ",server=on" } else { "" };
        match self {
            Addr::Inet(i) => format!("{proto}:{}:{}{server}", i.host, i.port),
            Addr::Unix {
                path,
                abstract_,
                tight,
            } => {
                let extra = match (abstract_, tight) {
                    (true, true) => ",abstract=on,tight=on",
                    (true, false) => ",abstract=on",
                    _ => "",
                };
                format!("unix:{path}{extra}{server}")
            }
            Addr::Fd(s) => format!("fd:{s}{server}"),
            Addr::Vsock { cid, port } => format!("vsock:{cid}:{port}"),
        }
    }
}

fn errno_msg(prefix: &str, e: &std::io::Error) -> String {
    format!("{prefix}: {}", os_error(e))
}

/// The address families an internet address allows (`ipv4`/`ipv6`).
pub(crate) fn inet_family(i: &InetSocketAddress) -> Result<libc::c_int, String> {
    match (i.ipv4, i.ipv6) {
        (Some(false), Some(false)) => Err("Cannot disable IPv4 and IPv6 at same time".into()),
        (Some(true), Some(true)) => Ok(libc::AF_UNSPEC),
        (_, Some(true)) | (Some(false), _) => Ok(libc::AF_INET6),
        (Some(true), _) | (_, Some(false)) => Ok(libc::AF_INET),
        (None, None) => Ok(libc::AF_UNSPEC),
    }
}

/// `getaddrinfo` for stream sockets; errors read as QEMU's.
pub(crate) fn resolve(
    host: &str,
    port: &str,
    flags: libc::c_int,
    family: libc::c_int,
    socktype: libc::c_int,
) -> Result<Vec<SockAddr>, String> {
    let fail = |msg: String| format!("address resolution failed for {host}:{port}: {msg}");
    let c_host = CString::new(host).map_err(|_| fail("Name or service not known".into()))?;
    let c_port =
        CString::new(port).map_err(|_| fail("Servname not supported for ai_socktype".into()))?;
    // SAFETY: addrinfo is plain data; zeroed is a valid hints value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = flags;
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: the strings are NUL-terminated; `res` receives a list that we
    // free below; empty strings are passed as NULL, as QEMU does.
    let rc = unsafe {
        libc::getaddrinfo(
            if host.is_empty() {
                std::ptr::null()
            } else {
                c_host.as_ptr()
            },
            if port.is_empty() {
                std::ptr::null()
            } else {
                c_port.as_ptr()
            },
            &hints,
            &mut res,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string.
        let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(fail(msg.to_string_lossy().into_owned()));
    }
    let mut out = Vec::new();
    let mut e = res;
    while !e.is_null() {
        // SAFETY: `e` walks the list getaddrinfo returned; each ai_addr
        // holds ai_addrlen initialised bytes.
        unsafe {
            let ai = &*e;
            if let Ok(((), sa)) = SockAddr::try_init(|storage, len| {
                let n = (ai.ai_addrlen as usize).min(size_of::<libc::sockaddr_storage>());
                std::ptr::copy_nonoverlapping(ai.ai_addr.cast::<u8>(), storage.cast::<u8>(), n);
                *len = n as libc::socklen_t;
                Ok(())
            }) {
                out.push(sa);
            }
            e = ai.ai_next;
        }
    }
    // SAFETY: `res` came from getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// Numeric host and port of an internet address.
pub(crate) fn numeric(sa: &SockAddr) -> (String, String) {
    match sa.as_socket() {
        Some(s) => (s.ip().to_string(), s.port().to_string()),
        None => (String::new(), String::new()),
    }
}

fn sockaddr_un(path: &str, abstract_: bool, tight: bool) -> Result<SockAddr, String> {
    let max = if abstract_ { 107 } else { 108 };
    if path.len() > max {
        return Err(format!(
            "UNIX socket path '{path}' is too long{}Path must be less than {max} bytes",
            crate::chardev::HINT
        ));
    }
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    // SAFETY: we fill a zeroed sockaddr_un inside the storage and report
    // the length QEMU uses.
    let ((), sa) = unsafe {
        SockAddr::try_init(|storage, len| {
            let un = storage.cast::<libc::sockaddr_un>();
            (*un).sun_family = libc::AF_UNIX as libc::sa_family_t;
            let dst = (*un).sun_path.as_mut_ptr().cast::<u8>();
            let start = usize::from(abstract_);
            std::ptr::copy_nonoverlapping(path.as_ptr(), dst.add(start), path.len());
            *len = if abstract_ && tight {
                (offset + 1 + path.len()) as libc::socklen_t
            } else {
                size_of::<libc::sockaddr_un>() as libc::socklen_t
            };
            Ok(())
        })
    }
    .map_err(|e| e.to_string())?;
    Ok(sa)
}

/// The descriptor named by a `fd` address. From the command line it is a
/// number; QMP would need descriptor passing, which QSD does not have.
fn named_fd(s: &str, origin: &Origin) -> Result<OwnedFd, String> {
    if *origin == Origin::Qmp {
        return Err("only QEMU supports file descriptor passing".into());
    }
    let fd: RawFd = s
        .trim_start()
        .parse()
        .map_err(|_| format!("Unable to parse FD number {s}"))?;
    let mut ty: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        if fd >= 0 {
            // QEMU closes the descriptor it rejects.
            // SAFETY: the descriptor was handed to us on the command line.
            unsafe { libc::close(fd) };
        }
        return Err(format!("File descriptor '{s}' is not a socket"));
    }
    // SAFETY: the descriptor was handed to us on the command line and is
    // used by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the listening sockets for `addr`. With a `fd` address whose
/// string is empty there is none (QEMU then never accepts).
pub(crate) fn listen(addr: &Addr, origin: &Origin) -> Result<Vec<Socket>, String> {
    match addr {
        Addr::Inet(i) => listen_inet(i),
        Addr::Unix {
            path,
            abstract_,
            tight,
        } => listen_unix(path, *abstract_, *tight).map(|s| vec![s]),
        Addr::Fd(s) if s.is_empty() => Ok(Vec::new()),
        Addr::Fd(s) => {
            let sock = Socket::from(named_fd(s, origin)?);
            sock.listen(1)
                .map_err(|e| errno_msg("Failed to listen on fd socket", &e))?;
            Ok(vec![sock])
        }
        Addr::Vsock { .. } => Err(vsock_unsupported()),
    }
}

pub(crate) fn vsock_unsupported() -> String {
    "qsd does not implement vsock socket chardevs".into()
}

fn listen_inet(i: &InetSocketAddress) -> Result<Vec<Socket>, String> {
    let family = inet_family(i)?;
    let mut flags = libc::AI_PASSIVE;
    if i.numeric == Some(true) {
        flags |= libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
    }
    let addrs = resolve(&i.host, &i.port, flags, family, libc::SOCK_STREAM)?;
    let mut socks = Vec::new();
    let mut first_err = None;
    for sa in addrs {
        match listen_one(i, sa) {
            Ok(s) => socks.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (socks.is_empty(), first_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(socks),
    }
}

/// Binds and listens on one resolved address, trying ports up to `to`.
fn listen_one(i: &InetSocketAddress, sa: SockAddr) -> Result<Socket, String> {
    let Some(base) = sa.as_socket() else {
        return Err("Failed to create a socket".into());
    };
    let port_min = base.port();
    let port_max = i.to.unwrap_or(port_min);
    // IPv6 sockets are dual-stack unless one family was asked for alone.
    let both = matches!((i.ipv4, i.ipv6), (None, None) | (Some(true), Some(true)));
    let in_use = |e: &std::io::Error| e.raw_os_error() == Some(libc::EADDRINUSE);
    let mut created = false;
    let mut last_err = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
    for port in port_min..=port_max {
        let mut target = base;
        target.set_port(port);
        let target = SockAddr::from(target);
        let sock = match Socket::new(target.domain(), Type::STREAM, None) {
            Ok(s) => s,
            Err(e) if port == port_min => {
                last_err = e;
                continue;
            }
            Err(e) => return Err(errno_msg("Failed to recreate failed listening socket", &e)),
        };
        created = true;
        let _ = sock.set_reuse_address(true);
        let mut bound = if target.is_ipv6() {
            let _ = sock.set_only_v6(!both);
            sock.bind(&target)
        } else {
            sock.bind(&target)
        };
        if both && target.is_ipv6() && matches!(&bound, Err(e) if in_use(e)) {
            // The IPv4 port may be taken: retry IPv6 only.
            let _ = sock.set_only_v6(true);
            bound = sock.bind(&target);
        }
        match bound {
            Err(e) if !in_use(&e) => return Err(errno_msg("Failed to bind socket", &e)),
            Err(e) => last_err = e,
            Ok(()) => match sock.listen(1) {
                Ok(()) => return Ok(sock),
                Err(e) if !in_use(&e) => return Err(errno_msg("Failed to listen on socket", &e)),
                Err(e) => last_err = e,
            },
        }
    }
    let what = if created {
        "Failed to find an available port"
    } else {
        "Failed to create a socket"
    };
    Err(errno_msg(what, &last_err))
}

fn listen_unix(path: &str, abstract_: bool, tight: bool) -> Result<Socket, String> {
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)
        .map_err(|e| errno_msg("Failed to create Unix socket", &e))?;
    let path = if path.is_empty() && !abstract_ {
        temp_socket_path()?
    } else {
        path.to_string()
    };
    let sa = sockaddr_un(&path, abstract_, tight)?;
    if !abstract_ {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(errno_msg(&format!("Failed to unlink socket {path}"), &e));
            }
        }
    }
    sock.bind(&sa)
        .map_err(|e| errno_msg(&format!("Failed to bind socket to {path}"), &e))?;
    sock.listen(1)
        .map_err(|e| errno_msg("Failed to listen on socket", &e))?;
    Ok(sock)
}

/// A fresh `$TMPDIR/qemu-socket-XXXXXX` name for a socket without a path.
fn temp_socket_path() -> Result<String, String> {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
    let template = format!("{dir}/qemu-socket-XXXXXX");
    let mut buf = CString::new(template.clone())
        .map_err(|_| "invalid temporary directory".to_string())?
        .into_bytes_with_nul();
    // SAFETY: `buf` is a writable NUL-terminated template.
    let fd = unsafe { libc::mkstemp(buf.as_mut_ptr().cast()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(errno_msg(
            &format!("Failed to make a temporary socket {template}"),
            &e,
        ));
    }
    // SAFETY: closing the descriptor mkstemp just returned.
    unsafe { libc::close(fd) };
    buf.pop();
    String::from_utf8(buf).map_err(|_| "invalid temporary path".to_string())
}

/// Connects to `addr` (blocking).
pub(crate) fn connect(addr: &Addr, origin: &Origin) -> Result<Socket, String> {
    match addr {
        Addr::Inet(i) => connect_inet(i),
        Addr::Unix {
            path,
            abstract_,
            tight,
        } => {
            let sa = sockaddr_un(path, *abstract_, *tight)?;
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)
                .map_err(|e| errno_msg("Failed to create socket", &e))?;
            connect_retrying(&sock, &sa)
                .map_err(|e| errno_msg(&format!("Failed to connect to '{path}'"), &e))?;
            Ok(sock)
        }
        Addr::Fd(s) => named_fd(s, origin).map(Socket::from),
        Addr::Vsock { .. } => Err(vsock_unsupported()),
    }
}

fn connect_retrying(sock: &Socket, sa: &SockAddr) -> std::io::Result<()> {
    loop {
        match sock.connect(sa) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn connect_inet(i: &InetSocketAddress) -> Result<Socket, String> {
    let family = inet_family(i)?;
    let flags = libc::AI_CANONNAME | libc::AI_ADDRCONFIG | libc::AI_V4MAPPED;
    let addrs = resolve(&i.host, &i.port, flags, family, libc::SOCK_STREAM)?;
    let mut err = format!("Failed to connect to '{}:{}'", i.host, i.port);
    for sa in addrs {
        let sock = match Socket::new(sa.domain(), Type::STREAM, None) {
            Ok(s) => s,
            Err(e) => {
                err = errno_msg(
                    &format!("Failed to create socket family {}", sa.family()),
                    &e,
                );
                continue;
            }
        };
        let _ = sock.set_reuse_address(true);
        match connect_retrying(&sock, &sa) {
            Ok(()) => {
                if i.keep_alive == Some(true) {
                    sock.set_keepalive(true)
                        .map_err(|e| errno_msg("Unable to set keep-alive option on socket", &e))?;
                }
                return Ok(sock);
            }
            Err(e) => err = errno_msg(&format!("Failed to connect to '{}:{}'", i.host, i.port), &e),
        }
    }
    Err(err)
}

/// The address a socket is bound to, as QEMU reports it after listening.
pub(crate) fn local_address(sock: &Socket) -> Result<Addr, String> {
    let sa = sock
        .local_addr()
        .map_err(|e| errno_msg("Unable to query local socket address", &e))?;
    Ok(from_sockaddr(&sa))
}

fn from_sockaddr(sa: &SockAddr) -> Addr {
    if sa.is_unix() {
        let (path, abstract_, tight) = unix_path(sa);
        return Addr::Unix {
            path,
            abstract_,
            tight,
        };
    }
    let (host, port) = numeric(sa);
    // Like QEMU, a local address says which family it is.
    Addr::Inet(InetSocketAddress {
        host,
        port,
        numeric: None,
        to: None,
        ipv4: sa.is_ipv4().then_some(true),
        ipv6: sa.is_ipv6().then_some(true),
        keep_alive: None,
        mptcp: None,
    })
}

/// Path of a UNIX socket address, whether it is abstract, and whether it
/// is tight (shorter than the full `sun_path`).
fn unix_path(sa: &SockAddr) -> (String, bool, bool) {
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let len = (sa.len() as usize).saturating_sub(offset);
    // SAFETY: the storage holds a sockaddr_un (the family is AF_UNIX).
    let path: &[libc::c_char] = unsafe { &(*sa.as_ptr().cast::<libc::sockaddr_un>()).sun_path };
    let bytes: Vec<u8> = path[..len.min(path.len())]
        .iter()
        .map(|&c| c as u8)
        .collect();
    let cstr = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    if !bytes.is_empty() && bytes[0] == 0 {
        (cstr(&bytes[1..]), true, len < path.len())
    } else {
        (cstr(&bytes), false, false)
    }
}

/// QEMU's name for a connected socket: `unix:PATH[,server=on]` or
/// `PROTO:LOCAL[,server=on] <-> PEER` with bracketed IPv6 hosts.
pub(crate) fn connected_filename(fd: RawFd, proto: &str, listen: bool) -> String {
    // SAFETY: borrowing `fd` only for the getsockname/getpeername calls;
    // ManuallyDrop keeps the Socket from closing it.
    let sock = std::mem::ManuallyDrop::new(unsafe { Socket::from_raw_fd(fd) });
    let (Ok(local), peer) = (sock.local_addr(), sock.peer_addr()) else {
        return "unknown".into();
    };
    if local.is_unix() {
        return if listen {
            format!("unix:{},server=on", sun_path_cstr(&local))
        } else {
            format!(
                "unix:{}",
                peer.map(|p| sun_path_cstr(&p)).unwrap_or_default()
            )
        };
    }
    let Ok(peer) = peer else {
        return "unknown".into();
    };
    let (lb, rb) = if local.is_ipv6() {
        ("[", "]")
    } else {
        ("", "")
    };
    let (lh, lp) = numeric(&local);
    let (ph, pp) = numeric(&peer);
    let server = if listen { ",server=on" } else { "" };
    format!("{proto}:{lb}{lh}{rb}:{lp}{server} <-> {lb}{ph}{rb}:{pp}")
}

/// `sun_path` read as a C string (empty for abstract addresses).
fn sun_path_cstr(sa: &SockAddr) -> String {
    let (path, abstract_, _) = unix_path(sa);
    if abstract_ {
        String::new()
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(host: &str, port: &str) -> InetSocketAddress {
        InetSocketAddress {
            host: host.into(),
            port: port.into(),
            numeric: None,
            to: None,
            ipv4: None,
            ipv6: None,
            keep_alive: None,
            mptcp: None,
        }
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            Addr::Inet(inet("::1", "5")).describe("telnet", true),
            "telnet:::1:5,server=on"
        );
        let u = |a, t| Addr::Unix {
            path: "/p".into(),
            abstract_: a,
            tight: t,
        };
        assert_eq!(u(false, true).describe("tcp", false), "unix:/p");
        assert_eq!(
            u(true, true).describe("tcp", true),
            "unix:/p,abstract=on,tight=on,server=on"
        );
        assert_eq!(
            u(true, false).describe("tcp", true),
            "unix:/p,abstract=on,server=on"
        );
        assert_eq!(
            Addr::Fd(String::new()).describe("tcp", true),
            "fd:,server=on"
        );
        assert_eq!(
            Addr::Vsock {
                cid: "3".into(),
                port: "4".into()
            }
            .describe("tcp", true),
            "vsock:3:4"
        );
    }

    #[test]
    fn family_choice() {
        let mut i = inet("h", "1");
        assert_eq!(inet_family(&i), Ok(libc::AF_UNSPEC));
        i.ipv4 = Some(false);
        i.ipv6 = Some(false);
        assert_eq!(
            inet_family(&i),
            Err("Cannot disable IPv4 and IPv6 at same time".to_string())
        );
        i.ipv6 = None;
        assert_eq!(inet_family(&i), Ok(libc::AF_INET6));
        i.ipv4 = Some(true);
        assert_eq!(inet_family(&i), Ok(libc::AF_INET));
    }

    #[test]
    fn resolution_errors_read_as_qemu() {
        let e = listen_inet(&inet("127.0.0.1", "x")).unwrap_err();
        assert_eq!(
            e,
            "address resolution failed for 127.0.0.1:x: Servname not supported for ai_socktype"
        );
    }

    #[test]
    fn unix_listen_and_local_address() {
        let dir = std::env::temp_dir().join(format!("qsd-addr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s").to_string_lossy().into_owned();
        let s = listen_unix(&p, false, true).unwrap();
        assert_eq!(
            local_address(&s).unwrap(),
            Addr::Unix {
                path: p.clone(),
                abstract_: false,
                tight: false
            }
        );
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
