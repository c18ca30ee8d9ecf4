//! The `qsd` binary: command line and start-up (TEMPORARY minimal version).

use qsd_runtime::chardev::{Chardev, SocketServer};
use qsd_runtime::qmp::{spawn_monitor, MonitorOptions};
use qsd_runtime::Daemon;
use std::sync::Arc;

fn kv(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (String::new(), p.to_string()),
        })
        .collect()
}

fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
    v.iter().find(|(a, _)| a == k).map(|(_, b)| b.as_str())
}

/// Runs the daemon with command line `args`; returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qsd: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let daemon = Daemon::new();
        let mut it = args.into_iter().skip(1);
        while let Some(opt) = it.next() {
            let Some(val) = it.next() else {
                eprintln!("qsd: option '{opt}' needs an argument");
                return 1;
            };
            match opt.as_str() {
                "--chardev" => {
                    let o = kv(&val);
                    let id = get(&o, "id").unwrap_or("").to_string();
                    let server = if let Some(p) = get(&o, "path") {
                        SocketServer::bind_unix(p)
                    } else {
                        SocketServer::bind_tcp(get(&o, "host").unwrap_or(""), get(&o, "port").unwrap_or("0")).await
                    };
                    let server = match server {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("qsd: --chardev {val}: {e}");
                            return 1;
                        }
                    };
                    let backend: qapi::types::ChardevBackend = match serde_json::from_value(serde_json::json!({
                        "type": "socket", "data": {"addr": {"type": "unix", "data": {"path": get(&o, "path").unwrap_or("")}}}
                    })) {
                        Ok(b) => b,
                        Err(e) => {
                            eprintln!("qsd: {e}");
                            return 1;
                        }
                    };
                    if let Err(e) = daemon.chardevs.insert(Arc::new(Chardev::new(id, backend, server.serve()))) {
                        eprintln!("qsd: --chardev {val}: {e}");
                        return 1;
                    }
                }
                "--monitor" => {
                    let o = kv(&val);
                    let id = get(&o, "chardev").unwrap_or("");
                    let Some(dev) = daemon.chardevs.get(id) else {
                        eprintln!("qsd: --monitor {val}: chardev \"{id}\" not found");
                        return 1;
                    };
                    let conns = match dev.attach() {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("qsd: --monitor {val}: {e}");
                            return 1;
                        }
                    };
                    spawn_monitor(daemon.clone(), conns, MonitorOptions { pretty: get(&o, "pretty") == Some("on") });
                }
                _ => {
                    eprintln!("qsd: unknown option '{opt}'");
                    return 1;
                }
            }
        }
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return 1,
        };
        tokio::select! {
            _ = daemon.wait_quit() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        daemon.request_quit();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        0
    })
}
