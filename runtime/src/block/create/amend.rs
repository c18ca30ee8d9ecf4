//! `x-blockdev-amend`: changes the options of an open image as a job of
//! type `amend`. qcow2 (like QEMU's) can only amend its encryption, and
//! this daemon opens no encrypted qcow2 image, so a qcow2 amend without
//! `encrypt` succeeds without changing anything and one with `encrypt`
//! fails as QEMU fails for an unencrypted image.

use std::sync::Mutex;

use qapi::types::{BlockdevAmendOptionsBranch as A, JobType, XBlockdevAmendArgs};
use qapi::QmpError;

use crate::jobs::{self, JobContext, JobDriver, JobError, JobFuture, JobOptions};
use crate::Daemon;

struct AmendJob {
    encrypt: Mutex<Option<bool>>,
}

impl JobDriver for AmendJob {
    fn job_type(&self) -> JobType {
        JobType::Amend
    }

    fn run(&self, ctx: JobContext) -> JobFuture {
        let encrypt = self
            .encrypt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(false);
        Box::pin(async move {
            ctx.progress_set_remaining(1);
            let r = if encrypt {
                Err(JobError::new("image is not encrypted, can't amend"))
            } else {
                Ok(())
            };
            ctx.progress_update(1);
            r
        })
    }
}

/// `x-blockdev-amend`, with QEMU's checks in its order.
pub async fn x_blockdev_amend(d: &Daemon, args: XBlockdevAmendArgs) -> Result<(), QmpError> {
    let name = &args.node_name;
    let node = d.block.node(name).ok_or_else(|| {
        QmpError::generic(format!("Cannot find device='' nor node-name='{name}'"))
    })?;
    let wanted = args.options.u.discriminator().as_str();
    if node.driver_name() != wanted {
        return Err(QmpError::generic(
            "x-blockdev-amend doesn't support changing the block driver",
        ));
    }
    let encrypt = match &args.options.u {
        A::Qcow2(o) => o.encrypt.is_some(),
        _ => {
            return Err(QmpError::generic(format!(
                "Block driver '{wanted}' does not support amend"
            )))
        }
    };
    let opts = JobOptions {
        auto_dismiss: false,
        ..JobOptions::new(args.job_id)
    };
    let driver = AmendJob {
        encrypt: Mutex::new(Some(encrypt)),
    };
    let job = jobs::create(d, Box::new(driver), opts)?;
    jobs::start(d, &job);
    jobs::run_pending(d).await;
    Ok(())
}
