//! The vhost-user message handler of one frontend connection: feature and
//! protocol negotiation, guest memory table, vring setup, configuration
//! space, inflight area. The `vhost` crate decodes and checks the
//! messages; this is what they do to the device. Queues run in
//! [`super::queue`] tasks, started when a ring is complete (addresses,
//! kick, enabled) and stopped (with their requests completed) before any
//! message changes what they use.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::debug;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Backend, Error as VuError, GpuBackend, Result as VuResult, VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;
use vhost_user_backend::VringT;
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{
    GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap, GuestRegionMmap,
};

use super::config::{device_features, CONFIG_SIZE, MAX_QUEUE_SIZE, WCE_OFFSET};
use super::inflight::Region;
use super::queue::{Mem, QueueHandle, QueueParams, Vring};
use super::Shared;

/// Where a frontend address range is in guest memory.
struct Mapping {
    vmm_addr: u64,
    size: u64,
    gpa: u64,
}

/// The protocol features offered (REPLY_ACK is added by the `vhost`
/// crate): QSD's (MQ, REPLY_ACK, BACKEND_REQ, CONFIG,
/// CONFIGURE_MEM_SLOTS) plus INFLIGHT_SHMFD. Not offered: LOG_SHMFD
/// (dirty logging for migration), HOST_NOTIFIER, BACKEND_SEND_FD.
pub fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::BACKEND_REQ
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
        | VhostUserProtocolFeatures::INFLIGHT_SHMFD
}

/// Slots of guest memory accepted (`GET_MAX_MEM_SLOTS`).
const MAX_MEM_SLOTS: u64 = 509;

struct Ring {
    vring: Vring,
    /// Addresses set.
    addr_set: bool,
    /// The kick fd arrived (the ring may start).
    kicked: bool,
    running: Option<QueueHandle>,
}

/// The device state of one connection.
pub struct Device {
    shared: Arc<Shared>,
    mem: Mem,
    mappings: Vec<Mapping>,
    rings: Vec<Ring>,
    owned: bool,
    acked_features: u64,
    acked_protocol: u64,
    inflight: Option<Arc<Region>>,
}

fn einval() -> VuError {
    VuError::InvalidParam
}

fn io_err(e: impl std::fmt::Display) -> VuError {
    VuError::ReqHandlerError(std::io::Error::other(e.to_string()))
}

impl Device {
    pub fn new(shared: Arc<Shared>) -> VuResult<Device> {
        let mem: Mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut rings = Vec::new();
        for _ in 0..shared.num_queues {
            let vring = Vring::new(mem.clone(), MAX_QUEUE_SIZE).map_err(io_err)?;
            rings.push(Ring {
                vring,
                addr_set: false,
                kicked: false,
                running: None,
            });
        }
        Ok(Device {
            shared,
            mem,
            mappings: Vec::new(),
            rings,
            owned: false,
            acked_features: 0,
            acked_protocol: 0,
            inflight: None,
        })
    }

    fn ring(&mut self, index: u32) -> VuResult<&mut Ring> {
        self.rings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    /// Stops queue `index` (completing what it runs).
    fn stop_queue(&mut self, index: usize) {
        if let Some(h) = self.rings.get_mut(index).and_then(|r| r.running.take()) {
            h.stop();
        }
    }

    /// Stops every queue: the connection ends or the device is reset.
    pub fn stop_all(&mut self) {
        for i in 0..self.rings.len() {
            self.stop_queue(i);
        }
    }

    /// Starts queue `index` if it is complete and not running.
    fn maybe_start(&mut self, index: usize) -> VuResult<()> {
        let num = self.shared.num_queues;
        let track = self.inflight.clone();
        let disk = self.shared.disk.clone();
        let rt = self.shared.runtime();
        let mem = self.mem.clone();
        let r = &mut self.rings[index];
        if r.running.is_some() || !r.kicked || !r.addr_set {
            return Ok(());
        }
        let (enabled, kick, size) = {
            let st = r.vring.get_ref();
            let kick = match st.get_kick() {
                Some(k) => {
                    // SAFETY: the descriptor belongs to `k`, which lives
                    // (under the vring's lock) for this borrow.
                    let b = unsafe { BorrowedFd::borrow_raw(k.as_raw_fd()) };
                    Some(b.try_clone_to_owned().map_err(VuError::ReqHandlerError)?)
                }
                None => None,
            };
            (st.is_enabled(), kick, st.get_queue().size())
        };
        if !enabled {
            return Ok(());
        }
        let Some(kick): Option<OwnedFd> = kick else {
            return Ok(());
        };
        set_nonblocking(&kick);
        {
            let mut st = r.vring.get_mut();
            let m = mem.memory();
            if !st.get_queue().is_valid(&*m) {
                debug!("vhost-user-blk: queue {index} is not valid, not started");
                return Ok(());
            }
            // The used index in guest memory is the truth after a
            // reconnection.
            if let Ok(u) = st.get_queue().used_idx(&*m, Ordering::Acquire) {
                st.get_queue_mut().set_next_used(u.0);
            }
        }
        let index16 = index as u16;
        let track = if index16 < num {
            track.and_then(|t| t.queue(index16, size))
        } else {
            None
        };
        r.running = Some(QueueHandle::start(
            &rt,
            QueueParams {
                index: index16,
                vring: r.vring.clone(),
                mem,
                disk,
                kick,
                track,
            },
        ));
        Ok(())
    }

    fn vmm_to_gpa(&self, va: u64) -> VuResult<u64> {
        self.mappings
            .iter()
            .find(|m| va >= m.vmm_addr && va - m.vmm_addr < m.size)
            .map(|m| va - m.vmm_addr + m.gpa)
            .ok_or(VuError::InvalidParam)
    }

    fn replace_memory(&mut self, mem: GuestMemoryMmap) {
        // Queues keep snapshots of the old table until they stop, so the
        // old mappings stay valid for requests in flight.
        let running: Vec<usize> = (0..self.rings.len())
            .filter(|i| self.rings[*i].running.is_some())
            .collect();
        for &i in &running {
            self.stop_queue(i);
        }
        self.mem.lock().map(|g| g.replace(mem)).ok();
        for i in running {
            let _ = self.maybe_start(i);
        }
    }
}

/// A region must lie inside its file: touching a mapping past the end of
/// the file would kill the daemon with SIGBUS.
fn check_file_size(file: &File, offset: u64, size: u64) -> VuResult<()> {
    let len = file.metadata().map_err(VuError::ReqHandlerError)?.len();
    match offset.checked_add(size) {
        Some(end) if end <= len && size > 0 => Ok(()),
        _ => Err(einval()),
    }
}

fn set_nonblocking(fd: &OwnedFd) {
    set_nonblocking_raw(fd.as_raw_fd());
}

fn set_nonblocking_raw(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        if self.owned {
            return Err(VuError::InvalidOperation("already claimed"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.stop_all();
        self.owned = false;
        self.acked_features = 0;
        self.acked_protocol = 0;
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        self.stop_all();
        for r in &mut self.rings {
            r.vring.set_enabled(false);
            r.kicked = false;
        }
        self.acked_features = 0;
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(device_features(self.shared.disk.writable))
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !device_features(self.shared.disk.writable) != 0 {
            return Err(einval());
        }
        self.acked_features = features;
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for r in &self.rings {
            r.vring.set_queue_event_idx(event_idx);
        }
        // Without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled.
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
            for i in 0..self.rings.len() {
                self.rings[i].vring.set_enabled(true);
                self.maybe_start(i)?;
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy_listening: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if postcopy_listening.is_some() {
            return Err(VuError::InvalidOperation("postcopy is not supported"));
        }
        let mut regions = Vec::new();
        let mut mappings = Vec::new();
        for (region, file) in ctx.iter().zip(files) {
            check_file_size(&file, region.mmap_offset, region.memory_size)?;
            let r = GuestRegionMmap::new(
                region.mmap_region(file)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?;
            mappings.push(Mapping {
                vmm_addr: region.user_addr,
                size: region.memory_size,
                gpa: region.guest_phys_addr,
            });
            regions.push(r);
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(io_err)?;
        self.mappings = mappings;
        self.replace_memory(mem);
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        if num == 0 || num > u32::from(MAX_QUEUE_SIZE) || !num.is_power_of_two() {
            return Err(einval());
        }
        let r = self.ring(index)?;
        r.vring.set_queue_size(num as u16);
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let d = self.vmm_to_gpa(descriptor)?;
        let a = self.vmm_to_gpa(available)?;
        let u = self.vmm_to_gpa(used)?;
        self.stop_queue(index as usize);
        let r = self.ring(index)?;
        r.vring.set_queue_info(d, a, u).map_err(io_err)?;
        r.addr_set = true;
        self.maybe_start(index as usize)
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let r = self.ring(index)?;
        r.vring.set_queue_next_avail(base as u16);
        r.vring.set_queue_next_used(base as u16);
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        if index as usize >= self.rings.len() {
            return Err(einval());
        }
        self.stop_queue(index as usize);
        let r = self.ring(index)?;
        r.kicked = false;
        r.vring.set_queue_ready(false);
        r.vring.set_kick(None);
        r.vring.set_call(None);
        let next = r.vring.queue_next_avail();
        Ok(VhostUserVringState::new(index, u32::from(next)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let i = usize::from(index);
        if i >= self.rings.len() {
            return Err(einval());
        }
        self.stop_queue(i);
        let r = &mut self.rings[i];
        r.vring.set_kick(fd);
        r.vring.set_queue_ready(true);
        r.kicked = true;
        self.maybe_start(i)
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        // A notification must never block a queue task (QEMU's own
        // eventfds are non-blocking anyway).
        if let Some(f) = &fd {
            set_nonblocking_raw(f.as_raw_fd());
        }
        let r = self.ring(u32::from(index))?;
        r.vring.set_call(fd);
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let r = self.ring(u32::from(index))?;
        r.vring.set_err(fd);
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        self.acked_protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(u64::from(self.shared.num_queues))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        if index as usize >= self.rings.len() {
            return Err(einval());
        }
        if !enable {
            self.stop_queue(index as usize);
        }
        self.ring(index)?.vring.set_enabled(enable);
        self.maybe_start(index as usize)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        let end = offset.checked_add(size).ok_or(VuError::InvalidParam)? as usize;
        if end > CONFIG_SIZE {
            return Err(einval());
        }
        let cfg = self.shared.config().to_bytes();
        Ok(cfg[offset as usize..end].to_vec())
    }

    fn set_config(&mut self, offset: u32, buf: &[u8], flags: VhostUserConfigFlags) -> VuResult<()> {
        // Only the frontend (not migration) may write, and only `wce`.
        if !flags.is_empty() || offset != WCE_OFFSET || buf.len() != 1 {
            return Err(einval());
        }
        self.shared.set_wce(buf[0] != 0);
        Ok(())
    }

    fn set_backend_req_fd(&mut self, _backend: Backend) {
        // The connection kept its own copy of the channel (see
        // `channel`), through which config changes are sent.
    }

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VuResult<()> {
        Err(VuError::InvalidOperation("not a GPU device"))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VuResult<File> {
        Err(VuError::InvalidOperation("no shared objects"))
    }

    fn get_inflight_fd(
        &mut self,
        inflight: &VhostUserInflight,
    ) -> VuResult<(VhostUserInflight, File)> {
        if inflight.num_queues == 0
            || inflight.queue_size == 0
            || inflight.queue_size > MAX_QUEUE_SIZE
        {
            return Err(einval());
        }
        let (file, size) = Region::create(inflight.num_queues, inflight.queue_size)
            .map_err(VuError::ReqHandlerError)?;
        Ok((
            VhostUserInflight {
                mmap_size: size,
                mmap_offset: 0,
                num_queues: inflight.num_queues,
                queue_size: inflight.queue_size,
            },
            file,
        ))
    }

    fn set_inflight_fd(&mut self, inflight: &VhostUserInflight, file: File) -> VuResult<()> {
        let region = Region::map(
            file,
            inflight.mmap_offset,
            inflight.mmap_size,
            inflight.num_queues,
            inflight.queue_size,
        )
        .map_err(VuError::ReqHandlerError)?;
        self.inflight = Some(region);
        Ok(())
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Ok(MAX_MEM_SLOTS)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        postcopy_listening: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        if postcopy_listening.is_some() {
            return Err(VuError::InvalidOperation("postcopy is not supported"));
        }
        if self.mappings.len() as u64 >= MAX_MEM_SLOTS {
            return Err(einval());
        }
        check_file_size(&fd, region.mmap_offset, region.memory_size)?;
        let r = Arc::new(
            GuestRegionMmap::new(
                region.mmap_region(fd)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?,
        );
        let mem = self.mem.memory().insert_region(r).map_err(io_err)?;
        self.mappings.push(Mapping {
            vmm_addr: region.user_addr,
            size: region.memory_size,
            gpa: region.guest_phys_addr,
        });
        self.replace_memory(mem);
        Ok(None)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        let (mem, _) = self
            .mem
            .memory()
            .remove_region(GuestAddress(region.guest_phys_addr), region.memory_size)
            .map_err(io_err)?;
        self.mappings.retain(|m| m.gpa != region.guest_phys_addr);
        self.replace_memory(mem);
        Ok(())
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VuResult<Option<File>> {
        Err(VuError::InvalidOperation(
            "device state transfer is not supported",
        ))
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        Err(VuError::InvalidOperation(
            "device state transfer is not supported",
        ))
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(VuError::InvalidOperation("no shared memory regions"))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VuResult<()> {
        Err(VuError::InvalidOperation("dirty logging is not supported"))
    }
}
