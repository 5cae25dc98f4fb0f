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

pub struct Bridge {
    queue: Mutex<Vec<Job>>,
    wake: OwnedFd,
    /// When the loop last turned (ms since the epoch), for the heartbeat.
    loop_beat_ms: AtomicU64,
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
            loop_beat_ms: AtomicU64::new(crate::scoreboard::now_ms()),
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
