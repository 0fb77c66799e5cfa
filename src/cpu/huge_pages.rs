//! Weights on 2 MiB pages. A decode step streams every weight from memory once; on 4 KiB
//! pages that is a TLB miss (a page walk) every 4 KiB, which cost a third of the int8 decode
//! rate on the machine this was measured on (`docs/design.md`, "Weights on huge pages").
//! Linux gives a process huge pages for its heap only where asked (the common
//! `transparent_hugepage=madvise`), so each weight, once in its final buffer, is asked for
//! them (`MADV_HUGEPAGE`) and collapsed onto them at once (`MADV_COLLAPSE`, Linux 6.1+; a copy
//! of the weight's bytes). Both are hints: where refused (older kernels, THP disabled, no
//! free huge pages) the weights stay where they are, as before.

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
