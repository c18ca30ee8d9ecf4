//! Owned I/O buffers with a chosen alignment (O_DIRECT needs buffers aligned
//! to the device's memory alignment).

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// An owned, zero-initialised byte buffer whose start is aligned to a power
/// of two. It moves between threads freely, so an I/O can be handed to a
/// thread pool or io_uring and outlive the request that started it.
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: IoBuf owns its allocation exclusively (like Vec<u8>); no aliasing
// pointers exist, so moving it to another thread or sharing `&IoBuf` is safe.
unsafe impl Send for IoBuf {}
// SAFETY: shared access only reads the bytes (through `Deref`).
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// A zero-filled buffer of `len` bytes aligned to `align` (a power of two;
    /// values below 1 are treated as 1).
    pub fn new(len: usize, align: usize) -> IoBuf {
        let align = align.max(1).next_power_of_two();
        // A zero-size allocation is not allowed: keep at least one byte.
        let layout = match Layout::from_size_align(len.max(1), align) {
            Ok(l) => l,
            Err(_) => Layout::new::<u8>(),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        IoBuf { ptr, len, layout }
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8], align: usize) -> IoBuf {
        let mut b = IoBuf::new(data.len(), align);
        b.copy_from_slice(data);
        b
    }

    /// Number of valid bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment of the start of the buffer.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// Shortens the buffer to `len` bytes (no-op if already shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to an allocation of at least `len` initialised
        // (zeroed at allocation) bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated with exactly `layout` in `new`.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBuf({} bytes, align {})", self.len, self.align())
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(v: Vec<u8>) -> IoBuf {
        IoBuf::from_slice(&v, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for align in [1, 512, 4096] {
            let mut b = IoBuf::new(8192, align);
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert!(b.iter().all(|x| *x == 0));
            b[8191] = 7;
            assert_eq!(b[8191], 7);
        }
        let mut b = IoBuf::from_slice(b"hello", 4096);
        b.truncate(2);
        assert_eq!(&b[..], b"he");
        assert!(IoBuf::new(0, 512).is_empty());
    }
}
