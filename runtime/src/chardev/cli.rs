//! `--chardev` on the command line: QEMU's `chardev` option list (names and
//! types of the flat options) and the per-backend conversion of the flat
//! options into a [`ChardevBackend`] (QEMU's `qemu_chr_parse_*`).
//!
//! Input is the tokenized option list, keys in order, with `backend` for the
//! implied first key (`socket,id=c,path=/x` is `[("backend", "socket"),
//! ("id", "c"), ("path", "/x")]`). A repeated key counts with its last
//! value. Errors are QSD's texts, printed by the command line as
//! `PROG: --chardev VALUE: MESSAGE`; a message may carry hint lines after a
//! newline, printed as they are.
//!
//! Command-line defaults differ from QMP's: `server` defaults to off (QMP:
//! on), a server waits for its first client unless `wait=off` (QMP: does
//! not wait), and `logappend` is always set.

use qapi::types::*;

use super::BACKENDS;

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Str,
    Bool,
    Number,
    Size,
}

/// QEMU's `chardev` option list (`qemu_chardev_opts`).
const OPTIONS: &[(&str, Ty)] = &[
    ("backend", Ty::Str),
    ("path", Ty::Str),
    ("input-path", Ty::Str),
    ("host", Ty::Str),
    ("port", Ty::Str),
    ("fd", Ty::Str),
    ("localaddr", Ty::Str),
    ("localport", Ty::Str),
    ("to", Ty::Number),
    ("ipv4", Ty::Bool),
    ("ipv6", Ty::Bool),
    ("wait", Ty::Bool),
    ("server", Ty::Bool),
    ("delay", Ty::Bool),
    ("nodelay", Ty::Bool),
    ("reconnect", Ty::Number),
    ("reconnect-ms", Ty::Number),
    ("telnet", Ty::Bool),
    ("tn3270", Ty::Bool),
    ("tls-creds", Ty::Str),
    ("tls-authz", Ty::Str),
    ("websocket", Ty::Bool),
    ("width", Ty::Number),
    ("height", Ty::Number),
    ("cols", Ty::Number),
    ("rows", Ty::Number),
    ("mux", Ty::Bool),
    ("signal", Ty::Bool),
    ("name", Ty::Str),
    ("debug", Ty::Number),
    ("size", Ty::Size),
    ("chardev", Ty::Str),
    ("chardevs.0", Ty::Str),
    ("chardevs.1", Ty::Str),
    ("chardevs.2", Ty::Str),
    ("chardevs.3", Ty::Str),
    ("append", Ty::Bool),
    ("logfile", Ty::Str),
    ("logappend", Ty::Bool),
    ("mouse", Ty::Bool),
    ("clipboard", Ty::Bool),
    ("tight", Ty::Bool),
    ("abstract", Ty::Bool),
];

/// The text `--chardev help` prints (with a final newline added by the
/// printer).
pub fn help_text() -> String {
    let mut s = String::from("Available chardev backend types: ");
    for b in BACKENDS.iter().rev() {
        s.push_str("\n  ");
        s.push_str(b);
    }
    s
}

/// If the options ask for help (`help` or `?` as the backend) and are
/// otherwise valid, the text to print before exiting successfully.
pub fn cli_help(opts: &[(String, String)]) -> Option<String> {
    let o = Opts::new(opts).ok()?;
    matches!(o.get("backend"), Some("help" | "?")).then(help_text)
}

/// Converts `--chardev` options into the chardev's id and backend, with
/// QEMU's checks in QEMU's order: the id's form, each option's name and
/// value type, the id's presence, the backend's presence and name, then the
/// backend's own requirements.
pub fn parse_cli_chardev(opts: &[(String, String)]) -> Result<(String, ChardevBackend), String> {
    let o = Opts::new(opts)?;
    let Some(id) = o.id.clone() else {
        return Err("chardev: no id specified".into());
    };
    let Some(name) = o.get("backend") else {
        return Err(format!("chardev: \"{id}\" missing backend"));
    };
    let kind = ChardevBackendKind::parse(name)
        .filter(|k| BACKENDS.contains(&k.as_str()))
        .ok_or_else(|| format!("'{name}' is not a valid char driver name"))?;
    let backend = o.backend(kind)?;
    if o.bool("mux", false) {
        return Err("qsd does not implement mux=on".into());
    }
    Ok((id, backend))
}

/// Validated options.
struct Opts<'a> {
    id: Option<String>,
    list: Vec<(&'a str, &'a str)>,
}

fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

impl<'a> Opts<'a> {
    fn new(opts: &'a [(String, String)]) -> Result<Opts<'a>, String> {
        let id = opts.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone());
        if let Some(id) = &id {
            if !id_wellformed(id) {
                return Err(
                    "Parameter 'id' expects an identifier\nIdentifiers consist of \
                     letters, digits, '-', '.', '_', starting with a letter."
                        .into(),
                );
            }
        }
        let mut list = Vec::new();
        for (k, v) in opts {
            if k == "id" {
                continue;
            }
            let Some((_, ty)) = OPTIONS.iter().find(|(n, _)| n == k) else {
                return Err(format!("Invalid parameter '{k}'"));
            };
            match ty {
                Ty::Str => {}
                Ty::Bool => {
                    parse_bool(v)
                        .ok_or_else(|| format!("Parameter '{k}' expects 'on' or 'off'"))?;
                }
                Ty::Number => match strtou64(v) {
                    Ok(_) => {}
                    Err(Range) => {
                        return Err(format!("Value '{v}' is too large for parameter '{k}'"))
                    }
                    Err(Invalid) => return Err(format!("Parameter '{k}' expects a number")),
                },
                Ty::Size => match strtosz(v) {
                    Ok(_) => {}
                    Err(Range) => {
                        return Err(format!("Value '{v}' is out of range for parameter '{k}'"))
                    }
                    Err(Invalid) => {
                        return Err(format!(
                            "Parameter '{k}' expects a non-negative number below 2^64\n\
                             Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, \
                             tera-, peta-\nand exabytes, respectively."
                        ))
                    }
                },
            }
            list.push((k.as_str(), v.as_str()));
        }
        Ok(Opts { id, list })
    }

    fn get(&self, k: &str) -> Option<&'a str> {
        self.list
            .iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
    }

    fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    fn string(&self, k: &str) -> Option<String> {
        self.get(k).map(str::to_string)
    }

    fn bool(&self, k: &str, default: bool) -> bool {
        self.get(k).and_then(parse_bool).unwrap_or(default)
    }

    fn number(&self, k: &str) -> u64 {
        self.get(k).and_then(|v| strtou64(v).ok()).unwrap_or(0)
    }

    fn size(&self, k: &str) -> u64 {
        self.get(k).and_then(|v| strtosz(v).ok()).unwrap_or(0)
    }

    fn common(&self) -> ChardevCommon {
        ChardevCommon {
            logfile: self.string("logfile"),
            logappend: Some(self.bool("logappend", false)),
        }
    }

    fn backend(&self, kind: ChardevBackendKind) -> Result<ChardevBackend, String> {
        use ChardevBackendBranch as B;
        use ChardevBackendKind as K;
        let c = self.common();
        let hostdev = |what: &str| -> Result<ChardevHostdevWrapper, String> {
            let device = self
                .string("path")
                .ok_or_else(|| format!("chardev: {what}: no device path given"))?;
            Ok(ChardevHostdevWrapper {
                data: ChardevHostdev {
                    logfile: c.logfile.clone(),
                    logappend: c.logappend,
                    device,
                },
            })
        };
        let u = match kind {
            K::Socket => B::Socket(ChardevSocketWrapper {
                data: self.socket()?,
            }),
            K::Ringbuf | K::Memory => {
                // QEMU keeps the size in an int: larger values wrap.
                let size = self.size("size") as u32 as i32;
                let w = ChardevRingbufWrapper {
                    data: ChardevRingbuf {
                        logfile: c.logfile,
                        logappend: c.logappend,
                        size: (size != 0).then_some(i64::from(size)),
                    },
                };
                if kind == K::Memory {
                    B::Memory(w)
                } else {
                    B::Ringbuf(w)
                }
            }
            K::File => {
                let out = self
                    .string("path")
                    .ok_or("chardev: file: no filename given")?;
                B::File(ChardevFileWrapper {
                    data: ChardevFile {
                        logfile: c.logfile,
                        logappend: c.logappend,
                        in_: self.string("input-path"),
                        out,
                        append: Some(self.bool("append", false)),
                    },
                })
            }
            K::Pipe => B::Pipe(hostdev("pipe")?),
            K::Serial => B::Serial(hostdev("serial/tty")?),
            K::Parallel => B::Parallel(hostdev("parallel")?),
            K::Stdio => B::Stdio(ChardevStdioWrapper {
                data: ChardevStdio {
                    logfile: c.logfile,
                    logappend: c.logappend,
                    signal: Some(self.bool("signal", true)),
                },
            }),
            K::Pty => B::Pty(ChardevPtyWrapper {
                data: ChardevPty {
                    logfile: c.logfile,
                    logappend: c.logappend,
                    path: self.string("path"),
                },
            }),
            K::Udp => B::Udp(ChardevUdpWrapper { data: self.udp(c)? }),
            K::Mux => {
                let chardev = self
                    .string("chardev")
                    .ok_or("chardev: mux: no chardev given")?;
                B::Mux(ChardevMuxWrapper {
                    data: ChardevMux {
                        logfile: c.logfile,
                        logappend: c.logappend,
                        chardev,
                    },
                })
            }
            K::Hub => {
                let chardevs = (0..4)
                    .map_while(|i| self.string(&format!("chardevs.{i}")))
                    .collect();
                B::Hub(ChardevHubWrapper {
                    data: ChardevHub {
                        logfile: c.logfile,
                        logappend: c.logappend,
                        chardevs,
                    },
                })
            }
            // `null` (and, unreachable here, backends without options).
            _ => B::Null(ChardevCommonWrapper { data: c }),
        };
        Ok(ChardevBackend { u })
    }

    fn inet(&self, host: &str, port: &str) -> InetSocketAddress {
        InetSocketAddress {
            host: host.to_string(),
            port: port.to_string(),
            numeric: None,
            to: self.has("to").then(|| self.number("to") as u16),
            ipv4: self.has("ipv4").then(|| self.bool("ipv4", false)),
            ipv6: self.has("ipv6").then(|| self.bool("ipv6", false)),
            keep_alive: None,
            mptcp: None,
        }
    }

    fn socket(&self) -> Result<ChardevSocket, String> {
        let path = self.get("path");
        let host = self.get("host");
        let port = self.get("port");
        let fd = self.get("fd");
        if [path, host, fd].iter().filter(|x| x.is_some()).count() > 1 {
            return Err("None or one of 'path', 'fd' or 'host' option required.".into());
        }
        if host.is_some() && port.is_none() {
            return Err("chardev: socket: no port given".into());
        }
        let c = self.common();
        if self.has("delay") && self.has("nodelay") {
            return Err("'delay' and 'nodelay' are mutually exclusive".into());
        }
        let nodelay = (self.has("delay") || self.has("nodelay"))
            .then(|| !self.bool("delay", true) || self.bool("nodelay", false));
        let server = self.bool("server", false);
        let flag = |k: &str| self.has(k).then(|| self.bool(k, false));
        let addr = if let Some(path) = path {
            SocketAddressLegacy {
                u: SocketAddressLegacyBranch::Unix(UnixSocketAddressWrapper {
                    data: UnixSocketAddress {
                        path: path.to_string(),
                        abstract_: Some(self.bool("abstract", false)),
                        tight: Some(self.bool("tight", true)),
                    },
                }),
            }
        } else if let Some(host) = host {
            SocketAddressLegacy {
                u: SocketAddressLegacyBranch::Inet(InetSocketAddressWrapper {
                    data: self.inet(host, port.unwrap_or_default()),
                }),
            }
        } else {
            SocketAddressLegacy {
                u: SocketAddressLegacyBranch::Fd(FdSocketAddressWrapper {
                    data: FdSocketAddress {
                        str: fd.unwrap_or_default().to_string(),
                    },
                }),
            }
        };
        Ok(ChardevSocket {
            logfile: c.logfile,
            logappend: c.logappend,
            addr,
            tls_creds: self.string("tls-creds"),
            tls_authz: self.string("tls-authz"),
            server: Some(server),
            wait: (self.has("wait") || server).then(|| self.bool("wait", true)),
            nodelay,
            telnet: flag("telnet"),
            tn3270: flag("tn3270"),
            websocket: flag("websocket"),
            reconnect: self
                .has("reconnect")
                .then(|| self.number("reconnect") as i64),
            reconnect_ms: self
                .has("reconnect-ms")
                .then(|| self.number("reconnect-ms") as i64),
        })
    }

    fn udp(&self, c: ChardevCommon) -> Result<ChardevUdp, String> {
        let host = self
            .get("host")
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        let Some(port) = self.get("port").filter(|p| !p.is_empty()) else {
            return Err("chardev: udp: remote port not specified".into());
        };
        let localport = self.get("localport").filter(|p| !p.is_empty());
        let localaddr = self.get("localaddr").filter(|a| !a.is_empty());
        let local = (localport.is_some() || localaddr.is_some()).then(|| SocketAddressLegacy {
            u: SocketAddressLegacyBranch::Inet(InetSocketAddressWrapper {
                data: InetSocketAddress {
                    host: localaddr.unwrap_or("").to_string(),
                    port: localport.unwrap_or("0").to_string(),
                    numeric: None,
                    to: None,
                    ipv4: None,
                    ipv6: None,
                    keep_alive: None,
                    mptcp: None,
                },
            }),
        });
        let mut remote = self.inet(host, port);
        remote.to = None;
        Ok(ChardevUdp {
            logfile: c.logfile,
            logappend: c.logappend,
            remote: SocketAddressLegacy {
                u: SocketAddressLegacyBranch::Inet(InetSocketAddressWrapper { data: remote }),
            },
            local,
        })
    }
}

/// `qapi_bool_parse`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

use qapi::cutils::StrtoError::{Invalid, Range};

/// `qemu_strtou64(s, NULL, 0, ..)`: the whole string must be a number.
fn strtou64(s: &str) -> Result<u64, qapi::cutils::StrtoError> {
    qapi::cutils::qemu_strtou64(s, 0)
}

/// `qemu_strtosz`.
fn strtosz(s: &str) -> Result<u64, qapi::cutils::StrtoError> {
    qapi::cutils::qemu_strtosz(s)
}

#[cfg(test)]
mod tests;
