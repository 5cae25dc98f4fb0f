//! Request deadlines of an ASGI worker. Requests share one loop, so a request past
//! `timeout` is not a reason to replace the worker (as it is when an app thread hangs): a
//! watcher thread answers it 504 and closes its connection, and the loop logs where its task
//! was stuck and cancels it. A loop that stops turning altogether is the heartbeat's case.
//!
//! The calls in progress are counted in the scoreboard (`in_flight`), but `oldest_ms` stays
//! 0: the master judges an ASGI worker by its heartbeat alone.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;

use super::TaskSlot;
use super::bridge::Bridge;
use crate::scoreboard::{Scoreboard, now_ms};

const WATCH_EVERY: Duration = Duration::from_millis(100);

const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nConnection: close\r\n\r\n504 Gateway Timeout\n";

struct Entry {
    socket: Arc<OwnedFd>,
    started_ms: u64,
    answered: bool,
    timed_out: bool,
    task: TaskSlot,
}

pub struct Timers {
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    scoreboard: Arc<Scoreboard>,
    slot: usize,
}

/// One request's entry, from the hand-off to the loop until its response is done.
pub struct TimerGuard {
    timers: Arc<Timers>,
    id: u64,
}

impl Timers {
    pub fn new(scoreboard: Arc<Scoreboard>, slot: usize) -> Arc<Self> {
        Arc::new(Timers {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            scoreboard,
            slot,
        })
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn start(self: &Arc<Self>, socket: &Arc<OwnedFd>, task: TaskSlot) -> TimerGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries().insert(
            id,
            Entry {
                socket: Arc::clone(socket),
                started_ms: now_ms(),
                answered: false,
                timed_out: false,
                task,
            },
        );
        self.scoreboard
            .slot(self.slot)
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        TimerGuard {
            timers: Arc::clone(self),
            id,
        }
    }

    /// Start the watcher thread (none with `timeout = 0`). `stack` gives a task's stack
    /// as text, on the loop thread.
    pub fn watch(
        self: &Arc<Self>,
        timeout: Duration,
        bridge: Arc<Bridge>,
        stack: Py<PyAny>,
    ) -> std::io::Result<()> {
        if timeout.is_zero() {
            return Ok(());
        }
        let timers = Arc::clone(self);
        let stack = Arc::new(stack);
        std::thread::Builder::new()
            .name("asgi-deadlines".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCH_EVERY);
                    timers.expire(timeout, &bridge, &stack);
                }
            })
            .map(drop)
    }

    fn expire(&self, timeout: Duration, bridge: &Bridge, stack: &Arc<Py<PyAny>>) {
        let now = now_ms();
        let limit = timeout.as_millis() as u64;
        for entry in self.entries().values_mut() {
            if entry.timed_out || now.saturating_sub(entry.started_ms) < limit {
                continue;
            }
            entry.timed_out = true;
            if !entry.answered {
                let _ = nix::unistd::write(&*entry.socket, GATEWAY_TIMEOUT);
            }
            let _ = nix::sys::socket::shutdown(
                entry.socket.as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
            let what = if entry.answered {
                "its response had started: connection closed"
            } else {
                "answered 504"
            };
            let task = Arc::clone(&entry.task);
            let stack = Arc::clone(stack);
            let secs = timeout.as_secs();
            let what = what.to_owned();
            // The loop may be the one that is stuck: the 504 above went out without it.
            bridge.post(Box::new(move |py| {
                log_and_cancel(py, &task, &stack, secs, &what)
            }));
        }
    }
}

/// On the loop thread: log where the task of a timed-out request is, and cancel it.
fn log_and_cancel(py: Python<'_>, task: &TaskSlot, stack: &Py<PyAny>, secs: u64, what: &str) {
    let task = task
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|t| t.clone_ref(py));
    let Some(task) = task else {
        tracing::error!("request timed out after {secs}s (timeout); {what}");
        return;
    };
    let text = stack
        .call1(py, (task.bind(py),))
        .and_then(|s| s.extract::<String>(py))
        .unwrap_or_else(|e| format!("(no stack: {e})\n"));
    tracing::error!(
        "request timed out after {secs}s (timeout); {what}; its task is cancelled. \
         Where it was:\n{}",
        text.trim_end()
    );
    if let Err(e) = task.bind(py).call_method0("cancel") {
        tracing::warn!("cannot cancel the timed-out task: {e}");
    }
}

impl TimerGuard {
    /// The response head is going out: a deadline can no longer answer 504. False when it
    /// already did (the response must be dropped).
    pub fn answer(&self) -> bool {
        match self.timers.entries().get_mut(&self.id) {
            Some(entry) if !entry.timed_out => {
                entry.answered = true;
                true
            }
            _ => false,
        }
    }
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.timers.entries().remove(&self.id);
        self.timers
            .scoreboard
            .slot(self.timers.slot)
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}
