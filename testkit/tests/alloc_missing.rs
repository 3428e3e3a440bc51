//! Without the counting allocator installed, `counted` refuses instead of reporting zero.

#[test]
#[should_panic(expected = "global_allocator")]
fn counted_without_the_allocator_panics() {
    assert!(!testkit::alloc::installed());
    let _ = testkit::alloc::counted(|| Vec::<u8>::with_capacity(64));
}
