//! `blockdev-create`: image creation as a job of type `create`.
//!
//! The command checks the driver as qemu-storage-daemon 10.0.2 does (a
//! driver missing from its build is "not found", one without a creator
//! "does not support blockdev-create"), then starts a job that runs the
//! driver's [`ImageCreator`]. The job finalizes on its own and stays
//! `concluded` until `job-dismiss`; its progress goes from 0/1 to 1/1.
//!
//! A new image format plugs in by returning its creator from
//! [`creator_for`].

mod amend;
mod file;
mod locks;
mod qcow2;

use std::sync::Mutex;

use qapi::types::{
    BlockdevCreateArgs, BlockdevCreateOptions, BlockdevCreateOptionsBranch as B, JobType,
};
use qapi::QmpError;

use crate::jobs::{self, JobContext, JobDriver, JobError, JobFuture, JobOptions};
use crate::Daemon;

pub use amend::x_blockdev_amend;
pub use file::FileCreator;
pub use qcow2::Qcow2Creator;

/// Creates one image. The future's first poll runs inside the
/// `blockdev-create` command, up to its first wait: failures a driver
/// detects before its first wait are reported before the command's reply,
/// as in QEMU (use [`jobs::blocking`] for blocking I/O and
/// [`jobs::yield_now`] where QEMU's creator yields without I/O). The job's
/// progress is handled by the caller; `ctx` is there for cancellation
/// checks.
pub trait ImageCreator: Send + 'static {
    fn create(self: Box<Self>, ctx: JobContext) -> JobFuture;
}

/// What `blockdev-create` can do with a driver.
pub enum Creator {
    /// The driver is not part of qemu-storage-daemon's build.
    NotFound,
    /// The driver cannot create images.
    Unsupported,
    /// qemu-storage-daemon creates such images; we do not yet.
    NotImplemented,
    /// Ready to create.
    Ready(Box<dyn ImageCreator>),
}

/// The creator for `options`. Creators of image formats use `d` to find
/// the node they write to.
pub fn creator_for(d: &Daemon, options: BlockdevCreateOptions) -> Creator {
    match options.u {
        B::File(o) => Creator::Ready(Box::new(FileCreator(o))),
        B::Qcow2(o) => Creator::Ready(Box::new(Qcow2Creator {
            daemon: d.clone(),
            options: o,
        })),
        // Not built into Debian's qemu-storage-daemon 10.0.2.
        B::Blkreplay
        | B::Ftp
        | B::Ftps
        | B::Http
        | B::Https
        | B::Iscsi
        | B::Gluster(_)
        | B::Nfs(_)
        | B::Rbd(_)
        | B::Ssh(_) => Creator::NotFound,
        B::Luks(_)
        | B::Parallels(_)
        | B::Qcow(_)
        | B::Qed(_)
        | B::Vdi(_)
        | B::Vhdx(_)
        | B::Vmdk(_)
        | B::Vpc(_) => Creator::NotImplemented,
        B::Blkdebug
        | B::Blklogwrites
        | B::Blkverify
        | B::Bochs
        | B::Cloop
        | B::Compress
        | B::CopyBeforeWrite
        | B::CopyOnRead
        | B::Dmg
        | B::SnapshotAccess
        | B::HostCdrom
        | B::HostDevice
        | B::Nbd
        | B::NullAio
        | B::NullCo
        | B::Nvme
        | B::Preallocate
        | B::Quorum
        | B::Raw
        | B::Replication
        | B::Throttle
        | B::Vvfat => Creator::Unsupported,
    }
}

/// The job driver of `blockdev-create` jobs.
struct CreateJob {
    creator: Mutex<Option<Box<dyn ImageCreator>>>,
}

impl JobDriver for CreateJob {
    fn job_type(&self) -> JobType {
        JobType::Create
    }

    fn run(&self, ctx: JobContext) -> JobFuture {
        let creator = self
            .creator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Box::pin(async move {
            ctx.progress_set_remaining(1);
            let r = match creator {
                Some(c) => c.create(ctx.clone()).await,
                None => Err(JobError::new("the image creator ran twice")),
            };
            ctx.progress_update(1);
            r
        })
    }
}

/// `blockdev-create`.
pub async fn blockdev_create(d: &Daemon, args: BlockdevCreateArgs) -> Result<(), QmpError> {
    let driver = args.options.driver().as_str();
    let creator = match creator_for(d, args.options) {
        Creator::Ready(c) => c,
        Creator::NotFound => {
            return Err(QmpError::generic(format!(
                "Block driver '{driver}' not found or not supported"
            )))
        }
        Creator::Unsupported => {
            return Err(QmpError::generic("Driver does not support blockdev-create"))
        }
        Creator::NotImplemented => {
            jobs::check_new_id(d, Some(&args.job_id), false)?;
            return Err(QmpError::generic(format!(
                "blockdev-create with driver '{driver}' is not implemented by this daemon yet"
            )));
        }
    };
    let opts = JobOptions {
        auto_dismiss: false,
        ..JobOptions::new(args.job_id)
    };
    let driver = CreateJob {
        creator: Mutex::new(Some(creator)),
    };
    let job = jobs::create(d, Box::new(driver), opts)?;
    jobs::start(d, &job);
    jobs::run_pending(d).await;
    Ok(())
}

/// The C library's text for `errno` (what QEMU appends to its messages).
fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
