//! Weights on 2 MiB pages. A decode step streams every weight from memory once; on 4 KiB
//! pages that is a TLB miss (a page walk) every 4 KiB, which cost a third of the int8 decode
//! rate on the machine this was measured on (`docs/design.md`, "Weights on huge pages").
//! Linux gives a process huge pages for its heap only where asked (the common
//! `transparent_hugepage=madvise`), so each weight, once in its final buffer, is asked for
//! them (`MADV_HUGEPAGE`) and collapsed onto them at once (`MADV_COLLAPSE`, Linux 6.1+; a copy
//! of the weight's bytes). Both are hints: where refused (older kernels, THP disabled, no
//! free huge pages) the weights stay where they are, as before.

/// A global allocator: the system's, with every block of [`ADVISED_FROM`] bytes or more
/// asked for huge pages (`MADV_HUGEPAGE` on the 2 MiB pages inside it) before it is first
/// touched, as glibc's `glibc.malloc.hugetlb=1` tunable does for its whole heap. Untouched
/// pages then fault in 2 MiB at a time: the vision encoder's activations (tens of MiB per op,
/// first touched on the first frame) and weights built into fresh memory. Measured on the
/// InternVL2-1B stand-in with `--cpu-products bf16`: the vision encoder 1.89 → 1.62–1.66 s,
/// the prefill −5 %. Pages already touched stay as they are (`khugepaged` may merge them
/// later). The `linvt` binary installs it; a library user may too:
/// `#[global_allocator] static A: linvt::cpu::huge_pages::HugeHeap = HugeHeap;`
pub struct HugeHeap;

/// The smallest block [`HugeHeap`] advises: it holds at least one whole 2 MiB page.
pub const ADVISED_FROM: usize = 4 << 20;

// SAFETY: every block comes from and goes back to `System` with the caller's layout; the
// advice changes how the kernel backs the pages, never their contents (zeroed blocks are
// zeroed here, after the advice).
unsafe impl std::alloc::GlobalAlloc for HugeHeap {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = std::alloc::System.alloc(layout);
        if layout.size() >= ADVISED_FROM && !p.is_null() {
            advise_inside(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() < ADVISED_FROM {
            return std::alloc::System.alloc_zeroed(layout);
        }
        // Advised before the zeroing touches the pages (calloc would touch them first).
        let p = self.alloc(layout);
        if !p.is_null() {
            std::ptr::write_bytes(p, 0, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(p, layout)
    }

    unsafe fn realloc(&self, p: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let q = std::alloc::System.realloc(p, layout, size);
        if size >= ADVISED_FROM && !q.is_null() {
            advise_inside(q, size);
        }
        q
    }
}

/// `MADV_HUGEPAGE` on the whole 2 MiB pages inside `len` bytes at `p` (none outside the
/// block: its neighbours are other blocks, or past the heap's end).
fn advise_inside(p: *mut u8, len: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HUGE: usize = 2 << 20;
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + len) / HUGE * HUGE;
        if start < end {
            // SAFETY: advice on pages of a live block of this process; a hint (failure, e.g.
            // THP disabled, leaves the pages as they were) that keeps their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (p, len);
}

/// Asks for the 2 MiB pages `bytes` fall in to be huge pages, now.
pub fn back(bytes: &[u8]) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HUGE: usize = 2 << 20;
        let start = bytes.as_ptr() as usize / HUGE * HUGE;
        let end = (bytes.as_ptr() as usize + bytes.len()).next_multiple_of(HUGE);
        // One huge page at a time: one that is already huge costs next to nothing, and one
        // that cannot be (the first or last may reach past the heap's mapping) fails alone.
        for page in (start..end).step_by(HUGE) {
            // SAFETY: advice on memory of this process (the pages around its own live
            // allocation); neither call changes the contents (MADV_COLLAPSE copies them onto
            // a huge page).
            unsafe {
                let at = page as *mut libc::c_void;
                libc::madvise(at, HUGE, libc::MADV_HUGEPAGE);
                libc::madvise(at, HUGE, libc::MADV_COLLAPSE);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    /// The pages asked for keep their contents (collapsing copies them), including the
    /// memory around the buffer that shares its first and last huge page.
    #[test]
    fn backed_memory_keeps_its_contents() {
        let before: Vec<u32> = (0..64 * 1024u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let buffer: Vec<u8> = (0..5 * (1 << 20) + 12_345)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let after: Vec<u32> = (0..64 * 1024).map(|i| i ^ 0x5555_5555).collect();
        let copy = buffer.clone();
        super::back(&buffer);
        assert_eq!(buffer, copy);
        assert!(before
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i as u32).wrapping_mul(2_654_435_761)));
        assert!(after
            .iter()
            .enumerate()
            .all(|(i, &v)| v == i as u32 ^ 0x5555_5555));
    }
}
