//! I/O on the image's children. Like QEMU's accesses through `bs->file`,
//! these go to the child's driver directly: the child may grow past its
//! current end, and the node's user-facing checks do not apply.

use std::io;

use crate::block::{BlockNode, IoBuf, WriteFlags, ZeroFlags};

/// Reads `len` bytes at `off` (zeroes past the end).
pub async fn pread(n: &BlockNode, off: u64, len: usize) -> io::Result<IoBuf> {
    n.driver().read(off, len).await
}

/// Writes a copy of `data` at `off`.
pub async fn pwrite(n: &BlockNode, off: u64, data: &[u8]) -> io::Result<()> {
    let buf = IoBuf::from_slice(data, n.mem_alignment());
    n.driver().write(off, buf, WriteFlags::default()).await
}

/// Writes `buf` at `off`.
pub async fn pwrite_buf(n: &BlockNode, off: u64, buf: IoBuf, fua: bool) -> io::Result<()> {
    n.driver().write(off, buf, WriteFlags { fua }).await
}

/// Makes `len` bytes at `off` read as zeroes; with `unmap` the range
/// may be deallocated.
pub async fn pzero(n: &BlockNode, off: u64, len: u64, unmap: bool) -> io::Result<()> {
    n.driver()
        .write_zeroes(
            off,
            len,
            ZeroFlags {
                fua: false,
                may_unmap: unmap,
                no_fallback: false,
            },
        )
        .await
}

/// Discards `len` bytes at `off` if the child allows discards.
pub async fn pdiscard(n: &BlockNode, off: u64, len: u64) -> io::Result<()> {
    if !n.opts().discard_unmap {
        return Ok(());
    }
    n.driver().discard(off, len).await
}

/// Flushes the child.
pub async fn pflush(n: &BlockNode) -> io::Result<()> {
    n.flush().await
}
