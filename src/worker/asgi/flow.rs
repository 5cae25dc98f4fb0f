//! Back-pressure from the client to the app's `send`: the bytes the app handed over that
//! the connection has not taken yet. Past a high-water mark `send` returns a future that
//! the I/O side completes once the backlog is down to the low-water mark, as asyncio's own
//! transports do with `drain()`. Below it `send` returns at once, so a response of a few
//! chunks never waits for a round trip through the I/O thread per chunk.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes handed over and not yet taken past which `send` waits.
pub const HIGH_WATER: usize = 64 * 1024;
/// Bytes still pending at which a waiting `send` resumes.
pub const LOW_WATER: usize = 16 * 1024;

#[derive(Default)]
pub struct Flow {
    unacked: AtomicUsize,
    waiting: AtomicBool,
}

impl Flow {
    /// The app handed `n` bytes over; true when it should wait.
    pub fn sent(&self, n: usize) -> bool {
        self.unacked.fetch_add(n, Ordering::SeqCst) + n > HIGH_WATER
    }

    /// The app is about to wait. False when the backlog drained meanwhile (it need not
    /// wait: the I/O side may have checked before the flag was up).
    pub fn wait(&self) -> bool {
        self.waiting.store(true, Ordering::SeqCst);
        if self.unacked.load(Ordering::SeqCst) <= LOW_WATER
            && self.waiting.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        true
    }

    /// The backlog is down to the low-water mark: a waiting `send` may go on.
    pub fn drained(&self) -> bool {
        self.unacked.load(Ordering::SeqCst) <= LOW_WATER
    }

    /// The connection took `n` bytes; true when a waiting `send` must be woken now.
    pub fn taken(&self, n: usize) -> bool {
        let left = self
            .unacked
            .fetch_sub(n, Ordering::SeqCst)
            .saturating_sub(n);
        left <= LOW_WATER && self.waiting.swap(false, Ordering::SeqCst)
    }
}
