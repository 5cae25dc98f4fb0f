//! The hand-off from the I/O thread to the asyncio loop thread.
//!
//! The I/O thread never takes the GIL: it pushes a job (a closure that runs with the GIL on
//! the loop thread) onto a queue and, when the queue was empty, writes to an eventfd the loop
//! watches (`loop.add_reader`). The loop's reader drains the whole queue in one call. Under
//! load many requests ride on one wake-up and one GIL hold, and the two threads never wait
//! for each other's GIL — which `loop.call_soon_threadsafe` from the I/O thread would cost
//! on every event (a GIL round trip per request, plus asyncio's own self-pipe write).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

/// Work for the loop thread.
pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// Work for the I/O thread (completing a request's response head).
pub type Reply = Box<dyn FnOnce() + Send>;

pub struct Bridge {
    queue: Mutex<Vec<Job>>,
    wake: OwnedFd,
    /// Replies from the loop, delivered in one batch per turn of the loop: waking the I/O
    /// thread costs a syscall, so it is woken once for all of a turn's responses.
    replies: Mutex<Vec<Reply>>,
    /// A flush of `replies` is scheduled on the loop (`call_soon`).
    flush_scheduled: std::sync::atomic::AtomicBool,
    replies_ready: tokio::sync::Notify,
    /// When the loop last turned (ms since the epoch), for the heartbeat.
    loop_beat_ms: AtomicU64,
    /// A task on the I/O thread will write to `wake` (see `post_batched`).
    wake_pending: std::sync::atomic::AtomicBool,
}

impl Bridge {
    pub fn new() -> std::io::Result<Arc<Self>> {
        // SAFETY: eventfd(2) with constant flags; the descriptor it returns is new and owned
        // by nobody else, so OwnedFd may take it.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: see above: a fresh descriptor, closed only by this OwnedFd.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Arc::new(Bridge {
            queue: Mutex::new(Vec::new()),
            wake,
            replies: Mutex::new(Vec::new()),
            flush_scheduled: std::sync::atomic::AtomicBool::new(false),
            replies_ready: tokio::sync::Notify::new(),
            loop_beat_ms: AtomicU64::new(crate::scoreboard::now_ms()),
            wake_pending: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Queue `job` for the loop thread; callable from any thread, without the GIL.
    pub fn post(&self, job: Job) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(job);
            queue.len() == 1
        };
        // A non-empty queue has a wake-up pending already: the drain takes this job too.
        if first {
            let _ = nix::unistd::write(&self.wake, &1u64.to_ne_bytes());
        }
    }

    /// On the I/O thread (inside its LocalSet): queue `job`, and wake the loop once the
    /// I/O thread's current batch of ready tasks ran, not at once: the requests that
    /// arrived in the same turn of the I/O loop then share one eventfd write and one
    /// wake-up of the loop thread, where writing for each would cost a syscall and a
    /// context switch per request.
    pub fn post_batched(self: &Arc<Self>, job: Job) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(job);
            queue.len() == 1
        };
        if first && !self.wake_pending.swap(true, Ordering::AcqRel) {
            let bridge = Arc::clone(self);
            // Spawned tasks run after those already ready: the rest of this batch.
            tokio::task::spawn_local(async move {
                bridge.wake_pending.store(false, Ordering::Release);
                let _ = nix::unistd::write(&bridge.wake, &1u64.to_ne_bytes());
            });
        }
    }

    /// On the loop thread: run every queued job. The eventfd is read before the queue is
    /// taken, so a job posted in between leaves a wake-up behind rather than being missed.
    fn drain(&self, py: Python<'_>) {
        let mut counter = [0u8; 8];
        let _ = nix::unistd::read(&self.wake, &mut counter);
        let jobs = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for job in jobs {
            job(py);
        }
    }

    /// On the loop thread: queue a reply; true when the caller must schedule a flush
    /// (`Flush` through `loop.call_soon`), i.e. this is the turn's first reply.
    pub fn reply(&self, reply: Reply) -> bool {
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reply);
        !self.flush_scheduled.swap(true, Ordering::AcqRel)
    }

    /// On the I/O thread, for as long as the worker runs: deliver the replies.
    pub async fn deliver_replies(&self) {
        loop {
            self.replies_ready.notified().await;
            let replies =
                std::mem::take(&mut *self.replies.lock().unwrap_or_else(|e| e.into_inner()));
            for reply in replies {
                reply();
            }
        }
    }

    pub fn loop_beat_ms(&self) -> u64 {
        self.loop_beat_ms.load(Ordering::Acquire)
    }
}

/// The loop's reader callback for the eventfd.
#[pyclass(module = "unitcorn", frozen)]
pub struct Drain(pub Arc<Bridge>);

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        self.0.drain(py);
    }
}

/// Scheduled with `loop.call_soon` by a turn's first reply: it runs once the turn's ready
/// callbacks (the other tasks' steps) ran, and wakes the I/O thread for them all.
#[pyclass(module = "unitcorn", frozen)]
pub struct Flush(pub Arc<Bridge>);

#[pymethods]
impl Flush {
    fn __call__(&self) {
        // Replies queued from now on schedule a new flush (the loop thread runs both, so
        // none is left behind).
        self.0.flush_scheduled.store(false, Ordering::Release);
        self.0.replies_ready.notify_one();
    }
}

/// Called by the loop every heartbeat interval: it is turning.
#[pyclass(module = "unitcorn", frozen)]
pub struct Beat(pub Arc<Bridge>);

#[pymethods]
impl Beat {
    fn __call__(&self) {
        self.0
            .loop_beat_ms
            .store(crate::scoreboard::now_ms(), Ordering::Release);
    }
}

/// The error log, for the loop's exception handler.
#[pyclass(module = "unitcorn", frozen)]
pub struct LogError;

#[pymethods]
impl LogError {
    fn __call__(&self, message: &str) {
        tracing::error!("{message}");
    }
}
