//! Running the reference qemu-storage-daemon for differential tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// The reference program and a scratch directory for its sockets.
pub struct Qsd {
    program: String,
    dir: PathBuf,
}

/// Longest time one run may take; QSD fails in milliseconds on bad options.
const DEADLINE: Duration = Duration::from_secs(20);

impl Qsd {
    /// Locate the reference program (`$QSD_REFERENCE` or `qemu-storage-daemon`)
    /// and make a scratch directory. Panics if the program cannot be run.
    pub fn new() -> Qsd {
        let program =
            std::env::var("QSD_REFERENCE").unwrap_or_else(|_| "qemu-storage-daemon".into());
        let dir = std::env::temp_dir().join(format!(
            "qsd-keyval-diff-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace("::", "-")
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let qsd = Qsd { program, dir };
        let version = qsd.run(&["--version"]);
        assert!(
            version.code == Some(0)
                && version
                    .stdout
                    .starts_with("qemu-storage-daemon version 10.0."),
            "the reference must be qemu-storage-daemon 10.0.x, got {version:?}"
        );
        qsd
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Run the program with `args`; panics if it cannot be started or hangs.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let mut child = Command::new(&self.program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run the reference `{}` ({e}); install Debian's qemu-utils \
                     or set QSD_REFERENCE",
                    self.program
                )
            });
        let mut out = child.stdout.take().map(drain);
        let mut err = child.stderr.take().map(drain);
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() < DEADLINE => thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{} {args:?} did not exit within {DEADLINE:?}", self.program);
                }
                Err(e) => panic!("waiting for {}: {e}", self.program),
            }
        };
        let text = |h: &mut Option<thread::JoinHandle<String>>| {
            h.take().and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Outcome {
            code: status.code(),
            stdout: text(&mut out),
            stderr: text(&mut err),
        }
    }

    /// Run with `args` followed by `--object ,`, which QSD rejects at once: a
    /// value that gets past its own option ends there.
    pub fn run_with_sentinel(&self, args: &[&str]) -> Outcome {
        let mut all = args.to_vec();
        all.extend(["--object", ","]);
        self.run(&all)
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}
