//! One virtqueue at work: a task on the export's runtime (the main loop's
//! or the iothread's) that waits for kicks, takes requests from the
//! available ring and runs many of them at once, then puts them in the
//! used ring and notifies the frontend once per batch of completions
//! (respecting `EVENT_IDX`). Queues are independent tasks, so they never
//! wait for each other.
//!
//! At most queue-size requests are in flight; past that the queue stops
//! taking new ones until some complete. A ring the guest corrupted (an
//! available index running ahead by more than the queue size, a head
//! outside the table, a used ring outside memory) stops the queue until
//! the frontend resets it, as QEMU's `vu_panic` does; a malformed chain
//! behind a valid head completes with used length 0 and touches nothing.

use std::fs::File;
use std::num::Wrapping;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tracing::{debug, warn};
use vhost_user_backend::{VringMutex, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use super::chain;
use super::inflight::QueueTrack;
use super::request::{self, Disk};

/// Guest memory as the export maps it.
pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;
/// The state of one vring.
pub type Vring = VringMutex<Mem>;

/// Requests moving at least this many bytes run as tasks of their own.
const SPAWN_BYTES: u64 = 64 * 1024;

type ReqFuture = Pin<Box<dyn std::future::Future<Output = (u16, u32)> + Send>>;

/// What a queue task needs.
pub struct QueueParams {
    pub index: u16,
    pub vring: Vring,
    pub mem: Mem,
    pub disk: Arc<Disk>,
    /// A duplicate of the kick eventfd.
    pub kick: OwnedFd,
    pub track: Option<QueueTrack>,
}

/// A running queue task; [`QueueHandle::stop`] waits until it has
/// completed every request it had taken.
pub struct QueueHandle {
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl QueueHandle {
    /// Starts the queue on `rt`.
    pub fn start(rt: &tokio::runtime::Handle, p: QueueParams) -> QueueHandle {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let index = p.index;
            if let Err(e) = Runner::new(p).run(stop_rx).await {
                warn!("vhost-user-blk queue {index}: {e}");
            }
            let _ = done_tx.send(());
        });
        QueueHandle {
            stop: Some(stop_tx),
            done: done_rx,
        }
    }

    /// Stops taking requests, waits for those in flight to complete (they
    /// are put in the used ring) and for the task to end. Called from a
    /// thread that is not a runtime worker.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // An error means the task is gone (runtime shut down).
        let _ = self.done.recv();
    }
}

struct Runner {
    p: QueueParams,
    pending: FuturesUnordered<ReqFuture>,
    /// Chains completed without running (malformed).
    ready: Vec<(u16, u32)>,
    /// The ring is unusable until the frontend resets it.
    broken: bool,
    /// Stopped taking requests at the in-flight limit.
    throttled: bool,
    size: u16,
}

impl Runner {
    fn new(p: QueueParams) -> Runner {
        let size = p.vring.get_ref().get_queue().size();
        Runner {
            p,
            pending: FuturesUnordered::new(),
            ready: Vec::new(),
            broken: false,
            throttled: false,
            size,
        }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> std::io::Result<()> {
        let kick = File::from(self.p.kick.try_clone()?);
        // SAFETY: the AsyncFd owns the File, so the descriptor stays open
        // and the same for the AsyncFd's life.
        let kick = unsafe { AsyncFd::register(kick) }.map_err(|e| e.into_parts().1)?;
        self.resubmit();
        self.take_available();
        self.complete_ready();
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    self.complete(done);
                    while let Some(Some(done)) = self.pending.next().now_or_never() {
                        self.complete(done);
                    }
                    self.notify();
                    // Room again after hitting the limit.
                    if self.throttled {
                        self.take_available();
                        self.complete_ready();
                    }
                }
                r = kick.readable() => {
                    // Should the eventfd fail, stop taking requests but
                    // still complete those in flight.
                    let Ok(mut guard) = r else { break };
                    let mut cnt = [0u8; 8];
                    // Drain the eventfd; WouldBlock clears the readiness.
                    let _ = guard.try_io(|f| {
                        use std::io::Read;
                        f.get_ref().read(&mut cnt)
                    });
                    self.take_available();
                    self.complete_ready();
                }
            }
        }
        while let Some(done) = self.pending.next().await {
            self.complete(done);
        }
        self.notify();
        debug!("vhost-user-blk queue {} stopped", self.p.index);
        Ok(())
    }

    /// Runs again what the inflight area says was in flight.
    fn resubmit(&mut self) {
        let used = {
            let st = self.p.vring.get_ref();
            let mem = self.p.mem.memory();
            st.get_queue().used_idx(mem.deref(), Ordering::Acquire)
        };
        let Ok(used) = used else {
            self.broken = true;
            return;
        };
        let Some(track) = self.p.track.as_mut() else {
            return;
        };
        let heads = track.recover(used.0);
        if heads.is_empty() {
            return;
        }
        debug!(
            "vhost-user-blk queue {}: resubmitting {} requests",
            self.p.index,
            heads.len()
        );
        // The frontend's idea of the next available index may be stale:
        // everything before used + in flight was taken.
        let next = used + Wrapping(heads.len() as u16);
        self.p.vring.set_queue_next_avail(next.0);
        for h in heads {
            self.start_request(h);
        }
    }

    /// Takes every available request (until the in-flight limit).
    fn take_available(&mut self) {
        if self.broken {
            return;
        }
        let mem = self.p.mem.memory().into_inner();
        let _ = self.p.vring.disable_notification();
        self.throttled = false;
        loop {
            if self.pending.len() >= usize::from(self.size) {
                self.throttled = true;
                return;
            }
            let head = {
                let mut st = self.p.vring.get_mut();
                let q = st.get_queue_mut();
                let avail = match q.avail_idx(mem.deref(), Ordering::Acquire) {
                    Ok(a) => a,
                    Err(e) => {
                        drop(st);
                        self.broken(format_args!("available ring unreadable: {e}"));
                        return;
                    }
                };
                let next = Wrapping(q.next_avail());
                if avail == next {
                    None
                } else if (avail - next).0 > self.size {
                    drop(st);
                    self.broken(format_args!("available index {} runs ahead", avail.0));
                    return;
                } else {
                    match q.pop_descriptor_chain(mem.deref()) {
                        Some(c) => Some(c.head_index()),
                        None => {
                            // Available but unreadable: do not spin on it.
                            drop(st);
                            self.broken(format_args!("available ring entry unreadable"));
                            return;
                        }
                    }
                }
            };
            match head {
                Some(h) => {
                    if let Some(t) = self.p.track.as_mut() {
                        t.start(h);
                    }
                    self.start_request_in(h, &mem);
                }
                None => match self.p.vring.enable_notification() {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(e) => {
                        self.broken(format_args!("cannot enable notifications: {e}"));
                        return;
                    }
                },
            }
        }
    }

    fn start_request(&mut self, head: u16) {
        let mem = self.p.mem.memory().into_inner();
        self.start_request_in(head, &mem);
    }

    fn start_request_in(&mut self, head: u16, mem: &Arc<GuestMemoryMmap>) {
        let table = GuestAddress(self.p.vring.get_ref().get_queue().desc_table());
        match chain::walk(mem.deref(), table, self.size, head) {
            Ok(c) => {
                let big =
                    chain::total_len(&c.readable) + chain::total_len(&c.writable) >= SPAWN_BYTES;
                let disk = self.p.disk.clone();
                let mem = mem.clone();
                let fut = async move {
                    let used = request::process(&disk, mem.deref(), c).await;
                    (head, used)
                };
                if big {
                    // Copying a large request in and out of guest memory
                    // takes a while: let another worker thread do it
                    // while this one goes on with the queue.
                    let task = tokio::spawn(fut);
                    self.pending
                        .push(Box::pin(async move { task.await.unwrap_or((head, 0)) }));
                } else {
                    self.pending.push(Box::pin(fut));
                }
            }
            Err(e) if head < self.size => {
                debug!("vhost-user-blk queue {}: head {head}: {e}", self.p.index);
                self.ready.push((head, 0));
            }
            Err(e) => self.broken(format_args!("{e}")),
        }
    }

    fn broken(&mut self, why: std::fmt::Arguments<'_>) {
        if !self.broken {
            warn!(
                "vhost-user-blk queue {}: {why}; stopped until reset",
                self.p.index
            );
        }
        self.broken = true;
    }

    fn complete_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        for d in std::mem::take(&mut self.ready) {
            self.complete(d);
        }
        self.notify();
    }

    fn complete(&mut self, (head, len): (u16, u32)) {
        if let Some(t) = &self.p.track {
            t.before_used(head);
        }
        if let Err(e) = self.p.vring.add_used(head, len) {
            self.broken(format_args!("cannot use head {head}: {e}"));
            return;
        }
        if let Some(t) = &self.p.track {
            let used = self.p.vring.get_ref().get_queue().next_used();
            t.after_used(head, used);
        }
    }

    fn notify(&mut self) {
        match self.p.vring.needs_notification() {
            Ok(true) => {
                if let Err(e) = self.p.vring.signal_used_queue() {
                    debug!("vhost-user-blk queue {}: notify: {e}", self.p.index);
                }
            }
            Ok(false) => {}
            Err(e) => self.broken(format_args!("used ring: {e}")),
        }
    }
}
