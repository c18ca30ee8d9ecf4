//! SIGINT, SIGTERM and SIGHUP end the daemon cleanly, like the `quit`
//! command: monitors close, UNIX sockets and the pid file are removed, and
//! the exit status is 0 (QSD's).
//!
//! The handlers are installed before the options are applied; a signal that
//! arrives during start-up is remembered and ends the daemon as soon as
//! start-up is complete, as in QSD (which checks its exit flag only once its
//! main loop runs).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The termination signals, listened to from creation on.
pub struct TermSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl TermSignals {
    /// Installs the handlers (inside the tokio runtime).
    pub fn install() -> std::io::Result<TermSignals> {
        Ok(TermSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for one of the signals; returns its name for the trace.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
