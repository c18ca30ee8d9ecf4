//! Mounting and unmounting the export's file system the way libfuse 3
//! does it for QSD (`fuse_kern_mount`, `fuse_kern_unmount`), messages on
//! standard error included:
//!
//! - privileged: open `/dev/fuse`, then `mount(2)` with source
//!   `/dev/fuse`, type `fuse`, flags `nosuid,nodev` and the options
//!   `max_read=67108864,default_permissions[,allow_other]` followed by
//!   `fd=N,rootmode=100000,user_id=U,group_id=G`;
//! - when `mount(2)` answers EPERM (an unprivileged user): the setuid
//!   helper `fusermount3`, which sends back the `/dev/fuse` descriptor over
//!   a socket;
//! - unmounting: nothing if the connection is already gone; a lazy
//!   `umount2` as root (forced, which aborts the connection as closing
//!   libfuse's descriptor does), else `fusermount3 -u -q -z`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::block::file::strerror;

/// QEMU's `FUSE_MAX_BOUNCE_BYTES` (64 MiB), given as `max_read`.
pub const MAX_READ: u64 = 64 * 1024 * 1024;

const DEV_FUSE: &str = "/dev/fuse";
const FUSERMOUNT: &str = "fusermount3";
const COMMFD_ENV: &str = "_FUSE_COMMFD";

/// A mounted file system's connection.
pub struct Mounted {
    /// The `/dev/fuse` descriptor of the connection.
    pub fd: OwnedFd,
    /// Mounted by `fusermount3`, which must unmount it too.
    pub via_fusermount: bool,
}

/// libfuse's diagnostics go to standard error, prefixed `fuse: `.
fn log(msg: &str) {
    eprintln!("fuse: {msg}");
    tracing::debug!("fuse: {msg}");
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The options QEMU passes (`max_read`, `default_permissions`,
/// `allow_other`).
fn kernel_opts(allow_other: bool) -> String {
    format!(
        "max_read={MAX_READ},default_permissions{}",
        if allow_other { ",allow_other" } else { "" }
    )
}

/// Mounts a FUSE file system over `mountpoint`.
pub fn mount(mountpoint: &str, allow_other: bool) -> io::Result<Mounted> {
    let opts = kernel_opts(allow_other);
    match mount_sys(mountpoint, &opts)? {
        Some(fd) => Ok(Mounted {
            fd,
            via_fusermount: false,
        }),
        None => {
            let fd = mount_fusermount(mountpoint, &format!("rw,nosuid,nodev,{opts}"))?;
            Ok(Mounted {
                fd,
                via_fusermount: true,
            })
        }
    }
}

/// `fuse_mount_sys`: `Ok(None)` when the caller may not mount (EPERM).
fn mount_sys(mountpoint: &str, opts: &str) -> io::Result<Option<OwnedFd>> {
    let meta = std::fs::metadata(mountpoint).inspect_err(|e| {
        log(&format!(
            "failed to access mountpoint {mountpoint}: {}",
            strerror(e)
        ))
    })?;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV_FUSE)
        .inspect_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENOENT) => {
                log("device not found, try 'modprobe fuse' first")
            }
            _ => log(&format!("failed to open {DEV_FUSE}: {}", strerror(e))),
        })?;
    let fd = OwnedFd::from(dev);
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = format!(
        "{opts},fd={},rootmode={:o},user_id={uid},group_id={gid}",
        fd.as_raw_fd(),
        meta.mode() & libc::S_IFMT
    );
    let source = cstring(DEV_FUSE)?;
    let target = cstring(mountpoint)?;
    let fstype = cstring("fuse")?;
    let data = cstring(&data)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Ok(None);
        }
        log(&format!("mount failed: {}", strerror(&e)));
        return Err(e);
    }
    Ok(Some(fd))
}

/// `fuse_mount_fusermount`: runs `fusermount3 -o OPTS -- MOUNTPOINT` and
/// receives the connection's descriptor from it.
fn mount_fusermount(mountpoint: &str, opts: &str) -> io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()
        .inspect_err(|e| log(&format!("socketpair() failed: {}", strerror(e))))?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(FUSERMOUNT);
    cmd.arg("-o")
        .arg(opts)
        .arg("--")
        .arg(mountpoint)
        .env(COMMFD_ENV, child_fd.to_string());
    // SAFETY: the closure runs between fork and exec and only calls
    // fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(child_fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .inspect_err(|e| log(&format!("failed to exec {FUSERMOUNT}: {}", strerror(e))))?;
    drop(theirs);
    let r = receive_fd(ours.as_fd());
    drop(ours);
    let _ = child.wait();
    r
}

/// Receives one descriptor sent with SCM_RIGHTS (libfuse's `receive_fd`).
fn receive_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `msg` points at `iov` and `cbuf`, live for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log(&format!("recvmsg: {}", strerror(&e)));
            return Err(e);
        }
        break n;
    };
    if n == 0 {
        // fusermount3 failed and said why on standard error.
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR checks the
    // control length before returning a header inside `cbuf`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            log("got control message of unknown type");
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
        let fd = OwnedFd::from_raw_fd(fd);
        // The helper's descriptor arrives without close-on-exec.
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        Ok(fd)
    }
}

/// Whether the connection behind `dev` is gone (unmounted elsewhere, or
/// aborted): POLLERR on the device.
fn disconnected(dev: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: dev.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r == 1 && p.revents & libc::POLLERR != 0
}

/// Unmounts `mountpoint` (`fuse_kern_unmount`).
pub fn unmount(mountpoint: &str, dev: &OwnedFd, via_fusermount: bool) -> io::Result<()> {
    if disconnected(dev) {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root || !via_fusermount {
        let target = cstring(mountpoint)?;
        // libfuse closes the session's descriptor first, which aborts the
        // connection: files still open fail with ENOTCONN from then on.
        // The session threads hold that descriptor here, so MNT_FORCE
        // (which makes FUSE abort the connection) does it instead.
        let flags = if root {
            libc::MNT_DETACH | libc::MNT_FORCE
        } else {
            libc::MNT_DETACH
        };
        // SAFETY: `target` is a NUL-terminated string live for the call.
        if unsafe { libc::umount2(target.as_ptr(), flags) } != 0 {
            let e = io::Error::last_os_error();
            log(&format!("failed to unmount {mountpoint}: {}", strerror(&e)));
            return Err(e);
        }
        return Ok(());
    }
    let st = Command::new(FUSERMOUNT)
        .args(["-u", "-q", "-z", "--"])
        .arg(std::ffi::OsStr::from_bytes(mountpoint.as_bytes()))
        .status()
        .inspect_err(|e| log(&format!("failed to exec {FUSERMOUNT}: {}", strerror(e))))?;
    if !st.success() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}
