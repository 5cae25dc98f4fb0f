//! The open-file limit: raised to what the system allows, and `worker_connections` kept
//! within it, so that a busy worker refuses nothing for want of a descriptor.
//!
//! Workers inherit the master's limits at fork; raising the soft limit here covers them.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::config::Settings;

/// Descriptors a worker needs besides its connections: listeners, log files, the
/// scoreboard, eventfds and epoll, the interpreter's imports and the app's own files.
const RESERVED: u64 = 64;
/// Descriptors one open connection takes in a worker: its socket (the deadline watcher
/// holds no duplicate, worker/hangup.rs). A wsgi.file_wrapper response holds the app's
/// file and the worker's duplicate of it while it is sent, which this does not count.
const PER_CONNECTION: u64 = 1;
/// And the temporary file of a request body it spools, when bodies are spooled
/// (`body_spool_size` past `body_buffer_size`): every connection may be uploading at once.
const PER_SPOOLED_BODY: u64 = 1;
/// What an unlimited hard limit is taken as (Linux's default `fs.nr_open`).
const UNLIMITED_AS: u64 = 1 << 20;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, then clamp `worker_connections` to
/// what fits in it, with a warning that names the setting and the limit.
pub fn fit_open_files(settings: &mut Settings) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE): {e}");
            return;
        }
    };
    let wanted = if hard == libc::RLIM_INFINITY {
        nr_open().unwrap_or(UNLIMITED_AS)
    } else {
        hard
    };
    let soft = if soft < wanted {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => wanted,
            Err(e) => {
                tracing::warn!(
                    "cannot raise the open-file limit from {soft} to {wanted} (RLIMIT_NOFILE): {e}"
                );
                soft
            }
        }
    } else {
        soft
    };
    let spools = settings.body_spool_size > settings.body_buffer_size;
    let per_connection = PER_CONNECTION + if spools { PER_SPOOLED_BODY } else { 0 };
    let fits = soft.saturating_sub(RESERVED) / per_connection;
    let asked = u64::from(settings.worker_connections);
    if asked > fits {
        let clamped = fits.max(1);
        tracing::warn!(
            "worker_connections = {asked} does not fit the open-file limit ({soft}, \
             RLIMIT_NOFILE): each worker takes at most {clamped} connections; raise the \
             limit (LimitNOFILE= in the unit, ulimit -n) to allow more"
        );
        settings.worker_connections = u32::try_from(clamped).unwrap_or(1);
    }
}

/// The kernel's ceiling for a process's open-file limit.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}
