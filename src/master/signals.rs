//! The master's signals: each handler only records the signal in a self-pipe; the master
//! loop reads them back, in order, and does the work.
//!
//! The handlers are signal-hook-registry's (the crate tokio's signal support and the
//! worker's handlers use too): it installs one `sigaction` per signal, saves and restores
//! `errno` around our action (which calls write(2), and a failed write sets it), and
//! chains to a handler installed before it. Our action writes the signal's number, one
//! byte, so the loop sees every signal, in the order they came (TTIN three times is three
//! workers), which signal-hook's own pipe (a fixed byte) or iterator (a flag a signal)
//! would not tell.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::{pipe2, read};

/// The signals the master acts on.
pub const HANDLED: [Signal; 10] = [
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Those a worker catches itself, through the same registry (worker/signals.rs): in a
/// forked child they keep the registry's handler, since the registry, which still has a
/// slot for them, would not install it again once we put SIG_DFL back. Our action is
/// inert there (`WAKE_FD` is -1), so until the worker adds its own they are ignored.
const CAUGHT_BY_WORKERS: [Signal; 2] = [Signal::SIGQUIT, Signal::SIGUSR1];

/// Write end of the self-pipe, for the action (which may only use async-signal-safe
/// calls); -1 in a forked child, where the action must do nothing.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The action run in signal context: one byte, the signal's number, into the pipe. A full
/// pipe (EAGAIN) loses only a duplicate wake-up: the master reaps and re-checks anyway.
fn record(signal: Signal) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as i32 as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte. The registry
        // restores the errno it may set.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Have `signal` recorded in the self-pipe.
fn watch(signal: Signal) -> std::io::Result<signal_hook_registry::SigId> {
    // SAFETY: the action, `record`, only loads an atomic and calls write(2), both
    // async-signal-safe: no allocation, lock or logging happens in it.
    unsafe { signal_hook_registry::register(signal as i32, move || record(signal)) }
}

/// The read end of the self-pipe; dropping it does not uninstall the handlers.
pub struct SignalQueue {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalQueue {
    /// Install the handlers. Call once, in the master, before forking any worker.
    pub fn install() -> std::io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        WAKE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for signal in HANDLED {
            watch(signal)?;
        }
        Ok(SignalQueue {
            read,
            _write: write,
        })
    }

    /// Wait up to `timeout` for signals; return those that arrived, in order.
    pub fn wait(&self, timeout: Duration) -> Vec<Signal> {
        self.wait_with(timeout, &[])
    }

    /// `wait`, also woken when one of `also` is readable (the caller reads it).
    pub fn wait_with(&self, timeout: Duration, also: &[BorrowedFd<'_>]) -> Vec<Signal> {
        // Rounded up: waking a hair before a deadline would find it not yet due.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds: Vec<PollFd<'_>> = std::iter::once(self.read.as_fd())
            .chain(also.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        while let Ok(n) = read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(
                buf[..n]
                    .iter()
                    .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
            );
            if n < buf.len() {
                break;
            }
        }
        out
    }
}

/// In a freshly forked child (a worker, an upgrade's intermediate process): the master's
/// action made inert, and default dispositions for the signals the worker does not catch
/// itself (TERM and INT must kill it, HUP or TTIN must not be swallowed), so that nothing
/// meant for the master happens there. Async-signal-safe: the child of a master with app
/// threads may call only such functions.
pub fn reset_in_child() {
    WAKE_FD.store(-1, Ordering::Relaxed);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in HANDLED {
        if CAUGHT_BY_WORKERS.contains(&signal) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(signal, &default) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> i32 {
        // SAFETY: __errno_location points at this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    fn set_errno(value: i32) {
        // SAFETY: as in `errno`.
        unsafe { *libc::__errno_location() = value };
    }

    fn raise(signal: Signal) {
        // SAFETY: raise(3) runs the handler on this thread before it returns.
        unsafe { libc::raise(signal as i32) };
    }

    /// One test, not two: `WAKE_FD` is the process's. WINCH and USR2 only (registered for
    /// the whole test binary): WINCH is ignored by default, and nothing else sends USR2.
    #[test]
    fn handler_records_in_order_and_keeps_errno() {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).expect("pipe");
        let queue = SignalQueue {
            read,
            _write: write,
        };
        WAKE_FD.store(queue._write.as_raw_fd(), Ordering::Relaxed);
        watch(Signal::SIGWINCH).expect("register WINCH");
        watch(Signal::SIGUSR2).expect("register USR2");
        // Every signal, in order, repeats kept (TTIN three times is three workers).
        let sent = [
            Signal::SIGWINCH,
            Signal::SIGWINCH,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
        ];
        for signal in sent {
            raise(signal);
        }
        assert_eq!(queue.wait(Duration::from_millis(100)), sent);

        // errno as the interrupted code had it, even when the handler's write(2) fails
        // (the descriptor is the pipe's read end: EBADF). Not restored, an interrupted
        // syscall's caller (poll, waitpid) would read the handler's error as its own.
        WAKE_FD.store(queue.read.as_raw_fd(), Ordering::Relaxed);
        const MARK: i32 = libc::ENOTTY;
        for _ in 0..10 {
            set_errno(MARK);
            raise(Signal::SIGWINCH);
            assert_eq!(errno(), MARK, "the signal handler changed errno");
        }
        WAKE_FD.store(-1, Ordering::Relaxed);
    }
}
