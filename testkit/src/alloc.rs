//! A counting global allocator for the allocation tests of the mesh and the crates built on
//! it (reflector, transcoder, the media server's engine): "no heap allocation per packet" is
//! asserted, not assumed. Only the calling thread's allocations inside [`counted`] are
//! counted, so a test harness's other threads cannot disturb the count.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: testkit::alloc::CountingAlloc = testkit::alloc::CountingAlloc;`.
//! [`counted`] panics when that line is missing, so a zero count always means something.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts allocations while [`counted`] runs.
pub struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every method forwards unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn start() {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
}

fn stop() -> u64 {
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(|a| a.get())
}

/// Whether [`CountingAlloc`] is this binary's global allocator: one boxed byte is counted.
pub fn installed() -> bool {
    start();
    drop(std::hint::black_box(Box::new(0u8)));
    stop() > 0
}

/// Runs `f` and returns its result with the number of heap allocations this thread made
/// meanwhile.
///
/// # Panics
///
/// When [`CountingAlloc`] is not the global allocator: the count would be zero whatever `f`
/// did.
pub fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    assert!(
        installed(),
        "testkit::alloc::CountingAlloc is not this test binary's #[global_allocator]"
    );
    start();
    let r = f();
    (r, stop())
}
