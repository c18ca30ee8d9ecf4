//! The `raw` format: the image is the child's content, optionally a window
//! of it (`offset`, `size`). Without a window it behaves like a filter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qapi::types::{BlockdevOptionsBranch, BlockdevOptionsRaw};
use qapi::QmpError;

use super::{
    default_child_perm, user_error, AllocatedSize, BlockDriver, BlockNode, ChildPermCx, ChildRole,
    Extent, IoBuf, IoFuture, Perm, ReopenRequest, ReopenState, WriteFlags, ZeroFlags,
};

/// A raw node over its `file` child.
pub struct RawDriver {
    file: RwLock<Arc<BlockNode>>,
    offset: AtomicU64,
    /// The window size, if given.
    size: Mutex<Option<u64>>,
}

/// QEMU's `raw_apply_options` checks; returns (offset, size).
fn check_window(o: &BlockdevOptionsRaw, file: &BlockNode) -> Result<(u64, Option<u64>), QmpError> {
    let range = |name: &str, v: i64| {
        QmpError::generic(format!(
            "Value '{v}' is out of range for parameter '{name}'"
        ))
    };
    let offset = match o.offset {
        Some(v) if v < 0 => return Err(range("offset", v)),
        Some(v) => v as u64,
        None => 0,
    };
    let size = match o.size {
        Some(v) if v < 0 => return Err(range("size", v)),
        Some(v) => Some(v as u64),
        None => None,
    };
    let real = file.refresh_size();
    if offset > real {
        return Err(QmpError::generic(format!(
            "Offset ({offset}) cannot be greater than size of the containing file ({real})"
        )));
    }
    if let Some(s) = size {
        if real - offset < s {
            return Err(QmpError::generic(format!(
                "The sum of offset ({offset}) and size ({s}) has to be smaller or equal to the  actual size of the containing file ({real})"
            )));
        }
        if s % 512 != 0 {
            return Err(QmpError::generic("Specified size is not multiple of 512"));
        }
    }
    Ok((offset, size))
}

impl RawDriver {
    pub fn open(o: &BlockdevOptionsRaw, file: Arc<BlockNode>) -> Result<RawDriver, QmpError> {
        let (offset, size) = check_window(o, &file)?;
        Ok(RawDriver {
            file: RwLock::new(file),
            offset: AtomicU64::new(offset),
            size: Mutex::new(size),
        })
    }

    fn file(&self) -> Arc<BlockNode> {
        self.file
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn off(&self) -> u64 {
        self.offset.load(Ordering::Relaxed)
    }

    fn window(&self) -> Option<u64> {
        *self.size.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The role of `file`: data when a window is set, filtered otherwise.
    pub fn file_role(o: &BlockdevOptionsRaw) -> ChildRole {
        if o.offset.is_some_and(|v| v != 0) || o.size.is_some() {
            ChildRole::DATA_PRIMARY
        } else {
            ChildRole::FILTERED_PRIMARY
        }
    }
}

impl BlockDriver for RawDriver {
    fn driver_name(&self) -> &'static str {
        "raw"
    }

    fn size(&self) -> u64 {
        match self.window() {
            Some(s) => s,
            None => self.file().size().saturating_sub(self.off()),
        }
    }

    fn refresh_size(&self) -> u64 {
        match self.window() {
            Some(s) => s,
            None => self.file().refresh_size().saturating_sub(self.off()),
        }
    }

    fn read(&self, offset: u64, len: usize) -> IoFuture<'_, IoBuf> {
        let f = self.file();
        let off = offset + self.off();
        Box::pin(async move { f.read(off, len).await })
    }

    fn write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> IoFuture<'_, ()> {
        let f = self.file();
        let off = offset + self.off();
        Box::pin(async move { f.write(off, data, flags).await })
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> IoFuture<'_, ()> {
        let f = self.file();
        let off = offset + self.off();
        Box::pin(async move { f.write_zeroes(off, len, flags).await })
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, ()> {
        let f = self.file();
        let off = offset + self.off();
        Box::pin(async move { f.discard(off, len).await })
    }

    fn flush(&self) -> IoFuture<'_, ()> {
        let f = self.file();
        Box::pin(async move { f.flush().await })
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, Extent> {
        let f = self.file();
        let off = offset + self.off();
        Box::pin(async move { f.block_status(off, len).await })
    }

    fn truncate(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            if self.window().is_some() {
                return Err(user_error("Cannot resize fixed-size raw disks"));
            }
            let off = self.off();
            if i64::MAX as u64 - size < off {
                return Err(user_error("Disk size too large for the chosen offset"));
            }
            self.file()
                .co_truncate(size + off)
                .await
                .map_err(|e| user_error(e.desc))
        })
    }

    fn truncate_falloc(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            if self.window().is_some() {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTSUP));
            }
            let off = self.off();
            if i64::MAX as u64 - size < off {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.file().truncate_falloc(size + off).await
        })
    }

    fn mem_alignment(&self) -> usize {
        self.file().mem_alignment()
    }

    fn request_alignment(&self) -> u64 {
        self.file().request_alignment()
    }

    /// QEMU's `raw_child_perm`: the defaults for the role, but `write` and
    /// `resize` only when the parents want them.
    fn child_perm(&self, _child: &str, role: ChildRole, cx: ChildPermCx) -> (Perm, Perm) {
        let (mut p, s) = default_child_perm(role, cx);
        p &= !(Perm::WRITE | Perm::RESIZE);
        p |= cx.perm & (Perm::WRITE | Perm::RESIZE);
        (p, s)
    }

    fn has_info(&self) -> bool {
        self.file().driver().has_info()
    }

    fn allocated_size(&self) -> AllocatedSize {
        AllocatedSize::SumOfChildren
    }

    fn strong_runtime_opts(&self) -> &'static [&'static str] {
        &["offset", "size"]
    }

    fn reopen_prepare(&self, req: &ReopenRequest) -> Result<Option<ReopenState>, QmpError> {
        let BlockdevOptionsBranch::Raw(o) = &req.options.u else {
            return Err(QmpError::generic("Cannot change the option 'driver'"));
        };
        Ok(Some(Box::new(check_window(o, &self.file())?)))
    }

    fn replace_child(&self, name: &str, node: Arc<BlockNode>) {
        if name == "file" {
            *self.file.write().unwrap_or_else(PoisonError::into_inner) = node;
        }
    }

    fn reopen_commit(&self, state: ReopenState) {
        if let Ok(w) = state.downcast::<(u64, Option<u64>)>() {
            self.offset.store(w.0, Ordering::Relaxed);
            *self.size.lock().unwrap_or_else(PoisonError::into_inner) = w.1;
        }
    }
}
