//! The `udp` backend: a datagram socket bound locally and connected to a
//! remote address.
//!
//! QSD 10.0.2 never opens a UDP chardev for its frontend (a monitor on one
//! sends no greeting and answers nothing), so after QEMU's address checks
//! and socket set-up this backend carries no session either.

use qapi::types::{ChardevUdp, SocketAddressLegacyBranch};
use socket2::{SockAddr, Socket, Type};

use super::os_error;
use super::socket::resolve;
use super::Driver;

pub(crate) fn open(u: &ChardevUdp) -> Result<Driver, String> {
    let remote = match &u.remote.u {
        SocketAddressLegacyBranch::Inet(i) => &i.data,
        _ => return Err("socket type unsupported for datagram".into()),
    };
    let family = super::socket::inet_family(remote)?;
    let host = if remote.host.is_empty() {
        "localhost"
    } else {
        &remote.host
    };
    if remote.port.is_empty() {
        return Err("remote port not specified".into());
    }
    let flags = libc::AI_CANONNAME | libc::AI_V4MAPPED | libc::AI_ADDRCONFIG;
    let peers = resolve(host, &remote.port, flags, family, libc::SOCK_DGRAM)?;
    let Some(peer) = peers.into_iter().next() else {
        return Err(format!(
            "address resolution failed for {host}:{}: Name or service not known",
            remote.port
        ));
    };
    let (lhost, lport) = match &u.local {
        Some(l) => match &l.u {
            SocketAddressLegacyBranch::Inet(i) => (
                i.data.host.clone(),
                if i.data.port.is_empty() {
                    "0".to_string()
                } else {
                    i.data.port.clone()
                },
            ),
            _ => return Err("socket type unsupported for datagram".into()),
        },
        None => (String::new(), "0".to_string()),
    };
    let locals = resolve(
        &lhost,
        &lport,
        libc::AI_PASSIVE,
        i32::from(peer.family()),
        libc::SOCK_DGRAM,
    )
    // QEMU prints an empty local host as the C library prints NULL.
    .map_err(|e| e.replacen("failed for :", "failed for (null):", 1))?;
    let local: SockAddr = locals.into_iter().next().ok_or_else(|| {
        format!("address resolution failed for {lhost}:{lport}: Name or service not known")
    })?;
    let sock = Socket::new(peer.domain(), Type::DGRAM, None).map_err(|e| {
        format!(
            "Failed to create socket family {}: {}",
            peer.family(),
            os_error(&e)
        )
    })?;
    let _ = sock.set_reuse_address(true);
    sock.bind(&local)
        .map_err(|e| format!("Failed to bind socket: {}", os_error(&e)))?;
    sock.connect(&peer).map_err(|e| {
        let shown = if lhost.is_empty() { "(null)" } else { &lhost };
        format!("Failed to connect to '{shown}:{lport}': {}", os_error(&e))
    })?;
    let mut d = Driver::default();
    d.keep(Box::new(sock));
    Ok(d)
}
