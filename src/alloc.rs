//! The process allocator: the system allocator, except that very large
//! requests are served by lazily backed anonymous mappings.
//!
//! Why: `kafka-protocol` reserves `Vec::with_capacity(n)` with `n` read from
//! the wire before it reads the `n` elements. A 20-byte frame claiming an
//! array of 2^31 elements asks for hundreds of GiB; the system allocator
//! refuses, and Rust aborts the whole broker. Served by a `MAP_NORESERVE`
//! mapping, that reservation costs address space only: decoding then fails
//! on the missing bytes, the `Vec` is dropped, and the mapping is unmapped
//! without a page ever being touched. Untrusted input cannot kill a shard.
//!
//! Architecture Invariant: nothing else in Sluice allocates this much on
//! purpose; every real buffer is bounded by a config key far below
//! [`LAZY_ALLOCATION_BYTES_MIN`].

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests of at least this size are mapped lazily.
pub const LAZY_ALLOCATION_BYTES_MIN: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

pub struct SluiceAllocator;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_ALLOCATION_BYTES_MIN && layout.align() <= PAGE_BYTES
}

// SAFETY: delegates to `System` or to mmap/munmap with matching sizes; the
// choice depends only on the layout, which is the same at alloc and dealloc.
unsafe impl GlobalAlloc for SluiceAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            return System.alloc(layout);
        }
        let pointer = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if pointer == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            pointer.cast()
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            libc::munmap(pointer.cast(), layout.size());
        } else {
            System.dealloc(pointer, layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Fresh anonymous mappings are already zero.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            return System.realloc(pointer, layout, new_size);
        }
        let new_pointer = self.alloc(new_layout);
        if !new_pointer.is_null() {
            std::ptr::copy_nonoverlapping(pointer, new_pointer, layout.size().min(new_size));
            self.dealloc(pointer, layout);
        }
        new_pointer
    }
}

/// Request frames up to this size come from malloc's heap, not a fresh
/// mapping per frame.
const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 64 << 20;
/// Free memory at the top of a heap beyond this is given back to the OS.
const MALLOC_TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Tunes glibc malloc for a broker's allocation pattern, once, before the
/// shards start. Each request frame is one allocation of its size (a
/// produce of 64 KiB batches to two partitions is over 128 KiB). glibc
/// serves such sizes with a fresh `mmap` and frees them with `munmap`, or
/// trims its heaps after them: either way every frame's pages fault in
/// again, and each unmap costs the other shards a TLB shootdown. A profile
/// of 1 KiB-record produce showed 8% of broker time in page faults. Keeping
/// frames up to [`MALLOC_MMAP_THRESHOLD_BYTES`] on the heap, and the heap's
/// top pages mapped, removes that.
pub fn tune_malloc() {
    // SAFETY: mallopt only changes glibc's thresholds; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wire_claimed_capacity_does_not_abort() {
        // 2^31 elements of 128 bytes: 256 GiB, ten times this machine's RAM.
        let claimed: Vec<[u8; 128]> = Vec::with_capacity(i32::MAX as usize);
        assert!(claimed.capacity() >= i32::MAX as usize);
    }

    #[test]
    fn large_buffers_still_hold_data() {
        let mut buffer: Vec<u8> = Vec::with_capacity(super::LAZY_ALLOCATION_BYTES_MIN);
        buffer.extend_from_slice(b"sluice");
        buffer.reserve(super::LAZY_ALLOCATION_BYTES_MIN * 2);
        assert_eq!(&buffer[..], b"sluice");
    }
}
