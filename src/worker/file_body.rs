//! The bytes of a regular file given to `wsgi.file_wrapper`, read for hyper with
//! `pread(2)` a chunk at a time, as hyper asks for them.
//!
//! Not a mapping of the file: a file truncated while it is sent would make a read of the
//! mapping fault (SIGBUS, the worker gone with every request it serves). A short read is
//! an error instead, which ends that one response (the connection is closed, the client
//! cannot mistake a cut body for a whole one) and nothing else.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use bytes::{Bytes, BytesMut};

/// How much of the file one read takes: large enough that a big file costs few reads,
/// small enough that a slow client does not pin much memory (hyper holds a chunk until
/// it is written).
const READ_CHUNK: usize = 256 * 1024;

/// The part of a file still to be sent.
#[derive(Debug)]
pub struct FileBody {
    file: OwnedFd,
    offset: u64,
    left: u64,
    /// Bytes read so far, for the error log.
    sent: u64,
}

/// The file ended before the length the response declared.
#[derive(Debug)]
pub struct Truncated {
    pub sent: u64,
    pub expected: u64,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`.
    pub fn new(file: OwnedFd, offset: u64, len: u64) -> Self {
        FileBody {
            file,
            offset,
            left: len,
            sent: 0,
        }
    }

    /// Bytes still to be sent.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The next chunk; `None` once `len` bytes were read.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>, io::Result<Truncated>> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(self.left).map_or(READ_CHUNK, |l| l.min(READ_CHUNK));
        let mut buf = BytesMut::zeroed(want);
        let read = loop {
            match nix::sys::uio::pread(&self.file, &mut buf, self.offset as libc::off_t) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Err(io::Error::from(e))),
            }
        };
        if read == 0 {
            return Err(Ok(Truncated {
                sent: self.sent,
                expected: self.sent + self.left,
            }));
        }
        buf.truncate(read);
        self.offset += read as u64;
        self.left -= read as u64;
        self.sent += read as u64;
        Ok(Some(buf.freeze()))
    }
}

/// A duplicate of `fd` and the file's size, if `fd` is an open regular file (not a pipe,
/// socket or device, whose length is unknown: those are iterated instead).
pub fn dup_regular_file(fd: RawFd) -> Option<(OwnedFd, u64)> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the caller got `fd` from a live Python file object that it holds for the
    // duration of this call; we only borrow it to duplicate it (and fstat reports EBADF
    // harmlessly if it was closed).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned().ok()?;
    let stat = nix::sys::stat::fstat(&owned).ok()?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    Some((owned, u64::try_from(stat.st_size).ok()?))
}
