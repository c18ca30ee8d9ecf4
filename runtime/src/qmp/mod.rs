//! The QMP monitor.
//!
//! A monitor runs on a chardev. For every client connection it sends the
//! greeting, reads JSON with QEMU's stream parser, checks each request as
//! QEMU does ([`request`]), runs it through the generated dispatcher and
//! writes the reply; after capabilities negotiation it also receives events
//! ([`EventBus`]). Replies and events of one connection go through one
//! ordered queue, so an event emitted while a command runs is written before
//! that command's reply, as QEMU does.

mod monitor;
mod request;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use qapi::events::Event;
use qapi::types::{QMPCapability, QmpCapabilitiesArgs};
use qapi::{ErrorClass, QmpError};
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

pub use monitor::{spawn_monitor, MonitorOptions};
pub use request::handle_request;

/// What a command handler may know about the monitor session that sent it.
pub struct CommandContext {
    /// The session is still in capabilities negotiation mode.
    pub negotiating: bool,
    /// Capabilities the monitor offered in its greeting.
    pub offered: Vec<QMPCapability>,
    /// Set by a successful `qmp_capabilities`: the capabilities to enable.
    pub accepted: Mutex<Option<Vec<QMPCapability>>>,
}

/// `qmp_capabilities`: leaves negotiation mode, enabling the requested
/// capabilities.
pub fn negotiate(cx: &CommandContext, args: QmpCapabilitiesArgs) -> Result<(), QmpError> {
    if !cx.negotiating {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            "Capabilities negotiation is already complete, command ignored",
        ));
    }
    let enable = args.enable.unwrap_or_default();
    for cap in &enable {
        if !cx.offered.contains(cap) {
            return Err(QmpError::generic(format!(
                "Capability '{}' not available",
                cap.as_str()
            )));
        }
    }
    if let Ok(mut a) = cx.accepted.lock() {
        *a = Some(enable);
    }
    Ok(())
}

/// Delivers events to every monitor connection out of negotiation mode.
#[derive(Default)]
pub struct EventBus {
    next: AtomicU64,
    subscribers: Mutex<Vec<(u64, UnboundedSender<Value>)>>,
    /// Set when any subscriber exists, to skip building unwanted events.
    any: AtomicBool,
}

/// A registration on the [`EventBus`]; unregisters when dropped.
pub struct Subscription<'a> {
    bus: &'a EventBus,
    id: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.bus.subscribers.lock() {
            subs.retain(|(id, _)| *id != self.id);
            self.bus.any.store(!subs.is_empty(), Ordering::Release);
        }
    }
}

impl EventBus {
    /// Starts delivering events to `tx`.
    pub fn subscribe(&self, tx: UnboundedSender<Value>) -> Subscription<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push((id, tx));
            self.any.store(true, Ordering::Release);
        }
        Subscription { bus: self, id }
    }

    /// Sends `event`, stamped with the current time, to every subscriber.
    pub fn emit(&self, event: Event) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let msg = event_message(&event, SystemTime::now());
        if let Ok(subs) = self.subscribers.lock() {
            for (_, tx) in subs.iter() {
                // A closed receiver is a connection going away; it
                // unsubscribes itself.
                let _ = tx.send(msg.clone());
            }
        }
    }
}

/// The wire form of an event: timestamp, name, data (in QEMU's insertion
/// order).
pub fn event_message(event: &Event, at: SystemTime) -> Value {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Map::new();
    ts.insert("seconds".into(), Value::from(since.as_secs()));
    ts.insert("microseconds".into(), Value::from(since.subsec_micros()));
    let mut m = Map::new();
    m.insert("timestamp".into(), Value::Object(ts));
    m.insert("event".into(), Value::from(event.name()));
    if let Some(data) = event.data() {
        m.insert("data".into(), data);
    }
    Value::Object(m)
}
