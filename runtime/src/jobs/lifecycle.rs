//! The job state machine: verbs, completion of transactions, finalization,
//! dismissal and cancellation, step for step in QEMU's order (which decides
//! the order of `JOB_STATUS_CHANGE` events).
//!
//! Everything here runs in the main loop (command lock held).

use std::future::Future;
use std::pin::Pin;

use qapi::events::Event;
use qapi::types::{JobStatus, JobStatusChangeData, JobVerb};
use qapi::QmpError;
use tracing::error;

use super::table::{transition_allowed, verb_allowed, verb_refused};
use super::{exec, Job, JobTxn, Notification, State, CANCELED};
use crate::daemon::Daemon;

/// Moves `job` to status `to`, reporting the change (jobs with an ID).
pub(super) fn transition(d: &Daemon, job: &Job, to: JobStatus) {
    let from = {
        let mut st = job.st();
        let from = st.status;
        if !transition_allowed(from, to) {
            error!(
                job = job.id().unwrap_or(""),
                "job status change {} -> {} is not allowed",
                from.as_str(),
                to.as_str()
            );
            debug_assert!(false, "job status change {from:?} -> {to:?}");
        }
        st.status = to;
        from
    };
    if from != to {
        if let Some(id) = job.id() {
            d.emit(Event::JobStatusChange(JobStatusChangeData {
                id: id.to_string(),
                status: to,
            }));
        }
    }
}

fn notify(d: &Daemon, job: &Job, what: Notification) {
    job.0.driver.notify(d, job, what);
}

/// Checks that `job` accepts `verb` in its current status.
pub(super) fn apply_verb(job: &Job, verb: JobVerb) -> Result<(), QmpError> {
    let status = job.status();
    if verb_allowed(verb, status) {
        Ok(())
    } else {
        Err(QmpError::generic(verb_refused(
            job.id().unwrap_or(""),
            status,
            verb,
        )))
    }
}

impl Job {
    fn txn(&self) -> Option<JobTxn> {
        self.st().txn.clone()
    }
}

/// Adds `job` to `txn` (at the head, as QEMU does).
pub(super) fn txn_add(txn: &JobTxn, job: &Job) {
    txn.inner().jobs.insert(0, job.clone());
    job.st().txn = Some(txn.clone());
}

fn txn_del(job: &Job) {
    let txn = job.st().txn.take();
    if let Some(txn) = txn {
        txn.inner().jobs.retain(|j| j != job);
    }
}

/// Resumes the body of `job` if it waits to be entered and `cond` (if any)
/// agrees (QEMU's `job_enter_cond`).
pub(super) fn enter_cond(d: &Daemon, job: &Job, cond: Option<fn(&State) -> bool>) {
    {
        let mut st = job.st();
        if !st.started || st.deferred || st.busy {
            return;
        }
        if let Some(cond) = cond {
            if !cond(&st) {
                return;
            }
        }
        st.sleep_pending = false;
        st.busy = true;
    }
    exec::poll(d, job);
}

fn timer_not_pending(st: &State) -> bool {
    !st.sleep_pending
}

/// Adds a reason for `job` to pause; the body stops at its next pause
/// point (QEMU's `job_pause`, used for drained sections).
pub fn pause(d: &Daemon, job: &Job) {
    let paused = {
        let mut st = job.st();
        st.pause_count += 1;
        st.paused
    };
    if !paused {
        enter_cond(d, job, None);
    }
}

/// Drops a reason to pause added by [`pause`]; the last one lets the body
/// continue (QEMU's `job_resume`).
pub fn resume(d: &Daemon, job: &Job) {
    {
        let mut st = job.st();
        debug_assert!(st.pause_count > 0);
        st.pause_count = st.pause_count.saturating_sub(1);
        if st.pause_count > 0 {
            return;
        }
    }
    enter_cond(d, job, Some(timer_not_pending));
}

/// `job-pause`.
pub fn user_pause(d: &Daemon, job: &Job) -> Result<(), QmpError> {
    apply_verb(job, JobVerb::Pause)?;
    {
        let mut st = job.st();
        if st.user_paused {
            return Err(QmpError::generic("Job is already paused"));
        }
        st.user_paused = true;
    }
    pause(d, job);
    Ok(())
}

/// `job-resume`.
pub fn user_resume(d: &Daemon, job: &Job) -> Result<(), QmpError> {
    {
        let st = job.st();
        if !st.user_paused || st.pause_count == 0 {
            return Err(QmpError::generic("Can't resume a job that was not paused"));
        }
    }
    apply_verb(job, JobVerb::Resume)?;
    job.0.driver.user_resume(job);
    job.st().user_paused = false;
    resume(d, job);
    Ok(())
}

/// `job-complete`.
pub fn complete(_d: &Daemon, job: &Job) -> Result<(), QmpError> {
    apply_verb(job, JobVerb::Complete)?;
    let refused = || {
        QmpError::generic(format!(
            "The active block job '{}' cannot be completed",
            job.id().unwrap_or("")
        ))
    };
    if job.cancel_requested() {
        return Err(refused());
    }
    match job.0.driver.complete(job) {
        None => Err(refused()),
        Some(r) => r,
    }
}

/// `job-finalize`.
pub async fn finalize(d: &Daemon, job: &Job) -> Result<(), QmpError> {
    apply_verb(job, JobVerb::Finalize)?;
    do_finalize(d, job).await;
    Ok(())
}

/// `job-dismiss`.
pub fn dismiss(d: &Daemon, job: &Job) -> Result<(), QmpError> {
    apply_verb(job, JobVerb::Dismiss)?;
    do_dismiss(d, job);
    Ok(())
}

/// `job-cancel` (`force` true) and `block-job-cancel`.
pub async fn user_cancel(d: &Daemon, job: &Job, force: bool) -> Result<(), QmpError> {
    apply_verb(job, JobVerb::Cancel)?;
    cancel(d, job, force).await;
    Ok(())
}

/// Cancels `job` without a verb check: a concluded job is dismissed.
pub async fn cancel(d: &Daemon, job: &Job, force: bool) {
    if job.status() == JobStatus::Concluded {
        do_dismiss(d, job);
        return;
    }
    cancel_async(job, force);
    let (started, deferred) = {
        let st = job.st();
        (st.started, st.deferred)
    };
    if !started {
        completed(d, job).await;
    } else if deferred {
        // The body is done; a soft cancellation was ignored above.
        if job.is_cancelled() {
            txn_abort(d, job).await;
        }
    } else {
        enter_cond(d, job, None);
    }
}

/// Records a cancellation request; drops a client's pause.
fn cancel_async(job: &Job, force: bool) {
    let force = job.0.driver.cancel(job, force);
    if job.st().user_paused {
        job.0.driver.user_resume(job);
        let mut st = job.st();
        st.user_paused = false;
        debug_assert!(st.pause_count > 0);
        st.pause_count = st.pause_count.saturating_sub(1);
    }
    let mut st = job.st();
    // A soft cancellation of a job whose body is done is ignored.
    if force || !st.deferred {
        st.cancelled = true;
        st.force_cancel |= force;
    }
}

/// Turns a cancellation into the job's error; moves a failed job to
/// `aborting`. Returns whether the job failed.
fn update_rc(d: &Daemon, job: &Job) -> bool {
    let failed = {
        let mut st = job.st();
        if st.error.is_none() && st.force_cancel {
            st.error = Some(CANCELED.to_string());
        }
        st.error.is_some()
    };
    if failed {
        transition(d, job, JobStatus::Aborting);
    }
    failed
}

/// The queued completion of a job whose body returned (QEMU's `job_exit`).
pub(super) async fn job_exit(d: &Daemon, job: &Job) {
    {
        let mut st = job.st();
        st.busy = false;
        if super::is_completed(st.status) {
            return;
        }
    }
    completed(d, job).await;
}

async fn completed(d: &Daemon, job: &Job) {
    if update_rc(d, job) {
        txn_abort(d, job).await;
    } else {
        txn_success(d, job).await;
    }
}

async fn txn_success(d: &Daemon, job: &Job) {
    transition(d, job, JobStatus::Waiting);
    let Some(txn) = job.txn() else { return };
    let jobs = txn.jobs();
    if !jobs.iter().all(Job::is_completed) {
        return;
    }
    for other in &jobs {
        transition(d, other, JobStatus::Pending);
        if !other.auto_finalize() {
            notify(d, other, Notification::Pending);
        }
    }
    if txn.jobs().iter().all(Job::auto_finalize) {
        do_finalize(d, job).await;
    }
}

async fn do_finalize(d: &Daemon, job: &Job) {
    let Some(txn) = job.txn() else { return };
    let prepared = txn.jobs().iter().all(|other| prepare(d, other));
    if prepared {
        for other in txn.jobs() {
            finalize_single(d, &other);
        }
    } else {
        txn_abort(d, job).await;
    }
}

/// Runs the driver's prepare hook; returns whether the job is still fine.
fn prepare(d: &Daemon, job: &Job) -> bool {
    if job.error().is_none() {
        if let Some(r) = job.0.driver.prepare(job) {
            if let Err(e) = r {
                job.st().error = Some(e.0);
            }
            update_rc(d, job);
        }
    }
    job.error().is_none()
}

fn finalize_single(d: &Daemon, job: &Job) {
    let failed = update_rc(d, job);
    let driver = &job.0.driver;
    if failed {
        driver.abort(job);
    } else {
        driver.commit(job);
    }
    driver.clean(job);
    if job.st().started {
        if job.is_cancelled() {
            notify(d, job, Notification::Cancelled);
        } else {
            notify(d, job, Notification::Completed);
        }
    }
    txn_del(job);
    conclude(d, job);
}

fn conclude(d: &Daemon, job: &Job) {
    transition(d, job, JobStatus::Concluded);
    let (auto_dismiss, started) = {
        let st = job.st();
        (st.auto_dismiss, st.started)
    };
    if auto_dismiss || !started {
        do_dismiss(d, job);
    }
}

fn do_dismiss(d: &Daemon, job: &Job) {
    {
        let mut st = job.st();
        st.busy = false;
        st.paused = false;
        st.deferred = true;
    }
    txn_del(job);
    transition(d, job, JobStatus::Null);
    d.jobs.remove(job);
}

/// Fails the transaction of `job`: cancels the other jobs, waits for them,
/// and finalizes every job as aborted.
fn txn_abort<'a>(d: &'a Daemon, job: &'a Job) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let Some(txn) = job.txn() else { return };
        {
            let mut t = txn.inner();
            if t.aborting {
                // Another job of the transaction is handling it.
                return;
            }
            t.aborting = true;
        }
        for other in txn.jobs() {
            if other != *job {
                cancel_async(&other, true);
            }
        }
        loop {
            let first = txn.inner().jobs.first().cloned();
            let Some(other) = first else { break };
            if !other.is_completed() {
                // The outcome is that of the transaction, already decided.
                let _ = finish_sync(d, &other, Finish::Nothing).await;
            }
            finalize_single(d, &other);
        }
    })
}

/// What [`finish_sync`] does before it waits.
#[derive(Clone, Copy)]
enum Finish {
    Nothing,
    Cancel { force: bool },
}

/// Waits until `job` has completed its work, entering it as needed;
/// returns its outcome.
async fn finish_sync(d: &Daemon, job: &Job, finish: Finish) -> Result<(), String> {
    match finish {
        Finish::Nothing => {}
        Finish::Cancel { force } => cancel(d, job, force).await,
    }
    exec::wait_while(d, || {
        enter_cond(d, job, None);
        !job.is_completed()
    })
    .await;
    let st = job.st();
    match &st.error {
        Some(e) => Err(e.clone()),
        None if st.force_cancel => Err(CANCELED.to_string()),
        None => Ok(()),
    }
}

/// Cancels `job` and waits until it is done (QEMU's `job_cancel_sync`).
pub async fn cancel_sync(d: &Daemon, job: &Job, force: bool) -> Result<(), String> {
    finish_sync(d, job, Finish::Cancel { force }).await
}

/// Cancels every job (forced) and waits until all are gone, as QEMU does
/// when it exits. Call in the main loop (a command handler such as `quit`);
/// see [`shutdown`] otherwise.
pub async fn cancel_sync_all(d: &Daemon) {
    loop {
        let first = d.jobs.list().first().cloned();
        let Some(job) = first else { break };
        let _ = cancel_sync(d, &job, true).await;
    }
}

/// [`cancel_sync_all`] for the daemon's shutdown path: takes the command
/// lock first.
pub async fn shutdown(d: &Daemon) {
    let _big_lock = d.command_lock.lock().await;
    cancel_sync_all(d).await;
}
