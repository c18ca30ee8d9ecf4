//! A vhost-user-blk frontend for tests and the fallback benchmark client:
//! the `vhost` crate's frontend side drives the protocol, guest memory is
//! a memfd mapped with `vm-memory`, and a small split-ring driver puts
//! virtio-blk requests in the queues (many in flight per queue) and reads
//! their completions.
//!
//! Memory layout (guest physical addresses): per queue, the rings at
//! `q * RING_STRIDE`, then the data slots from `DATA_BASE`. A request uses
//! three descriptors (header, data, status) at `3 * slot`; raw chains for
//! malformed-input tests can be written anywhere with
//! [`Queue::submit_raw`].

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserInflight, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{
    Frontend, FrontendReqHandler, HandlerResult, VhostUserFrontend, VhostUserFrontendReqHandlerMut,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use vhost::vhost_user::message::VhostUserProtocolFeatures as ProtocolFeatures;
pub use vhost::vhost_user::VhostUserFrontend as FrontendExt;
pub use vhost::VhostBackend as BackendExt;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const EVENT_IDX: u64 = 1 << 29;
const INDIRECT_DESC: u64 = 1 << 28;

/// Guest-physical space for each queue's rings.
pub const RING_STRIDE: u64 = 0x10000;
/// Where data slots start.
pub const DATA_BASE: u64 = 0x100000;

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Read {
        sector: u64,
        len: u32,
    },
    Write {
        sector: u64,
        data: Vec<u8>,
    },
    Flush,
    GetId {
        len: u32,
    },
    Discard {
        sector: u64,
        num: u32,
        flags: u32,
    },
    WriteZeroes {
        sector: u64,
        num: u32,
        flags: u32,
    },
    /// Any type with a raw payload and `in_len` writable data bytes.
    Raw {
        type_: u32,
        sector: u64,
        out: Vec<u8>,
        in_len: u32,
    },
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub status: u8,
    pub used_len: u32,
    /// The writable data bytes (reads, GET_ID).
    pub data: Vec<u8>,
}

/// Options of a connection.
#[derive(Debug, Clone)]
pub struct Opts {
    pub queues: usize,
    pub queue_size: u16,
    /// Bytes of data per request slot.
    pub slot_size: u32,
    pub event_idx: bool,
    pub indirect: bool,
    /// Ask for an inflight area (if offered).
    pub inflight: bool,
    /// Open the backend request channel (config changes).
    pub backend_channel: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            queues: 1,
            queue_size: 128,
            slot_size: 1 << 20,
            event_idx: true,
            indirect: false,
            inflight: false,
            backend_channel: true,
        }
    }
}

#[derive(Default)]
struct ConfigWatch {
    changes: Arc<AtomicU64>,
}

impl VhostUserFrontendReqHandlerMut for ConfigWatch {
    fn handle_config_change(&mut self) -> HandlerResult<u64> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

/// A connected frontend.
pub struct Client {
    pub fe: Frontend,
    pub mem: GuestMemoryMmap,
    pub memfd: File,
    pub mem_size: u64,
    pub features: u64,
    pub protocol: VhostUserProtocolFeatures,
    pub queues: Vec<Queue>,
    pub inflight: Option<(VhostUserInflight, File)>,
    /// Config-change messages received.
    pub config_changes: Arc<AtomicU64>,
    opts: Opts,
}

fn memfd(size: u64) -> File {
    // SAFETY: memfd_create with a valid name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"guest".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: a fresh descriptor owned by nobody else.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).expect("memfd size");
    f
}

/// Connects to `path`, retrying while the socket is not there yet.
pub fn connect_stream(path: &Path) -> UnixStream {
    for _ in 0..200 {
        if let Ok(s) = UnixStream::connect(path) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("cannot connect to {}", path.display());
}

impl Client {
    /// Connects and negotiates; queues are set up with [`Client::start`].
    pub fn connect(path: &Path, opts: Opts) -> Client {
        Self::connect_with_memory(path, opts, None)
    }

    /// Like [`Client::connect`], reusing the guest memory (and inflight
    /// area) of a previous connection.
    pub fn connect_with_memory(
        path: &Path,
        opts: Opts,
        reuse: Option<(File, Option<(VhostUserInflight, File)>)>,
    ) -> Client {
        let slots = u64::from(opts.queue_size / 3);
        let mem_size =
            (DATA_BASE + opts.queues as u64 * slots * u64::from(opts.slot_size) + 0x10_0000)
                .next_multiple_of(0x20_0000);
        let (memfd, inflight) = match reuse {
            Some((f, i)) => (f, i),
            None => (memfd(mem_size), None),
        };
        let region = MmapRegion::from_file(
            FileOffset::new(memfd.try_clone().expect("dup memfd"), 0),
            mem_size as usize,
        )
        .expect("mmap guest memory");
        let mem =
            GuestMemoryMmap::from_regions(vec![
                GuestRegionMmap::new(region, GuestAddress(0)).expect("region")
            ])
            .expect("guest memory");
        let stream = connect_stream(path);
        let mut fe = Frontend::from_stream(stream, opts.queues as u64);
        fe.set_owner().expect("SET_OWNER");
        let offered = fe.get_features().expect("GET_FEATURES");
        let mut want = offered;
        if !opts.event_idx {
            want &= !EVENT_IDX;
        }
        if !opts.indirect {
            want &= !INDIRECT_DESC;
        }
        fe.set_features(want).expect("SET_FEATURES");
        let mut protocol = VhostUserProtocolFeatures::empty();
        if offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let pf = fe.get_protocol_features().expect("GET_PROTOCOL_FEATURES");
            protocol = pf
                & (VhostUserProtocolFeatures::MQ
                    | VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::BACKEND_REQ
                    | VhostUserProtocolFeatures::INFLIGHT_SHMFD);
            if !opts.inflight {
                protocol &= !VhostUserProtocolFeatures::INFLIGHT_SHMFD;
            }
            if !opts.backend_channel {
                protocol &= !VhostUserProtocolFeatures::BACKEND_REQ;
            }
            fe.set_protocol_features(protocol)
                .expect("SET_PROTOCOL_FEATURES");
        }
        let config_changes = Arc::new(AtomicU64::new(0));
        if protocol.contains(VhostUserProtocolFeatures::BACKEND_REQ) {
            let watch = ConfigWatch {
                changes: config_changes.clone(),
            };
            let mut h =
                FrontendReqHandler::new(Arc::new(Mutex::new(watch))).expect("backend channel");
            fe.set_backend_request_fd(&h.get_tx_raw_fd())
                .expect("SET_BACKEND_REQ_FD");
            if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                h.set_reply_ack_flag(true);
            }
            std::thread::spawn(move || while h.handle_request().is_ok() {});
        }
        let mut c = Client {
            fe,
            mem,
            memfd,
            mem_size,
            features: want,
            protocol,
            queues: Vec::new(),
            inflight,
            config_changes,
            opts,
        };
        if c.protocol
            .contains(VhostUserProtocolFeatures::INFLIGHT_SHMFD)
            && c.inflight.is_none()
        {
            let req = VhostUserInflight {
                mmap_size: 0,
                mmap_offset: 0,
                num_queues: c.opts.queues as u16,
                queue_size: c.opts.queue_size,
            };
            c.inflight = Some(c.fe.get_inflight_fd(&req).expect("GET_INFLIGHT_FD"));
        }
        c
    }

    /// Reads the configuration space (`len` bytes).
    pub fn config(&mut self, len: u32) -> Vec<u8> {
        let buf = vec![0u8; len as usize];
        let (_, payload) = self
            .fe
            .get_config(0, len, VhostUserConfigFlags::WRITABLE, &buf)
            .expect("GET_CONFIG");
        payload.to_vec()
    }

    /// Capacity (sectors) from the configuration space.
    pub fn capacity(&mut self) -> u64 {
        let c = self.config(8);
        u64::from_le_bytes(c[..8].try_into().expect("8 bytes"))
    }

    /// Sets the memory table and starts the queues.
    pub fn start(&mut self) {
        if let Some((inf, f)) = &self.inflight {
            self.fe
                .set_inflight_fd(inf, f.as_raw_fd())
                .expect("SET_INFLIGHT_FD");
        }
        let host = self
            .mem
            .get_host_address(GuestAddress(0))
            .expect("host address") as u64;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: self.mem_size,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: self.memfd.as_raw_fd(),
        };
        self.fe.set_mem_table(&[region]).expect("SET_MEM_TABLE");
        let existing = !self.queues.is_empty();
        for q in 0..self.opts.queues {
            let size = self.opts.queue_size;
            let base = q as u64 * RING_STRIDE;
            let desc = base;
            let avail = base + 16 * u64::from(size);
            let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4096);
            let data = DATA_BASE + q as u64 * u64::from(size / 3) * u64::from(self.opts.slot_size);
            if !existing {
                self.queues.push(Queue {
                    index: q,
                    size,
                    desc,
                    avail,
                    used,
                    data,
                    slot_size: self.opts.slot_size,
                    kick: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
                    call: EventFd::new(0).expect("eventfd"),
                    free: (0..size / 3).rev().collect(),
                    outstanding: Default::default(),
                    avail_idx: 0,
                    last_used: 0,
                    event_idx: self.features & EVENT_IDX != 0,
                    indirect: self.features & INDIRECT_DESC != 0,
                });
            }
            let qq = &self.queues[q];
            let base_idx = qq.last_used;
            self.fe.set_vring_num(q, size).expect("SET_VRING_NUM");
            self.fe.set_vring_base(q, base_idx).expect("SET_VRING_BASE");
            let cfg = VringConfigData {
                queue_max_size: size,
                queue_size: size,
                flags: 0,
                desc_table_addr: host + desc,
                used_ring_addr: host + used,
                avail_ring_addr: host + avail,
                log_addr: None,
            };
            self.fe.set_vring_addr(q, &cfg).expect("SET_VRING_ADDR");
            self.fe.set_vring_call(q, &qq.call).expect("SET_VRING_CALL");
            self.fe.set_vring_kick(q, &qq.kick).expect("SET_VRING_KICK");
            if self.protocol.bits() != 0 || self.features & (1 << 30) != 0 {
                self.fe.set_vring_enable(q, true).expect("SET_VRING_ENABLE");
            }
        }
    }

    /// Runs `ops` on queue `q` with up to `depth` in flight; results in
    /// order.
    pub fn run(&mut self, q: usize, ops: &[Op], depth: usize) -> Vec<Done> {
        let mem = self.mem.clone();
        let queue = &mut self.queues[q];
        let mut results: Vec<Option<Done>> = vec![None; ops.len()];
        let mut next = 0;
        let mut inflight = 0;
        while next < ops.len() || inflight > 0 {
            while next < ops.len() && inflight < depth && !queue.free.is_empty() {
                queue.submit(&mem, &ops[next], next);
                next += 1;
                inflight += 1;
            }
            queue.kick();
            for (tag, d) in queue.wait(&mem, Duration::from_secs(20)) {
                results[tag] = Some(d);
                inflight -= 1;
            }
        }
        results.into_iter().map(|r| r.expect("completed")).collect()
    }

    /// One request on queue `q`.
    pub fn one(&mut self, q: usize, op: Op) -> Done {
        self.run(q, &[op], 1).remove(0)
    }

    /// Reads the used index of queue `q` from guest memory.
    pub fn used_idx(&self, q: usize) -> u16 {
        let qq = &self.queues[q];
        self.mem
            .read_obj::<u16>(GuestAddress(qq.used + 2))
            .expect("used idx")
    }
}

/// The driver side of one split virtqueue.
pub struct Queue {
    pub index: usize,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub data: u64,
    pub slot_size: u32,
    pub kick: EventFd,
    pub call: EventFd,
    free: Vec<u16>,
    /// By head: (tag, data length to read back).
    outstanding: std::collections::HashMap<u16, (usize, u32, u16)>,
    pub avail_idx: u16,
    pub last_used: u16,
    event_idx: bool,
    indirect: bool,
}

fn put_desc(mem: &GuestMemoryMmap, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write_slice(&d, GuestAddress(table + 16 * u64::from(i)))
        .expect("descriptor");
}

impl Queue {
    fn slot_data(&self, slot: u16) -> u64 {
        self.data + u64::from(slot) * u64::from(self.slot_size)
    }

    /// Puts `op` in the ring (not kicked yet); `tag` comes back with its
    /// completion. Returns the chain's head.
    pub fn submit(&mut self, mem: &GuestMemoryMmap, op: &Op, tag: usize) -> u16 {
        let slot = self.free.pop().expect("free slot");
        let base = self.slot_data(slot);
        // Slot layout: header (16), status (1, at 16), payload from 64.
        let hdr_addr = base;
        let status_addr = base + 16;
        let payload = base + 64;
        let (type_, sector, out, in_len): (u32, u64, Vec<u8>, u32) = match op {
            Op::Read { sector, len } => (VIRTIO_BLK_T_IN, *sector, vec![], *len),
            Op::Write { sector, data } => (VIRTIO_BLK_T_OUT, *sector, data.clone(), 0),
            Op::Flush => (VIRTIO_BLK_T_FLUSH, 0, vec![], 0),
            Op::GetId { len } => (VIRTIO_BLK_T_GET_ID, 0, vec![], *len),
            Op::Discard { sector, num, flags } | Op::WriteZeroes { sector, num, flags } => {
                let mut p = Vec::with_capacity(16);
                p.extend_from_slice(&sector.to_le_bytes());
                p.extend_from_slice(&num.to_le_bytes());
                p.extend_from_slice(&flags.to_le_bytes());
                let t = if matches!(op, Op::Discard { .. }) {
                    VIRTIO_BLK_T_DISCARD
                } else {
                    VIRTIO_BLK_T_WRITE_ZEROES
                };
                (t, 0, p, 0)
            }
            Op::Raw {
                type_,
                sector,
                out,
                in_len,
            } => (*type_, *sector, out.clone(), *in_len),
        };
        assert!(out.len() as u64 + u64::from(in_len) + 64 <= u64::from(self.slot_size));
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&type_.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(hdr_addr)).expect("header");
        mem.write_obj(0xffu8, GuestAddress(status_addr))
            .expect("status");
        if !out.is_empty() {
            mem.write_slice(&out, GuestAddress(payload))
                .expect("payload");
        } else if in_len > 0 {
            // Poison what the device should overwrite.
            let poison = vec![0xa5u8; in_len as usize];
            mem.write_slice(&poison, GuestAddress(payload))
                .expect("poison");
        }
        let mut chain: Vec<(u64, u32, u16)> = vec![(hdr_addr, 16, 0)];
        if !out.is_empty() {
            chain.push((payload, out.len() as u32, 0));
        }
        if in_len > 0 {
            chain.push((payload, in_len, F_WRITE));
        }
        chain.push((status_addr, 1, F_WRITE));
        let head = slot * 3;
        if self.indirect {
            // The table lives after the payload area of the slot.
            let table = base + u64::from(self.slot_size) - 64;
            for (i, (a, l, f)) in chain.iter().enumerate() {
                let last = i + 1 == chain.len();
                let fl = if last { *f } else { *f | F_NEXT };
                put_desc(mem, table, i as u16, *a, *l, fl, i as u16 + 1);
            }
            put_desc(
                mem,
                self.desc,
                head,
                table,
                16 * chain.len() as u32,
                F_INDIRECT,
                0,
            );
        } else {
            for (i, (a, l, f)) in chain.iter().enumerate() {
                let last = i + 1 == chain.len();
                let fl = if last { *f } else { *f | F_NEXT };
                put_desc(
                    mem,
                    self.desc,
                    head + i as u16,
                    *a,
                    *l,
                    fl,
                    head + i as u16 + 1,
                );
            }
        }
        self.outstanding.insert(head, (tag, in_len, slot));
        self.push_avail(mem, head);
        head
    }

    fn push_avail(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let pos = u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(self.avail + 4 + 2 * pos))
            .expect("avail entry");
        std::sync::atomic::fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .expect("avail idx");
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Writes arbitrary descriptors (`(index, addr, len, flags, next)`)
    /// into the table and makes `head` available (for malformed-input
    /// tests). Completions of such chains come back with tag `usize::MAX`.
    pub fn submit_raw(
        &mut self,
        mem: &GuestMemoryMmap,
        descs: &[(u16, u64, u32, u16, u16)],
        head: u16,
    ) {
        for (i, a, l, f, n) in descs {
            put_desc(mem, self.desc, *i, *a, *l, *f, *n);
        }
        self.outstanding.insert(head, (usize::MAX, 0, u16::MAX));
        self.push_avail(mem, head);
    }

    /// Writes the available index directly (for malformed-input tests).
    pub fn set_avail_idx(&mut self, mem: &GuestMemoryMmap, idx: u16) {
        self.avail_idx = idx;
        mem.write_obj(idx, GuestAddress(self.avail + 2))
            .expect("avail idx");
    }

    pub fn kick(&self) {
        self.kick.write(1).expect("kick");
    }

    /// Waits up to `timeout` for completions.
    pub fn wait(&mut self, mem: &GuestMemoryMmap, timeout: Duration) -> Vec<(usize, Done)> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let done = self.reap(mem);
            if !done.is_empty() {
                return done;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "queue {}: no completion in {timeout:?}",
                self.index
            );
            let mut pfd = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
            if pfd.revents & libc::POLLIN != 0 {
                let _ = self.call.read();
            }
        }
    }

    /// Collects what is in the used ring now.
    pub fn reap(&mut self, mem: &GuestMemoryMmap) -> Vec<(usize, Done)> {
        let mut out = Vec::new();
        loop {
            std::sync::atomic::fence(Ordering::SeqCst);
            let used_idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).expect("used idx");
            if used_idx == self.last_used {
                break;
            }
            self.reap_to(mem, used_idx, &mut out);
            if self.event_idx {
                // used_event: notify us at the next completion.
                mem.write_obj(
                    self.last_used,
                    GuestAddress(self.avail + 4 + 2 * u64::from(self.size)),
                )
                .expect("used_event");
            }
        }
        out
    }

    fn reap_to(&mut self, mem: &GuestMemoryMmap, used_idx: u16, out: &mut Vec<(usize, Done)>) {
        while self.last_used != used_idx {
            let pos = u64::from(self.last_used % self.size);
            let id: u32 = mem
                .read_obj(GuestAddress(self.used + 4 + 8 * pos))
                .expect("used id");
            let len: u32 = mem
                .read_obj(GuestAddress(self.used + 8 + 8 * pos))
                .expect("used len");
            self.last_used = self.last_used.wrapping_add(1);
            let Some((tag, in_len, slot)) = self.outstanding.remove(&(id as u16)) else {
                panic!("queue {}: unexpected used id {id}", self.index);
            };
            if slot == u16::MAX {
                out.push((
                    tag,
                    Done {
                        status: 0xff,
                        used_len: len,
                        data: vec![],
                    },
                ));
                continue;
            }
            let base = self.slot_data(slot);
            let status: u8 = mem.read_obj(GuestAddress(base + 16)).expect("status");
            let mut data = vec![0u8; in_len as usize];
            mem.read_slice(&mut data, GuestAddress(base + 64))
                .expect("data");
            self.free.push(slot);
            out.push((
                tag,
                Done {
                    status,
                    used_len: len,
                    data,
                },
            ));
        }
    }

    /// Heads still outstanding.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}
