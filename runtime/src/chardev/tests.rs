//! Chardevs created through the command-line API, with a QMP monitor on
//! them where that shows QSD's behaviour.

use std::time::Duration;

use super::*;
use crate::qmp::{spawn_monitor, MonitorOptions};

fn opts(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .enumerate()
        .map(|(i, p)| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if i == 0 => ("backend".to_string(), p.to_string()),
            None => (p.to_string(), "on".to_string()),
        })
        .collect()
}

fn cli(d: &Daemon, s: &str) -> Result<(), String> {
    let (id, backend) = cli::parse_cli_chardev(&opts(s))?;
    create(d, id, backend, true).map_err(|e| e.desc)
}

fn monitor(d: &Daemon, id: &str) {
    let conns = d.chardevs.get(id).unwrap().attach().unwrap();
    spawn_monitor(d.clone(), conns, MonitorOptions::default());
}

fn greeting(caps: &str) -> String {
    format!(
        "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 2, \"minor\": 0, \"major\": 10}}, \
         \"package\": \"{}\"}}, \"capabilities\": [{caps}]}}}}\r\n",
        crate::daemon::PACKAGE
    )
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "qsd-chardev-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_greeting_lands_in_a_ringbuf_without_oob() {
    let d = Daemon::new();
    cli(&d, "ringbuf,id=r").unwrap();
    monitor(&d, "r");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = qmp::ringbuf_read(
        &d,
        qapi::types::RingbufReadArgs {
            device: "r".into(),
            size: 1000,
            format: None,
        },
    )
    .unwrap();
    assert_eq!(text, greeting(""));
    assert!(d.chardevs.get("r").unwrap().has_frontend());
    // Busy while the monitor uses it.
    let e = qmp::chardev_remove(&d, qapi::types::ChardevRemoveArgs { id: "r".into() }).unwrap_err();
    assert_eq!(e.desc, "Chardev 'r' is busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_monitor_answers_its_input_file() {
    let d = Daemon::new();
    let dir = tempdir();
    let input = dir.join("in");
    let out = dir.join("out");
    std::fs::write(
        &input,
        "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-chardev\"}\n",
    )
    .unwrap();
    cli(
        &d,
        &format!(
            "file,id=f,path={},input-path={}",
            out.display(),
            input.display()
        ),
    )
    .unwrap();
    monitor(&d, "f");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        got,
        format!(
            "{}{{\"return\": {{}}}}\r\n{{\"return\": [{{\"frontend-open\": true, \"filename\": \
             \"file\", \"label\": \"f\"}}]}}\r\n",
            greeting("\"oob\"")
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logfile_records_frontend_output() {
    let d = Daemon::new();
    let dir = tempdir();
    let l1 = dir.join("l1");
    let l2 = dir.join("l2");
    cli(&d, &format!("null,id=n,logfile={}", l1.display())).unwrap();
    cli(&d, &format!("ringbuf,id=r,logfile={}", l2.display())).unwrap();
    monitor(&d, "n");
    monitor(&d, "r");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A null chardev is never opened, so its monitor writes nothing.
    assert_eq!(std::fs::read_to_string(&l1).unwrap(), "");
    assert_eq!(std::fs::read_to_string(&l2).unwrap(), greeting(""));
    let e = cli(&d, "null,id=x,logfile=/nonexistent/l").unwrap_err();
    assert_eq!(
        e,
        "Could not create '/nonexistent/l': No such file or directory"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_on_the_command_line() {
    let d = Daemon::new();
    let dir = tempdir();
    cli(&d, "null,id=a").unwrap();
    assert_eq!(
        cli(&d, "null,id=a").unwrap_err(),
        "attempt to add duplicate property 'a' to object (type 'container')"
    );
    let p = dir.join("s");
    cli(
        &d,
        &format!("socket,id=s,path={},server=on,wait=off", p.display()),
    )
    .unwrap();
    // Two sockets: the second cannot register its yank instance.
    assert_eq!(
        cli(
            &d,
            &format!("socket,id=s,path={}x,server=on,wait=off", p.display())
        )
        .unwrap_err(),
        "duplicate yank instance"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_waits_for_its_first_client() {
    let d = Daemon::new();
    let dir = tempdir();
    let p = dir.join("w.sock");
    let path = p.clone();
    let client = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    cli(&d, &format!("socket,id=w,path={},server=on", p.display())).unwrap();
    let dev = d.chardevs.get("w").unwrap();
    assert_eq!(dev.filename(), format!("unix:{},server=on", p.display()));
    let _c = client.join().unwrap();
    // Removing the chardev removes its socket file.
    qmp::chardev_remove(&d, qapi::types::ChardevRemoveArgs { id: "w".into() }).unwrap();
    drop(dev);
    assert!(!p.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reports_connect_failure() {
    let d = Daemon::new();
    assert_eq!(
        cli(&d, "socket,id=c,path=/nonexistent/s").unwrap_err(),
        "Failed to connect to '/nonexistent/s': No such file or directory"
    );
    assert_eq!(
        cli(&d, "socket,id=c,fd=abc").unwrap_err(),
        "Unable to parse FD number abc"
    );
    // With reconnect the chardev is created and retries in the background.
    cli(&d, "socket,id=c,path=/nonexistent/s,reconnect-ms=100").unwrap();
    assert_eq!(
        d.chardevs.get("c").unwrap().filename(),
        "disconnected:unix:/nonexistent/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_serves_whoever_opens_it() {
    use std::io::Read;
    let d = Daemon::new();
    let (id, backend) = cli::parse_cli_chardev(&opts("pty,id=p")).unwrap();
    let name = create_with(&d, id, backend, &Origin::Qmp).unwrap().unwrap();
    assert_eq!(
        d.chardevs.get("p").unwrap().filename(),
        format!("pty:{name}")
    );
    monitor(&d, "p");
    let mut slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::task::spawn_blocking(move || slave.read(&mut buf).map(|n| buf[..n].to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(n).unwrap(), greeting("\"oob\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_descriptors() {
    use std::os::fd::IntoRawFd;
    let d = Daemon::new();
    let dir = tempdir();
    let p = dir.join("fd.sock");
    let fd = std::os::unix::net::UnixListener::bind(&p)
        .unwrap()
        .into_raw_fd();
    cli(&d, &format!("socket,id=f,fd={fd},server=on,wait=off")).unwrap();
    // Named by the address it is bound to, as QEMU does.
    assert_eq!(
        d.chardevs.get("f").unwrap().filename(),
        format!("disconnected:unix:{},server=on", p.display())
    );
    let file = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    assert_eq!(
        cli(&d, &format!("socket,id=g,fd={file},server=on,wait=off")).unwrap_err(),
        format!("File descriptor '{file}' is not a socket")
    );
    // From QMP there is no descriptor passing.
    let (_, backend) = cli::parse_cli_chardev(&opts("socket,id=h,fd=3,server=on")).unwrap();
    assert_eq!(
        create_with(&d, "h".into(), backend, &Origin::Qmp)
            .unwrap_err()
            .desc,
        "Failed to add chardev 'h': only QEMU supports file descriptor passing"
    );
    d.chardevs.close_all();
    assert!(!p.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
