//! The allocator: the system's, except for large blocks, which are mapped on their own,
//! aligned to 2 MiB and backed by transparent huge pages.
//!
//! A fresh block is filled one 4 KiB page fault at a time, and on this project's machines
//! a fault costs more than copying its page. A one-shot `sn2 prove` of digits-transformer
//! took about 19,500 of them, most under the proving key's points and the prover's
//! tables and buckets. Kernels set to give huge pages where asked (`madvise`, the common
//! default) fill a 2 MiB stretch per fault instead.
//!
//! A large block is a mapping of its own, returned to the kernel when freed, so the
//! huge pages never reach memory the block does not hold: only its whole 2 MiB stretches
//! are advised (its tail keeps small pages), and no other allocation is ever placed in an
//! advised range. (Asking glibc for aligned blocks instead let its heap reuse advised
//! ranges for small allocations, each then backed by a whole huge page: cnn-small's peak
//! memory while proving doubled.) Where the kernel gives no huge pages (THP `never`) a
//! large block is an ordinary mapping, as glibc would have made; on other systems all
//! blocks are the system allocator's.

use std::alloc::{GlobalAlloc, Layout, System};

#[global_allocator]
static ALLOCATOR: HugePages = HugePages;

const HUGE_PAGE: usize = 2 << 20;
const PAGE: usize = 4096;
/// Blocks from this size are mapped on their own: smaller ones hold no whole huge page.
const LARGE: usize = HUGE_PAGE;

pub struct HugePages;

/// Whether a block of `layout` is mapped on its own; a function of the layout alone, so
/// that a block is freed the way it was allocated.
fn is_large(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= LARGE && layout.align() <= HUGE_PAGE
}

/// The length of the mapping of a large block of `size` bytes: whole pages.
fn mapped_len(size: usize) -> usize {
    size.next_multiple_of(PAGE)
}

/// A fresh, zeroed mapping of `size` bytes aligned to 2 MiB, its whole 2 MiB stretches
/// advised for huge pages; null where the kernel refuses it.
#[cfg(target_os = "linux")]
fn map_large(size: usize) -> *mut u8 {
    use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
    let len = mapped_len(size);
    // Room to slide the block to the next 2 MiB boundary; the ends are given back.
    let Some(span) = len.checked_add(HUGE_PAGE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a new anonymous mapping, at an address of the kernel's choosing, aliases
    // nothing.
    let Ok(base) = (unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            span,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }) else {
        return std::ptr::null_mut();
    };
    let base = base as usize;
    let start = base.next_multiple_of(HUGE_PAGE);
    let end = start + len;
    // SAFETY: both ranges are the parts of the mapping just made that lie outside the
    // block, page-aligned (the base and the block's ends are); the advice changes only how
    // the block's pages are backed. A failure leaves address space mapped, nothing else.
    unsafe {
        if start > base {
            let _ = munmap(base as *mut _, start - base);
        }
        if base + span > end {
            let _ = munmap(end as *mut _, base + span - end);
        }
        let _ = madvise(
            start as *mut _,
            len / HUGE_PAGE * HUGE_PAGE,
            Advice::LinuxHugepage,
        );
    }
    start as *mut u8
}

#[cfg(not(target_os = "linux"))]
fn map_large(_size: usize) -> *mut u8 {
    unreachable!("is_large is false on other systems")
}

/// Gives a large block's mapping back.
#[cfg(target_os = "linux")]
fn unmap_large(block: *mut u8, size: usize) {
    // SAFETY: `block` is a mapping `map_large` made for a block of `size` bytes, which the
    // caller no longer uses.
    let _ = unsafe { rustix::mm::munmap(block.cast(), mapped_len(size)) };
}

#[cfg(not(target_os = "linux"))]
fn unmap_large(_block: *mut u8, _size: usize) {
    unreachable!("is_large is false on other systems")
}

// SAFETY: a large block (by its layout alone) is a mapping of its own, at least its size
// and aligned beyond its layout's alignment, and is unmapped on free; every other block is
// the system allocator's, with the caller's layout.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            map_large(layout.size())
        } else {
            // SAFETY: the caller's layout, as given.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // A fresh anonymous mapping reads as zeros.
            map_large(layout.size())
        } else {
            // SAFETY: the caller's layout, as given.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            unmap_large(block, layout.size());
        } else {
            // SAFETY: a block the system allocated with this layout.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size` with `layout`'s alignment is a valid
        // layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(layout) && !is_large(new_layout) {
            // SAFETY: both layouts are the system's, which may resize in place.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: a new block of the new layout; the copy stays within both blocks, and
        // the old one is freed the way it was allocated.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_aligned_and_keep_their_bytes_through_every_resize() {
        let mut bytes: Vec<u8> = (0..3 * HUGE_PAGE).map(|i| (i % 251) as u8).collect();
        let linux = cfg!(target_os = "linux");
        assert!(!linux || (bytes.as_ptr() as usize).is_multiple_of(HUGE_PAGE));
        // Larger, then smaller than a large block, then back above it.
        for len in [5 * HUGE_PAGE, 100, 3 * HUGE_PAGE] {
            let kept = bytes.len().min(len);
            bytes.resize(len, 7);
            if len < bytes.capacity() {
                bytes.shrink_to_fit();
            }
            assert!(
                bytes[..kept.min(100)]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i % 251) as u8)
            );
            assert!(bytes[kept..].iter().all(|&b| b == 7));
        }
        let zeros = vec![0u64; LARGE];
        assert!(!linux || (zeros.as_ptr() as usize).is_multiple_of(HUGE_PAGE));
        assert!(zeros.iter().all(|&word| word == 0));
        // Small blocks are the system's, with their own alignment.
        let small: Vec<u8> = vec![1; 1000];
        assert!(small.iter().all(|&b| b == 1));
    }

    #[test]
    fn only_large_layouts_are_mapped_on_their_own() {
        let small = Layout::from_size_align(LARGE - 1, 8).unwrap();
        assert!(!is_large(small));
        let large = Layout::from_size_align(LARGE, 8).unwrap();
        assert_eq!(is_large(large), cfg!(target_os = "linux"));
        // An alignment past a huge page's stays the system's.
        let aligned = Layout::from_size_align(LARGE, 2 * HUGE_PAGE).unwrap();
        assert!(!is_large(aligned));
        assert_eq!(mapped_len(LARGE + 1), LARGE + PAGE);
    }

    #[test]
    fn a_mapping_too_large_for_the_machine_is_a_null_block_not_a_crash() {
        // More than the address space holds: the allocator answers null, which Vec turns
        // into an error for try_reserve.
        let mut bytes: Vec<u8> = Vec::new();
        assert!(
            bytes
                .try_reserve_exact(isize::MAX as usize - HUGE_PAGE)
                .is_err()
        );
        assert!(bytes.try_reserve_exact(3 * HUGE_PAGE).is_ok());
    }
}
