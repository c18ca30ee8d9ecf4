//! Replays byte sequences captured from QEMU's qemu-storage-daemon 10.0.2
//! (`golden/qsd-10.0.2.golden`, made by `golden/capture.py`; see its
//! docstring for the exports and how to re-capture) against our codec.
//!
//! Each scenario is a conversation: client messages (`C`) and the bytes
//! the real server answered (`S`), ending with `S EOF` when it closed. We
//! act as the server: client bytes go through the decoders, the handshake
//! state machine and the request checks, and what we would send must equal
//! QSD's bytes exactly. Replies that carry block data (READ data, block
//! status extents) cannot be predicted without a block layer: those are
//! decoded with our decoders, checked against the request, and re-encoded
//! with our encoders to the same bytes.

use super::*;

const GOLDEN: &str = include_str!("golden/qsd-10.0.2.golden");

#[derive(Debug)]
enum Event {
    Client(Vec<u8>),
    Server(Vec<u8>),
    Eof,
}

#[derive(Debug)]
struct Scenario {
    name: String,
    events: Vec<Event>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load() -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for line in GOLDEN.lines() {
        if let Some(name) = line.strip_prefix("= ") {
            out.push(Scenario {
                name: name.to_string(),
                events: Vec::new(),
            });
        } else if let Some(h) = line.strip_prefix("C ") {
            out.last_mut()
                .expect("scenario")
                .events
                .push(Event::Client(hex(h)));
        } else if line == "S EOF" {
            out.last_mut().expect("scenario").events.push(Event::Eof);
        } else if let Some(h) = line.strip_prefix("S ") {
            assert!(!h.contains(' '), "unexpected capture line {line}");
            out.last_mut()
                .expect("scenario")
                .events
                .push(Event::Server(hex(h)));
        } else {
            assert!(line.is_empty() || line.starts_with('#'), "bad line {line}");
        }
    }
    out
}

/// The exports capture.py sets up.
fn exports(tls: bool) -> Vec<ExportDesc> {
    let mut x = ExportDesc {
        name: "x".into(),
        description: Some("golden test export".into()),
        size: 1 << 30,
        flags: ExportDesc::qemu_flags(true, true),
        request_alignment: 1,
        max_transfer: u32::MAX,
        allocation_depth: true,
        bitmaps: vec!["b0".into()],
    };
    if tls {
        x.name = "t".into();
        x.description = None;
        x.size = 1 << 20;
        x.flags = ExportDesc::qemu_flags(false, true);
        x.allocation_depth = false;
        x.bitmaps.clear();
        return vec![x];
    }
    let plain = ExportDesc {
        name: "plain".into(),
        description: None,
        size: 64 << 20,
        flags: ExportDesc::qemu_flags(false, true),
        request_alignment: 1,
        max_transfer: u32::MAX,
        allocation_depth: false,
        bitmaps: vec![],
    };
    let align = ExportDesc {
        name: "align".into(),
        size: 1 << 20,
        request_alignment: 512,
        ..plain.clone()
    };
    vec![x, plain, align]
}

/// What our server expects to appear on the wire next.
#[derive(Debug)]
enum Expect {
    Bytes(Vec<u8>),
    /// A data-carrying reply to a validated command.
    Data {
        cmd: Command,
        cookie: u64,
        offset: u64,
    },
}

enum Phase {
    Flags,
    Options,
    Tx(Transmission),
    Closed,
}

struct Server {
    neg: Negotiation,
    phase: Phase,
    input: Vec<u8>,
    exports: Vec<ExportDesc>,
}

impl Server {
    fn new(tls: bool) -> Server {
        Server {
            neg: Negotiation::new(tls),
            phase: Phase::Flags,
            input: Vec::new(),
            exports: exports(tls),
        }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.input.len() < N {
            return None;
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.input[..N]);
        self.input.drain(..N);
        Some(a)
    }

    /// Feeds client bytes; returns what we would send.
    fn feed(&mut self, bytes: &[u8], exp: &mut Vec<Expect>) {
        self.input.extend_from_slice(bytes);
        loop {
            match &self.phase {
                Phase::Closed => return,
                Phase::Flags => {
                    let Some(b) = self.take::<4>() else { return };
                    if self.neg.client_flags(&b).is_err() {
                        self.phase = Phase::Closed;
                    } else {
                        self.phase = Phase::Options;
                    }
                }
                Phase::Options => {
                    if self.input.len() < OPTION_HEADER_LEN {
                        return;
                    }
                    let mut hb = [0u8; OPTION_HEADER_LEN];
                    hb.copy_from_slice(&self.input[..OPTION_HEADER_LEN]);
                    let h = match decode_option_header(&hb) {
                        Ok(h) => h,
                        Err(_) => {
                            self.phase = Phase::Closed;
                            return;
                        }
                    };
                    let plan = match self.neg.plan_option(&h) {
                        Ok(p) => p,
                        Err(_) => {
                            self.phase = Phase::Closed;
                            return;
                        }
                    };
                    let need = OPTION_HEADER_LEN + h.length as usize;
                    if self.input.len() < need {
                        return;
                    }
                    let data: Vec<u8> = self.input[OPTION_HEADER_LEN..need].to_vec();
                    self.input.drain(..need);
                    assert_eq!(plan.keep as usize + plan.skip as usize, data.len());
                    let kept = &data[..plan.keep as usize];
                    let o = self.neg.handle_option(&h, kept, &self.exports);
                    exp.push(Expect::Bytes(o.reply));
                    if o.unread_tail > 0 {
                        let mut v = kept[kept.len() - o.unread_tail..].to_vec();
                        v.append(&mut self.input);
                        self.input = v;
                    }
                    match o.step {
                        Step::Continue => {}
                        Step::Transmission(t) => self.phase = Phase::Tx(t),
                        Step::StartTls => return,
                        Step::Abort | Step::Close(_) => self.phase = Phase::Closed,
                    }
                }
                Phase::Tx(t) => {
                    let t = t.clone();
                    if !self.request(&t, exp) {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one request if complete; false if more input is needed.
    fn request(&mut self, t: &Transmission, exp: &mut Vec<Expect>) -> bool {
        let export = &self.exports[t.export];
        let session = Session {
            mode: t.mode,
            export_size: export.size,
            read_only: export.flags.contains(TransmissionFlags::READ_ONLY),
            contexts: &t.contexts,
        };
        let hlen = if t.mode == ReplyMode::Extended {
            EXTENDED_REQUEST_LEN
        } else {
            REQUEST_LEN
        };
        if self.input.len() < hlen {
            return false;
        }
        let decoded = if t.mode == ReplyMode::Extended {
            let mut b = [0u8; EXTENDED_REQUEST_LEN];
            b.copy_from_slice(&self.input[..hlen]);
            decode_extended_request(&b)
        } else {
            let mut b = [0u8; REQUEST_LEN];
            b.copy_from_slice(&self.input[..hlen]);
            decode_request(&b)
        };
        let h = match decoded {
            Ok(h) => h,
            Err(e @ RequestError::BadMagic { header, .. }) => {
                let r = Rejection {
                    errno: NbdErrno::Inval,
                    message: e.to_string(),
                };
                let mut out = Vec::new();
                put_generic_reply(&mut out, t.mode, header.cookie, header.offset, Err(&r)).unwrap();
                exp.push(Expect::Bytes(out));
                self.phase = Phase::Closed;
                return true;
            }
            Err(e) => panic!("{e}"),
        };
        let p = plan(&h, &session);
        let (payload, next) = match p {
            Plan::Disconnect => {
                self.phase = Phase::Closed;
                return true;
            }
            Plan::RejectAndClose(r) => {
                let mut out = Vec::new();
                put_generic_reply(&mut out, t.mode, h.cookie, h.offset, Err(&r)).unwrap();
                exp.push(Expect::Bytes(out));
                self.phase = Phase::Closed;
                return true;
            }
            Plan::Proceed { payload, next } => (payload, next),
        };
        let plen = match payload {
            Payload::None => 0,
            Payload::WriteData(n) | Payload::BlockStatus(n) | Payload::Discard(n) => n as usize,
        };
        if self.input.len() < hlen + plen {
            return false;
        }
        let body: Vec<u8> = self.input[hlen..hlen + plen].to_vec();
        self.input.drain(..hlen + plen);
        let verdict = match next {
            Next::Done(v) => v,
            Next::DecodeBlockStatus => complete_block_status(&h, &body, &session),
        };
        match verdict {
            Err(r) => {
                let mut out = Vec::new();
                put_generic_reply(&mut out, t.mode, h.cookie, h.offset, Err(&r)).unwrap();
                exp.push(Expect::Bytes(out));
            }
            Ok(cmd @ (Command::Read { .. } | Command::BlockStatus { .. })) => {
                exp.push(Expect::Data {
                    cmd,
                    cookie: h.cookie,
                    offset: h.offset,
                });
            }
            Ok(_) => {
                let mut out = Vec::new();
                put_generic_reply(&mut out, t.mode, h.cookie, h.offset, Ok(())).unwrap();
                exp.push(Expect::Bytes(out));
            }
        }
        true
    }
}

/// Checks a data reply at the start of `wire` and returns its length.
fn check_data_reply(
    wire: &[u8],
    t: &Transmission,
    exports: &[ExportDesc],
    cmd: &Command,
    cookie: u64,
    req_offset: u64,
) -> usize {
    let Some(form) = t.mode.chunk_form() else {
        // Simple reply: header, then the data.
        let Command::Read { length, .. } = cmd else {
            panic!("simple data reply for {cmd:?}")
        };
        assert_eq!(&wire[..16], &encode_simple_reply(None, cookie));
        return 16 + *length as usize;
    };
    let hlen = match form {
        ChunkForm::Structured => STRUCTURED_REPLY_LEN,
        ChunkForm::Extended => EXTENDED_REPLY_LEN,
    };
    let mut pos = 0;
    let mut seen_ids = Vec::new();
    loop {
        let rest = &wire[pos..];
        let h = match form {
            ChunkForm::Structured => {
                decode_structured_chunk(rest[..hlen].try_into().unwrap()).unwrap()
            }
            ChunkForm::Extended => decode_extended_chunk(rest[..hlen].try_into().unwrap()).unwrap(),
        };
        assert_eq!(h.cookie, cookie);
        if form == ChunkForm::Extended {
            assert_eq!(h.offset, req_offset);
        }
        let len = h.length as usize;
        let payload = &rest[hlen..hlen + len];
        let chunk = &rest[..hlen + len];
        let last = h.flags.contains(ReplyFlags::DONE);
        let mut again = Vec::new();
        match decode_chunk_payload(form, &h, payload).unwrap() {
            ChunkPayload::None => {
                again.extend_from_slice(chunk_none(form, cookie, req_offset).as_bytes())
            }
            ChunkPayload::OffsetData { offset, data } => {
                let Command::Read {
                    offset: o, length, ..
                } = cmd
                else {
                    panic!()
                };
                assert!(offset >= *o && offset + data.len() as u64 <= o + u64::from(*length));
                let hb =
                    chunk_offset_data(form, last, cookie, req_offset, offset, data.len() as u64)
                        .unwrap();
                again.extend_from_slice(hb.as_bytes());
                again.extend_from_slice(data);
            }
            ChunkPayload::OffsetHole { offset, length } => {
                let Command::Read {
                    offset: o,
                    length: l,
                    df,
                    ..
                } = cmd
                else {
                    panic!()
                };
                assert!(!df, "a DF read must not be answered with a hole");
                assert!(offset >= *o && offset + u64::from(length) <= o + u64::from(*l));
                again.extend_from_slice(
                    chunk_offset_hole(form, last, cookie, req_offset, offset, length).as_bytes(),
                );
            }
            ChunkPayload::BlockStatus {
                context_id,
                extents,
            } => {
                let Command::BlockStatus {
                    req_one, length, ..
                } = cmd
                else {
                    panic!()
                };
                if *req_one {
                    assert_eq!(extents.len(), 1);
                    assert!(extents[0].length <= *length);
                }
                seen_ids.push(context_id);
                put_block_status(
                    &mut again, form, last, cookie, req_offset, context_id, &extents,
                )
                .unwrap();
            }
            ChunkPayload::Error {
                errno,
                message,
                offset,
            } => {
                let e = ChunkError {
                    errno,
                    message,
                    offset,
                };
                put_chunk_error(&mut again, form, last, cookie, req_offset, &e).unwrap();
            }
        }
        assert_eq!(again, chunk, "re-encoded chunk differs");
        pos += hlen + len;
        if last {
            break;
        }
    }
    if let Command::BlockStatus { contexts, .. } = cmd {
        let exp = &exports[t.export];
        let ctx = ExportContexts {
            allocation_depth: exp.allocation_depth,
            bitmaps: &exp.bitmaps,
        };
        let set = contexts.as_ref().unwrap_or(&t.contexts);
        let want: Vec<u32> = set.contexts(&ctx).iter().map(|c| c.id).collect();
        assert_eq!(seen_ids, want, "block status contexts");
    }
    pos
}

fn replay(s: &Scenario) {
    let tls = s.name.starts_with("tls_");
    let mut server = Server::new(tls);
    let mut events = s.events.iter().peekable();
    // The greeting comes first.
    match events.next() {
        Some(Event::Server(g)) => assert_eq!(g.as_slice(), &server.neg.greeting()),
        other => panic!("{}: no greeting: {other:?}", s.name),
    }
    let mut saw_eof = false;
    while let Some(ev) = events.next() {
        let Event::Client(c) = ev else {
            panic!("{}: server spoke out of turn: {ev:?}", s.name)
        };
        let mut exp = Vec::new();
        server.feed(c, &mut exp);
        // Everything the server sent before the next client message.
        let mut wire = Vec::new();
        while let Some(Event::Server(b)) = events.peek() {
            wire.extend_from_slice(b);
            events.next();
        }
        if let Some(Event::Eof) = events.peek() {
            events.next();
            saw_eof = true;
        }
        let mut pos = 0;
        for e in exp {
            match e {
                Expect::Bytes(b) => {
                    let got = &wire[pos..(pos + b.len()).min(wire.len())];
                    assert_eq!(
                        got,
                        b.as_slice(),
                        "{}: reply to {:02x?} differs:\nqsd: {}\nours: {}",
                        s.name,
                        &c[..c.len().min(32)],
                        String::from_utf8_lossy(got),
                        String::from_utf8_lossy(&b)
                    );
                    pos += b.len();
                }
                Expect::Data {
                    cmd,
                    cookie,
                    offset,
                } => {
                    let Phase::Tx(t) = &server.phase else {
                        panic!()
                    };
                    pos += check_data_reply(&wire[pos..], t, &server.exports, &cmd, cookie, offset);
                }
            }
        }
        assert_eq!(pos, wire.len(), "{}: QSD sent more than we would", s.name);
        if saw_eof {
            assert!(events.next().is_none(), "{}: events after EOF", s.name);
        }
    }
    let closed = matches!(server.phase, Phase::Closed);
    assert_eq!(
        closed, saw_eof,
        "{}: closed {closed}, QSD closed {saw_eof}",
        s.name
    );
}

#[test]
fn golden_scenarios_replay_byte_for_byte() {
    let scenarios = load();
    assert!(
        scenarios.len() >= 35,
        "golden file has {} scenarios",
        scenarios.len()
    );
    for s in &scenarios {
        replay(s);
    }
}

#[test]
fn golden_greeting_and_flags() {
    let s = load();
    let g = s.iter().find(|s| s.name == "greeting_and_abort").unwrap();
    let Event::Server(greet) = &g.events[0] else {
        panic!()
    };
    let greet: [u8; GREETING_LEN] = greet.as_slice().try_into().unwrap();
    assert_eq!(
        decode_greeting(&greet).unwrap(),
        HandshakeFlags::FIXED_NEWSTYLE | HandshakeFlags::NO_ZEROES
    );
    let Event::Client(flags) = &g.events[1] else {
        panic!()
    };
    let flags: [u8; 4] = flags.as_slice().try_into().unwrap();
    assert_eq!(encode_client_flags(ClientFlags(3)), flags);
}

#[test]
fn golden_option_replies_decode() {
    // Every option reply QSD sent decodes with the client-side decoder and
    // re-encodes to the same bytes.
    let mut n = 0;
    for s in load() {
        for ev in &s.events {
            let Event::Server(b) = ev else { continue };
            if b.len() < OPTION_REPLY_HEADER_LEN || b[..8] != REP_MAGIC.to_be_bytes() {
                continue;
            }
            let h = decode_option_reply_header(b[..20].try_into().unwrap()).unwrap();
            let r = decode_option_reply(&h, &b[20..]).unwrap();
            let mut again = Vec::new();
            match &r {
                OptionReply::Ack => put_rep_ack(&mut again, h.opt),
                OptionReply::Server { name, description } => {
                    put_rep_server(&mut again, h.opt, name.as_bytes(), description.as_bytes())
                        .unwrap()
                }
                OptionReply::Info(i) => put_rep_info(&mut again, h.opt, i).unwrap(),
                OptionReply::MetaContext { id, name } => {
                    put_rep_meta_context(&mut again, h.opt, *id, name.as_bytes()).unwrap()
                }
                OptionReply::Error { rep, message } => {
                    put_rep_error(&mut again, h.opt, *rep, message.as_bytes()).unwrap()
                }
            }
            assert_eq!(&again, b, "{}: {r:?}", s.name);
            n += 1;
        }
    }
    assert!(n > 100, "only {n} option replies");
}
