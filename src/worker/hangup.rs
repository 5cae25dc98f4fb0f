//! The hold the deadline watcher (`deadlines.rs`, a thread of its own) has on a client
//! connection, without a second descriptor: it can tell the service future waiting for
//! the app to answer 504 (which hyper then writes, in order, after whatever it holds),
//! and close the connection.
//!
//! The connection's I/O wrapper ([`HangupIo`], the innermost, which owns the socket)
//! keeps the two facts the watcher needs from the I/O side: the descriptor, forgotten
//! under a lock before it is closed, so the watcher can never act on a number the worker
//! has since reused; and whether hyper has written out everything it was given. The
//! second matters when the app runs on the I/O thread (one app thread): hyper cannot run
//! then, so the 504 cannot go through it, and the watcher writes it itself, but only if
//! nothing of an earlier (pipelined) response is still in hyper's buffer; else it closes.
//!
//! It does not decide when a call is late, nor what the worker does about it.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// One connection as the deadline watcher reaches it.
#[derive(Debug)]
pub struct Hangup {
    /// The socket while its owner has it open.
    fd: Mutex<Option<RawFd>>,
    /// hyper's last write was followed by a flush it made with nothing left to write.
    flushed: AtomicBool,
    /// The call in progress is past its deadline and answered 504 through hyper.
    expired: AtomicBool,
    expired_wake: Notify,
    /// The connection is to be closed.
    cut: AtomicBool,
    cut_wake: Notify,
}

impl Hangup {
    fn new(fd: RawFd) -> Self {
        Hangup {
            fd: Mutex::new(Some(fd)),
            flushed: AtomicBool::new(true),
            expired: AtomicBool::new(false),
            expired_wake: Notify::new(),
            cut: AtomicBool::new(false),
            cut_wake: Notify::new(),
        }
    }

    fn fd(&self) -> MutexGuard<'_, Option<RawFd>> {
        self.fd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From the watcher: the call in progress is to be answered 504 by the service
    /// future waiting for it ([`Hangup::expired`]).
    pub fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.expired_wake.notify_one();
    }

    /// Resolves once [`Hangup::expire`] was called.
    pub async fn expired(&self) {
        while !self.expired.load(Ordering::Acquire) {
            self.expired_wake.notified().await;
        }
    }

    /// From the watcher: close the connection (its response had started). The socket is
    /// shut down at once, which the app holding the I/O thread cannot delay, and the
    /// connection's task, told, drops the connection.
    pub fn close(&self) {
        self.shutdown(&self.fd());
        self.cut.store(true, Ordering::Release);
        self.cut_wake.notify_one();
    }

    /// Resolves once [`Hangup::close`] was called: the connection's task ends on it.
    pub async fn closed(&self) {
        while !self.cut.load(Ordering::Acquire) {
            self.cut_wake.notified().await;
        }
    }

    /// From the watcher, only while the app holds the I/O thread (hyper cannot write):
    /// write `answer` and close. When hyper still holds bytes of an earlier response,
    /// the answer would come before them: the connection is only closed. True if the
    /// answer was written.
    pub fn answer_and_close(&self, answer: &[u8]) -> bool {
        let fd = self.fd();
        let written = match *fd {
            Some(raw) if self.flushed.load(Ordering::Acquire) => {
                // SAFETY: the descriptor is open: its owner forgets it under this lock
                // before closing it (`HangupIo`'s drop), and we hold the lock.
                let socket = unsafe { BorrowedFd::borrow_raw(raw) };
                nix::unistd::write(socket, answer).is_ok_and(|n| n == answer.len())
            }
            _ => false,
        };
        self.shutdown(&fd);
        self.cut.store(true, Ordering::Release);
        self.cut_wake.notify_one();
        written
    }

    fn shutdown(&self, fd: &Option<RawFd>) {
        if let Some(raw) = *fd {
            let _ = nix::sys::socket::shutdown(raw, nix::sys::socket::Shutdown::Both);
        }
    }
}

/// The socket of a connection, as hyper reads and writes it, with its [`Hangup`].
pub struct HangupIo<S: AsRawFd> {
    inner: S,
    hangup: std::sync::Arc<Hangup>,
}

impl<S: AsRawFd> HangupIo<S> {
    pub fn new(inner: S) -> Self {
        let hangup = std::sync::Arc::new(Hangup::new(inner.as_raw_fd()));
        HangupIo { inner, hangup }
    }

    /// The watcher's side of this connection.
    pub fn hangup(&self) -> std::sync::Arc<Hangup> {
        std::sync::Arc::clone(&self.hangup)
    }

    fn wrote(&self) {
        self.hangup.flushed.store(false, Ordering::Relaxed);
    }
}

impl<S: AsRawFd> Drop for HangupIo<S> {
    fn drop(&mut self) {
        // Before `inner` closes the descriptor (fields drop after this).
        *self.hangup.fd() = None;
    }
}

impl<S: AsyncRead + AsRawFd + Unpin> AsyncRead for HangupIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + AsRawFd + Unpin> AsyncWrite for HangupIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes its transport only once its own buffer is empty (and a flush
        // of a socket is a no-op): from here until its next write it holds nothing.
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.hangup.flushed.store(true, Ordering::Release);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wrote();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
