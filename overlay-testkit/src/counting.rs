//! A counting global allocator for the zero-allocation tests.
//!
//! It counts the allocations of chosen threads only, so the test harness's own threads cannot
//! interfere: the thread inside [`allocations_in`], and every thread for which the predicate
//! given to [`count_threads_where`] holds (e.g. the agent's data-path threads). A test binary
//! installs it with
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: overlay_testkit::counting::Counting = overlay_testkit::counting::Counting;
//! ```
//!
//! and both entry points check that it is installed, so a test cannot pass by counting
//! nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The allocator: [`System`]'s, plus a count of the counted threads' allocations.
#[derive(Debug)]
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Allocations of [`assert_installed`]'s probe, kept out of [`ALLOCATIONS`].
static PROBES: AtomicU64 = AtomicU64::new(0);

/// Threads counted besides the one inside [`allocations_in`]; set once per process.
static COUNTED_THREADS: OnceLock<fn() -> bool> = OnceLock::new();

/// What this thread's allocations count as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only if [`COUNTED_THREADS`] says so.
    Default,
    /// Inside [`allocations_in`].
    Counting,
    /// Inside [`assert_installed`].
    Probing,
}

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static MODE: Cell<Mode> = const { Cell::new(Mode::Default) };
}

#[inline]
fn count() {
    let counter = match MODE.try_with(Cell::get).unwrap_or(Mode::Default) {
        Mode::Counting => &ALLOCATIONS,
        Mode::Probing => &PROBES,
        Mode::Default if COUNTED_THREADS.get().is_some_and(|counted| counted()) => &ALLOCATIONS,
        Mode::Default => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; counting reads a const thread-local, an initialised
// `OnceLock` and calls a predicate that must not allocate, and bumps an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations made by `f` on this thread (plus any on threads counted through
/// [`count_threads_where`] meanwhile).
pub fn allocations_in(f: impl FnOnce()) -> u64 {
    assert_installed();
    let before = allocations();
    MODE.with(|m| m.set(Mode::Counting));
    f();
    MODE.with(|m| m.set(Mode::Default));
    allocations() - before
}

/// From now on, also counts every allocation made on a thread where `on_counted_thread`
/// holds. The predicate runs inside the allocator: it must not allocate (a const
/// thread-local read is fine). Panics if a different predicate was already set.
pub fn count_threads_where(on_counted_thread: fn() -> bool) {
    assert_installed();
    let set = COUNTED_THREADS.get_or_init(|| on_counted_thread);
    assert!(
        std::ptr::fn_addr_eq(*set, on_counted_thread),
        "count_threads_where: another predicate is already set"
    );
}

/// Allocations counted so far in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Panics unless [`Counting`] is the global allocator: a probe allocation must be seen (and
/// is not counted in [`allocations`]).
fn assert_installed() {
    let before = PROBES.load(Ordering::Relaxed);
    MODE.with(|m| m.set(Mode::Probing));
    drop(std::hint::black_box(Box::new(0u64)));
    MODE.with(|m| m.set(Mode::Default));
    assert!(
        PROBES.load(Ordering::Relaxed) > before,
        "overlay_testkit::counting::Counting is not this binary's #[global_allocator]"
    );
}
