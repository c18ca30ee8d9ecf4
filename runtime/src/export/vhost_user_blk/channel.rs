//! The back-end request channel (`SET_BACKEND_REQ_FD`), used to tell the
//! frontend that the configuration space changed.
//!
//! The `vhost` crate hands the channel to the back end only as its
//! `Backend` type, which cannot send `CONFIG_CHANGE_MSG`. So the
//! connection peeks at each message header before the crate reads it:
//! a peeked `SCM_RIGHTS` message installs copies of the passed
//! descriptors, and the copy of the channel's socket is kept here. The
//! message itself is then read and handled by the crate as usual.

use std::io::Write;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// `VHOST_USER_SET_BACKEND_REQ_FD`.
const SET_BACKEND_REQ_FD: u32 = 21;
/// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`.
const CONFIG_CHANGE_MSG: u32 = 2;
/// Header flags: protocol version 1.
const VERSION: u32 = 1;
/// Most descriptors a message carries.
const MAX_FDS: usize = 8;

/// Peeks at the next message on `sock` (blocking until one arrives); if
/// it passes the back-end channel, returns a copy of it. Other passed
/// descriptors' copies are closed. `None` also when the peer is gone.
pub fn peek_backend_channel(sock: RawFd) -> Option<UnixStream> {
    let mut hdr = [0u8; 12];
    let mut iov = libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: hdr.len(),
    };
    // Room for the largest control message (aligned as cmsghdr wants).
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: `msg` points to live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_PEEK | libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return None;
    }
    let fds = take_fds(&msg);
    let request = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    if n as usize == hdr.len() && request == SET_BACKEND_REQ_FD {
        fds.into_iter().next().map(UnixStream::from)
    } else {
        None
    }
}

/// The descriptors of the `SCM_RIGHTS` control messages of `msg`.
fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut out = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its
    // control buffer within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..(len / size_of::<RawFd>()).min(MAX_FDS) {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if fd >= 0 {
                        out.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    out
}

/// Sends `CONFIG_CHANGE_MSG` (no payload, no reply asked, as QSD does).
pub fn send_config_change(chan: &UnixStream) -> std::io::Result<()> {
    let mut m = [0u8; 12];
    m[0..4].copy_from_slice(&CONFIG_CHANGE_MSG.to_le_bytes());
    m[4..8].copy_from_slice(&VERSION.to_le_bytes());
    let mut s = chan;
    s.write_all(&m)
}

/// The raw descriptor of a stream (for peeking).
pub fn raw(s: &UnixStream) -> RawFd {
    s.as_raw_fd()
}
