//! The temporary file a request body too large for memory is spooled to before a WSGI
//! app is called (`request_body.rs` decides when): unlinked from the start, so that it
//! disappears with its descriptor whatever happens to the worker, and written off the
//! I/O thread, which a disk under writeback pressure must not stall.
//!
//! It does not read the body back: `wsgi.input` reads the file it gives.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Bytes gathered in memory before they are written in one go (one hand-off to a
/// blocking thread per this much, not per chunk the client sent).
const WRITE_BATCH: usize = 256 * 1024;

/// A body being spooled: what is written, and what waits to be.
pub struct SpoolFile {
    /// `None` only while a write has it on a blocking thread.
    file: Option<File>,
    batch: Vec<Bytes>,
    batched: usize,
    len: u64,
}

impl SpoolFile {
    /// An unlinked temporary file in `dir`, readable and writable by this process only.
    pub fn create(dir: &Path) -> io::Result<SpoolFile> {
        Ok(SpoolFile {
            file: Some(unlinked_file_in(dir)?),
            batch: Vec::new(),
            batched: 0,
            len: 0,
        })
    }

    /// The bytes taken so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.len += data.len() as u64;
        self.batched += data.len();
        self.batch.push(data);
        if self.batched >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Everything written, the file positioned at its start for the app to read.
    pub async fn finish(mut self) -> io::Result<File> {
        self.flush().await?;
        let mut file = self.take()?;
        file.rewind()?;
        Ok(file)
    }

    fn take(&mut self) -> io::Result<File> {
        self.file
            .take()
            .ok_or_else(|| io::Error::other("an earlier write to the spool file failed"))
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut file = self.take()?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        let written = tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            io::Result::Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        self.file = Some(written);
        Ok(())
    }
}

/// `O_TMPFILE`: a file with no name at all. A filesystem without it gets a named file,
/// unlinked as soon as it is open.
fn unlinked_file_in(dir: &Path) -> io::Result<File> {
    let mut open = OpenOptions::new();
    open.read(true).write(true).mode(0o600);
    match open.clone().custom_flags(libc::O_TMPFILE).open(dir) {
        Ok(file) => return Ok(file),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {}
        Err(e) => return Err(e),
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".unitcorn-body-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = open.create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_spooled_body_reads_back_whole_and_leaves_no_name() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body: Vec<u8> = (0..(3 * WRITE_BATCH + 17)).map(|i| i as u8).collect();
        let mut file = runtime.block_on(async {
            let mut spool = SpoolFile::create(&dir).unwrap();
            for piece in body.chunks(10_000) {
                spool.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            assert_eq!(spool.len(), body.len() as u64);
            spool.finish().await.unwrap()
        });
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert!(back == body);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
