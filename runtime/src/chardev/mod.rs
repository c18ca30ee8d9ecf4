//! Character devices: byte-stream endpoints that frontends (QMP monitors)
//! run on.
//!
//! A chardev delivers client connections to its frontend as [`CharConn`]s,
//! one at a time: a server socket accepts the next client only after the
//! previous connection is closed, as QEMU's socket chardev does.

pub mod qmp;
mod socket;

use std::sync::{Arc, Mutex};

use qapi::types::ChardevBackend;
use qapi::QmpError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub use socket::SocketServer;

/// One client connection of a chardev. Dropping it (with `closed`) lets the
/// chardev accept the next client.
pub struct CharConn {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub closed: oneshot::Sender<()>,
}

/// A configured chardev.
pub struct Chardev {
    pub id: String,
    pub backend: ChardevBackend,
    /// Connections for the frontend; taken when a frontend attaches.
    conns: Mutex<Option<mpsc::Receiver<CharConn>>>,
}

impl Chardev {
    pub fn new(id: String, backend: ChardevBackend, conns: mpsc::Receiver<CharConn>) -> Chardev {
        Chardev {
            id,
            backend,
            conns: Mutex::new(Some(conns)),
        }
    }

    /// Attaches a frontend, which then receives the client connections.
    pub fn attach(&self) -> Result<mpsc::Receiver<CharConn>, QmpError> {
        self.conns
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .ok_or_else(|| QmpError::generic(format!("Device '{}' is in use", self.id)))
    }
}

/// All chardevs, by id.
#[derive(Default)]
pub struct Registry {
    devs: Mutex<Vec<Arc<Chardev>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Chardev>> {
        self.devs.lock().ok()?.iter().find(|c| c.id == id).cloned()
    }

    pub fn insert(&self, dev: Arc<Chardev>) -> Result<(), QmpError> {
        let mut devs = self
            .devs
            .lock()
            .map_err(|_| QmpError::generic("chardev registry poisoned"))?;
        if devs.iter().any(|c| c.id == dev.id) {
            return Err(QmpError::generic(format!(
                "attempt to add duplicate property '{}' to object (type 'container')",
                dev.id
            )));
        }
        devs.push(dev);
        Ok(())
    }

    pub fn list(&self) -> Vec<Arc<Chardev>> {
        self.devs.lock().map(|d| d.clone()).unwrap_or_default()
    }
}
