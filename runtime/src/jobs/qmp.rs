//! The `job-*`, `query-jobs` and `block-job-*` commands.
//!
//! Each handler ends with [`run_pending`], so completions its verb caused
//! are reported before its reply, as QEMU does.

use qapi::types::*;
use qapi::{ErrorClass, QmpError};

use super::lifecycle::{self, apply_verb};
use super::{find, run_pending, Job};
use crate::Daemon;

async fn done<T>(d: &Daemon, r: Result<T, QmpError>) -> Result<T, QmpError> {
    run_pending(d).await;
    r
}

pub async fn job_pause(d: &Daemon, args: JobPauseArgs) -> Result<(), QmpError> {
    let r = find(d, &args.id).and_then(|job| lifecycle::user_pause(d, &job));
    done(d, r).await
}

pub async fn job_resume(d: &Daemon, args: JobResumeArgs) -> Result<(), QmpError> {
    let r = find(d, &args.id).and_then(|job| lifecycle::user_resume(d, &job));
    done(d, r).await
}

/// `job-cancel` always forces the cancellation.
pub async fn job_cancel(d: &Daemon, args: JobCancelArgs) -> Result<(), QmpError> {
    let r = match find(d, &args.id) {
        Ok(job) => lifecycle::user_cancel(d, &job, true).await,
        Err(e) => Err(e),
    };
    done(d, r).await
}

pub async fn job_complete(d: &Daemon, args: JobCompleteArgs) -> Result<(), QmpError> {
    let r = find(d, &args.id).and_then(|job| lifecycle::complete(d, &job));
    done(d, r).await
}

pub async fn job_finalize(d: &Daemon, args: JobFinalizeArgs) -> Result<(), QmpError> {
    let r = match find(d, &args.id) {
        Ok(job) => lifecycle::finalize(d, &job).await,
        Err(e) => Err(e),
    };
    done(d, r).await
}

pub async fn job_dismiss(d: &Daemon, args: JobDismissArgs) -> Result<(), QmpError> {
    let r = find(d, &args.id).and_then(|job| lifecycle::dismiss(d, &job));
    done(d, r).await
}

/// Every job with an ID, newest first.
pub fn query_jobs(d: &Daemon) -> Result<Vec<JobInfo>, QmpError> {
    Ok(d.jobs
        .list()
        .iter()
        .filter(|j| j.id().is_some())
        .map(Job::info)
        .collect())
}

/// The block job with ID `id` (jobs of other kinds are not found).
fn find_block_job(d: &Daemon, id: &str) -> Result<Job, QmpError> {
    d.jobs
        .get(id)
        .filter(|j| j.driver().is_block_job())
        .ok_or_else(|| {
            QmpError::new(
                ErrorClass::DeviceNotActive,
                format!("Block job '{id}' not found"),
            )
        })
}

pub async fn block_job_set_speed(d: &Daemon, args: BlockJobSetSpeedArgs) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.device).and_then(|job| {
        apply_verb(&job, JobVerb::SetSpeed)?;
        job.driver().set_speed(&job, args.speed)
    });
    done(d, r).await
}

/// `block-job-cancel`: soft unless `force`; refused for a job paused by a
/// client unless `force`.
pub async fn block_job_cancel(d: &Daemon, args: BlockJobCancelArgs) -> Result<(), QmpError> {
    let force = args.force.unwrap_or(false);
    let r = match find_block_job(d, &args.device) {
        Ok(job) if job.user_paused() && !force => Err(QmpError::generic(format!(
            "The block job for device '{}' is currently paused",
            args.device
        ))),
        Ok(job) => lifecycle::user_cancel(d, &job, force).await,
        Err(e) => Err(e),
    };
    done(d, r).await
}

pub async fn block_job_pause(d: &Daemon, args: BlockJobPauseArgs) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.device).and_then(|job| lifecycle::user_pause(d, &job));
    done(d, r).await
}

pub async fn block_job_resume(d: &Daemon, args: BlockJobResumeArgs) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.device).and_then(|job| lifecycle::user_resume(d, &job));
    done(d, r).await
}

pub async fn block_job_complete(d: &Daemon, args: BlockJobCompleteArgs) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.device).and_then(|job| lifecycle::complete(d, &job));
    done(d, r).await
}

pub async fn block_job_finalize(d: &Daemon, args: BlockJobFinalizeArgs) -> Result<(), QmpError> {
    let r = match find_block_job(d, &args.id) {
        Ok(job) => lifecycle::finalize(d, &job).await,
        Err(e) => Err(e),
    };
    done(d, r).await
}

pub async fn block_job_dismiss(d: &Daemon, args: BlockJobDismissArgs) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.id).and_then(|job| lifecycle::dismiss(d, &job));
    done(d, r).await
}

pub async fn block_job_change(d: &Daemon, args: BlockJobChangeOptions) -> Result<(), QmpError> {
    let r = find_block_job(d, &args.id).and_then(|job| {
        apply_verb(&job, JobVerb::Change)?;
        job.driver().change(&job, &args)
    });
    done(d, r).await
}
