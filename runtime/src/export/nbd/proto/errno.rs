//! NBD error codes and the mapping from host errors, as QEMU's server maps
//! them.

use std::fmt;

/// An error value of the transmission phase (simple reply `error` field or
/// the `error` of an error chunk). Values the protocol does not define are
/// kept in `Other` so a decoded reply can be reported faithfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NbdErrno {
    /// `NBD_EPERM` (1): operation not permitted.
    Perm,
    /// `NBD_EIO` (5): input/output error.
    Io,
    /// `NBD_ENOMEM` (12): cannot allocate memory.
    NoMem,
    /// `NBD_EINVAL` (22): invalid argument.
    Inval,
    /// `NBD_ENOSPC` (28): no space left on device.
    NoSpc,
    /// `NBD_EOVERFLOW` (75): value too large.
    Overflow,
    /// `NBD_ENOTSUP` (95): operation not supported.
    NotSup,
    /// `NBD_ESHUTDOWN` (108): server shutting down.
    Shutdown,
    /// A nonzero value the protocol does not define (clients should treat
    /// it as `EINVAL`).
    Other(u32),
}

impl NbdErrno {
    /// The wire value.
    pub const fn raw(self) -> u32 {
        match self {
            NbdErrno::Perm => 1,
            NbdErrno::Io => 5,
            NbdErrno::NoMem => 12,
            NbdErrno::Inval => 22,
            NbdErrno::NoSpc => 28,
            NbdErrno::Overflow => 75,
            NbdErrno::NotSup => 95,
            NbdErrno::Shutdown => 108,
            NbdErrno::Other(v) => v,
        }
    }

    /// The error for a nonzero wire value; `None` for 0 (success).
    pub const fn from_raw(raw: u32) -> Option<NbdErrno> {
        Some(match raw {
            0 => return None,
            1 => NbdErrno::Perm,
            5 => NbdErrno::Io,
            12 => NbdErrno::NoMem,
            22 => NbdErrno::Inval,
            28 => NbdErrno::NoSpc,
            75 => NbdErrno::Overflow,
            95 => NbdErrno::NotSup,
            108 => NbdErrno::Shutdown,
            other => NbdErrno::Other(other),
        })
    }

    /// Maps a host `errno` the way QEMU's server does: `EPERM`/`EROFS` →
    /// `EPERM`; `EIO`; `ENOMEM`; `EDQUOT`/`EFBIG`/`ENOSPC` → `ENOSPC`;
    /// `EOVERFLOW`; `ENOTSUP`/`EOPNOTSUPP` → `ENOTSUP`; `ESHUTDOWN`;
    /// everything else (including `EINVAL`) → `EINVAL`. Returns `None` for
    /// 0. Negative values (QEMU's `-errno` convention) are accepted.
    pub fn from_errno(errno: i32) -> Option<NbdErrno> {
        let e = errno.checked_abs().unwrap_or(i32::MAX);
        Some(match e {
            0 => return None,
            libc::EPERM | libc::EROFS => NbdErrno::Perm,
            libc::EIO => NbdErrno::Io,
            libc::ENOMEM => NbdErrno::NoMem,
            libc::EDQUOT | libc::EFBIG | libc::ENOSPC => NbdErrno::NoSpc,
            libc::EOVERFLOW => NbdErrno::Overflow,
            // EOPNOTSUPP equals ENOTSUP on Linux, not everywhere.
            e if e == libc::ENOTSUP || e == libc::EOPNOTSUPP => NbdErrno::NotSup,
            libc::ESHUTDOWN => NbdErrno::Shutdown,
            _ => NbdErrno::Inval,
        })
    }

    /// Maps an I/O error: its OS error code if it has one (see
    /// [`NbdErrno::from_errno`]), else a mapping of its kind
    /// (`PermissionDenied` → `EPERM`, `OutOfMemory` → `ENOMEM`,
    /// `Unsupported` → `ENOTSUP`, `StorageFull`/`QuotaExceeded`/`FileTooLarge`
    /// → `ENOSPC`, `ReadOnlyFilesystem` → `EPERM`, everything else → `EIO`).
    pub fn from_io_error(err: &std::io::Error) -> NbdErrno {
        use std::io::ErrorKind as K;
        if let Some(code) = err.raw_os_error() {
            return NbdErrno::from_errno(code).unwrap_or(NbdErrno::Io);
        }
        match err.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => NbdErrno::Perm,
            K::OutOfMemory => NbdErrno::NoMem,
            K::Unsupported => NbdErrno::NotSup,
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => NbdErrno::NoSpc,
            K::InvalidInput | K::InvalidData => NbdErrno::Inval,
            _ => NbdErrno::Io,
        }
    }

    /// QEMU's name for the code (`nbd_err_lookup`), e.g. `"EINVAL"`.
    pub const fn name(self) -> &'static str {
        match self {
            NbdErrno::Perm => "EPERM",
            NbdErrno::Io => "EIO",
            NbdErrno::NoMem => "ENOMEM",
            NbdErrno::Inval => "EINVAL",
            NbdErrno::NoSpc => "ENOSPC",
            NbdErrno::Overflow => "EOVERFLOW",
            NbdErrno::NotSup => "ENOTSUP",
            NbdErrno::Shutdown => "ESHUTDOWN",
            NbdErrno::Other(_) => "<unknown>",
        }
    }
}

impl fmt::Display for NbdErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.raw())
    }
}

impl From<&std::io::Error> for NbdErrno {
    fn from(err: &std::io::Error) -> NbdErrno {
        NbdErrno::from_io_error(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        for e in [
            NbdErrno::Perm,
            NbdErrno::Io,
            NbdErrno::NoMem,
            NbdErrno::Inval,
            NbdErrno::NoSpc,
            NbdErrno::Overflow,
            NbdErrno::NotSup,
            NbdErrno::Shutdown,
        ] {
            assert_eq!(NbdErrno::from_raw(e.raw()), Some(e));
        }
        assert_eq!(NbdErrno::from_raw(0), None);
        assert_eq!(NbdErrno::from_raw(7), Some(NbdErrno::Other(7)));
        assert_eq!(NbdErrno::Other(7).raw(), 7);
        assert_eq!(NbdErrno::Inval.to_string(), "EINVAL (22)");
    }

    #[test]
    fn errno_mapping_follows_qemu() {
        let cases = [
            (0, None),
            (libc::EPERM, Some(NbdErrno::Perm)),
            (libc::EROFS, Some(NbdErrno::Perm)),
            (libc::EIO, Some(NbdErrno::Io)),
            (libc::ENOMEM, Some(NbdErrno::NoMem)),
            (libc::EDQUOT, Some(NbdErrno::NoSpc)),
            (libc::EFBIG, Some(NbdErrno::NoSpc)),
            (libc::ENOSPC, Some(NbdErrno::NoSpc)),
            (libc::EOVERFLOW, Some(NbdErrno::Overflow)),
            (libc::ENOTSUP, Some(NbdErrno::NotSup)),
            (libc::EOPNOTSUPP, Some(NbdErrno::NotSup)),
            (libc::ESHUTDOWN, Some(NbdErrno::Shutdown)),
            (libc::EINVAL, Some(NbdErrno::Inval)),
            (libc::ENOENT, Some(NbdErrno::Inval)),
            (libc::EAGAIN, Some(NbdErrno::Inval)),
            (-libc::EIO, Some(NbdErrno::Io)),
            (i32::MIN, Some(NbdErrno::Inval)),
        ];
        for (errno, want) in cases {
            assert_eq!(NbdErrno::from_errno(errno), want, "errno {errno}");
        }
    }

    #[test]
    fn io_error_mapping() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            NbdErrno::from(&Error::from_raw_os_error(libc::ENOSPC)),
            NbdErrno::NoSpc
        );
        assert_eq!(
            NbdErrno::from_io_error(&Error::from_raw_os_error(0)),
            NbdErrno::Io
        );
        assert_eq!(
            NbdErrno::from_io_error(&Error::from(ErrorKind::PermissionDenied)),
            NbdErrno::Perm
        );
        assert_eq!(
            NbdErrno::from_io_error(&Error::from(ErrorKind::Unsupported)),
            NbdErrno::NotSup
        );
        assert_eq!(NbdErrno::from_io_error(&Error::other("x")), NbdErrno::Io);
        assert_eq!(
            NbdErrno::from_io_error(&Error::from(ErrorKind::InvalidInput)),
            NbdErrno::Inval
        );
    }
}
