//! Telnet and TN3270 on server sockets: the option negotiation sent to each
//! new client, and removal of telnet commands from its input.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::chardev::session::Reader;

const IAC: u8 = 255;
const IAC_BREAK: u8 = 243;
const IAC_IP: u8 = 244;
const IAC_NOP: u8 = 241;
const IAC_EOR: u8 = 239;
const IAC_SB: u8 = 250;
const IAC_SE: u8 = 240;

/// What the server sends a new client before the session starts: for
/// telnet, WILL ECHO, WILL SUPPRESS-GO-AHEAD, WILL BINARY, DO BINARY (raw,
/// character at a time, no local echo); for TN3270 the RFC 1576 set.
pub(crate) fn init_bytes(tn3270: bool) -> &'static [u8] {
    if tn3270 {
        &[
            0xff, 0xfd, 0x19, 0xff, 0xfb, 0x19, 0xff, 0xfd, 0x00, 0xff, 0xfb, 0x00, 0xff, 0xfd,
            0x18, 0xff, 0xfa, 0x18, 0x01, 0xff, 0xf0,
        ]
    } else {
        &[
            0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00,
        ]
    }
}

/// The state machine QEMU runs over telnet input: a doubled IAC is a data
/// byte, other commands and their option byte are dropped (TN3270 keeps
/// EOR, SB and SE, with their IAC, as record boundaries).
#[derive(Debug, Default)]
pub(crate) struct IacFilter {
    /// 1: data; 2: after IAC; 3: expecting an option byte.
    state: u8,
    tn3270: bool,
}

impl IacFilter {
    pub fn new(tn3270: bool) -> IacFilter {
        IacFilter { state: 1, tn3270 }
    }

    /// Filters `buf` in place; returns the number of bytes kept.
    pub fn filter(&mut self, buf: &mut [u8]) -> usize {
        let mut out = Vec::with_capacity(buf.len());
        for &b in buf.iter() {
            if self.state > 1 {
                if b == IAC && self.state == 2 {
                    out.push(IAC);
                    self.state = 1;
                } else {
                    if self.state == 2 {
                        if b == IAC_BREAK {
                            // A break request; no frontend of ours uses it.
                            self.state += 1;
                        } else if self.tn3270 && matches!(b, IAC_EOR | IAC_SB | IAC_SE) {
                            out.extend_from_slice(&[IAC, b]);
                            self.state += 1;
                        } else if self.tn3270 && matches!(b, IAC_IP | IAC_NOP) {
                            self.state += 1;
                        }
                    }
                    self.state += 1;
                }
                if self.state >= 4 {
                    self.state = 1;
                }
            } else if b == IAC {
                self.state = 2;
            } else {
                out.push(b);
            }
        }
        buf[..out.len()].copy_from_slice(&out);
        out.len()
    }
}

/// A reader that hides telnet commands from the frontend.
pub(crate) struct TelnetReader {
    pub inner: Reader,
    pub filter: IacFilter,
}

impl AsyncRead for TelnetReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut tmp = vec![0u8; buf.remaining().max(1)];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            let kept = self.filter.filter(&mut tmp[..n]);
            if kept > 0 {
                buf.put_slice(&tmp[..kept]);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut IacFilter, input: &[u8]) -> Vec<u8> {
        let mut b = input.to_vec();
        let n = f.filter(&mut b);
        b.truncate(n);
        b
    }

    #[test]
    fn telnet_commands_are_removed() {
        let mut f = IacFilter::new(false);
        assert_eq!(run(&mut f, b"ab\xff\xfd\x01cd"), b"abcd");
        assert_eq!(run(&mut f, b"\xff\xffx"), b"\xffx");
        assert_eq!(run(&mut f, b"\xff\xf3y"), b"y");
        // A command split across reads.
        assert_eq!(run(&mut f, b"a\xff"), b"a");
        assert_eq!(run(&mut f, b"\xfb\x03b"), b"b");
    }

    #[test]
    fn tn3270_keeps_record_marks() {
        let mut f = IacFilter::new(true);
        assert_eq!(run(&mut f, b"a\xff\xefb"), b"a\xff\xefb");
        assert_eq!(run(&mut f, b"\xff\xf1c"), b"c");
    }
}
