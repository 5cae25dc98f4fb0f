//! Request deadlines, one table for every worker class: every app call in progress,
//! where it answers, and since when; a watcher thread that has a call past `timeout`
//! answered 504 (or its connection closed, when its response had started).
//!
//! The 504 goes through hyper, in order after any response hyper still holds: the
//! service future waiting for the app is told (`AppSlot::expired`) and answers. Only an
//! app on the I/O thread (one app thread) keeps hyper from running; then the watcher
//! writes the 504 itself, if hyper holds nothing unwritten (`hangup.rs`).
//!
//! What happens next is the table's [`Policy`]. An app thread or a greenlet that hangs
//! holds what it runs on: the table publishes the oldest call's start in the scoreboard,
//! and the master, seeing it, sends SIGABRT (tracebacks) and SIGKILL. ASGI requests share
//! one loop, so one past its deadline is no reason to replace the worker: its task is
//! cancelled (by the `on_expire` callback, on the loop) and the master judges the worker
//! by its heartbeat alone.
//!
//! The watcher is a plain thread, not a task: with one app thread the app runs on the I/O
//! thread, and a hung app call would hold any task back. It does not know how a call is
//! cancelled: `on_expire` does.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::hangup::Hangup;
use crate::scoreboard::{Scoreboard, now_ms};

/// How often the watcher looks for calls past their deadline.
const WATCH_EVERY: Duration = Duration::from_millis(100);

const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nConnection: close\r\n\r\n504 Gateway Timeout\n";

/// The asyncio task running a call, once it runs (ASGI), for the deadline to cancel.
pub type TaskSlot = Arc<Mutex<Option<Py<PyAny>>>>;

/// What a call past its deadline costs the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The call holds its thread or hub: the master replaces the worker (the oldest
    /// call's start is published for it). Sync, gthread, gevent.
    ReplaceWorker,
    /// The call is a task on a shared loop: it is cancelled, the worker lives on. ASGI.
    CancelTask,
}

/// One app call in progress.
struct Call {
    /// The client connection.
    hangup: Arc<Hangup>,
    /// The app runs on the I/O thread: hyper cannot answer while it does.
    blocks_io: bool,
    started_ms: u64,
    /// Its response has started: too late for a 504.
    answered: bool,
    timed_out: bool,
    task: Option<TaskSlot>,
}

/// A call the watcher just answered for, as `on_expire` is told it.
pub struct Expired {
    /// The call's entry (`AppSlot::index`).
    pub index: usize,
    /// What the client got: a 504, or only the connection closed.
    outcome: &'static str,
    pub task: Option<TaskSlot>,
    pub timeout: Duration,
}

impl Expired {
    /// The error log's words for what the client got.
    pub fn outcome(&self) -> &'static str {
        self.outcome
    }
}

/// The app calls of one worker, one entry per app slot (`--threads`, or
/// `worker_connections` for gevent and ASGI).
pub struct Deadlines {
    calls: Box<[Mutex<Option<Call>>]>,
    slots: Arc<Semaphore>,
    /// Which entries are free and when the busy ones started: with a thousand slots
    /// (gevent, ASGI) a scan of every entry per request would cost more than the request.
    index: Mutex<Index>,
    scoreboard: Arc<Scoreboard>,
    slot: usize,
    policy: Policy,
    /// Told of each call just answered for (gevent kills its greenlet, ASGI cancels its
    /// task).
    on_expire: OnceLock<Box<dyn Fn(Expired) + Send + Sync>>,
}

struct Index {
    free: Vec<usize>,
    /// `(started_ms, entry)` of every call in progress, oldest first.
    started: BTreeSet<(u64, usize)>,
}

/// An app slot held by one request, from before the app is called until its response
/// is done; it frees the slot (and forgets the call) when dropped.
pub struct AppSlot {
    deadlines: Arc<Deadlines>,
    hangup: Arc<Hangup>,
    index: usize,
    _permit: OwnedSemaphorePermit,
}

impl Deadlines {
    pub fn new(
        threads: usize,
        policy: Policy,
        scoreboard: Arc<Scoreboard>,
        slot: usize,
    ) -> Arc<Self> {
        let n = threads.max(1);
        Arc::new(Deadlines {
            calls: (0..n).map(|_| Mutex::new(None)).collect(),
            slots: Arc::new(Semaphore::new(n)),
            // Popped from the end: entry 0 first.
            index: Mutex::new(Index {
                free: (0..n).rev().collect(),
                started: BTreeSet::new(),
            }),
            scoreboard,
            slot,
            policy,
            on_expire: OnceLock::new(),
        })
    }

    /// Call `f` with each call the watcher answers for (from its thread).
    pub fn on_expire(&self, f: Box<dyn Fn(Expired) + Send + Sync>) {
        let _ = self.on_expire.set(f);
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self, index: usize) -> MutexGuard<'_, Option<Call>> {
        self.calls[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a free app slot and record the call, which runs on the I/O thread when
    /// `blocks_io`; `None` when the worker is stopping.
    pub async fn acquire(
        self: &Arc<Self>,
        hangup: &Arc<Hangup>,
        blocks_io: bool,
    ) -> Option<AppSlot> {
        self.acquire_for(hangup, blocks_io, None).await
    }

    /// `acquire` for a call that runs as `task` (ASGI).
    pub async fn acquire_for(
        self: &Arc<Self>,
        hangup: &Arc<Hangup>,
        blocks_io: bool,
        task: Option<TaskSlot>,
    ) -> Option<AppSlot> {
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok()?;
        let started_ms = now_ms();
        let index = {
            let mut index = self.index();
            // A permit guarantees a free entry: there are as many entries as permits.
            let entry = index.free.pop()?;
            index.started.insert((started_ms, entry));
            self.publish_oldest(&index);
            entry
        };
        *self.call(index) = Some(Call {
            hangup: Arc::clone(hangup),
            blocks_io,
            started_ms,
            answered: false,
            timed_out: false,
            task,
        });
        let board = self.scoreboard.slot(self.slot);
        board.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(AppSlot {
            deadlines: Arc::clone(self),
            hangup: Arc::clone(hangup),
            index,
            _permit: permit,
        })
    }

    /// The oldest call's start, for the master's deadline check (none for a loop's tasks:
    /// the master judges that worker by its heartbeat).
    fn publish_oldest(&self, index: &Index) {
        if self.policy == Policy::CancelTask {
            return;
        }
        let oldest = index.started.first().map_or(0, |&(started, _)| started);
        self.scoreboard
            .slot(self.slot)
            .oldest_ms
            .store(oldest, Ordering::Release);
    }

    /// Start the watcher thread (not when `timeout` is 0: no deadline).
    pub fn watch(self: &Arc<Self>, timeout: Duration) -> std::io::Result<()> {
        if timeout.is_zero() {
            return Ok(());
        }
        let deadlines = Arc::clone(self);
        std::thread::Builder::new()
            .name("deadlines".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCH_EVERY);
                    deadlines.expire(timeout);
                }
            })
            .map(drop)
    }

    /// Answer 504 to every call past `timeout` whose response has not started; close the
    /// connection of one whose response has (the client must not wait for the rest).
    fn expire(&self, timeout: Duration) {
        let limit = now_ms().saturating_sub(timeout.as_millis() as u64);
        // The index holds the calls oldest first: only those past the limit are looked at.
        let due: Vec<usize> = self
            .index()
            .started
            .iter()
            .take_while(|&&(started, _)| started <= limit)
            .map(|&(_, entry)| entry)
            .collect();
        for index in due {
            let mut call = self.call(index);
            let Some(call) = call.as_mut() else { continue };
            if call.timed_out || call.started_ms > limit {
                continue;
            }
            call.timed_out = true;
            let outcome = if call.answered {
                call.hangup.close();
                "its response had started: connection closed"
            } else if !call.blocks_io {
                call.hangup.expire();
                "answered 504"
            } else if call.hangup.answer_and_close(GATEWAY_TIMEOUT) {
                "answered 504"
            } else {
                "an earlier response was still being sent: connection closed"
            };
            let expired = Expired {
                index,
                outcome,
                task: call.task.clone(),
                timeout,
            };
            // A cancelled task's log line says where it was stuck: on_expire writes it.
            if self.policy == Policy::ReplaceWorker {
                tracing::error!(
                    "request timed out after {}s (timeout); {}",
                    timeout.as_secs(),
                    expired.outcome()
                );
            }
            if let Some(on_expire) = self.on_expire.get() {
                on_expire(expired);
            }
        }
    }
}

impl AppSlot {
    /// This call's entry, as `on_expire` names it.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Resolves once the watcher has had this call answered 504 through hyper (a call
    /// off the I/O thread, whose response had not started): the caller answers it, and
    /// keeps the slot until the app call really ends. (The signal is the connection's:
    /// HTTP/1.1 has one call at a time on it, and a 504 closes it.)
    pub async fn expired(&self) {
        self.hangup.expired().await;
    }

    /// Hold the slot until `done` resolves (the end of an app call already answered
    /// for), on the connection's thread.
    pub fn keep_until(self, done: impl std::future::Future + 'static) {
        tokio::task::spawn_local(async move {
            done.await;
            drop(self);
        });
    }

    /// The app has produced its response head: a deadline can no longer answer 504.
    /// False when the deadline already answered for it (the response must be dropped).
    pub fn answer(&self) -> bool {
        match self.deadlines.call(self.index).as_mut() {
            Some(call) if !call.timed_out => {
                call.answered = true;
                true
            }
            _ => false,
        }
    }
}

impl Drop for AppSlot {
    fn drop(&mut self) {
        let call = self.deadlines.call(self.index).take();
        self.deadlines
            .scoreboard
            .slot(self.deadlines.slot)
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        let mut index = self.deadlines.index();
        if let Some(call) = call {
            index.started.remove(&(call.started_ms, self.index));
        }
        index.free.push(self.index);
        self.deadlines.publish_oldest(&index);
    }
}
