//! Guards on backing chains named in image headers: a header may name
//! an image already being opened further up the same chain (a loop), or
//! a chain may be deeper than the opening thread's stack allows. Opening
//! is recursive on one thread, so the images whose children are being
//! opened are kept in a thread-local stack.
//!
//! QEMU reports a loop only when the looping image is open read-write
//! higher up (its image lock then refuses the second, read-only opening
//! with the file driver's lock text); with read-only images it recurses
//! without end. Here a read-write loop gives QEMU's lock error and a
//! read-only loop a clear error of its own.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;

/// The deepest chain of images named in headers that is opened.
pub const MAX_DEPTH: usize = 64;

/// An image being opened: (device, inode) if a local file, and whether
/// it is opened read-write.
type Entry = (Option<(u64, u64)>, bool);

thread_local! {
    /// The images whose children are being opened on this thread,
    /// outermost first.
    static OPENING: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

fn file_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Marks an image as having its children opened until dropped.
pub struct Opening(());

impl Opening {
    /// Enters the image at `path` (any name; one that is not a local
    /// file is never found again by [`check`]).
    pub fn enter(path: &str, read_write: bool) -> Opening {
        let id = file_id(path);
        OPENING.with(|s| s.borrow_mut().push((id, read_write)));
        Opening(())
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        OPENING.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// Checks that the backing file at `path` may be opened below the images
/// being opened: the error text if it closes a loop or the chain is too
/// deep.
pub fn check(path: &str) -> Result<(), String> {
    let id = file_id(path);
    OPENING.with(|s| {
        let s = s.borrow();
        if let Some(id) = id {
            let mut found = s.iter().filter(|(i, _)| *i == Some(id)).peekable();
            if found.peek().is_some() {
                return Err(if found.any(|(_, rw)| *rw) {
                    "Failed to get shared \"write\" lock".to_string()
                } else {
                    format!("Backing file '{path}' is already part of this backing chain (a loop)")
                });
            }
        }
        if s.len() >= MAX_DEPTH {
            return Err(format!(
                "Backing chain too deep: more than {MAX_DEPTH} images named in headers"
            ));
        }
        Ok(())
    })
}
