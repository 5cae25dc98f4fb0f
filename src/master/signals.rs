//! The master's signals: handlers only record the signal in a self-pipe; the master loop
//! reads them back, in order, and does the work.

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

/// Write end of the self-pipe, for the handler (which may only use async-signal-safe calls).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn record(signo: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signo as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte. A full pipe
        // (EAGAIN) loses only a duplicate wake-up: the master reaps and re-checks anyway.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// The read end of the self-pipe; dropping it does not uninstall the handlers.
pub struct SignalQueue {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalQueue {
    /// Install the handlers. Call once, in the master, before forking any worker.
    pub fn install() -> nix::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        WAKE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in HANDLED {
            // SAFETY: `record` only loads an atomic and calls write(2), both
            // async-signal-safe; no allocation, lock or logging happens in it.
            unsafe { sigaction(signal, &action) }?;
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

/// In a freshly forked worker: default dispositions, so the master's handlers (which write
/// to the master's pipe) never run there.
pub fn reset_in_child() {
    WAKE_FD.store(-1, Ordering::Relaxed);
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in HANDLED {
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        let _ = unsafe { sigaction(signal, &default) };
    }
}
