//! The allocator: the system's, with large blocks aligned to 2 MiB and backed by
//! transparent huge pages.
//!
//! A fresh block is filled one 4 KiB page fault at a time, and on this project's machines
//! a fault costs more than copying its page. A one-shot `sn2 prove` of digits-resnet took
//! about 10,500 of them, nearly one per page of its 44 MB peak, most under the proving
//! key's points and the prover's tables and buckets. Kernels set to give huge pages where
//! asked (`madvise`, the common default) fill a 2 MiB stretch per fault instead, and the
//! prover's scattered reads of those blocks miss the TLB less.
//!
//! Only blocks of at least [`LARGE`] are changed, and only their whole 2 MiB stretches
//! are advised: a block's tail below 2 MiB keeps small pages, so no page is backed that the
//! block does not hold. Where the kernel gives no huge pages (THP `never`, other systems)
//! the alignment costs only address space.

use std::alloc::{GlobalAlloc, Layout, System};

#[global_allocator]
static ALLOCATOR: HugePages = HugePages;

const HUGE_PAGE: usize = 2 << 20;
/// Blocks from this size are aligned and advised: smaller ones hold no whole huge page.
const LARGE: usize = HUGE_PAGE;

pub struct HugePages;

/// The layout a large block is allocated with.
fn aligned(layout: Layout) -> Layout {
    if layout.size() < LARGE {
        return layout;
    }
    Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).unwrap_or(layout)
}

#[cfg(target_os = "linux")]
fn advise(block: *mut u8, size: usize) {
    if block.is_null() || size < LARGE {
        return;
    }
    // SAFETY: the range is the start of the block just allocated (its whole 2 MiB
    // stretches), and the advice changes only how its pages are backed, never what they
    // hold. A kernel that refuses it leaves the pages as they were.
    let _ = unsafe {
        rustix::mm::madvise(
            block.cast(),
            size / HUGE_PAGE * HUGE_PAGE,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn advise(_block: *mut u8, _size: usize) {}

// SAFETY: every block comes from `System` and goes back to it with the layout it was
// allocated with (`aligned` is a function of the caller's layout alone).
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `aligned` keeps the size (nonzero, as the caller's) and raises only the
        // alignment, to a power of two.
        let block = unsafe { System.alloc(aligned(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let block = unsafe { System.alloc_zeroed(aligned(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: the block was allocated with `aligned(layout)`.
        unsafe { System.dealloc(block, aligned(layout)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < LARGE && new_size < LARGE {
            // SAFETY: both layouts are the caller's own, which `System` may resize.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: the caller's contract (a valid block of `layout`, a new size that makes
        // a valid layout); the copy stays within both blocks.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
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
        assert_eq!(bytes.as_ptr() as usize % HUGE_PAGE, 0);
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
        assert_eq!(zeros.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(zeros.iter().all(|&word| word == 0));
        // Small blocks are the system's, with their own alignment.
        let small: Vec<u8> = vec![1; 1000];
        assert!(small.iter().all(|&b| b == 1));
    }

    #[test]
    fn only_large_layouts_change() {
        let small = Layout::from_size_align(LARGE - 1, 8).unwrap();
        assert_eq!(aligned(small), small);
        let large = Layout::from_size_align(LARGE, 8).unwrap();
        assert_eq!(aligned(large).align(), HUGE_PAGE);
        assert_eq!(aligned(large).size(), LARGE);
        // A size that cannot be aligned keeps the caller's layout, in both directions.
        let huge = Layout::from_size_align(isize::MAX as usize - 64, 8).unwrap();
        assert_eq!(aligned(huge), huge);
    }
}
