//! The handshake of one connection: the I/O around the codec's
//! [`Negotiation`] state machine, which makes every decision.
//!
//! Option data is read as the codec plans it (a bounded prefix kept, the
//! rest skipped), so a hostile length costs no memory. Bytes the codec
//! leaves unread after a meta-context option are fed back in front of the
//! input, as QEMU parses them as the start of the next option.

use std::io;
use std::sync::Arc;

use crate::chardev::report;

use super::proto::{
    decode_option_header, ExportDesc, Negotiation, Step, Transmission, OPTION_HEADER_LEN,
};
use super::stream::Stream;
use super::{ClientGuard, NbdExport};

/// The exports a client may choose from, at the time of each option.
pub(crate) trait ExportSource: Send + Sync {
    /// The NBD exports that accept clients, oldest first.
    fn exports(&self) -> Vec<Arc<NbdExport>>;
}

/// How the handshake ended, when the connection goes on.
pub(crate) struct Chosen {
    pub t: Transmission,
    pub export: Arc<NbdExport>,
    /// The client's membership of the export, taken before the reply
    /// that enters transmission is sent: once the client knows it is
    /// in, a `safe` removal must see it.
    pub member: ClientGuard,
    /// Bytes read past the last option (fed back by the codec).
    pub leftover: Vec<u8>,
}

/// Reads from the stream after first returning bytes pushed back.
struct Input<'a> {
    stream: &'a Stream,
    back: Vec<u8>,
}

impl Input<'_> {
    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = self.back.len().min(buf.len());
        buf[..n].copy_from_slice(&self.back[..n]);
        self.back.drain(..n);
        if n < buf.len() {
            self.stream.read_exact(&mut buf[n..]).await?;
        }
        Ok(())
    }

    async fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut scratch = vec![0u8; n.min(64 << 10) as usize];
        while n > 0 {
            let k = n.min(scratch.len() as u64) as usize;
            self.read_exact(&mut scratch[..k]).await?;
            n -= k as u64;
        }
        Ok(())
    }
}

/// QEMU's text for a stream that ended early.
pub(crate) const EOF_DATA: &str = "Unexpected end-of-file before all data were read";

/// Prints why the handshake failed, as QEMU does on stderr.
fn failed(msg: impl std::fmt::Display) {
    report::error(&format!("option negotiation failed: {msg}"));
}

/// Reports a read error of the handshake (`what` names the field, as
/// QEMU's "Failed to read opts magic").
fn read_failed(e: &io::Error, what: Option<&str>) {
    let text = if e.kind() == io::ErrorKind::UnexpectedEof {
        EOF_DATA.to_string()
    } else {
        format!(
            "Unable to read from socket: {}",
            crate::chardev::os_error(e)
        )
    };
    match what {
        Some(w) => failed(format!("Failed to read {w}: {text}")),
        None => failed(text),
    }
}

/// Runs the handshake. `Ok(None)`: the client aborted, broke the
/// protocol or went away, and the connection ends (failures are reported
/// on stderr with QEMU's texts); errors are failed writes.
pub(crate) async fn negotiate(
    stream: &Stream,
    src: &dyn ExportSource,
) -> io::Result<Option<Chosen>> {
    let mut neg = Negotiation::new(false);
    stream.write_all(&neg.greeting()).await?;
    let mut input = Input {
        stream,
        back: Vec::new(),
    };
    let mut flags = [0u8; 4];
    if input.read_exact(&mut flags).await.is_err() {
        // QEMU says nothing about a client that leaves at once.
        return Ok(None);
    }
    if let Err(e) = neg.client_flags(&flags) {
        failed(e);
        return Ok(None);
    }
    loop {
        let mut hb = [0u8; OPTION_HEADER_LEN];
        if let Err(e) = input.read_exact(&mut hb[..8]).await {
            read_failed(&e, Some("opts magic"));
            return Ok(None);
        }
        if let Err(e) = input.read_exact(&mut hb[8..]).await {
            read_failed(&e, Some("option"));
            return Ok(None);
        }
        let h = match decode_option_header(&hb) {
            Ok(h) => h,
            Err(e) => {
                failed(e);
                return Ok(None);
            }
        };
        let plan = match neg.plan_option(&h) {
            Ok(p) => p,
            Err(e) => {
                failed(e);
                return Ok(None);
            }
        };
        let mut data = vec![0u8; plan.keep as usize];
        let read = async {
            input.read_exact(&mut data).await?;
            input.skip(u64::from(plan.skip)).await
        };
        if let Err(e) = read.await {
            read_failed(&e, None);
            return Ok(None);
        }
        let exports = src.exports();
        let descs: Vec<&ExportDesc> = exports.iter().map(|e| &e.desc).collect();
        let out = neg.handle_option(&h, &data, &descs);
        if out.unread_tail > 0 {
            let tail = &data[data.len() - out.unread_tail..];
            let mut back = tail.to_vec();
            back.append(&mut input.back);
            input.back = back;
        }
        let mut member = None;
        if let Step::Transmission(t) = &out.step {
            match exports.get(t.export).and_then(|e| e.join()) {
                Some(m) => member = Some(m),
                // Removed since the list was taken.
                None => return Ok(None),
            }
        }
        if !out.reply.is_empty() {
            stream.write_all(&out.reply).await?;
        }
        match out.step {
            Step::Continue => {}
            // TLS is never configured (tls-creds is refused), so the
            // codec never asks for it.
            Step::StartTls | Step::Abort => return Ok(None),
            Step::Close(e) => {
                failed(e);
                return Ok(None);
            }
            Step::Transmission(t) => {
                let (Some(export), Some(member)) = (exports.get(t.export).cloned(), member) else {
                    return Ok(None);
                };
                return Ok(Some(Chosen {
                    t,
                    export,
                    member,
                    leftover: input.back,
                }));
            }
        }
    }
}
