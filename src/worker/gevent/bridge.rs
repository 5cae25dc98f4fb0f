//! The one way from the Rust side (tokio, any thread) to the gevent hub: a queue of jobs
//! and an eventfd the hub watches.
//!
//! Pushing never blocks and never takes the GIL: a job goes into a short mutex-guarded
//! queue, and the eventfd is written only when the hub has not been woken already since
//! it last drained the queue (one write per burst, not per job). The hub reads the eventfd
//! and takes the whole queue in one call.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::request::{GreenRequest, RequestJob};
use crate::scoreboard::now_ms;

/// What the hub is asked to do (the numbers are the Python side's `kind`).
pub(in crate::worker) enum Job {
    /// Run a request in a new greenlet.
    Start(Box<RequestJob>),
    /// Wake the greenlet of this request that waits (body data, room in its queue).
    Notify(u64),
    /// This request is past its deadline (its client got a 504): kill its greenlet.
    Kill(u64),
    /// The worker is done: leave the hub.
    Stop,
}

pub struct Bridge {
    queue: Mutex<Vec<Job>>,
    wake: OwnedFd,
    /// The eventfd was written and the hub has not drained the queue since.
    woken: AtomicBool,
    next_id: AtomicU64,
    /// The request id running in each deadline entry, so that a deadline names it.
    running: Box<[AtomicU64]>,
    /// When the hub's beat greenlet last ran: a hub blocked by a CPU-bound greenlet
    /// stops it, and the worker's heartbeat with it.
    hub_beat_ms: AtomicU64,
}

impl Bridge {
    /// `entries`: as many as the deadline entries (`worker_connections`).
    pub fn new(entries: usize) -> std::io::Result<Self> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Bridge {
            queue: Mutex::new(Vec::new()),
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            woken: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            running: (0..entries.max(1)).map(|_| AtomicU64::new(0)).collect(),
            hub_beat_ms: AtomicU64::new(now_ms()),
        })
    }

    pub(in crate::worker) fn push(&self, job: Job) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        if !self.woken.swap(true, Ordering::AcqRel) {
            // Only EAGAIN can fail here (a counter near 2^64), and then the hub has a
            // wake pending anyway.
            let _ = nix::unistd::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        }
    }

    /// A new request id, recorded as the one running in deadline entry `entry`.
    pub fn register(&self, entry: usize) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(cell) = self.running.get(entry) {
            cell.store(id, Ordering::Relaxed);
        }
        id
    }

    /// The deadline watcher answered 504 for entry `entry`.
    pub fn expired(&self, entry: usize) {
        if let Some(id) = self.running.get(entry).map(|c| c.load(Ordering::Relaxed)) {
            self.push(Job::Kill(id));
        }
    }

    pub fn hub_beat_ms(&self) -> u64 {
        self.hub_beat_ms.load(Ordering::Acquire)
    }

    /// On the hub: everything queued, after clearing the wake-up.
    fn drain(&self) -> Vec<Job> {
        let mut buf = [0u8; 8];
        let _ = nix::unistd::read(self.wake.as_fd(), &mut buf);
        // Cleared before the queue is taken: a job pushed from now on writes again.
        self.woken.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The bridge as the hub's Python code sees it.
#[pyclass(module = "unitcorn", frozen)]
pub struct HubBridge {
    pub bridge: std::sync::Arc<Bridge>,
}

const START: u8 = 0;
const NOTIFY: u8 = 1;
const KILL: u8 = 2;
const STOP: u8 = 3;

#[pymethods]
impl HubBridge {
    /// The eventfd to watch for reading.
    #[getter]
    fn fd(&self) -> i32 {
        self.bridge.wake.as_raw_fd()
    }

    /// The jobs queued since the last call, as `(kind, arg)` tuples: kind 0 (start) with
    /// a request object, 1 (notify) and 2 (kill) with a request id, 3 (stop).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let jobs = PyList::empty(py);
        for job in self.bridge.drain() {
            let item = match job {
                Job::Start(job) => {
                    let request = Bound::new(py, GreenRequest::new(*job))?;
                    PyTuple::new(
                        py,
                        [START.into_pyobject(py)?.into_any(), request.into_any()],
                    )?
                }
                Job::Notify(id) => (NOTIFY, id).into_pyobject(py)?,
                Job::Kill(id) => (KILL, id).into_pyobject(py)?,
                Job::Stop => (STOP, 0u64).into_pyobject(py)?,
            };
            jobs.append(item)?;
        }
        Ok(jobs)
    }

    /// The hub's heartbeat (see `Bridge::hub_beat_ms`).
    fn beat(&self) {
        self.bridge.hub_beat_ms.store(now_ms(), Ordering::Release);
    }

    /// A message for the error log at level error.
    fn log_error(&self, text: &str) {
        tracing::error!("{}", text.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake_count(bridge: &Bridge) -> Option<u64> {
        let mut buf = [0u8; 8];
        match nix::unistd::read(bridge.wake.as_fd(), &mut buf) {
            Ok(8) => Some(u64::from_ne_bytes(buf)),
            _ => None,
        }
    }

    #[test]
    fn a_burst_of_jobs_wakes_the_hub_once_and_arrives_whole() {
        let bridge = Bridge::new(4).unwrap();
        for id in 0..100 {
            bridge.push(Job::Notify(id));
        }
        let jobs = bridge.drain();
        assert_eq!(jobs.len(), 100);
        // drain read the one wake-up: nothing is left to read.
        assert_eq!(wake_count(&bridge), None);
        // After a drain the next job wakes the hub again.
        bridge.push(Job::Stop);
        assert_eq!(wake_count(&bridge), Some(1));
    }

    #[test]
    fn a_deadline_names_the_request_running_in_its_entry() {
        let bridge = Bridge::new(2).unwrap();
        let first = bridge.register(1);
        let second = bridge.register(1);
        assert_ne!(first, second);
        bridge.expired(1);
        match bridge.drain().as_slice() {
            [Job::Kill(id)] => assert_eq!(*id, second),
            _ => panic!("expected one kill"),
        }
    }
}
