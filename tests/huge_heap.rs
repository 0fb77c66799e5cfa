//! The `linvt` binary's allocator (`cpu::huge_pages::HugeHeap`), installed here as this test
//! binary's: blocks over its threshold keep their contents through growth, come zeroed when
//! asked, and small blocks behave as the system's.

use linvt::cpu::huge_pages::{HugeHeap, ADVISED_FROM};

#[global_allocator]
static ALLOCATOR: HugeHeap = HugeHeap;

#[test]
fn big_blocks_keep_their_contents_and_come_zeroed() {
    for len in [ADVISED_FROM - 1, ADVISED_FROM, 3 * ADVISED_FROM + 12_345] {
        let zeroed = vec![0u8; len];
        assert!(zeroed.iter().all(|&b| b == 0), "{len} bytes not zeroed");
        drop(zeroed);
        // Dirty the freed memory, then ask for zeroed memory again: it must not show through.
        let dirty: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        drop(dirty);
        let zeroed = vec![0u32; len / 4];
        assert!(
            zeroed.iter().all(|&v| v == 0),
            "{len} bytes reused without zeroing"
        );
        let mut grown: Vec<u32> = (0..len as u32 / 8).collect();
        grown.extend(0..len as u32 / 4);
        grown.shrink_to_fit();
        let half = len / 8;
        assert!(grown[..half]
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as u32));
        assert!(grown[half..]
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as u32));
    }
}

/// The advice is page-granular; a block's neighbours (small blocks around big ones) keep
/// their contents.
#[test]
fn neighbours_of_big_blocks_keep_their_contents() {
    let small: Vec<Vec<u64>> = (0..64).map(|i| vec![i; 1000 + i as usize]).collect();
    let big: Vec<Vec<u8>> = (0..4)
        .map(|i| vec![i as u8; ADVISED_FROM + 4096 * i])
        .collect();
    for (i, s) in small.iter().enumerate() {
        assert!(s.len() == 1000 + i && s.iter().all(|&v| v == i as u64));
    }
    for (i, b) in big.iter().enumerate() {
        assert!(b.iter().all(|&v| v == i as u8));
    }
}
