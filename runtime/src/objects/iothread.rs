//! The `iothread` object: a dedicated OS thread running its own event loop
//! (a single-threaded tokio runtime), to which other parts of the daemon
//! hand work with [`IoThread::spawn`] or [`IoThread::handle`].
//!
//! The thread starts when the object is completed (after its properties are
//! set) and stops when the object is deleted: the runtime is shut down,
//! which cancels the tasks still running on it, and the thread is joined.
//! The thread is named `IO <id>`, as QEMU names its iothreads.
//!
//! Parameters: `poll-max-ns`, `poll-grow` and `poll-shrink` are QEMU's
//! adaptive busy-polling tunables; they are kept and reported but our event
//! loop does not busy-poll. `thread-pool-max` sizes the runtime's pool for
//! blocking work when the thread starts; later changes are checked and
//! reported like QEMU's but only apply to a thread started afterwards.
//! `aio-max-batch` is kept for block backends that submit in batches.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use qapi::QmpError;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::event_loop::{visit_nonneg, EventLoopParams};
use super::types::{Prop, TypeInfo};
use super::{unhandled, Registry, UserObject};

/// QEMU's default upper limit of busy polling, in nanoseconds.
pub const POLL_MAX_NS_DEFAULT: i64 = 32768;

/// Adaptive polling tunables of an iothread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollParams {
    /// Maximum busy-polling time in nanoseconds (0: no polling).
    pub max_ns: i64,
    /// Factor by which the polling time grows (0: QEMU's default).
    pub grow: i64,
    /// Divisor by which the polling time shrinks (0: QEMU's default).
    pub shrink: i64,
}

impl Default for PollParams {
    fn default() -> Self {
        PollParams {
            max_ns: POLL_MAX_NS_DEFAULT,
            grow: 0,
            shrink: 0,
        }
    }
}

/// The running thread of an iothread.
struct Running {
    handle: Handle,
    thread_id: i64,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

struct State {
    poll: PollParams,
    base: EventLoopParams,
    running: Option<Running>,
}

/// A handle on an iothread; look one up with
/// [`Registry::iothread`](super::Registry::iothread).
pub struct IoThread {
    class: &'static TypeInfo,
    id: String,
    state: Mutex<State>,
}

/// The kernel's id of the calling thread.
fn current_thread_id() -> i64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    i64::from(unsafe { libc::gettid() })
}

impl IoThread {
    pub(crate) fn new(class: &'static TypeInfo, id: &str) -> IoThread {
        IoThread {
            class,
            id: id.to_string(),
            state: Mutex::new(State {
                poll: PollParams::default(),
                base: EventLoopParams::default(),
                running: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The runtime of the thread, to spawn work on it; `None` once the
    /// iothread was deleted.
    pub fn handle(&self) -> Option<Handle> {
        self.lock().running.as_ref().map(|r| r.handle.clone())
    }

    /// Runs `fut` on the iothread. Fails if the iothread was deleted.
    pub fn spawn<F>(&self, fut: F) -> Result<tokio::task::JoinHandle<F::Output>, QmpError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle()
            .map(|h| h.spawn(fut))
            .ok_or_else(|| QmpError::generic(format!("IOThread '{}' is not running", self.id)))
    }

    /// The kernel thread id of the iothread (what QEMU reports as
    /// `thread-id`), `None` once it was deleted.
    pub fn thread_id(&self) -> Option<i64> {
        self.lock().running.as_ref().map(|r| r.thread_id)
    }

    /// The polling tunables.
    pub fn poll_params(&self) -> PollParams {
        self.lock().poll
    }

    /// The event loop tunables.
    pub fn event_loop_params(&self) -> EventLoopParams {
        self.lock().base
    }

    /// Starts the thread and waits until its runtime is ready.
    fn start(&self) -> Result<Running, QmpError> {
        let max_blocking = usize::try_from(self.lock().base.thread_pool_max)
            .unwrap_or(1)
            .max(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("IO {}", self.id))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(max_blocking)
                    .build();
                match rt {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok((rt.handle().clone(), current_thread_id())));
                        // Runs the spawned tasks until the object is deleted
                        // (or the sender dropped); dropping the runtime then
                        // cancels what is left.
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| QmpError::generic(format!("Failed to create thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok((handle, thread_id))) => {
                tracing::debug!(id = %self.id, thread_id, "iothread started");
                Ok(Running {
                    handle,
                    thread_id,
                    stop,
                    thread,
                })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(QmpError::generic(format!(
                    "Failed to initialize event loop: {e}"
                )))
            }
            Err(_) => {
                let _ = thread.join();
                Err(QmpError::generic(
                    "Failed to initialize event loop: the thread exited",
                ))
            }
        }
    }

    /// Stops the thread (if running) and waits for it to end, unless called
    /// from the iothread itself.
    fn stop(&self) {
        let running = self.lock().running.take();
        if let Some(r) = running {
            let _ = r.stop.send(());
            if r.thread.thread().id() != std::thread::current().id() {
                let _ = r.thread.join();
            }
            tracing::debug!(id = %self.id, "iothread stopped");
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop();
    }
}

impl UserObject for IoThread {
    fn class(&self) -> &'static TypeInfo {
        self.class
    }

    fn get(&self, prop: &Prop) -> Result<Value, QmpError> {
        let st = self.lock();
        let v = match prop.name {
            "poll-max-ns" => st.poll.max_ns,
            "poll-grow" => st.poll.grow,
            "poll-shrink" => st.poll.shrink,
            name => st
                .base
                .get(name)
                .ok_or_else(|| unhandled(self.class, prop))?,
        };
        Ok(Value::from(v))
    }

    fn set(&self, prop: &Prop, value: &Value) -> Result<(), QmpError> {
        let v = visit_nonneg(prop.name, value)?;
        let mut st = self.lock();
        let field = match prop.name {
            "poll-max-ns" => &mut st.poll.max_ns,
            "poll-grow" => &mut st.poll.grow,
            "poll-shrink" => &mut st.poll.shrink,
            name => {
                let f = st
                    .base
                    .field_mut(name)
                    .ok_or_else(|| unhandled(self.class, prop))?;
                *f = v;
                // Applied (and so checked) only once the thread runs.
                return match st.running {
                    Some(_) => st.base.check_thread_pool(),
                    None => Ok(()),
                };
            }
        };
        *field = v;
        Ok(())
    }

    fn complete(&self, _reg: &Registry, _id: &str) -> Result<(), QmpError> {
        self.lock().base.check_thread_pool()?;
        let running = self.start()?;
        self.lock().running = Some(running);
        Ok(())
    }

    fn unparent(&self) {
        self.stop();
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::types;

    fn iothread(id: &str) -> IoThread {
        IoThread::new(types::lookup("iothread").unwrap(), id)
    }

    #[test]
    fn runs_tasks_on_its_own_thread_until_stopped() {
        let reg = Registry::new();
        let t = iothread("io0");
        t.complete(&reg, "io0").unwrap();
        let tid = t.thread_id().unwrap();
        assert_ne!(tid, current_thread_id());
        let (tx, rx) = std::sync::mpsc::channel();
        t.spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            tx.send((current_thread_id(), name)).unwrap();
        })
        .unwrap();
        let (ran_on, name) = rx.recv().unwrap();
        assert_eq!(ran_on, tid);
        assert_eq!(name.as_deref(), Some("IO io0"));
        t.unparent();
        assert!(t.handle().is_none());
        assert!(t.spawn(async {}).is_err());
    }

    #[test]
    fn thread_pool_checked_only_when_running() {
        let reg = Registry::new();
        let t = iothread("io1");
        let max = types::lookup("event-loop-base")
            .unwrap()
            .find_prop("thread-pool-max")
            .unwrap();
        t.set(max, &Value::from(0)).unwrap();
        assert_eq!(
            t.complete(&reg, "io1").unwrap_err().desc,
            "bad thread-pool-min/thread-pool-max values"
        );
        t.set(max, &Value::from(4)).unwrap();
        t.complete(&reg, "io1").unwrap();
        let err = t.set(max, &Value::from(0)).unwrap_err();
        assert_eq!(err.desc, "bad thread-pool-min/thread-pool-max values");
        // The value is kept even though applying it failed.
        assert_eq!(t.get(max).unwrap(), Value::from(0));
    }
}
