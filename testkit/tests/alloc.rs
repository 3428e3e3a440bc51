//! The counting allocator counts this thread's allocations inside `counted` and nothing else.

use std::hint::black_box;
use testkit::alloc::{counted, installed, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn an_allocation_is_seen_and_none_is_invented() {
    assert!(installed());
    let (v, allocs) = counted(|| Vec::<u8>::with_capacity(64));
    assert_eq!(v.capacity(), 64);
    assert!(allocs >= 1);
    let mut buf = [0u8; 64];
    let ((), allocs) = counted(|| buf.iter_mut().for_each(|b| *b = 1));
    assert_eq!(allocs, 0);
}

#[test]
fn other_threads_are_not_counted() {
    // A first spawn may set up lazily allocated state of the runtime; not counted.
    std::thread::scope(|s| {
        s.spawn(|| 0);
    });
    let ((), allocs) = counted(|| {
        std::thread::scope(|s| {
            // The spawn itself allocates here; only the other thread's vectors must not count.
            s.spawn(|| {
                (0..100)
                    .map(|i| black_box(vec![0u8; i]).len())
                    .sum::<usize>()
            });
        })
    });
    let ((), spawn_only) = counted(|| {
        std::thread::scope(|s| {
            s.spawn(|| 0);
        })
    });
    assert_eq!(allocs, spawn_only);
}
