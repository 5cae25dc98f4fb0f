//! The response spool of a WSGI call in a sync or gthread worker: what the app produced
//! and the client has not read yet, held so that the app slot is free as soon as the
//! app's iterable is done, however slowly the client reads (nginx's proxy buffering).
//!
//! Up to `response_buffer_size` bytes stay in memory; the rest goes to a temporary file
//! (in `worker_tmp_dir`, else the temporary directory; unlinked from the start) of at
//! most `response_spool_max` bytes. Past both, the producer waits for the client: the
//! app's iteration, and so its slot, is held (back-pressure), and memory does not grow.
//!
//! It neither walks the iterable (`app_call.rs` does) nor checks the body against its
//! Content-Length (`body.rs` does, on what it reads from here).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use super::body::Chunk;
use super::deadlines::AppSlot;

/// The most bytes read back from the file for one write to the client.
const FILE_READ: usize = 64 * 1024;

/// What a response may hold for a slow client: `response_buffer_size`,
/// `response_spool_max`, `worker_tmp_dir`.
#[derive(Debug, Clone)]
pub struct SpoolLimits {
    pub memory: usize,
    pub disk: u64,
    pub dir: PathBuf,
}

impl SpoolLimits {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        SpoolLimits {
            memory: usize::try_from(settings.response_buffer_size).unwrap_or(usize::MAX),
            disk: settings.response_spool_max,
            dir: settings
                .worker_tmp_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        }
    }

    /// A body given whole that fits in memory needs no spool.
    pub fn fits(&self, chunks: &[Bytes]) -> bool {
        chunks.iter().map(Bytes::len).sum::<usize>() <= self.memory
    }
}

/// One response's spool, shared by its producer (an app thread, or a task on the I/O
/// thread) and the body hyper writes.
pub struct Spool {
    limits: Arc<SpoolLimits>,
    state: Mutex<State>,
    /// An app thread waiting for room.
    room: Condvar,
}

struct State {
    memory: VecDeque<Bytes>,
    in_memory: usize,
    /// Bytes from `read_at` to `written` of the file are the client's next, after memory.
    file: Option<File>,
    read_at: u64,
    written: u64,
    /// The file could not be made or written: memory only from then on.
    no_disk: bool,
    /// The producer is done: `Ok` at the iterable's end, `Err` when the app raised.
    ended: Option<Result<(), ()>>,
    /// The body was dropped (client gone, or the response is complete).
    reader_gone: bool,
    reader: Option<Waker>,
    producer: Option<Waker>,
    /// Held until the producer ends.
    slot: Option<AppSlot>,
}

impl Spool {
    pub fn new(limits: Arc<SpoolLimits>) -> Arc<Self> {
        Arc::new(Spool {
            limits,
            state: Mutex::new(State {
                memory: VecDeque::new(),
                in_memory: 0,
                file: None,
                read_at: 0,
                written: 0,
                no_disk: false,
                ended: None,
                reader_gone: false,
                reader: None,
                producer: None,
                slot: None,
            }),
            room: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep the call's app slot until the producer ends (at once if it has).
    pub fn hold(&self, slot: AppSlot) {
        let mut state = self.state();
        if state.ended.is_none() {
            state.slot = Some(slot);
        }
    }

    /// Take what fits of `chunk`, leaving the rest in it. False when the client is gone.
    fn offer(&self, chunk: &mut Bytes) -> bool {
        let mut state = self.state();
        if state.reader_gone {
            return false;
        }
        let taken = state.take(chunk, &self.limits);
        if taken && let Some(reader) = state.reader.take() {
            reader.wake();
        }
        true
    }

    /// Add a chunk, waiting on this thread for room (an app thread, without the GIL).
    /// False when the client is gone.
    pub fn push_blocking(&self, mut chunk: Bytes) -> bool {
        loop {
            if !self.offer(&mut chunk) {
                return false;
            }
            if chunk.is_empty() {
                return true;
            }
            let state = self.state();
            if state.reader_gone || state.has_room(&self.limits) {
                continue;
            }
            drop(self.room.wait(state).unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Add a chunk, waiting as a task for room (the I/O thread's producer). False when
    /// the client is gone.
    pub async fn push(&self, mut chunk: Bytes) -> bool {
        std::future::poll_fn(|cx| {
            if !self.offer(&mut chunk) {
                return Poll::Ready(false);
            }
            if chunk.is_empty() {
                return Poll::Ready(true);
            }
            let mut state = self.state();
            if state.reader_gone || state.has_room(&self.limits) {
                cx.waker().wake_by_ref();
            } else {
                state.producer = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The producer is done (`Err`: the app raised): free the app slot, wake the reader.
    fn end(&self, outcome: Result<(), ()>) {
        let slot = {
            let mut state = self.state();
            state.ended.get_or_insert(outcome);
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
            state.slot.take()
        };
        drop(slot);
    }

    /// The client's next chunk; `None` at the end.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let mut state = self.state();
        let next = match state.memory.pop_front() {
            Some(chunk) => {
                state.in_memory -= chunk.len();
                Some(chunk)
            }
            None => state.read_file(),
        };
        match next {
            Some(chunk) => {
                if let Some(producer) = state.producer.take() {
                    producer.wake();
                }
                self.room.notify_one();
                Poll::Ready(Some(Ok(chunk)))
            }
            None => match state.ended {
                Some(Ok(())) => Poll::Ready(None),
                Some(Err(())) => Poll::Ready(Some(Err(()))),
                None => {
                    state.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }

    /// The body is gone: the producer stops at its next chunk.
    pub fn reader_gone(&self) {
        let mut state = self.state();
        state.reader_gone = true;
        state.memory.clear();
        state.in_memory = 0;
        state.file = None;
        if let Some(producer) = state.producer.take() {
            producer.wake();
        }
        self.room.notify_one();
    }
}

/// The producing end of a spool: it ends the response when dropped, as failed unless
/// [`Producer::end`] said otherwise (an app thread that panicked, a task dropped).
pub struct Producer(Arc<Spool>);

impl Producer {
    pub fn new(spool: &Arc<Spool>) -> Self {
        Producer(Arc::clone(spool))
    }

    /// [`Spool::push_blocking`].
    pub fn push_blocking(&self, chunk: Bytes) -> bool {
        self.0.push_blocking(chunk)
    }

    /// [`Spool::push`].
    pub async fn push(&self, chunk: Bytes) -> bool {
        self.0.push(chunk).await
    }

    /// The iterable is done and closed (`Err`: the app raised mid-response).
    pub fn end(self, outcome: Result<(), ()>) {
        self.0.end(outcome);
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.0.end(Err(()));
    }
}

impl State {
    fn file_pending(&self) -> u64 {
        self.written - self.read_at
    }

    fn has_room(&self, limits: &SpoolLimits) -> bool {
        if self.file_pending() == 0 && self.in_memory < limits.memory {
            return true;
        }
        !self.no_disk && self.written < limits.disk
    }

    /// Move what fits of `chunk` into memory (while nothing waits in the file: the order
    /// is memory, then file), then the file. True when anything was taken.
    fn take(&mut self, chunk: &mut Bytes, limits: &SpoolLimits) -> bool {
        let before = chunk.len();
        if self.file_pending() == 0 {
            let room = limits.memory.saturating_sub(self.in_memory);
            if chunk.len() <= room {
                self.in_memory += chunk.len();
                self.memory.push_back(std::mem::take(chunk));
            } else if room > 0 {
                // A copy: a slice would keep the whole of a large chunk alive.
                let part = Bytes::copy_from_slice(&chunk[..room]);
                self.in_memory += room;
                self.memory.push_back(part);
                let _ = chunk.split_to(room);
            }
        }
        let room = limits.disk.saturating_sub(self.written);
        if !chunk.is_empty() && room > 0 && !self.no_disk {
            let n = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            match self.write_file(&chunk[..n], &limits.dir) {
                Ok(()) => {
                    let _ = chunk.split_to(n);
                }
                Err(e) => {
                    tracing::error!(
                        "cannot spool a response to a temporary file in {} ({e}); holding \
                         it in memory up to response_buffer_size (check worker_tmp_dir)",
                        limits.dir.display()
                    );
                    self.no_disk = true;
                }
            }
        }
        chunk.len() < before
    }

    fn write_file(&mut self, bytes: &[u8], dir: &Path) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(temporary_file(dir)?),
        };
        file.write_all_at(bytes, self.written)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The next piece of the file, which is emptied once read to its end.
    fn read_file(&mut self) -> Option<Bytes> {
        let pending = self.file_pending();
        let file = self.file.as_ref().filter(|_| pending > 0)?;
        let len = FILE_READ.min(usize::try_from(pending).unwrap_or(usize::MAX));
        let mut buf = BytesMut::zeroed(len);
        match file.read_at(&mut buf, self.read_at) {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                self.read_at += n as u64;
                if self.read_at == self.written {
                    // Start over at the beginning: the disk cap is on the file's size.
                    let _ = file.set_len(0);
                    self.read_at = 0;
                    self.written = 0;
                }
                Some(buf.freeze())
            }
            outcome => {
                let why = match outcome {
                    Err(e) => e.to_string(),
                    Ok(_) => "it is shorter than written".into(),
                };
                tracing::error!("cannot read back a spooled response ({why}); ending it");
                self.file = None;
                self.read_at = 0;
                self.written = 0;
                self.ended = Some(Err(()));
                None
            }
        }
    }
}

/// A file no other process can open: made unlinked (O_TMPFILE), or unlinked at once
/// where the file system cannot.
fn temporary_file(dir: &Path) -> std::io::Result<File> {
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            let path = dir.join(format!(
                ".unitcorn-response-{}-{}",
                std::process::id(),
                crate::scoreboard::now_ms()
            ));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(memory: usize, disk: u64) -> Arc<SpoolLimits> {
        Arc::new(SpoolLimits {
            memory,
            disk,
            dir: std::env::temp_dir(),
        })
    }

    fn drain(spool: &Spool) -> Vec<u8> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(chunk))) = spool.poll_next(&mut cx) {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn memory_then_file_in_order() {
        let spool = Spool::new(limits(10, 1000));
        let body: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for piece in body.chunks(7) {
            assert!(spool.push_blocking(Bytes::copy_from_slice(piece)));
        }
        assert!(spool.state().in_memory <= 10);
        assert!(spool.state().written > 0);
        Producer::new(&spool).end(Ok(()));
        assert_eq!(drain(&spool), body);
    }

    #[test]
    fn a_full_spool_takes_no_more() {
        let spool = Spool::new(limits(4, 8));
        let mut chunk = Bytes::from_static(b"0123456789abcdefXYZ");
        assert!(spool.offer(&mut chunk));
        assert_eq!(&chunk[..], b"cdefXYZ");
        assert!(!spool.state().has_room(&spool.limits));
        assert_eq!(drain(&spool), b"0123456789ab");
        // Drained: the file starts over, and there is room again.
        assert!(spool.state().has_room(&spool.limits));
    }

    #[test]
    fn a_gone_reader_stops_the_producer() {
        let spool = Spool::new(limits(4, 0));
        assert!(spool.push_blocking(Bytes::from_static(b"abcd")));
        spool.reader_gone();
        assert!(!spool.push_blocking(Bytes::from_static(b"efgh")));
    }
}
