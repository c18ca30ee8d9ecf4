//! Range locks over guest clusters. Writes into clusters that are already
//! allocated take them shared; anything that changes a cluster's mapping
//! (allocation, copy-on-write, zeroing, discard) takes them exclusive, so
//! a cluster is never freed or remapped under an in-flight write. Reads
//! take no lock.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

struct Held {
    id: u64,
    start: u64,
    end: u64,
    exclusive: bool,
}

#[derive(Default)]
struct State {
    held: Vec<Held>,
    next: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct RangeLocks {
    st: Mutex<State>,
    notify: Notify,
}

/// A held range; released on drop.
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl RangeLocks {
    /// Locks guest clusters `[start, end)` (cluster indexes).
    pub async fn lock(&self, start: u64, end: u64, exclusive: bool) -> RangeGuard<'_> {
        loop {
            // Registered before the check: a release after it wakes us.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.st.lock().unwrap_or_else(PoisonError::into_inner);
                let busy = st
                    .held
                    .iter()
                    .any(|h| h.start < end && start < h.end && (exclusive || h.exclusive));
                if !busy {
                    st.next += 1;
                    let id = st.next;
                    st.held.push(Held {
                        id,
                        start,
                        end,
                        exclusive,
                    });
                    return RangeGuard { locks: self, id };
                }
            }
            notified.await;
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.locks.st.lock().unwrap_or_else(PoisonError::into_inner);
        st.held.retain(|h| h.id != self.id);
        drop(st);
        self.locks.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn shared_and_exclusive() {
        let l = Arc::new(RangeLocks::default());
        let a = l.lock(0, 4, false).await;
        let _b = l.lock(2, 6, false).await;
        let l2 = l.clone();
        let t = tokio::spawn(async move {
            let _c = l2.lock(3, 4, true).await;
        });
        tokio::task::yield_now().await;
        assert!(!t.is_finished());
        drop(a);
        drop(_b);
        t.await.unwrap();
        let _d = l.lock(0, 1, true).await;
        let _e = l.lock(1, 2, true).await;
    }
}
