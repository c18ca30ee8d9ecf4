//! The daemon's shared state: what every command and monitor can reach.
//!
//! Commands run one at a time, like QEMU's main loop: a monitor takes
//! [`Daemon::command_lock`] around each in-band command, so handlers see a
//! consistent state without further coordination. Short-lived
//! `std::sync::Mutex`es protect the registries; none is held across an
//! `.await`.

mod commands;

use std::sync::{Arc, Weak};

use qapi::events::Event;

use crate::block;
use crate::chardev;
use crate::export;
use crate::jobs;
use crate::objects;
use crate::qmp::EventBus;

/// The QEMU version whose interface we implement (reported by the greeting
/// and `query-version`).
pub const QEMU_VERSION: (i64, i64, i64) = (10, 0, 2);

/// Our package string, reported where QEMU reports its distribution package.
pub const PACKAGE: &str = concat!("qsd ", env!("CARGO_PKG_VERSION"));

/// A handle on the daemon; cheap to clone.
#[derive(Clone)]
pub struct Daemon(Arc<Inner>);

pub struct Inner {
    pub events: EventBus,
    pub chardevs: chardev::Registry,
    pub objects: objects::Registry,
    pub jobs: jobs::Registry,
    /// The block graph (nodes, their users, permissions).
    pub block: block::BlockGraph,
    /// Block exports (NBD, vhost-user-blk, FUSE) and the NBD server.
    pub exports: export::Exports,
    /// Serializes in-band commands (QEMU's big lock).
    pub command_lock: tokio::sync::Mutex<()>,
    quit: tokio::sync::watch::Sender<bool>,
}

/// A [`Daemon`] handle that does not keep it alive.
#[derive(Clone, Default)]
pub struct WeakDaemon(Weak<Inner>);

impl WeakDaemon {
    /// The daemon, if it still exists.
    pub fn upgrade(&self) -> Option<Daemon> {
        self.0.upgrade().map(Daemon)
    }
}

impl std::ops::Deref for Daemon {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Default for Daemon {
    fn default() -> Self {
        Self::new()
    }
}

impl Daemon {
    pub fn new() -> Daemon {
        let (quit, _) = tokio::sync::watch::channel(false);
        Daemon(Arc::new_cyclic(|me: &std::sync::Weak<Inner>| {
            let me = me.clone();
            // Nodes send events (BLOCK_WRITE_THRESHOLD) through the bus.
            let sink: block::node::EventSink = Arc::new(move |ev| {
                if let Some(inner) = me.upgrade() {
                    inner.events.emit(ev);
                }
            });
            Inner {
                events: EventBus::default(),
                chardevs: chardev::Registry::default(),
                objects: objects::Registry::new(),
                jobs: jobs::Registry::default(),
                block: block::BlockGraph::new(sink),
                exports: export::Exports::default(),
                command_lock: tokio::sync::Mutex::new(()),
                quit,
            }
        }))
    }

    /// A handle that does not keep the daemon alive (for wakers and
    /// timers that may outlive it).
    pub fn downgrade(&self) -> WeakDaemon {
        WeakDaemon(Arc::downgrade(&self.0))
    }

    /// Sends `event` to every monitor that finished negotiation.
    pub fn emit(&self, event: Event) {
        self.events.emit(event);
    }

    /// Asks the daemon to shut down (the `quit` command, a signal).
    pub fn request_quit(&self) {
        self.quit.send_replace(true);
    }

    /// Whether shutdown was requested.
    pub fn quitting(&self) -> bool {
        *self.quit.borrow()
    }

    /// Waits until shutdown is requested.
    pub async fn wait_quit(&self) {
        let mut rx = self.quit.subscribe();
        // An error means the sender is gone, which only happens at exit.
        let _ = rx.wait_for(|q| *q).await;
    }
}
