//! A QMP monitor on a chardev: one session per client connection.

use std::sync::Mutex;
use std::time::Duration;

use qapi::json::{to_json, JsonStreamParser};
use qapi::types::QMPCapability;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::request::{error_reply, handle_request_locked};
use super::CommandContext;
use crate::chardev::CharConn;
use crate::daemon::{Daemon, PACKAGE, QEMU_VERSION};

/// `--monitor` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorOptions {
    /// Indent replies (`pretty=on`).
    pub pretty: bool,
}

/// Serves QMP on every connection `conns` yields, one after the other, until
/// the daemon quits.
pub fn spawn_monitor(
    daemon: Daemon,
    mut conns: mpsc::Receiver<CharConn>,
    opts: MonitorOptions,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = conns.recv() => c,
                _ = daemon.wait_quit() => None,
            };
            let Some(conn) = conn else { break };
            serve(&daemon, conn, opts).await;
        }
    })
}

fn greeting(caps: &[QMPCapability]) -> Value {
    let (major, minor, micro) = QEMU_VERSION;
    let caps: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
    json!({
        "QMP": {
            "version": {
                "qemu": { "major": major, "minor": minor, "micro": micro },
                "package": PACKAGE,
            },
            "capabilities": caps,
        }
    })
}

/// The bytes of one message: QEMU's JSON, every newline sent as CRLF.
fn encode(v: &Value, pretty: bool) -> Vec<u8> {
    let mut text = to_json(v, pretty);
    if pretty {
        text = text.replace('\n', "\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

async fn serve(daemon: &Daemon, conn: CharConn, opts: MonitorOptions) {
    let CharConn {
        mut reader,
        mut writer,
        closed,
    } = conn;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    // The writer drains the queue in order; it ends when every sender is
    // gone (then all queued output has been written) or the peer vanishes.
    let pretty = opts.pretty;
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.write_all(&encode(&msg, pretty)).await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    });
    let offered = vec![QMPCapability::Oob];
    let _ = tx.send(greeting(&offered));
    let mut negotiating = true;
    let mut oob_enabled = false;
    let mut subscription = None;
    let mut parser = JsonStreamParser::new();
    let mut buf = vec![0u8; 64 * 1024];
    'conn: loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = daemon.wait_quit() => break,
        };
        for parsed in parser.feed(&buf[..n]) {
            // Held until the reply is queued (see `handle_request_locked`).
            let mut _big_lock = None;
            let reply = match parsed {
                Err(e) => Some(error_reply(&qapi::QmpError::generic(e.to_string()), None)),
                Ok(req) => {
                    let cx = CommandContext {
                        negotiating,
                        offered: offered.clone(),
                        accepted: Mutex::new(None),
                    };
                    let (reply, guard) = handle_request_locked(daemon, req, &cx, oob_enabled).await;
                    _big_lock = guard;
                    if let Some(caps) = cx.accepted.lock().ok().and_then(|mut a| a.take()) {
                        negotiating = false;
                        oob_enabled = caps.contains(&QMPCapability::Oob);
                        if let Some(r) = &reply {
                            let _ = tx.send(r.clone());
                        }
                        subscription = Some(daemon.events.subscribe(tx.clone()));
                        continue;
                    }
                    reply
                }
            };
            if let Some(r) = reply {
                if tx.send(r).is_err() {
                    break 'conn;
                }
            }
            if daemon.quitting() {
                break 'conn;
            }
        }
    }
    debug!("monitor connection closed");
    drop(subscription);
    drop(tx);
    // Let queued replies (such as the reply to `quit`) reach the client.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    drop(closed);
}
