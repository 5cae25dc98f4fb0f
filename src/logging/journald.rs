//! journald output: the error log's events and the access log's records as native journal
//! entries (one entry an event, fields of their own, no timestamp of ours), sent with the
//! `tracing-journald` crate over journald's datagram socket.
//!
//! A leaf: it takes plain fields and knows none of its callers' types. Not here: choosing
//! journald over a file (`error_log::init`, `AccessLog::open` ask `fd_is_journal_stream` and
//! fall back to lines), which events are critical (the error log says, `IsCritical`), an
//! access record's fields (`access_log` maps its record to an `AccessEntry`).
//!
//! Fields: every entry carries `SYSLOG_IDENTIFIER` (`unitcorn` for the error log,
//! `unitcorn-access` for the access log), `UNITCORN_ROLE` (`master` or `worker`) and, from a
//! worker, `WORKER_PID`; journald adds the sender's `_PID` from the socket's credentials. The
//! crate adds `PRIORITY`, `TARGET`, `CODE_FILE` and `CODE_LINE`; event fields keep their own
//! names, upper-cased (`worker = 7` becomes `WORKER=7`).
//!
//! Fork-safety: the crate's layers hold an unbound datagram socket each and no lock or thread;
//! a forked worker sends through the inherited sockets like the master. The worker's own
//! layers (with its `WORKER_PID`) are made in the worker, by `ErrorJournal::enter_worker`,
//! into a `OnceLock` the master never fills.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Where journald takes native-protocol entries (the path `tracing-journald` sends to).
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// `SYSLOG_IDENTIFIER` of error log entries (`journalctl -t unitcorn`).
const ERROR_IDENTIFIER: &str = "unitcorn";

/// `SYSLOG_IDENTIFIER` of access log entries (`journalctl -t unitcorn-access`).
const ACCESS_IDENTIFIER: &str = "unitcorn-access";

/// The target of the access log's events, which only the access log's own dispatcher takes.
const ACCESS_TARGET: &str = "unitcorn::access";

/// Whether `fd` is the journal stream systemd connected us to: `JOURNAL_STREAM` ("DEV:INODE",
/// set by systemd for `StandardOutput=`/`StandardError=journal`) names the device and inode of
/// that stream socket, and `fstat(fd)` must give the same pair. The variable alone is not
/// enough: it is inherited by children whose output was redirected elsewhere (systemd.exec(5)).
pub fn fd_is_journal_stream(fd: BorrowedFd<'_>) -> bool {
    fd_is_stream(std::env::var_os("JOURNAL_STREAM").as_deref(), fd)
}

/// `fd_is_journal_stream` with the variable's value given.
fn fd_is_stream(journal_stream: Option<&std::ffi::OsStr>, fd: BorrowedFd<'_>) -> bool {
    let Some(var) = journal_stream.and_then(std::ffi::OsStr::to_str) else {
        return false;
    };
    match nix::sys::stat::fstat(fd) {
        Ok(st) => stream_matches(var, st.st_dev, st.st_ino),
        Err(_) => false,
    }
}

/// `JOURNAL_STREAM`'s "DEV:INODE" (decimal, as systemd writes it) against an fstat result.
fn stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.split_once(':') else {
        return false;
    };
    matches!((d.parse::<u64>(), i.parse::<u64>()), (Ok(d), Ok(i)) if d == dev && i == ino)
}

/// syslog's meaning of the levels, as gunicorn's syslog handler and journalctl's `-p` use
/// them. The crate's own default maps INFO to NOTICE (5), which would make every routine line
/// stand out in `journalctl -p notice`.
fn priorities(error: Priority) -> PriorityMappings {
    PriorityMappings {
        error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// One `tracing-journald` layer: field names unprefixed, our identifier, fixed extra fields.
/// Fails when journald's socket cannot be reached (the crate sends an empty datagram to check).
fn journald_layer(
    identifier: &str,
    mappings: PriorityMappings,
    fields: &[(&str, String)],
) -> io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::Layer::new()?
        .with_field_prefix(None)
        .with_syslog_identifier(identifier.to_owned())
        .with_priority_mappings(mappings)
        .with_custom_fields(fields.iter().map(|(k, v)| (*k, v.as_bytes()))))
}

/// The fields that say which process of the server an entry comes from.
fn role_fields(worker_pid: Option<u32>) -> Vec<(&'static str, String)> {
    match worker_pid {
        None => vec![("UNITCORN_ROLE", "master".to_owned())],
        Some(pid) => vec![
            ("UNITCORN_ROLE", "worker".to_owned()),
            ("WORKER_PID", pid.to_string()),
        ],
    }
}

/// The error log's layers of one process: ERROR events marked `critical = true` go through
/// their own layer, whose only difference is PRIORITY=2 (the crate maps by level alone).
struct Writers {
    normal: tracing_journald::Layer,
    critical: tracing_journald::Layer,
}

impl Writers {
    fn new(worker_pid: Option<u32>) -> io::Result<Writers> {
        let fields = role_fields(worker_pid);
        Ok(Writers {
            normal: journald_layer(ERROR_IDENTIFIER, priorities(Priority::Error), &fields)?,
            critical: journald_layer(ERROR_IDENTIFIER, priorities(Priority::Critical), &fields)?,
        })
    }
}

/// Whether an ERROR event is critical: the error log's own mark (`tracing` has no level
/// above ERROR), which the journal gives PRIORITY=2.
pub type IsCritical = fn(&Event<'_>) -> bool;

/// The error log in the journal, shared by the installed layer and `ErrorLogHandle`.
pub struct ErrorJournal {
    /// The master's writers (`UNITCORN_ROLE=master`), made by `init`.
    master: Writers,
    /// A worker's writers, with its `WORKER_PID`; set once, in the worker.
    worker: OnceLock<Writers>,
    /// `loglevel = "critical"`: only events marked critical are sent.
    critical_only: bool,
    is_critical: IsCritical,
}

impl std::fmt::Debug for ErrorJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorJournal")
            .field("worker", &self.worker.get().is_some())
            .field("critical_only", &self.critical_only)
            .finish()
    }
}

impl ErrorJournal {
    /// Connects to journald; the error says why it cannot be reached. `is_critical` tells
    /// which ERROR events get PRIORITY=2.
    pub fn connect(critical_only: bool, is_critical: IsCritical) -> io::Result<Arc<ErrorJournal>> {
        Ok(Arc::new(ErrorJournal {
            master: Writers::new(None)?,
            worker: OnceLock::new(),
            critical_only,
            is_critical,
        }))
    }

    /// From now on this process's entries say it is a worker, with its pid. Call it in the
    /// worker right after the fork.
    pub fn enter_worker(&self) {
        match Writers::new(Some(std::process::id())) {
            Ok(writers) => {
                // Only a worker calls this, once; a second call keeps the first writers.
                let _ = self.worker.set(writers);
            }
            Err(e) => tracing::warn!(
                "cannot reach journald from this worker ({e}): its entries lack WORKER_PID"
            ),
        }
    }

    /// The layer to install in the global subscriber.
    pub fn layer(self: &Arc<Self>) -> ErrorJournalLayer {
        ErrorJournalLayer(Arc::clone(self))
    }
}

/// The error log's `tracing` layer for journald: picks this process's writers and, for each
/// event, the normal or the critical one.
pub struct ErrorJournalLayer(Arc<ErrorJournal>);

impl<S> Layer<S> for ErrorJournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // Span fields are kept by the crate in the span's extensions, once a span: one layer
    // records them (all of ours format them alike) and every layer's events read them.
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.0.master.normal.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        self.0.master.normal.on_record(id, values, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let journal = &self.0;
        let critical = *event.metadata().level() == Level::ERROR && (journal.is_critical)(event);
        if journal.critical_only && !critical {
            return;
        }
        let writers = journal.worker.get().unwrap_or(&journal.master);
        let layer = if critical {
            &writers.critical
        } else {
            &writers.normal
        };
        layer.on_event(event, ctx);
    }
}

/// The access log in the journal: each record one entry with PRIORITY=6 (info), its line as
/// MESSAGE and its parts as fields.
///
/// It is a `tracing-journald` layer in a dispatcher of its own, entered for each record, so
/// the error log's level filter does not apply to it and its entries never reach the error
/// log (and the other way round: the dispatcher takes only the access target).
pub struct AccessJournal {
    dispatch: tracing::Dispatch,
}

impl std::fmt::Debug for AccessJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessJournal")
    }
}

impl AccessJournal {
    /// Connects to journald. Made in the worker, so its entries carry the worker's pid.
    pub fn connect() -> io::Result<AccessJournal> {
        let layer = journald_layer(
            ACCESS_IDENTIFIER,
            priorities(Priority::Error),
            &role_fields(Some(std::process::id())),
        )?;
        let only_access =
            tracing_subscriber::filter::Targets::new().with_target(ACCESS_TARGET, Level::INFO);
        let subscriber = tracing_subscriber::registry().with(only_access).with(layer);
        Ok(AccessJournal {
            dispatch: tracing::Dispatch::new(subscriber),
        })
    }

    /// Sends `entry`.
    ///
    /// Nothing to report on failure: the crate drops an entry journald does not take. Its
    /// socket blocks while journald's queue is full, so a stalled journald slows requests
    /// down, as a stalled pipe on stdout does.
    pub fn send(&self, entry: &AccessEntry<'_>) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            tracing::info!(
                target: ACCESS_TARGET,
                request_method = entry.request_method,
                request_path = entry.request_path,
                request_query = entry.request_query,
                status = entry.status,
                duration_us = entry.duration_us,
                remote_addr = entry.remote_addr,
                response_bytes = entry.response_bytes,
                user_agent = entry.user_agent,
                "{}",
                entry.message
            );
        });
    }
}

/// One access log entry: its line as MESSAGE and its parts as fields of their own
/// (`REQUEST_METHOD=GET`, `STATUS=200`...), for `journalctl -t unitcorn-access STATUS=500`.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    /// The formatted access line.
    pub message: &'a str,
    pub request_method: &'a str,
    pub request_path: &'a str,
    /// Absent when the request had no query.
    pub request_query: Option<&'a str>,
    pub status: u16,
    pub duration_us: u64,
    pub remote_addr: &'a str,
    pub response_bytes: u64,
    pub user_agent: Option<&'a str>,
}

/// Whether stdout (the access log's `-`) is the journal stream.
pub fn stdout_is_journal() -> bool {
    fd_is_journal_stream(io::stdout().as_fd())
}

/// Whether stderr (the error log's `-`) is the journal stream.
pub fn stderr_is_journal() -> bool {
    fd_is_journal_stream(io::stderr().as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_matches_only_the_same_device_and_inode() {
        assert!(stream_matches("9:11260971", 9, 11_260_971));
        assert!(!stream_matches("9:11260971", 9, 11_260_972));
        assert!(!stream_matches("8:11260971", 9, 11_260_971));
        for bad in [
            "", ":", "9", "9:", ":5", "x:5", "9:5:1", " 9:5", "9:-5", "0x9:5",
        ] {
            assert!(!stream_matches(bad, 9, 5), "{bad:?}");
        }
    }

    #[test]
    fn fd_is_stream_compares_with_fstat_of_that_fd() {
        let dir = std::env::temp_dir().join(format!("unitcorn-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join("stream")).unwrap();
        let other = std::fs::File::create(dir.join("other")).unwrap();
        let st = nix::sys::stat::fstat(&file).unwrap();
        let var = std::ffi::OsString::from(format!("{}:{}", st.st_dev, st.st_ino));
        assert!(fd_is_stream(Some(&var), file.as_fd()));
        assert!(!fd_is_stream(Some(&var), other.as_fd()));
        assert!(!fd_is_stream(None, file.as_fd()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
