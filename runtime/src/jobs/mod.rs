//! Jobs: long-running operations (image creation, block jobs) that clients
//! follow and steer with the `job-*` commands, as QEMU's job layer does.
//!
//! # Model
//!
//! A job has a status ([`JobStatus`]) that moves along QEMU's transition
//! table ([`table`]); every change of a job with an ID is reported with a
//! `JOB_STATUS_CHANGE` event. Commands ("verbs") are accepted only in the
//! statuses QEMU's verb table allows. The life of a job:
//!
//! 1. [`create`] checks the ID, registers the job (`created`);
//! 2. [`start`] makes it `running` and runs its body (the driver's
//!    [`JobDriver::run`]) right away, up to the body's first wait;
//! 3. the body may pause at pause points (`paused`, or `standby` when
//!    `ready`), report `ready` (jobs that need `job-complete`), update
//!    progress, and finally returns `Ok` or `Err`;
//! 4. then the job's transaction completes: `waiting` until every job of the
//!    transaction is done, `pending` (finalized on its own with
//!    `auto-finalize`, else by `job-finalize`), then `concluded`; on failure
//!    or cancellation it goes through `aborting` instead;
//! 5. `null` after `job-dismiss` (or right away with `auto-dismiss`), when
//!    the job disappears.
//!
//! # The main loop
//!
//! QEMU runs job bodies as coroutines in its main loop, under the big lock,
//! and that decides the order of events and replies. We do the same: job
//! bodies are futures that are only ever polled while the daemon's
//! [`command_lock`](crate::daemon::Inner::command_lock) is held, either by a
//! command handler (which "enters" a job when a verb wakes it, so events of
//! the job precede the command's reply, as in QEMU) or by a runner task that
//! takes the lock when a job's I/O or timer completes. When a body finishes,
//! its completion is queued like QEMU's bottom half and runs before the
//! reply of the command that caused it, or in the runner. Blocking work (file
//! I/O) goes through [`blocking`], QEMU's thread pool.
//!
//! # Plugging in a job
//!
//! Implement [`JobDriver`] (the body, and optionally prepare/commit/abort/
//! clean/complete/cancel hooks), then [`create`] and [`start`] the job from a
//! command handler, and call [`run_pending`] before the handler returns. See
//! `block::create` for an example.

mod context;
mod exec;
mod lifecycle;
pub mod qmp;
pub mod table;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use qapi::types::{BlockJobChangeOptions, JobInfo, JobStatus, JobType};
use qapi::QmpError;

use crate::daemon::{Daemon, WeakDaemon};

pub use context::{blocking, yield_now, JobContext};
pub use lifecycle::{
    cancel, cancel_sync, cancel_sync_all, complete, dismiss, finalize, pause, resume, shutdown,
    user_cancel, user_pause, user_resume,
};

/// A job body: what [`JobDriver::run`] returns.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'static>>;

/// Why a job failed; the text becomes the `error` member of `query-jobs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl JobError {
    pub fn new(msg: impl Into<String>) -> JobError {
        JobError(msg.into())
    }
}

/// The text QEMU gives a job that was cancelled without another error
/// (`strerror(ECANCELED)`).
pub const CANCELED: &str = "Operation canceled";

/// Moments of a job's life its driver hears about through
/// [`JobDriver::notify`] (QEMU's job notifiers; block jobs turn them into
/// `BLOCK_JOB_*` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// The job became `ready`.
    Ready,
    /// The job became `pending` and waits for `job-finalize`.
    Pending,
    /// The job started and ended without being cancelled, successfully or
    /// not (reported before `concluded`).
    Completed,
    /// The job started and ended cancelled (reported before `concluded`).
    Cancelled,
}

/// What a kind of job does. Every hook but [`run`](JobDriver::run) has a
/// default that matches a QEMU job driver leaving the hook unset.
///
/// Hooks are called in the main loop (with the command lock held) and must
/// not block; they must not call back into the job functions of this module
/// for the same job, except where noted.
pub trait JobDriver: Send + Sync + 'static {
    /// The job's type, as reported by `query-jobs`.
    fn job_type(&self) -> JobType;

    /// The body. It runs until its first wait as part of [`start`]; an error
    /// fails the job with that message.
    fn run(&self, ctx: JobContext) -> JobFuture;

    /// Before the job's transaction commits (only when the body succeeded);
    /// an error aborts the whole transaction. `None` (the default) means the
    /// driver has no prepare step.
    fn prepare(&self, _job: &Job) -> Option<Result<(), JobError>> {
        None
    }

    /// The transaction succeeded.
    fn commit(&self, _job: &Job) {}

    /// The transaction failed or was cancelled.
    fn abort(&self, _job: &Job) {}

    /// After commit or abort, in either case.
    fn clean(&self, _job: &Job) {}

    /// `job-complete` on a `ready` or `standby` job. `None` (the default)
    /// means the job cannot be completed. The hook may wake the job with
    /// [`Job::wake`].
    fn complete(&self, _job: &Job) -> Option<Result<(), QmpError>> {
        None
    }

    /// A cancellation request; returns whether it is a forced cancellation
    /// (the default: every cancellation is forced). A driver that supports
    /// soft cancellation (a mirror leaving its target consistent) returns
    /// `force` unchanged.
    fn cancel(&self, _job: &Job, _force: bool) -> bool {
        true
    }

    /// The body is about to pause at a pause point.
    fn pause(&self, _job: &Job) {}

    /// The body resumes after a pause point.
    fn resume(&self, _job: &Job) {}

    /// A client resumed the job (`job-resume`), or cancelled it while paused.
    fn user_resume(&self, _job: &Job) {}

    /// Life-cycle notifications (see [`Notification`]).
    fn notify(&self, _d: &Daemon, _job: &Job, _what: Notification) {}

    /// Whether the job is a block job, reachable through the `block-job-*`
    /// commands.
    fn is_block_job(&self) -> bool {
        false
    }

    /// `block-job-set-speed`, after the verb check (block jobs only).
    fn set_speed(&self, _job: &Job, _speed: i64) -> Result<(), QmpError> {
        Err(QmpError::not_implemented("block-job-set-speed"))
    }

    /// `block-job-change`, after the verb check (block jobs only). The
    /// default accepts and ignores the change, as QEMU does for block jobs
    /// without a change hook.
    fn change(&self, _job: &Job, _opts: &BlockJobChangeOptions) -> Result<(), QmpError> {
        Ok(())
    }
}

/// How a job is created (QEMU's `job_create` flags).
#[derive(Clone)]
pub struct JobOptions {
    /// The job's ID; required unless the job is internal.
    pub id: Option<String>,
    /// An internal job: no ID, no events, not listed by `query-jobs`.
    pub internal: bool,
    /// Finalize on its own once the transaction is done (else `pending`
    /// until `job-finalize`).
    pub auto_finalize: bool,
    /// Disappear on its own once concluded (else `concluded` until
    /// `job-dismiss`).
    pub auto_dismiss: bool,
    /// The transaction (job group) to join; `None` makes a transaction of
    /// this job alone.
    pub txn: Option<JobTxn>,
}

impl JobOptions {
    /// A job with ID `id`, finalized and dismissed on its own.
    pub fn new(id: impl Into<String>) -> JobOptions {
        JobOptions {
            id: Some(id.into()),
            internal: false,
            auto_finalize: true,
            auto_dismiss: true,
            txn: None,
        }
    }
}

/// A group of jobs that succeed or fail together: a job that finishes waits
/// (`waiting`) for the others; when one fails, the others are cancelled.
#[derive(Clone, Default)]
pub struct JobTxn(Arc<Mutex<TxnInner>>);

#[derive(Default)]
struct TxnInner {
    /// Newest first, as QEMU inserts at the head.
    jobs: Vec<Job>,
    aborting: bool,
}

impl JobTxn {
    /// A new, empty transaction.
    pub fn new() -> JobTxn {
        JobTxn::default()
    }

    fn inner(&self) -> MutexGuard<'_, TxnInner> {
        lock(&self.0)
    }

    fn jobs(&self) -> Vec<Job> {
        self.inner().jobs.clone()
    }
}

/// A job; cheap to clone. Equality is identity.
#[derive(Clone)]
pub struct Job(Arc<JobInner>);

impl PartialEq for Job {
    fn eq(&self, other: &Job) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

struct JobInner {
    id: Option<String>,
    job_type: JobType,
    driver: Box<dyn JobDriver>,
    state: Mutex<State>,
    exec: exec::Slot,
    progress: Progress,
    daemon: WeakDaemon,
}

/// The mutable part of a job (QEMU's fields protected by `job_mutex`).
struct State {
    status: JobStatus,
    /// Reasons to pause (the job starts with one, dropped by [`start`]).
    pause_count: u32,
    /// Paused by `job-pause`.
    user_paused: bool,
    /// Waiting at a pause point.
    paused: bool,
    /// Doing work; a job that is not busy waits to be entered.
    busy: bool,
    /// Cancellation requested.
    cancelled: bool,
    /// Forced cancellation requested (the job will end as cancelled).
    force_cancel: bool,
    /// The body has finished; completion is queued or done.
    deferred: bool,
    /// [`start`] ran.
    started: bool,
    /// A sleep whose timer has not fired yet.
    sleep_pending: bool,
    /// The failure, if the job failed (QEMU's `ret` and `err`).
    error: Option<String>,
    auto_finalize: bool,
    auto_dismiss: bool,
    txn: Option<JobTxn>,
}

/// Progress counters; only their ratio is meaningful.
#[derive(Default)]
struct Progress {
    current: AtomicU64,
    total: AtomicU64,
}

/// Locks `m`, recovering the data if a panic poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Job {
    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }

    /// The job's ID (`None` for internal jobs).
    pub fn id(&self) -> Option<&str> {
        self.0.id.as_deref()
    }

    pub fn job_type(&self) -> JobType {
        self.0.job_type
    }

    pub fn status(&self) -> JobStatus {
        self.st().status
    }

    /// The driver the job was created with.
    pub fn driver(&self) -> &dyn JobDriver {
        &*self.0.driver
    }

    /// The failure message, once the job has failed or was cancelled.
    pub fn error(&self) -> Option<String> {
        self.st().error.clone()
    }

    /// Whether the job will end as cancelled (a forced cancellation was
    /// requested). Bodies should stop soon when this is true.
    pub fn is_cancelled(&self) -> bool {
        self.st().force_cancel
    }

    /// Whether any cancellation (also a soft one) was requested.
    pub fn cancel_requested(&self) -> bool {
        self.st().cancelled
    }

    /// Whether the body should stop at its next pause point.
    pub fn should_pause(&self) -> bool {
        self.st().pause_count > 0
    }

    /// Whether the job was paused by `job-pause`.
    pub fn user_paused(&self) -> bool {
        self.st().user_paused
    }

    /// Whether the body waits at a pause point.
    pub fn paused(&self) -> bool {
        self.st().paused
    }

    /// Whether the body is working (not waiting to be entered).
    pub fn busy(&self) -> bool {
        self.st().busy
    }

    pub fn auto_finalize(&self) -> bool {
        self.st().auto_finalize
    }

    pub fn auto_dismiss(&self) -> bool {
        self.st().auto_dismiss
    }

    /// Whether the job's work is over (`waiting` or later).
    pub fn is_completed(&self) -> bool {
        is_completed(self.st().status)
    }

    /// `(current, total)` progress.
    pub fn progress(&self) -> (u64, u64) {
        let p = &self.0.progress;
        (
            p.current.load(Ordering::Relaxed),
            p.total.load(Ordering::Relaxed),
        )
    }

    /// Sets the work still to do: total becomes current plus `remaining`.
    pub fn progress_set_remaining(&self, remaining: u64) {
        let p = &self.0.progress;
        let cur = p.current.load(Ordering::Relaxed);
        p.total
            .store(cur.wrapping_add(remaining), Ordering::Relaxed);
    }

    /// Records `done` units of work.
    pub fn progress_update(&self, done: u64) {
        let p = &self.0.progress;
        p.current.fetch_add(done, Ordering::Relaxed);
    }

    /// Adds `delta` units to the expected total.
    pub fn progress_increase_remaining(&self, delta: u64) {
        self.0.progress.total.fetch_add(delta, Ordering::Relaxed);
    }

    /// Enters the job if it waits to be entered (QEMU's `job_enter`): the
    /// body continues right away, in the caller. Call only in the main loop
    /// (a command handler or a driver hook).
    pub fn wake(&self) {
        if let Some(d) = self.0.daemon.upgrade() {
            lifecycle::enter_cond(&d, self, None);
        }
    }

    /// The `query-jobs` entry.
    pub fn info(&self) -> JobInfo {
        let (current, total) = self.progress();
        let st = self.st();
        JobInfo {
            id: self.0.id.clone().unwrap_or_default(),
            type_: self.0.job_type,
            status: st.status,
            current_progress: current as i64,
            total_progress: total as i64,
            error: st.error.clone(),
        }
    }
}

/// Whether a job in `status` has finished its work.
fn is_completed(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Waiting
            | JobStatus::Pending
            | JobStatus::Aborting
            | JobStatus::Concluded
            | JobStatus::Null
    )
}

/// The daemon's jobs.
#[derive(Default)]
pub struct Registry {
    /// Newest first (QEMU inserts at the head and `query-jobs` walks from
    /// there).
    jobs: Mutex<Vec<Job>>,
    exec: exec::Queues,
}

impl Registry {
    /// The job with ID `id`.
    pub fn get(&self, id: &str) -> Option<Job> {
        lock(&self.jobs)
            .iter()
            .find(|j| j.id() == Some(id))
            .cloned()
    }

    /// Every job, internal ones included, newest first.
    pub fn list(&self) -> Vec<Job> {
        lock(&self.jobs).clone()
    }

    fn insert(&self, job: Job) {
        lock(&self.jobs).insert(0, job);
    }

    fn remove(&self, job: &Job) {
        lock(&self.jobs).retain(|j| j != job);
    }
}

/// Whether `id` is a well-formed ID: a letter, then letters, digits, `-`,
/// `.` and `_` (ASCII only).
pub fn id_wellformed(id: &str) -> bool {
    let mut b = id.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
}

/// The checks [`create`] makes on the ID, without creating anything; for
/// commands that refuse a request after these checks but before creating
/// the job.
pub fn check_new_id(d: &Daemon, id: Option<&str>, internal: bool) -> Result<(), QmpError> {
    match id {
        Some(_) if internal => Err(QmpError::generic("Cannot specify job ID for internal job")),
        Some(id) if !id_wellformed(id) => Err(QmpError::generic(format!("Invalid job ID '{id}'"))),
        Some(id) if d.jobs.get(id).is_some() => {
            Err(QmpError::generic(format!("Job ID '{id}' already in use")))
        }
        Some(_) => Ok(()),
        None if !internal => Err(QmpError::generic("An explicit job ID is required")),
        None => Ok(()),
    }
}

/// Creates a job (status `created`, event emitted) that does not run yet.
pub fn create(d: &Daemon, driver: Box<dyn JobDriver>, opts: JobOptions) -> Result<Job, QmpError> {
    check_new_id(d, opts.id.as_deref(), opts.internal)?;
    let job = Job(Arc::new(JobInner {
        id: opts.id,
        job_type: driver.job_type(),
        driver,
        state: Mutex::new(State {
            status: JobStatus::Undefined,
            pause_count: 1,
            user_paused: false,
            paused: true,
            busy: false,
            cancelled: false,
            force_cancel: false,
            deferred: false,
            started: false,
            sleep_pending: false,
            error: None,
            auto_finalize: opts.auto_finalize,
            auto_dismiss: opts.auto_dismiss,
            txn: None,
        }),
        exec: exec::Slot::default(),
        progress: Progress::default(),
        daemon: d.downgrade(),
    }));
    lifecycle::transition(d, &job, JobStatus::Created);
    d.jobs.insert(job.clone());
    let txn = opts.txn.unwrap_or_default();
    lifecycle::txn_add(&txn, &job);
    Ok(job)
}

/// Starts a created job: `running`, and its body runs until its first wait.
pub fn start(d: &Daemon, job: &Job) {
    {
        let mut st = job.st();
        if st.started {
            return;
        }
        st.pause_count = st.pause_count.saturating_sub(1);
        st.busy = true;
        st.paused = false;
        st.started = true;
    }
    let ctx = JobContext::new(job.clone());
    let body_job = job.clone();
    exec::install(
        job,
        Box::pin(async move {
            ctx.pause_point().await;
            let body = body_job.0.driver.run(ctx);
            body.await
        }),
    );
    lifecycle::transition(d, job, JobStatus::Running);
    exec::poll(d, job);
}

/// Runs the completions queued while a command worked with jobs (QEMU's
/// bottom halves that run before the command's reply). Command handlers
/// that create, start or wake jobs call this before returning.
pub async fn run_pending(d: &Daemon) {
    exec::run_exits(d).await;
}

/// The job with ID `id`, for the `job-*` commands.
pub fn find(d: &Daemon, id: &str) -> Result<Job, QmpError> {
    d.jobs
        .get(id)
        .ok_or_else(|| QmpError::generic("Job not found"))
}
