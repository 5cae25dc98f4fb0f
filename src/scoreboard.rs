//! The scoreboard: one slot per worker in an anonymous shared mapping made by the master
//! before the first fork, written with atomics by the worker, read by everyone.
//!
//! Workers read each other's slots to balance accepts; the master reads them for
//! liveness and load. It holds counters only, never pointers.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// How many workers one master can have at once (TTIN beyond this is refused).
pub const MAX_WORKERS: usize = 512;

/// One worker's counters; a cache line each, so workers never write the same line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Slot {
    /// The worker's pid; 0 = free.
    pub pid: AtomicI32,
    /// The configuration generation the worker was started with (HUP makes a new one).
    pub generation: AtomicU32,
    /// 1 once the worker has imported the app and accepts connections; 0 again once it
    /// stops accepting (told to stop).
    pub ready: AtomicU32,
    /// 1 when the worker asks to be replaced (it reached `max_requests`).
    pub retire: AtomicU32,
    /// Open client connections.
    pub connections: AtomicU32,
    /// App calls in progress now.
    pub in_flight: AtomicU32,
    /// Requests served since the worker started.
    pub requests: AtomicU64,
    /// The last time (`now_ms`) the worker's I/O loop ran.
    pub heartbeat_ms: AtomicU64,
    /// When (`now_ms`) the oldest app call in progress started; 0 when none.
    pub oldest_ms: AtomicU64,
}

impl Slot {
    fn reset(&self, pid: i32, generation: u32) {
        self.generation.store(generation, Ordering::Relaxed);
        self.ready.store(0, Ordering::Relaxed);
        self.retire.store(0, Ordering::Relaxed);
        self.connections.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        self.oldest_ms.store(0, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) == 1
    }

    pub fn wants_retirement(&self) -> bool {
        self.retire.load(Ordering::Acquire) == 1
    }
}

/// Milliseconds on CLOCK_MONOTONIC: one clock for every process of the machine, so the
/// master can compare a worker's timestamps with its own.
pub fn now_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// The shared mapping; it stays mapped (and shared) in every forked worker.
#[derive(Debug)]
pub struct Scoreboard {
    slots: NonNull<Slot>,
    len: usize,
}

// SAFETY: the mapping holds only atomics, which are safe to share between threads (and,
// being MAP_SHARED, between processes); the pointer is valid until drop.
unsafe impl Send for Scoreboard {}
// SAFETY: as above: every access goes through `&Slot`, whose fields are atomics.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    pub fn create(len: usize) -> io::Result<Self> {
        let bytes = NonZeroUsize::new(len.max(1) * std::mem::size_of::<Slot>())
            .expect("a scoreboard has at least one slot");
        // SAFETY: a fresh anonymous mapping aliases no Rust object; the kernel zero-fills
        // it, and all-zero bytes are a valid `Slot` (atomics of 0).
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(Scoreboard {
            slots: ptr.cast(),
            len: len.max(1),
        })
    }

    pub fn slots(&self) -> &[Slot] {
        // SAFETY: `slots` points at `len` zero-initialised, aligned `Slot`s that live as
        // long as `self`; they are only accessed through shared references to atomics.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }

    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots()[index]
    }

    /// Claim a free slot for a worker of `generation` about to be forked.
    pub fn claim(&self, generation: u32) -> Option<usize> {
        let index = self
            .slots()
            .iter()
            .position(|s| s.pid.load(Ordering::Acquire) == 0)?;
        // Reserved until the fork gives us the real pid.
        self.slots()[index].reset(-1, generation);
        Some(index)
    }

    pub fn assign(&self, index: usize, pid: i32) {
        self.slot(index).pid.store(pid, Ordering::Release);
    }

    pub fn release(&self, index: usize) {
        self.slot(index).reset(0, 0);
    }

    /// The fewest connections any other worker that accepts holds.
    pub fn fewest_connections_except(&self, me: usize) -> Option<u32> {
        self.slots()
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != me && s.pid.load(Ordering::Relaxed) > 0 && s.is_ready())
            .map(|(_, s)| s.connections.load(Ordering::Relaxed))
            .min()
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        let bytes = self.len * std::mem::size_of::<Slot>();
        // SAFETY: unmapping the region mapped in `create`; `slots()` borrows end with
        // `self`, so nothing refers to it any more.
        let _ = unsafe { munmap(self.slots.cast(), bytes) };
    }
}
