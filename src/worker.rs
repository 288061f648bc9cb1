//! Which worker thread runs the current task, and how many there are.
//!
//! A leaf: the proxy picks its per-worker clients and idle connections with [`index`], the
//! pipeline sizes them with [`count`], and the server's worker threads set the index with
//! [`enter`] as they start. None of them needs to import another for it.

use std::cell::Cell;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// This thread's worker number (0 outside worker threads). Per-worker resources, such as
/// an upstream cluster's clients, are picked with it.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Marks the calling thread as worker `i`; called once by each worker thread as it starts.
pub fn enter(i: usize) {
    INDEX.with(|c| c.set(i));
}

/// The number of workers for a configured value: the value, or one per available core.
pub fn count(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
