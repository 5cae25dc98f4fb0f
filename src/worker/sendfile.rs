//! `sendfile(2)` for `wsgi.file_wrapper` responses, underneath hyper.
//!
//! hyper writes bodies from memory and has no sendfile path, so a real file goes into the
//! body as a `Bytes` over a read-only mapping of the file, registered here by address.
//! The connection's I/O wrapper (`SendfileIo`) recognises a write that starts inside a
//! registered mapping and sends that span with `sendfile(2)` from the file instead of
//! copying it from memory; the mapped pages are never touched. Should hyper copy the
//! bytes anyway (it flattens for streams without vectored writes), the mapping still holds
//! the file's content, so the response is right either way.

use std::io::{self, IoSlice};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A mapped span of a file, by address.
#[derive(Debug, Clone, Copy)]
struct Region {
    start: usize,
    len: usize,
    fd: RawFd,
    file_offset: u64,
}

static REGIONS: Mutex<Vec<Region>> = Mutex::new(Vec::new());
/// How many regions are registered: writes skip the lock when there are none.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn find(addr: usize) -> Option<Region> {
    if ACTIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
    regions
        .iter()
        .find(|r| addr >= r.start && addr < r.start + r.len)
        .copied()
}

/// The mapping and the file descriptor behind a file body; dropping it unregisters the
/// region before unmapping, so a stale address can never be matched.
struct MappedFile {
    map: NonNull<libc::c_void>,
    map_len: usize,
    region: Region,
    _file: OwnedFd,
}

// SAFETY: the mapping is read-only and private to this owner; it can be unmapped from any
// thread. The fd is an owned descriptor.
unsafe impl Send for MappedFile {}
// SAFETY: shared access only reads the read-only mapping.
unsafe impl Sync for MappedFile {}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `map` is a live PROT_READ mapping of `map_len` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u8>(), self.map_len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        {
            let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
            regions.retain(|r| r.start != self.region.start);
            ACTIVE.store(regions.len(), Ordering::Release);
        }
        // SAFETY: unmapping what `map_file` mapped; no `Bytes` refers to it any more (this
        // is the owner's drop).
        let _ = unsafe { munmap(self.map, self.map_len) };
    }
}

/// `len` bytes of `file` from `offset`, as a body chunk that goes out with sendfile.
pub fn map_file(file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Bytes> {
    let Some(nonzero) = NonZeroUsize::new(len) else {
        return Ok(Bytes::new());
    };
    let file = file.try_clone_to_owned()?;
    let page = page_size();
    let aligned = offset - offset % page as u64;
    let delta = (offset - aligned) as usize;
    let map_len = nonzero.get() + delta;
    let map_nonzero = NonZeroUsize::new(map_len).unwrap_or(nonzero);
    // SAFETY: a new private read-only mapping of a regular file we hold open; it aliases
    // no Rust object. A file truncated while mapped would fault on access, which is why
    // the bytes are sent with sendfile and normally never read through the mapping.
    let map = unsafe {
        mmap(
            None,
            map_nonzero,
            ProtFlags::PROT_READ,
            MapFlags::MAP_PRIVATE,
            &file,
            aligned as libc::off_t,
        )
    }?;
    let region = Region {
        start: map.as_ptr() as usize + delta,
        len,
        fd: file.as_raw_fd(),
        file_offset: offset,
    };
    {
        let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
        regions.push(region);
        ACTIVE.store(regions.len(), Ordering::Release);
    }
    let owner = MappedFile {
        map,
        map_len,
        region,
        _file: file,
    };
    Ok(Bytes::from_owner(owner).slice(delta..delta + len))
}

/// A duplicate of `fd` and the file's size, if `fd` is an open regular file (not a pipe,
/// socket or device, which cannot be mapped or sent with sendfile).
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

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096)
}

/// A socket hyper can write through, with the sendfile shortcut.
pub trait Socket: AsyncRead + AsyncWrite + AsRawFd + Unpin {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>;
}

impl Socket for TcpStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

impl Socket for UnixStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

/// The connection as hyper sees it.
pub struct SendfileIo<S> {
    inner: S,
}

impl<S: Socket> SendfileIo<S> {
    pub fn new(inner: S) -> Self {
        SendfileIo { inner }
    }

    /// Send `len` bytes of the mapped file starting at address `addr`.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        region: Region,
        addr: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let mut offset = (region.file_offset + (addr - region.start) as u64) as libc::off_t;
        let count = len.min(region.start + region.len - addr);
        loop {
            ready!(self.inner.poll_writable(cx))?;
            let socket = self.inner.as_raw_fd();
            let result = self.inner.try_write_with(&mut || {
                // SAFETY: both descriptors are open for the duration of the call: the
                // socket is ours, and the file belongs to the mapping that the buffer
                // hyper is writing (and so keeps alive) points into.
                let (out, file) = unsafe {
                    (
                        BorrowedFd::borrow_raw(socket),
                        BorrowedFd::borrow_raw(region.fd),
                    )
                };
                nix::sys::sendfile::sendfile(out, file, Some(&mut offset), count)
                    .map_err(io::Error::from)
            });
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<S: Socket> AsyncRead for SendfileIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for SendfileIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let addr = buf.as_ptr() as usize;
        if let Some(region) = find(addr) {
            return self.poll_sendfile(cx, region, addr, buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if ACTIVE.load(Ordering::Acquire) > 0 {
            // Write up to the first mapped span; send that span once it leads.
            for (i, buf) in bufs.iter().enumerate() {
                let addr = buf.as_ptr() as usize;
                if let Some(region) = find(addr) {
                    if i == 0 {
                        return self.poll_sendfile(cx, region, addr, buf.len());
                    }
                    return Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..i]);
                }
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsFd> AsFd for SendfileIo<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}
