//! The `event-loop-base` properties shared by `iothread` and `main-loop`,
//! and the `main-loop` object.
//!
//! Every setter stores the new value first and then applies the whole set
//! of parameters to the event loop; if applying fails the error is reported
//! but the value stays, as in QEMU (a failed `qom-set` of `thread-pool-max`
//! still changes what `qom-get` returns).

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

use qapi::visit::{Mode, Path};
use qapi::QmpError;
use serde_json::Value;

use super::types::{Prop, TypeInfo};
use super::{unhandled, Registry, UserObject};

/// Default maximum number of worker threads of an event loop's pool.
pub const THREAD_POOL_MAX_DEFAULT: i64 = 64;

/// The tunables of an event loop (`event-loop-base` properties).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLoopParams {
    /// Maximum number of requests submitted in one batch (0: the engine's
    /// default).
    pub aio_max_batch: i64,
    /// Minimum number of worker threads kept in the pool.
    pub thread_pool_min: i64,
    /// Maximum number of worker threads in the pool.
    pub thread_pool_max: i64,
}

impl Default for EventLoopParams {
    fn default() -> Self {
        EventLoopParams {
            aio_max_batch: 0,
            thread_pool_min: 0,
            thread_pool_max: THREAD_POOL_MAX_DEFAULT,
        }
    }
}

impl EventLoopParams {
    /// The value of property `name`, if it is one of ours.
    pub(crate) fn get(&self, name: &str) -> Option<i64> {
        match name {
            "aio-max-batch" => Some(self.aio_max_batch),
            "thread-pool-min" => Some(self.thread_pool_min),
            "thread-pool-max" => Some(self.thread_pool_max),
            _ => None,
        }
    }

    /// The field behind property `name`, if it is one of ours.
    pub(crate) fn field_mut(&mut self, name: &str) -> Option<&mut i64> {
        match name {
            "aio-max-batch" => Some(&mut self.aio_max_batch),
            "thread-pool-min" => Some(&mut self.thread_pool_min),
            "thread-pool-max" => Some(&mut self.thread_pool_max),
            _ => None,
        }
    }

    /// The check QEMU makes when it applies thread pool sizes to an event
    /// loop.
    pub fn check_thread_pool(&self) -> Result<(), QmpError> {
        let int_max = i64::from(i32::MAX);
        let (min, max) = (self.thread_pool_min, self.thread_pool_max);
        if min > max || max <= 0 || min > int_max || max > int_max {
            return Err(QmpError::generic(
                "bad thread-pool-min/thread-pool-max values",
            ));
        }
        Ok(())
    }
}

/// Reads the value of an integer event loop property, which must not be
/// negative.
pub(crate) fn visit_nonneg(name: &str, value: &Value) -> Result<i64, QmpError> {
    let root = Path::root(Mode::Json);
    let v = qapi::visit::int64(value, &root.member(name))?;
    if v < 0 {
        return Err(QmpError::generic(format!(
            "{name} value must be in range [0, {}]",
            i64::MAX
        )));
    }
    Ok(v)
}

/// The `main-loop` object: the tunables of the daemon's main event loop.
/// At most one can exist, and it cannot be deleted.
pub struct MainLoop {
    class: &'static TypeInfo,
    params: Mutex<EventLoopParams>,
}

impl MainLoop {
    pub(crate) fn new(class: &'static TypeInfo) -> MainLoop {
        MainLoop {
            class,
            params: Mutex::new(EventLoopParams::default()),
        }
    }

    /// The current parameters.
    pub fn params(&self) -> EventLoopParams {
        *self.params.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UserObject for MainLoop {
    fn class(&self) -> &'static TypeInfo {
        self.class
    }

    fn get(&self, prop: &Prop) -> Result<Value, QmpError> {
        self.params()
            .get(prop.name)
            .map(Value::from)
            .ok_or_else(|| unhandled(self.class, prop))
    }

    fn set(&self, prop: &Prop, value: &Value) -> Result<(), QmpError> {
        let v = visit_nonneg(prop.name, value)?;
        let mut params = self.params.lock().unwrap_or_else(PoisonError::into_inner);
        let field = params
            .field_mut(prop.name)
            .ok_or_else(|| unhandled(self.class, prop))?;
        *field = v;
        // The main loop always exists, so the new values apply at once.
        params.check_thread_pool()
    }

    fn complete(&self, reg: &Registry, _id: &str) -> Result<(), QmpError> {
        if !reg.claim_main_loop() {
            return Err(QmpError::generic("only one main-loop instance allowed"));
        }
        // Every setter already checked the parameters, so this cannot fail
        // in practice; QEMU keeps the claim either way.
        self.params().check_thread_pool()
    }

    fn can_be_deleted(&self) -> bool {
        false
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
