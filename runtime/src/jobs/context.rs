//! What a job body sees: progress counters, cancellation, pause points,
//! idle waits and sleeps (QEMU's `job_pause_point`, `job_yield`,
//! `job_sleep_ns`, `job_transition_to_ready`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use qapi::types::JobStatus;
use tokio::time::{Instant, Sleep};

use super::lifecycle::transition;
use super::{Job, JobError, Notification};

/// The handle a job body gets from [`super::JobDriver::run`].
#[derive(Clone)]
pub struct JobContext {
    job: Job,
}

impl JobContext {
    pub(super) fn new(job: Job) -> JobContext {
        JobContext { job }
    }

    /// The job this body belongs to.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Whether the job will end as cancelled; the body should return soon.
    pub fn is_cancelled(&self) -> bool {
        self.job.is_cancelled()
    }

    /// See [`Job::progress_set_remaining`].
    pub fn progress_set_remaining(&self, remaining: u64) {
        self.job.progress_set_remaining(remaining);
    }

    /// See [`Job::progress_update`].
    pub fn progress_update(&self, done: u64) {
        self.job.progress_update(done);
    }

    /// See [`Job::progress_increase_remaining`].
    pub fn progress_increase_remaining(&self, delta: u64) {
        self.job.progress_increase_remaining(delta);
    }

    /// Stops here while the job should pause (and is not cancelled): the job
    /// becomes `paused` (`standby` if it was `ready`) until it is resumed.
    pub async fn pause_point(&self) {
        let job = &self.job;
        if !job.should_pause() || job.is_cancelled() {
            return;
        }
        job.0.driver.pause(job);
        if job.should_pause() && !job.is_cancelled() {
            let status = job.status();
            let paused = if status == JobStatus::Ready {
                JobStatus::Standby
            } else {
                JobStatus::Paused
            };
            if let Some(d) = job.0.daemon.upgrade() {
                transition(&d, job, paused);
            }
            job.st().paused = true;
            Idle::new(job, None).await;
            job.st().paused = false;
            if let Some(d) = job.0.daemon.upgrade() {
                transition(&d, job, status);
            }
        }
        job.0.driver.resume(job);
    }

    /// Waits, not busy, until something enters the job (a verb, or the
    /// driver's [`Job::wake`]); then stops at a pause point if needed.
    /// Returns at once if the job is cancelled.
    pub async fn yield_until_entered(&self) {
        if self.job.is_cancelled() {
            return;
        }
        if !self.job.should_pause() {
            Idle::new(&self.job, None).await;
        }
        self.pause_point().await;
    }

    /// Sleeps for `dur`, not busy (entering the job ends the sleep early);
    /// then stops at a pause point if needed. Returns at once if the job
    /// is cancelled.
    pub async fn sleep(&self, dur: Duration) {
        if self.job.is_cancelled() {
            return;
        }
        if !self.job.should_pause() {
            Idle::new(&self.job, Some(Instant::now() + dur)).await;
        }
        self.pause_point().await;
    }

    /// The job has done its initial work and waits for `job-complete`.
    pub fn transition_to_ready(&self) {
        if let Some(d) = self.job.0.daemon.upgrade() {
            transition(&d, &self.job, JobStatus::Ready);
            self.job.0.driver.notify(&d, &self.job, Notification::Ready);
        }
    }
}

/// The job waits, not busy, until entered or until its timer fires
/// (QEMU's `job_do_yield`).
struct Idle<'a> {
    job: &'a Job,
    deadline: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<'a> Idle<'a> {
    fn new(job: &'a Job, deadline: Option<Instant>) -> Idle<'a> {
        Idle {
            job,
            deadline,
            timer: None,
            armed: false,
        }
    }
}

impl Future for Idle<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            self.armed = true;
            let mut st = self.job.st();
            st.busy = false;
            st.sleep_pending = self.deadline.is_some();
            drop(st);
            self.timer = self
                .deadline
                .map(|at| Box::pin(tokio::time::sleep_until(at)));
        } else if self.job.st().busy {
            // Entered.
            return Poll::Ready(());
        }
        if let Some(timer) = self.timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                // The timer enters the job.
                let mut st = self.job.st();
                st.sleep_pending = false;
                st.busy = true;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// Runs blocking work `f` on the blocking thread pool (QEMU's thread pool)
/// and waits for it. Like a thread-pool request in QEMU, this always gives
/// up the main loop at least once: the body resumes from the main loop even
/// when the work is done at once, so the command that started or woke the
/// job replies first.
pub async fn blocking<T, F>(f: F) -> Result<T, JobError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = tokio::task::spawn_blocking(f);
    yield_now().await;
    handle
        .await
        .map_err(|e| JobError::new(format!("blocking work did not finish: {e}")))
}

/// Gives up the main loop once: the body continues from the main loop
/// later (after the reply of the command that is running), like a QEMU
/// coroutine that reschedules itself.
pub async fn yield_now() {
    YieldOnce(false).await
}

/// Pending once (asking to be polled again), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
