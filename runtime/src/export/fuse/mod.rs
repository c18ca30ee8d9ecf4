//! The FUSE export: a block node's content shown as a raw image in a
//! regular file, mounted over an existing regular file (QEMU's
//! `block/export/fuse.c`, as qemu-storage-daemon 10.0 behaves).
//!
//! - [`create`] checks the mount point, mounts a FUSE file
//!   system whose root is the file (`mount`), and serves it with the
//!   [`fuser`] crate's session loop on its own thread.
//! - The session thread only decodes requests: each one runs as a task on
//!   the export's runtime (the daemon's, or the iothread's), so many are in
//!   flight at once. The semantics of each operation (short reads at the
//!   end, growing writes, `fallocate` modes, `setattr` rules) are in
//!   [`ops`], the glue to the kernel protocol in `fs`.
//! - [`FuseExport`] implements [`ExportDriver`]: shutting down makes new
//!   requests fail with ENOTCONN (QEMU stops reading them; its file system
//!   then answers ENOTCONN once unmounted); deleting (once the requests in
//!   flight are done) unmounts the file the way libfuse does (the
//!   connection aborted, so files still open fail with ENOTCONN, and a
//!   lazy unmount; `fusermount3 -u -z` without privileges); the registry
//!   then releases the node. `block-export-del` waits for that, as QSD's
//!   does.
//!
//! Kernel-visible settings follow libfuse 3 as QSD uses it: mount options
//! `max_read=67108864,default_permissions[,allow_other]`, `nosuid,nodev`,
//! source `/dev/fuse`; 1 MiB `max_write`; the capabilities libfuse asks
//! for by default (atomic `O_TRUNC`, so opening with `O_TRUNC` does not
//! truncate the image; automatic page cache invalidation; ...); attributes
//! cached for one second.

mod fs;
mod mount;
pub mod ops;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use qapi::types::{BlockExportOptionsFuse, FuseExportAllowOther};
use qapi::QmpError;

use super::{ExportContext, ExportDriver, ExportFuture};
use crate::block::file::strerror;
use crate::block::Perm;
use ops::Shared;

/// Mount points of the live FUSE exports, by the path string given (QEMU
/// compares the strings, so another spelling of the same file is not
/// caught here).
static MOUNTPOINTS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn mountpoints<R>(f: impl FnOnce(&mut HashSet<String>) -> R) -> R {
    let mut g = MOUNTPOINTS.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(HashSet::new))
}

/// The settings of a FUSE export besides the generic ones.
#[derive(Debug, Clone)]
pub struct FuseOptions {
    /// The existing regular file to mount over.
    pub mountpoint: String,
    /// Writes past the end grow the node (`growable`).
    pub growable: bool,
    /// `allow-other` (default `auto`: try with `allow_other`, and without
    /// it if that mount fails).
    pub allow_other: FuseExportAllowOther,
}

impl From<&BlockExportOptionsFuse> for FuseOptions {
    fn from(o: &BlockExportOptionsFuse) -> Self {
        FuseOptions {
            mountpoint: o.mountpoint.clone(),
            growable: o.growable.unwrap_or(false),
            allow_other: o.allow_other.unwrap_or(FuseExportAllowOther::Auto),
        }
    }
}

/// The mount of an export, unmounted once.
struct Mount {
    mountpoint: String,
    /// Whether the mount went through `fusermount3` (unprivileged), which
    /// must then unmount it too.
    via_fusermount: bool,
    /// A duplicate of the session's `/dev/fuse` descriptor, to see whether
    /// the connection is gone before unmounting (as libfuse does).
    dev: OwnedFd,
    mounted: AtomicBool,
}

impl Mount {
    /// Unmounts (once), as libfuse's `fuse_session_unmount`.
    fn unmount(&self) {
        if !self.mounted.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = mount::unmount(&self.mountpoint, &self.dev, self.via_fusermount) {
            tracing::warn!(
                mountpoint = %self.mountpoint,
                "unmounting the FUSE export failed: {}",
                strerror(&e)
            );
        }
    }
}

/// A mounted FUSE export.
pub struct FuseExport {
    shared: Arc<Shared>,
    mount: Arc<Mount>,
}

/// Creates a FUSE export: QEMU's `fuse_export_create`, with its checks
/// and texts in its order. Writable and growable exports add the `resize`
/// permission to the generic attachment first.
pub fn create(
    cx: &ExportContext<'_>,
    o: &BlockExportOptionsFuse,
) -> Result<Arc<dyn ExportDriver>, QmpError> {
    let runtime = cx
        .iothread
        .as_ref()
        .and_then(|t| t.handle())
        .unwrap_or_else(tokio::runtime::Handle::current);
    let exp = FuseExport::create(cx, runtime, FuseOptions::from(o))?;
    Ok(Arc::new(exp))
}

impl FuseExport {
    /// [`create`] with options already extracted and the runtime that
    /// serves the requests.
    pub fn create(
        cx: &ExportContext<'_>,
        runtime: tokio::runtime::Handle,
        o: FuseOptions,
    ) -> Result<FuseExport, QmpError> {
        if o.growable || cx.writable {
            let (perm, shared) = cx.attachment.perm();
            cx.attachment.set_perm(perm | Perm::RESIZE, shared)?;
        }
        if mountpoints(|m| m.contains(&o.mountpoint)) {
            return Err(QmpError::generic(format!(
                "There already is a FUSE export on '{}'",
                o.mountpoint
            )));
        }
        check_regular_file(&o.mountpoint)?;
        let shared = Arc::new(Shared::new(
            cx.node.clone(),
            cx.writable,
            o.growable,
            cx.writethrough,
        ));
        let started = start(shared.clone(), runtime, &o.mountpoint, o.allow_other)?;
        mountpoints(|m| m.insert(o.mountpoint.clone()));
        tracing::debug!(id = %cx.opts.id, mountpoint = %o.mountpoint, "FUSE export mounted");
        Ok(FuseExport {
            shared,
            mount: Arc::new(Mount {
                mountpoint: o.mountpoint,
                via_fusermount: started.via_fusermount,
                dev: started.dev,
                mounted: AtomicBool::new(true),
            }),
        })
    }

    /// The shared state of the export's requests.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl ExportDriver for FuseExport {
    /// Never: requests in flight are not users a removal would cut off
    /// (QSD finishes them before it removes the export).
    fn in_use(&self) -> bool {
        false
    }

    /// QEMU's `request_shutdown` then `delete`: new requests fail from now
    /// on, those in flight finish, then the file is unmounted.
    fn shutdown(&self) -> ExportFuture {
        self.shared.shut_down();
        mountpoints(|m| m.remove(&self.mount.mountpoint));
        let sh = self.shared.clone();
        let mount = self.mount.clone();
        Box::pin(async move {
            sh.idle().await;
            mount.unmount();
        })
    }
}

impl Drop for FuseExport {
    fn drop(&mut self) {
        // Shutting down unmounted already; this only matters if an export
        // is dropped without it.
        self.mount.unmount();
    }
}

/// QEMU's `is_regular_file`.
fn check_regular_file(path: &str) -> Result<(), QmpError> {
    match std::fs::metadata(path) {
        Err(e) => Err(QmpError::generic(format!(
            "Failed to stat '{path}': {}",
            strerror(&e)
        ))),
        Ok(m) if !m.is_file() => Err(QmpError::generic(format!("'{path}' is not a regular file"))),
        Ok(_) => Ok(()),
    }
}

/// A mount with its session running.
struct Started {
    dev: OwnedFd,
    via_fusermount: bool,
}

/// Mounts (trying `allow_other` first with `auto`) and starts the session
/// thread. Blocks for the mount(2) calls and the kernel's first request,
/// as QEMU does in the monitor.
fn start(
    sh: Arc<Shared>,
    rt: tokio::runtime::Handle,
    mountpoint: &str,
    allow: FuseExportAllowOther,
) -> Result<Started, QmpError> {
    let failed = || QmpError::generic("Failed to mount FUSE session to export");
    let m = match allow {
        FuseExportAllowOther::Auto => match mount::mount(mountpoint, true) {
            Ok(m) => {
                sh.set_allow_other(true);
                m
            }
            Err(_) => mount::mount(mountpoint, false).map_err(|_| failed())?,
        },
        FuseExportAllowOther::On => {
            sh.set_allow_other(true);
            mount::mount(mountpoint, true).map_err(|_| failed())?
        }
        FuseExportAllowOther::Off => mount::mount(mountpoint, false).map_err(|_| failed())?,
    };
    let via_fusermount = m.via_fusermount;
    let dev = match m.fd.try_clone() {
        Ok(d) => d,
        Err(e) => {
            let _ = mount::unmount(mountpoint, &m.fd, via_fusermount);
            tracing::warn!("duplicating /dev/fuse: {}", strerror(&e));
            return Err(failed());
        }
    };
    match fs::run(sh, rt, m.fd, mountpoint) {
        Ok(()) => Ok(Started {
            dev,
            via_fusermount,
        }),
        Err(e) => {
            tracing::warn!("starting the FUSE session: {}", strerror(&e));
            let _ = mount::unmount(mountpoint, &dev, via_fusermount);
            Err(failed())
        }
    }
}

/// The errno of `e` (EIO when it carries none).
fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
