//! `reload`: how workers tell the master which source files their app loaded, so that the
//! master (which never imports the app) knows what to watch.
//!
//! A unix datagram socket pair the master makes before forking: workers inherit the
//! sending end and write NUL-separated paths to it, each datagram whole (several workers
//! may report at once without interleaving); the master reads its end without blocking,
//! from its loop. The set of files is all that matters, so datagrams may come in any order.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};

/// The workers' end, inherited through fork; -1 until the master opens the channel.
static WORKER_END: AtomicI32 = AtomicI32::new(-1);

/// A datagram holds at most this much (well under the socket buffer).
const DATAGRAM_MAX: usize = 16 * 1024;
/// Datagrams read a call at most: the master's loop comes back for the rest.
const READ_BATCH: usize = 256;

/// The master's end.
#[derive(Debug)]
pub struct Receiver {
    fd: OwnedFd,
}

impl Receiver {
    /// Open the channel; the sending end stays open in the master for every worker it
    /// forks from now on. Both ends close at exec (a USR2 upgrade makes its own).
    pub fn open() -> io::Result<Receiver> {
        let (master, workers) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        let old = WORKER_END.swap(workers.into_raw_fd(), Ordering::Relaxed);
        if old >= 0 {
            // SAFETY: `old` was the sending end of a previous channel, owned by this static
            // alone and used by no one after the swap.
            drop(unsafe { OwnedFd::from_raw_fd(old) });
        }
        Ok(Receiver { fd: master })
    }

    /// For the master's poll(2).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The paths reported since the last call (up to a batch of datagrams).
    pub fn drain(&self) -> Vec<PathBuf> {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        let mut out = Vec::new();
        for _ in 0..READ_BATCH {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(_) => break,
            };
            out.extend(
                buf[..n]
                    .split(|&b| b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p))),
            );
        }
        out
    }
}

/// In a worker: report `paths`; returns how many went out (the rest, if the master's
/// queue is full, are for the next report). Nothing happens without a channel.
pub fn report(paths: &[String]) -> usize {
    let fd: RawFd = WORKER_END.load(Ordering::Relaxed);
    if fd < 0 {
        return 0;
    }
    let mut sent = 0;
    let mut datagram = Vec::with_capacity(DATAGRAM_MAX);
    let mut in_datagram = 0;
    for path in paths {
        if !datagram.is_empty() && datagram.len() + path.len() + 1 > DATAGRAM_MAX {
            if send(fd, &datagram, MsgFlags::MSG_DONTWAIT).is_err() {
                return sent;
            }
            sent += in_datagram;
            datagram.clear();
            in_datagram = 0;
        }
        datagram.extend_from_slice(path.as_bytes());
        datagram.push(0);
        in_datagram += 1;
    }
    if !datagram.is_empty() && send(fd, &datagram, MsgFlags::MSG_DONTWAIT).is_ok() {
        sent += in_datagram;
    }
    sent
}
