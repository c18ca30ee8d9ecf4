//! Unit and property tests of the pieces that read guest memory.

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use super::chain::{gather, scatter, walk, ChainError, Seg};
use super::config::{device_features, BlkConfig};
use super::inflight::{queue_area, Region};

const MEM: u64 = 0x10000;
const TABLE: u64 = 0x1000;

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

fn put(m: &GuestMemoryMmap, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..16].copy_from_slice(&next.to_le_bytes());
    m.write_slice(&d, GuestAddress(table + 16 * u64::from(i)))
        .unwrap();
}

#[test]
fn walks_direct_and_indirect_chains() {
    let m = mem();
    put(&m, TABLE, 0, 0x4000, 16, 1, 1);
    put(&m, TABLE, 1, 0x5000, 512, 1 | 2, 2);
    put(&m, TABLE, 2, 0x6000, 1, 2, 0);
    let c = walk(&m, GuestAddress(TABLE), 8, 0).unwrap();
    assert_eq!(
        c.readable,
        vec![Seg {
            addr: GuestAddress(0x4000),
            len: 16
        }]
    );
    assert_eq!(c.writable.len(), 2);
    // Indirect: head 3 points to a table of two at 0x2000.
    put(&m, TABLE, 3, 0x2000, 32, 4, 0);
    put(&m, 0x2000, 0, 0x4000, 16, 1, 1);
    put(&m, 0x2000, 1, 0x6000, 1, 2, 0);
    let c = walk(&m, GuestAddress(TABLE), 8, 3).unwrap();
    assert_eq!(c.readable.len(), 1);
    assert_eq!(c.writable.len(), 1);
}

#[test]
fn rejects_malformed_chains() {
    let m = mem();
    // A loop.
    put(&m, TABLE, 0, 0x4000, 16, 1, 1);
    put(&m, TABLE, 1, 0x4000, 16, 1, 0);
    assert_eq!(walk(&m, GuestAddress(TABLE), 8, 0), Err(ChainError::Loop));
    // Next outside the table.
    put(&m, TABLE, 1, 0x4000, 16, 1, 9);
    assert_eq!(
        walk(&m, GuestAddress(TABLE), 8, 0),
        Err(ChainError::IndexOutOfRange(9))
    );
    // Head outside the table.
    assert_eq!(
        walk(&m, GuestAddress(TABLE), 8, 8),
        Err(ChainError::IndexOutOfRange(8))
    );
    // A buffer past the end of memory.
    put(&m, TABLE, 2, MEM - 8, 16, 2, 0);
    assert!(matches!(
        walk(&m, GuestAddress(TABLE), 8, 2),
        Err(ChainError::BufferOutOfRange { .. })
    ));
    // Readable after writable.
    put(&m, TABLE, 3, 0x4000, 16, 2 | 1, 4);
    put(&m, TABLE, 4, 0x4000, 16, 0, 0);
    assert_eq!(walk(&m, GuestAddress(TABLE), 8, 3), Err(ChainError::Order));
    // Nested indirect, and indirect with NEXT.
    put(&m, TABLE, 5, 0x2000, 16, 4, 0);
    put(&m, 0x2000, 0, 0x3000, 16, 4, 0);
    assert_eq!(
        walk(&m, GuestAddress(TABLE), 8, 5),
        Err(ChainError::NestedIndirect)
    );
    put(&m, TABLE, 6, 0x2000, 16, 4 | 1, 0);
    assert_eq!(
        walk(&m, GuestAddress(TABLE), 8, 6),
        Err(ChainError::BadIndirectTable)
    );
    // More than 4 GiB.
    put(&m, TABLE, 7, 0x4000, u32::MAX, 1, 0);
    put(&m, TABLE, 0, 0x4000, 16, 0, 0);
    assert!(walk(&m, GuestAddress(TABLE), 8, 7).is_err());
}

#[test]
fn gather_and_scatter_stay_in_segments() {
    let m = mem();
    let segs = [
        Seg {
            addr: GuestAddress(0x4000),
            len: 3,
        },
        Seg {
            addr: GuestAddress(0x5000),
            len: 5,
        },
    ];
    assert_eq!(scatter(&m, &segs, 1, &[1, 2, 3, 4, 5, 6, 7, 8, 9]), 7);
    let mut b = [0u8; 8];
    assert_eq!(gather(&m, &segs, 0, &mut b), 8);
    assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x5005)).unwrap(), 0);
}

#[test]
fn config_space_layout() {
    let c = BlkConfig {
        capacity: 0x20000,
        blk_size: 4096,
        num_queues: 3,
        wce: true,
    };
    let b = c.to_bytes();
    assert_eq!(&b[0..8], &0x20000u64.to_le_bytes());
    assert_eq!(&b[20..24], &4096u32.to_le_bytes());
    assert_eq!(b[32], 1);
    assert_eq!(&b[34..36], &3u16.to_le_bytes());
    assert_eq!(&b[44..48], &8u32.to_le_bytes());
    assert_ne!(device_features(false) & (1 << 5), 0);
    assert_eq!(device_features(true) & (1 << 5), 0);
}

#[test]
fn inflight_area_recovers_in_order() {
    let (file, size) = Region::create(2, 16).unwrap();
    assert_eq!(size as usize, 2 * queue_area(16));
    let r = Region::map(file, 0, size, 2, 16).unwrap();
    let mut q = r.queue(1, 16).unwrap();
    assert!(q.recover(0).is_empty()); // fresh: initialised
    q.start(5);
    q.start(2);
    q.start(9);
    q.before_used(2);
    q.after_used(2, 1);
    // Restart: 5 and 9 were in flight, oldest first.
    let mut q2 = r.queue(1, 16).unwrap();
    assert_eq!(q2.recover(1), vec![5, 9]);
    // Died between the used ring update and the note: 5 is complete.
    q2.before_used(5);
    let mut q3 = r.queue(1, 16).unwrap();
    assert_eq!(q3.recover(2), vec![9]);
    assert!(r.queue(2, 16).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random tables never panic, and a walked chain only names guest
    /// memory, readable buffers first.
    #[test]
    fn random_tables_never_escape(
        descs in proptest::collection::vec(
            (0u64..0x12000, any::<u32>(), 0u16..8, 0u16..24), 1..24),
        size in 1u16..24,
        head in 0u16..32,
        indirect in proptest::collection::vec(
            (0u64..0x12000, 0u32..0x2000, 0u16..8, 0u16..24), 0..8),
    ) {
        let m = mem();
        for (i, (a, l, f, n)) in descs.iter().enumerate() {
            let l = if *l % 3 == 0 { *l } else { *l % 0x3000 };
            put(&m, TABLE, i as u16, *a, l, *f, *n);
        }
        for (i, (a, l, f, n)) in indirect.iter().enumerate() {
            put(&m, 0x3000, i as u16, *a, *l, *f, *n);
        }
        if let Ok(c) = walk(&m, GuestAddress(TABLE), size, head) {
            for s in c.readable.iter().chain(&c.writable) {
                if s.len > 0 {
                    prop_assert!(m.check_range(s.addr, s.len as usize, Permissions::Read));
                }
            }
            let total: u64 = c.readable.iter().chain(&c.writable).map(|s| u64::from(s.len)).sum();
            prop_assert!(total <= u64::from(u32::MAX));
        }
    }
}
