//! Threads that run NBD connections.
//!
//! Each worker is a thread with its own single-threaded tokio runtime;
//! a new connection goes to the worker with the fewest connections and
//! stays there. A connection's task then waits in its own thread's
//! `epoll_wait` and is woken there directly: at queue depth 1 this saves
//! the hand-over between the worker threads of the shared multi-threaded
//! runtime, which otherwise costs more than the request itself. There are
//! as many workers as CPUs; they are started on first use.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;

struct Worker {
    handle: Handle,
    load: Arc<AtomicUsize>,
}

static WORKERS: OnceLock<Vec<Worker>> = OnceLock::new();

fn start_worker(i: usize) -> Option<Worker> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("nbd-worker-{i}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!("NBD worker runtime: {e}");
                    return;
                }
            };
            if tx.send(rt.handle().clone()).is_err() {
                return;
            }
            rt.block_on(std::future::pending::<()>());
        });
    if let Err(e) = spawned {
        tracing::warn!("NBD worker thread: {e}");
        return None;
    }
    rx.recv().ok().map(|handle| Worker {
        handle,
        load: Arc::new(AtomicUsize::new(0)),
    })
}

fn workers() -> &'static [Worker] {
    WORKERS.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 16);
        (0..n).filter_map(start_worker).collect()
    })
}

/// Decrements a worker's connection count when the connection ends.
struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `fut` (one connection) on the least loaded worker; on the current
/// runtime if no worker could be started.
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let Some(w) = workers()
        .iter()
        .min_by_key(|w| w.load.load(Ordering::Relaxed))
    else {
        tokio::spawn(fut);
        return;
    };
    w.load.fetch_add(1, Ordering::Relaxed);
    let load = Load(w.load.clone());
    w.handle.spawn(async move {
        let _load = load;
        fut.await;
    });
}
