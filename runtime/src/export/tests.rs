//! In-process tests of the command-line API (`--nbd-server`, `--export`):
//! a server on a passed listening descriptor, an export of a null node,
//! and a raw client reading from it.

use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};

use qapi::types::{BlockExportOptions, BlockdevOptions, NbdServerOptions};
use qapi::visit::{from_value, Mode};
use serde_json::json;

use crate::daemon::Daemon;

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("qsd-nbd-{}-{tag}.sock", std::process::id()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn null_node(d: &Daemon) {
    let o: BlockdevOptions = from_value(
        &json!({"driver": "null-co", "node-name": "n", "size": 1 << 20, "read-zeroes": true}),
        Mode::Json,
    )
    .unwrap();
    crate::block::blockdev_add(d, o).unwrap();
}

/// Fixed-newstyle handshake with `NBD_OPT_GO` for `name`, then a READ of
/// 8 bytes at 0 with simple replies; returns the reply.
fn go_and_read(path: &std::path::Path, name: &str) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).unwrap();
    assert_eq!(&g[..8], b"NBDMAGIC");
    let mut m = 3u32.to_be_bytes().to_vec();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&7u32.to_be_bytes());
    m.extend_from_slice(&(4 + name.len() as u32 + 2).to_be_bytes());
    m.extend_from_slice(&(name.len() as u32).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m.extend_from_slice(&[0, 0]);
    s.write_all(&m).unwrap();
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        let typ = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut p = vec![0u8; len as usize];
        s.read_exact(&mut p).unwrap();
        assert_eq!(
            typ & 0x8000_0000,
            0,
            "option error {}",
            String::from_utf8_lossy(&p)
        );
        if typ == 1 {
            break;
        }
    }
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&9u64.to_be_bytes());
    r.extend_from_slice(&0u64.to_be_bytes());
    r.extend_from_slice(&8u32.to_be_bytes());
    s.write_all(&r).unwrap();
    let mut rep = vec![0u8; 24];
    s.read_exact(&mut rep).unwrap();
    rep
}

#[test]
fn cli_api_serves_a_passed_listening_socket() {
    let path = sock_path("fd");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let fd = l.into_raw_fd();
    rt().block_on(async {
        let d = Daemon::new();
        null_node(&d);
        let opts: NbdServerOptions = from_value(
            &json!({"addr": {"type": "fd", "str": fd.to_string()}, "max-connections": 4}),
            Mode::Json,
        )
        .unwrap();
        super::nbd::nbd_server_start(&d, opts).unwrap();
        let e: BlockExportOptions = from_value(
            &json!({"type": "nbd", "id": "e", "node-name": "n", "name": "x"}),
            Mode::Json,
        )
        .unwrap();
        super::block_export_add(&d, e).unwrap();
        let p = path.clone();
        let rep = tokio::task::spawn_blocking(move || go_and_read(&p, "x"))
            .await
            .unwrap();
        assert_eq!(&rep[..8], &[0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0]);
        assert_eq!(&rep[16..], &[0u8; 8]);
        assert_eq!(d.exports.nbd_server().unwrap().max_connections(), 4);
        let info = super::query_block_exports(&d).unwrap();
        assert_eq!(info.len(), 1);
        super::close_all(&d).await;
        assert!(d.exports.nbd_server().is_none());
        assert!(super::query_block_exports(&d).unwrap().is_empty());
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn cli_api_errors() {
    rt().block_on(async {
        let d = Daemon::new();
        let bad: NbdServerOptions =
            from_value(&json!({"addr": {"type": "fd", "str": "x"}}), Mode::Json).unwrap();
        let e = super::nbd::nbd_server_start(&d, bad).unwrap_err();
        assert_eq!(e.desc, "Unable to parse FD number x");
        let vs: NbdServerOptions = from_value(
            &json!({"addr": {"type": "vsock", "cid": "nope", "port": "1"}}),
            Mode::Json,
        )
        .unwrap();
        let e = super::nbd::nbd_server_start(&d, vs).unwrap_err();
        assert_eq!(e.desc, "Failed to parse cid 'nope'");
        let e: BlockExportOptions = from_value(
            &json!({"type": "nbd", "id": "e", "node-name": "n"}),
            Mode::Json,
        )
        .unwrap();
        let err = super::block_export_add(&d, e).unwrap_err();
        assert_eq!(err.desc, "Cannot find device='' nor node-name='n'");
    });
}
