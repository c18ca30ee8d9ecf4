//! The virtio-blk device the export presents: feature bits and the
//! configuration space, as QSD 10.0 presents them.

use vhost::vhost_user::VhostUserVirtioFeatures;
use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::bindings::virtio_config::{VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_VERSION_1};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// Sectors are 512 bytes whatever the logical block size.
pub const SECTOR_SHIFT: u32 = 9;
/// Largest discard request, in sectors.
pub const MAX_DISCARD_SECTORS: u32 = 32768;
/// Largest write-zeroes request, in sectors.
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 32768;
/// Data segments per request the guest may use (QEMU's 128 - 2).
pub const SEG_MAX: u32 = 126;
/// Largest virtqueue the export accepts.
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// Size of `struct virtio_blk_config` in QEMU 10.0 (with the zoned
/// characteristics), the most a frontend may read.
pub const CONFIG_SIZE: usize = 96;
/// Offset of the `wce` byte (writeback cache enable).
pub const WCE_OFFSET: u32 = 32;

/// The virtio feature bits offered: QSD's set, less `VHOST_F_LOG_ALL`
/// (no dirty-page logging for migration). `NOTIFY_ON_EMPTY` holds since
/// every completion is notified unless `EVENT_IDX` says otherwise.
pub fn device_features(writable: bool) -> u64 {
    let mut f = [
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
        VIRTIO_BLK_F_CONFIG_WCE,
        VIRTIO_BLK_F_MQ,
        VIRTIO_F_VERSION_1,
        VIRTIO_F_NOTIFY_ON_EMPTY,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_RING_F_EVENT_IDX,
    ]
    .iter()
    .fold(0u64, |acc, b| acc | 1u64 << b);
    f |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if !writable {
        f |= 1 << VIRTIO_BLK_F_RO;
    }
    f
}

/// The variable part of the configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Logical block size in bytes.
    pub blk_size: u32,
    pub num_queues: u16,
    /// Writeback cache enabled (as the guest last set it).
    pub wce: bool,
}

impl BlkConfig {
    /// The little-endian `struct virtio_blk_config` (QSD's values: no size
    /// limit, 126 segments, minimal topology hints, one discard and one
    /// write-zeroes segment of at most 16 MiB).
    pub fn to_bytes(self) -> [u8; CONFIG_SIZE] {
        let mut b = [0u8; CONFIG_SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.capacity.to_le_bytes());
        put(8, &0u32.to_le_bytes()); // size_max
        put(12, &SEG_MAX.to_le_bytes());
        // geometry (16..20) stays zero
        put(20, &self.blk_size.to_le_bytes());
        // physical_block_exp, alignment_offset stay zero
        put(26, &1u16.to_le_bytes()); // min_io_size
        put(28, &1u32.to_le_bytes()); // opt_io_size
        put(32, &[u8::from(self.wce)]);
        put(34, &self.num_queues.to_le_bytes());
        put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
        put(40, &1u32.to_le_bytes()); // max_discard_seg
        put(44, &(self.blk_size >> SECTOR_SHIFT).to_le_bytes());
        put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        put(52, &1u32.to_le_bytes()); // max_write_zeroes_seg
        b
    }
}
