//! Backends over plain file descriptors: `file`, `pipe`, `serial`,
//! `parallel` (refused after QEMU's checks) and `stdio`, plus the
//! asynchronous reader and writer they (and `pty`) share.
//!
//! Each of these opens one session at creation: input until end of file,
//! output until the chardev goes away.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use qapi::types::{ChardevFile, ChardevHostdev, ChardevStdio};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::session::{NoInput, Reader, Sessions, Writer};
use super::{os_error, Driver};

/// A descriptor used asynchronously when it can be polled, or with plain
/// blocking calls when it cannot (regular files, which are always ready).
#[derive(Clone)]
pub(crate) enum FdIo {
    Poll(Arc<AsyncFd<OwnedFd>>),
    Direct(Arc<OwnedFd>),
}

impl FdIo {
    pub fn reader(&self) -> Reader {
        Box::new(FdReader(self.clone()))
    }

    pub fn writer(&self) -> Writer {
        Box::new(FdWriter(self.clone()))
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let r = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            -1
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn sys_read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sys_write(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) struct FdReader(pub FdIo);

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &self.0 {
            FdIo::Direct(f) => {
                let n = sys_read(f.as_raw_fd(), buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            FdIo::Poll(a) => loop {
                let mut guard = ready!(a.poll_read_ready(cx))?;
                let unfilled = buf.initialize_unfilled();
                match guard.try_io(|inner| sys_read(inner.get_ref().as_raw_fd(), unfilled)) {
                    Ok(Ok(n)) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            },
        }
    }
}

pub(crate) struct FdWriter(pub FdIo);

impl AsyncWrite for FdWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &self.0 {
            FdIo::Direct(f) => Poll::Ready(sys_write(f.as_raw_fd(), buf)),
            FdIo::Poll(a) => loop {
                let mut guard = ready!(a.poll_write_ready(cx))?;
                match guard.try_io(|inner| sys_write(inner.get_ref().as_raw_fd(), buf)) {
                    Ok(r) => return Poll::Ready(r),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Opens `path` with `flags` (mode 0666 when creating); errors read as
/// QEMU's `Could not open '...': ...`.
pub(crate) fn open_path(path: &str, flags: libc::c_int) -> Result<OwnedFd, String> {
    let err = |e: std::io::Error| format!("Could not open '{path}': {}", os_error(&e));
    let c = CString::new(path).map_err(|_| err(std::io::Error::from_raw_os_error(libc::ENOENT)))?;
    loop {
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o666 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(err(e));
        }
    }
}

/// Registers an owned descriptor with the runtime's reactor; on failure
/// (a regular file cannot be polled) hands it back.
pub(crate) fn register<T: AsRawFd>(x: T) -> Result<AsyncFd<T>, T> {
    // SAFETY: `x` owns its descriptor (an OwnedFd or a Socket), which stays
    // open and unchanged for as long as the AsyncFd holds `x`.
    unsafe { AsyncFd::register(x) }.map_err(|e| e.into_parts().0)
}

/// Makes an [`FdIo`] for `fd`, polling it if the kernel allows.
pub(crate) fn fd_io(fd: OwnedFd) -> FdIo {
    if set_nonblocking(fd.as_raw_fd()).is_err() {
        return FdIo::Direct(Arc::new(fd));
    }
    match register(fd) {
        Ok(a) => FdIo::Poll(Arc::new(a)),
        Err(fd) => FdIo::Direct(Arc::new(fd)),
    }
}

/// One session with `input` (if any) and `output`.
fn open_session(sessions: &Sessions, input: Option<FdIo>, output: FdIo) {
    let reader: Reader = match input {
        Some(i) => i.reader(),
        None => Box::new(NoInput),
    };
    sessions.open_now(reader, output.writer());
}

/// `file`: output to `out` (truncated unless `append`), input from `in`.
pub(crate) fn open_file(f: &ChardevFile, sessions: &Sessions) -> Result<Driver, String> {
    let mode = if f.append == Some(true) {
        libc::O_APPEND
    } else {
        libc::O_TRUNC
    };
    let out = open_path(&f.out, libc::O_WRONLY | libc::O_CREAT | mode)?;
    let input = match &f.in_ {
        Some(p) => Some(fd_io(open_path(p, libc::O_RDONLY)?)),
        None => None,
    };
    open_session(sessions, input, fd_io(out));
    Ok(Driver::default())
}

/// `pipe`: `PATH.in` and `PATH.out` if both open, else `PATH` both ways.
pub(crate) fn open_pipe(h: &ChardevHostdev, sessions: &Sessions) -> Result<Driver, String> {
    let path = &h.device;
    let pair = (
        open_path(&format!("{path}.in"), libc::O_RDWR),
        open_path(&format!("{path}.out"), libc::O_RDWR),
    );
    let (input, output) = match pair {
        (Ok(i), Ok(o)) => (fd_io(i), fd_io(o)),
        _ => {
            let io = fd_io(open_path(path, libc::O_RDWR)?);
            (io.clone(), io)
        }
    };
    open_session(sessions, Some(input), output);
    Ok(Driver::default())
}

/// `serial`: a host tty in raw mode at 115200 baud, 8N1 (settings that do
/// not apply, as on a non-tty, are skipped like QEMU does).
pub(crate) fn open_serial(h: &ChardevHostdev, sessions: &Sessions) -> Result<Driver, String> {
    let fd = open_path(&h.device, libc::O_RDWR | libc::O_NONBLOCK)?;
    serial_init(fd.as_raw_fd());
    let io = fd_io(fd);
    open_session(sessions, Some(io.clone()), io);
    Ok(Driver::default())
}

fn serial_init(fd: RawFd) {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    unsafe {
        let mut tty: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut tty) != 0 {
            return;
        }
        libc::cfsetispeed(&mut tty, libc::B115200);
        libc::cfsetospeed(&mut tty, libc::B115200);
        tty.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        tty.c_oflag |= libc::OPOST;
        tty.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
        tty.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CRTSCTS | libc::CSTOPB);
        tty.c_cflag |= libc::CS8;
        tty.c_cc[libc::VMIN] = 1;
        tty.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(fd, libc::TCSANOW, &tty);
    }
}

/// `parallel`: QEMU's checks (the device opens and accepts `PPCLAIM`), then
/// a clear refusal, since driving a parallel port is not implemented.
pub(crate) fn open_parallel(h: &ChardevHostdev) -> Result<Driver, String> {
    let fd = open_path(&h.device, libc::O_RDWR)?;
    // PPCLAIM = _IO('p', 0x8b)
    const PPCLAIM: libc::c_ulong = 0x708b;
    // SAFETY: PPCLAIM takes no argument; on success we release it at once.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), PPCLAIM as _) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("not a parallel port: {}", os_error(&e)));
    }
    // PPRELEASE = _IO('p', 0x8c)
    // SAFETY: as above.
    unsafe { libc::ioctl(fd.as_raw_fd(), 0x708c as _) };
    Err("qsd does not implement the 'parallel' chardev backend".to_string())
}

/// Whether the process was daemonized (`--daemonize`), which rules out
/// `stdio` chardevs.
static DAEMONIZED: AtomicBool = AtomicBool::new(false);
/// Whether a `stdio` chardev exists.
static STDIO_IN_USE: AtomicBool = AtomicBool::new(false);
/// The terminal settings and descriptor flags to restore.
static SAVED_TTY: Mutex<Option<SavedTty>> = Mutex::new(None);

struct SavedTty {
    tty: Option<libc::termios>,
    fd0_flags: libc::c_int,
    fd1_flags: libc::c_int,
}

/// Records that the daemon runs daemonized (`--daemonize`): a `stdio`
/// chardev is then refused as QEMU does.
pub fn set_daemonized(on: bool) {
    DAEMONIZED.store(on, Ordering::Relaxed);
}

/// Restores the terminal as it was before the `stdio` chardev took it.
fn term_exit() {
    let Ok(mut saved) = SAVED_TTY.lock() else {
        return;
    };
    if let Some(s) = saved.take() {
        // SAFETY: restoring saved, valid settings on descriptors 0 and 1.
        unsafe {
            if let Some(t) = &s.tty {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
            libc::fcntl(0, libc::F_SETFL, s.fd0_flags);
            libc::fcntl(1, libc::F_SETFL, s.fd1_flags);
        }
    }
    STDIO_IN_USE.store(false, Ordering::Release);
}

extern "C" fn term_exit_at_exit() {
    term_exit();
}

/// `stdio`: input from descriptor 0, output to 1. A terminal on stdin is
/// put in raw mode without echo; Ctrl-C still signals unless `signal=off`.
/// Removing the chardev closes both descriptors, as QEMU does.
pub(crate) fn open_stdio(s: &ChardevStdio, sessions: &Sessions) -> Result<Driver, String> {
    if DAEMONIZED.load(Ordering::Relaxed) {
        return Err("cannot use stdio with -daemonize".into());
    }
    if STDIO_IN_USE.swap(true, Ordering::AcqRel) {
        return Err("cannot use stdio by multiple character devices".into());
    }
    // SAFETY: fcntl/tcgetattr on the standard descriptors; termios is plain
    // data filled by tcgetattr.
    let saved = unsafe {
        let mut tty: libc::termios = std::mem::zeroed();
        let have_tty = libc::tcgetattr(0, &mut tty) == 0;
        SavedTty {
            tty: have_tty.then_some(tty),
            fd0_flags: libc::fcntl(0, libc::F_GETFL),
            fd1_flags: libc::fcntl(1, libc::F_GETFL),
        }
    };
    if saved.fd0_flags < 0 {
        STDIO_IN_USE.store(false, Ordering::Release);
        let e = std::io::Error::last_os_error();
        return Err(format!("Failed to set FD nonblocking: {}", os_error(&e)));
    }
    let raw_tty = saved.tty;
    if let Ok(mut g) = SAVED_TTY.lock() {
        *g = Some(saved);
    }
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(term_exit_at_exit) };
    });
    if let Some(mut tty) = raw_tty {
        tty.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        tty.c_oflag |= libc::OPOST;
        tty.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN);
        tty.c_cflag &= !(libc::CSIZE | libc::PARENB);
        tty.c_cflag |= libc::CS8;
        tty.c_cc[libc::VMIN] = 1;
        tty.c_cc[libc::VTIME] = 0;
        if s.signal == Some(false) {
            tty.c_lflag &= !libc::ISIG;
        }
        // SAFETY: applying valid settings to descriptor 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &tty) };
    }
    // SAFETY: the chardev takes over descriptors 0 and 1 and closes them
    // when it is removed, as QEMU does.
    let (fd0, fd1) = unsafe { (OwnedFd::from_raw_fd(0), OwnedFd::from_raw_fd(1)) };
    open_session(sessions, Some(fd_io(fd0)), fd_io(fd1));
    let mut d = Driver::default();
    d.on_drop(Box::new(term_exit));
    Ok(d)
}
