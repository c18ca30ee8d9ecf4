//! The jobs' main loop: polls job bodies only with the command lock held,
//! and queues completions like QEMU's bottom halves.
//!
//! A body is polled (a) directly when it is entered (by [`super::start`] or
//! a verb that wakes it), or (b) from the ready queue, when one of its
//! wakers fired (I/O or timer done). The ready queue is drained by a runner
//! task that first takes the command lock, or by a command that waits for
//! jobs ([`wait_while`]) and already holds it. When a body finishes, the job
//! goes to the exit queue; exits run in [`run_exits`] (at the end of job
//! commands, before their reply) or in the runner.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use tracing::error;

use super::{lifecycle, lock, Job, JobError, JobFuture, JobInner};
use crate::daemon::Daemon;

/// Per job: the body and its scheduling flags.
#[derive(Default)]
pub(super) struct Slot {
    /// The body; taken out while it is being polled.
    body: Mutex<Option<JobFuture>>,
    /// The body is being polled right now.
    polling: AtomicBool,
    /// A poll was asked for while the body was being polled.
    repoll: AtomicBool,
    /// The job is in the ready queue.
    scheduled: AtomicBool,
    /// The runtime to spawn runners on (wakers may fire on any thread).
    rt: Mutex<Option<Handle>>,
}

/// Per daemon: the queues of the main loop.
#[derive(Default)]
pub(super) struct Queues {
    ready: Mutex<VecDeque<Job>>,
    exits: Mutex<VecDeque<Job>>,
    /// A runner task was spawned and has not started draining yet.
    runner_scheduled: AtomicBool,
    /// Signalled when a job is made ready, for [`wait_while`].
    activity: Notify,
}

/// Gives `job` its body.
pub(super) fn install(job: &Job, body: JobFuture) {
    *lock(&job.0.exec.body) = Some(body);
    *lock(&job.0.exec.rt) = Handle::try_current().ok();
}

struct JobWaker(Weak<JobInner>);

impl Wake for JobWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(inner) = self.0.upgrade() {
            schedule(&Job(inner));
        }
    }
}

/// Queues `job` for polling by the main loop.
fn schedule(job: &Job) {
    let slot = &job.0.exec;
    if slot.scheduled.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(d) = job.0.daemon.upgrade() else {
        return;
    };
    let q = &d.jobs.exec;
    lock(&q.ready).push_back(job.clone());
    q.activity.notify_waiters();
    if q.runner_scheduled.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(rt) = lock(&slot.rt).clone() else {
        error!("job woken outside a runtime; it will not progress");
        return;
    };
    let weak = job.0.daemon.clone();
    rt.spawn(async move {
        let Some(d) = weak.upgrade() else { return };
        let _big_lock = d.command_lock.lock().await;
        d.jobs.exec.runner_scheduled.store(false, Ordering::Release);
        run_round(&d).await;
    });
}

/// Polls the body of `job` once, if it has one and is not being polled.
/// A body that finishes queues the job's exit.
pub(super) fn poll(d: &Daemon, job: &Job) {
    let slot = &job.0.exec;
    let Some(mut body) = lock(&slot.body).take() else {
        if slot.polling.load(Ordering::Acquire) {
            slot.repoll.store(true, Ordering::Release);
        }
        return;
    };
    slot.polling.store(true, Ordering::Release);
    let waker = Waker::from(Arc::new(JobWaker(Arc::downgrade(&job.0))));
    let result = body.as_mut().poll(&mut Context::from_waker(&waker));
    slot.polling.store(false, Ordering::Release);
    match result {
        Poll::Pending => {
            *lock(&slot.body) = Some(body);
            if slot.repoll.swap(false, Ordering::AcqRel) {
                schedule(job);
            }
        }
        Poll::Ready(r) => {
            drop(body);
            body_finished(d, job, r);
        }
    }
}

/// The body returned (QEMU's end of `job_co_entry`).
fn body_finished(d: &Daemon, job: &Job, r: Result<(), JobError>) {
    {
        let mut st = job.st();
        if let Err(e) = r {
            st.error = Some(e.0);
        }
        st.deferred = true;
        st.busy = true;
    }
    lock(&d.jobs.exec.exits).push_back(job.clone());
}

/// Runs queued exits until none is left.
pub(super) async fn run_exits(d: &Daemon) {
    loop {
        let next = lock(&d.jobs.exec.exits).pop_front();
        let Some(job) = next else { break };
        lifecycle::job_exit(d, &job).await;
    }
}

/// Polls ready jobs and runs exits until both queues are empty.
pub(super) async fn run_round(d: &Daemon) {
    loop {
        let next = lock(&d.jobs.exec.ready).pop_front();
        if let Some(job) = next {
            job.0.exec.scheduled.store(false, Ordering::Release);
            poll(d, &job);
            continue;
        }
        let next = lock(&d.jobs.exec.exits).pop_front();
        match next {
            Some(job) => lifecycle::job_exit(d, &job).await,
            None => break,
        }
    }
}

/// Runs the main loop while `busy()` is true (QEMU's `AIO_WAIT_WHILE`);
/// for commands (holding the command lock) that must wait for jobs.
pub(super) async fn wait_while(d: &Daemon, mut busy: impl FnMut() -> bool + Send) {
    loop {
        let notified = d.jobs.exec.activity.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        run_round(d).await;
        if !busy() {
            break;
        }
        // Work queued by `busy()` itself (entering a job) is done first.
        if !lock(&d.jobs.exec.ready).is_empty() || !lock(&d.jobs.exec.exits).is_empty() {
            continue;
        }
        notified.await;
    }
}
