//! `blockdev-create` with `driver=file`: creates (or truncates) a host file
//! the way QEMU's file-posix driver does.
//!
//! The steps, and which of them happen before the command's reply:
//!
//! 1. the extent size hint must fit in 32 bits;
//! 2. the file is opened read-write, created with mode 0644 (less the
//!    umask) if missing; an existing file keeps its mode;
//! 3. image locks: we take "write" and "resize" and share everything but
//!    "resize"; a process that holds conflicting locks makes us fail;
//! 4. (in a blocking thread, so after the reply) the file is truncated to
//!    0, `nocow` and the extent size hint are applied (failures ignored),
//!    and the file is grown to `size` with the preallocation mode:
//!    - `off`: sparse; a file grown from empty gets its first 512 bytes
//!      written (so a file smaller than 512 bytes ends up 512 bytes long);
//!    - `falloc`: `posix_fallocate`, then the same first-block write;
//!    - `full`: zeroes written, then `fsync`;
//!    - `metadata`: refused ("Unsupported preallocation mode: metadata").
//!
//! A failure after step 2 leaves the file created.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use qapi::types::{BlockdevCreateOptionsFile, PreallocMode};
use tracing::{error, warn};

use super::{locks, strerror, ImageCreator};
use crate::jobs::{self, JobContext, JobError, JobFuture};

/// The default extent size hint (1 MiB).
const DEFAULT_EXTENT_SIZE_HINT: u64 = 1 << 20;

/// Creates a file from [`BlockdevCreateOptionsFile`].
pub struct FileCreator(pub BlockdevCreateOptionsFile);

impl ImageCreator for FileCreator {
    fn create(self: Box<Self>, _ctx: JobContext) -> JobFuture {
        Box::pin(create(self.0))
    }
}

async fn create(o: BlockdevCreateOptionsFile) -> Result<(), JobError> {
    let prealloc = o.preallocation.unwrap_or(PreallocMode::Off);
    let nocow = o.nocow.unwrap_or(false);
    let hint_given = o.extent_size_hint.is_some_and(|h| h != 0);
    let hint = u32::try_from(o.extent_size_hint.unwrap_or(DEFAULT_EXTENT_SIZE_HINT))
        .map_err(|_| JobError::new("Extent size hint is too large"))?;
    let file = open_create(&o.filename)?;
    let perm = locks::PERM_WRITE | locks::PERM_RESIZE;
    let shared = locks::PERM_ALL & !locks::PERM_RESIZE;
    locks::apply(&file, perm, locks::PERM_ALL & !shared).map_err(JobError)?;
    locks::check(&file, perm, shared).map_err(JobError)?;
    // QEMU hands the size on as a signed file offset: sizes from 2^63 up
    // become negative and fail like it.
    let size = o.size as i64;
    let file = jobs::blocking(move || -> Result<File, JobError> {
        truncate(&file, 0, PreallocMode::Off)?;
        if nocow {
            set_nocow(&file);
        }
        if let Err(errno) = set_extent_size_hint(&file, hint) {
            if hint_given {
                warn!("Failed to set extent size hint: {}", strerror(errno));
            }
        }
        truncate(&file, size, prealloc)?;
        Ok(file)
    })
    .await??;
    close(file)
}

/// Opens `name` read-write, creating it (QEMU's `qemu_create`).
fn open_create(name: &str) -> Result<File, JobError> {
    // QEMU sees a C string: it ends at the first NUL.
    let name = name.split('\0').next().unwrap_or_default();
    if let Some(set) = name.strip_prefix("/dev/fdset/") {
        // Descriptor sets come from `add-fd`, which this daemon (like
        // qemu-storage-daemon) does not have.
        return Err(JobError(match parse_fdset(set) {
            None => format!("Could not parse fdset {name}"),
            Some(_) => strerror(libc::ENOSYS),
        }));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        // An existing file is emptied later, after the lock checks.
        .truncate(false)
        .mode(0o644)
        .open(name)
        .map_err(|e| JobError(format!("Could not create '{name}': {}", io_text(&e))))
}

/// Parses an fdset ID like QEMU (`strtoll`, base 10, whole string; -1 is
/// refused).
fn parse_fdset(s: &str) -> Option<i64> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|&v| v != -1)
}

/// The errno text of an I/O error.
fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => strerror(errno),
        None => e.to_string(),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn ftruncate(file: &File, len: i64) -> Result<(), i32> {
    // SAFETY: the descriptor belongs to `file`, which outlives the call.
    let r = unsafe { libc::ftruncate(file.as_raw_fd(), len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

fn posix_fallocate(file: &File, offset: i64, len: i64) -> Result<(), i32> {
    // SAFETY: the descriptor belongs to `file`, which outlives the call.
    let r = unsafe {
        libc::posix_fallocate(file.as_raw_fd(), offset as libc::off_t, len as libc::off_t)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

/// Writes zeroes over the first 512 bytes, so that the first block is
/// allocated (QEMU does this to speed up its alignment probing); failures
/// are ignored.
fn allocate_first_block(file: &File) {
    let zeroes = [0u8; 512];
    loop {
        match file.write_at(&zeroes, 0) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => break,
        }
    }
}

fn err(what: &str, errno: i32) -> JobError {
    JobError(format!("{what}: {}", strerror(errno)))
}

/// Resizes `file` to `offset` with preallocation `prealloc` (QEMU's
/// `handle_aiocb_truncate`).
fn truncate(file: &File, offset: i64, prealloc: PreallocMode) -> Result<(), JobError> {
    let current = file
        .metadata()
        .map_err(|e| JobError(format!("Could not stat file: {}", io_text(&e))))?
        .len() as i64;
    if current > offset && prealloc != PreallocMode::Off {
        return Err(JobError::new(
            "Cannot use preallocation for shrinking files",
        ));
    }
    let result = match prealloc {
        PreallocMode::Off => {
            ftruncate(file, offset).map_err(|e| err("Could not resize file", e))?;
            if current == 0 && offset > 0 {
                allocate_first_block(file);
            }
            return Ok(());
        }
        PreallocMode::Metadata => {
            return Err(JobError::new("Unsupported preallocation mode: metadata"))
        }
        PreallocMode::Falloc => {
            if offset == current {
                return Ok(());
            }
            let r = posix_fallocate(file, current, offset - current)
                .map_err(|e| err("Could not preallocate new data", e));
            if r.is_ok() && current == 0 {
                allocate_first_block(file);
            }
            r
        }
        PreallocMode::Full => write_zeroes(file, current, offset),
    };
    if result.is_err() {
        if let Err(e) = ftruncate(file, current) {
            error!("Failed to restore old file length: {}", strerror(e));
        }
    }
    result
}

/// `full` preallocation: grow to `offset`, write zeroes from `current` on,
/// flush.
fn write_zeroes(mut file: &File, current: i64, offset: i64) -> Result<(), JobError> {
    ftruncate(file, offset).map_err(|e| err("Could not resize file", e))?;
    file.seek(SeekFrom::Start(current as u64)).map_err(|e| {
        JobError(format!(
            "Failed to seek to the old end of file: {}",
            io_text(&e)
        ))
    })?;
    let zeroes = vec![0u8; 65536];
    let mut left = offset - current;
    while left > 0 {
        let n = left.min(zeroes.len() as i64) as usize;
        match file.write(&zeroes[..n]) {
            Ok(w) => left -= w as i64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(JobError(format!(
                    "Could not write zeros for preallocation: {}",
                    io_text(&e)
                )))
            }
        }
    }
    file.sync_all()
        .map_err(|e| JobError(format!("Could not flush file to disk: {}", io_text(&e))))
}

/// The no-copy-on-write attribute (btrfs); failures are ignored.
fn set_nocow(file: &File) {
    const FS_NOCOW_FL: libc::c_int = 0x0080_0000;
    let mut attr: libc::c_int = 0;
    let fd = file.as_raw_fd();
    // SAFETY: the descriptor belongs to `file`; the ioctl reads/writes one
    // int through a valid pointer.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut attr as *mut libc::c_int) == 0 {
            attr |= FS_NOCOW_FL;
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &attr as *const libc::c_int);
        }
    }
}

/// Linux's `struct fsxattr`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `_IOR('X', 31, struct fsxattr)` and `_IOW('X', 32, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::Ioctl = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::Ioctl = 0x401c_5820;
const FS_XFLAG_EXTSIZE: u32 = 0x0000_0800;

/// Sets the extent size hint (XFS); returns the errno on failure.
fn set_extent_size_hint(file: &File, hint: u32) -> Result<(), i32> {
    let mut attr = FsXattr::default();
    let fd = file.as_raw_fd();
    // SAFETY: the descriptor belongs to `file`; the ioctls read/write one
    // `struct fsxattr` (same layout as `FsXattr`) through a valid pointer.
    let r = unsafe { libc::ioctl(fd, FS_IOC_FSGETXATTR, &mut attr as *mut FsXattr) };
    if r != 0 {
        return Err(last_errno());
    }
    attr.xflags |= FS_XFLAG_EXTSIZE;
    attr.extsize = hint;
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(fd, FS_IOC_FSSETXATTR, &attr as *const FsXattr) };
    if r != 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Closes the new file, reporting a failure as QEMU does.
fn close(file: File) -> Result<(), JobError> {
    let fd = file.into_raw_fd();
    // SAFETY: `into_raw_fd` gave us sole ownership of the descriptor; it is
    // closed exactly once, here.
    if unsafe { libc::close(fd) } != 0 {
        return Err(err("Could not close the new file", last_errno()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdset_ids() {
        assert_eq!(parse_fdset("1"), Some(1));
        assert_eq!(parse_fdset(" +7"), Some(7));
        assert_eq!(parse_fdset("-2"), Some(-2));
        assert_eq!(parse_fdset("-1"), None);
        assert_eq!(parse_fdset(""), None);
        assert_eq!(parse_fdset("x"), None);
        assert_eq!(parse_fdset("0x5"), None);
        assert_eq!(parse_fdset("5 "), None);
        assert_eq!(parse_fdset("99999999999999999999"), None);
    }

    fn run(o: BlockdevCreateOptionsFile) -> Result<(), JobError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(create(o))
    }

    fn opts(
        path: &std::path::Path,
        size: u64,
        p: Option<PreallocMode>,
    ) -> BlockdevCreateOptionsFile {
        BlockdevCreateOptionsFile {
            filename: path.to_str().unwrap().to_string(),
            size,
            preallocation: p,
            nocow: None,
            extent_size_hint: None,
        }
    }

    #[test]
    fn sizes_and_allocation() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("qsd-create-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a");
        std::fs::write(&p, b"old content").unwrap();
        run(opts(&p, 100, None)).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 512);
        assert_eq!(std::fs::read(&p).unwrap(), vec![0u8; 512]);
        run(opts(&p, 1 << 20, Some(PreallocMode::Full))).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 1 << 20);
        assert!(m.blocks() * 512 >= 1 << 20);
        assert_eq!(
            run(opts(&p, 4096, Some(PreallocMode::Metadata)))
                .unwrap_err()
                .0,
            "Unsupported preallocation mode: metadata"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        assert_eq!(
            run(opts(&p, 1 << 63, None)).unwrap_err().0,
            "Could not resize file: Invalid argument"
        );
        assert_eq!(
            run(opts(&p, 1 << 63, Some(PreallocMode::Falloc)))
                .unwrap_err()
                .0,
            "Cannot use preallocation for shrinking files"
        );
        let missing = dir.join("no/such");
        assert_eq!(
            run(opts(&missing, 0, None)).unwrap_err().0,
            format!(
                "Could not create '{}': No such file or directory",
                missing.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
