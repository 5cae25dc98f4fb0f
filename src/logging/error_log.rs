//! The error log: every `tracing` event as a gunicorn-style line,
//! `[2026-11-27 14:30:01 +0000] [1234] [INFO] message key=value ...`, plus the raw text the app
//! writes to `wsgi.errors`.
//!
//! When the error log is the journal (`errorlog = "journald"`, or stderr is the journal
//! stream), `init` installs the `journald` layer instead of the line layer.
//!
//! Not here: the access log (`access_log`), the journal protocol (`journald`).
//!
//! Fork-safety: no background thread and no lock of ours. Each line is formatted into a
//! thread-local buffer and written with one `write(2)`; the pid is read at each line, so a
//! forked worker's lines carry its own pid. The `tracing-subscriber` registry only takes a lock
//! the first time a thread records a span, which the single-threaded master never holds across
//! a fork.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use super::clock;
use super::error::{Error, Log};
use super::journald::{self, ErrorJournal};
use super::sink::Sink;

/// The error log of this process, once `init` has run: where `write_raw` writes.
static ERROR_SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// The `errorlog` value that sends the error log to journald.
pub const JOURNALD: &str = "journald";

/// Installs the process-wide error log: a global `tracing` subscriber writing to `errorlog`
/// (`"-"` for stderr, `"journald"` for the journal, else a file path opened for append and
/// created with mode 0644 less the umask) the events at `loglevel` and above (`debug`, `info`,
/// `warning`, `error`, `critical`, any case; `critical` keeps errors marked critical only,
/// since `tracing` has no level above ERROR).
///
/// `"-"` also means the journal when stderr is the journal stream systemd set up
/// (`JOURNAL_STREAM`); if journald's socket cannot be reached then, the lines go to stderr.
///
/// Call it once, in the master, before the first fork: workers inherit it.
///
/// `observer`, if any, sees every event the error log writes, beside it: how the events are
/// counted (StatsD's `gunicorn.log.*`) without the log knowing who counts.
pub fn init(
    errorlog: &str,
    loglevel: &str,
    observer: Option<Observer>,
) -> Result<ErrorLogHandle, Error> {
    let level = parse_level(loglevel)?;
    let critical_only = loglevel.eq_ignore_ascii_case("critical");
    let mut unreachable = None;
    let journal = if errorlog == JOURNALD {
        let journal = ErrorJournal::connect(critical_only, is_critical)
            .map_err(|source| Error::journal(Log::Error, source))?;
        Some(journal)
    } else if errorlog == "-" && journald::stderr_is_journal() {
        ErrorJournal::connect(critical_only, is_critical)
            .map_err(|e| unreachable = Some(e))
            .ok()
    } else {
        None
    };
    // Journal entries carry no text of ours; app text (`write_raw`) and Python's fatal-signal
    // tracebacks (`raw_fd`) still go to stderr, which under systemd is the journal too.
    let sink = Arc::new(match journal {
        Some(_) => Sink::stderr(),
        None => open(errorlog)?,
    });
    clock::prime();
    tracing::subscriber::set_global_default(subscriber(
        sink.clone(),
        journal.clone(),
        level,
        critical_only,
        observer,
    ))
    .map_err(|_| Error::already_installed())?;
    // Cannot already be set: it is set only here, after set_global_default, which succeeds once.
    let _ = ERROR_SINK.set(sink.clone());
    if let Some(e) = unreachable {
        tracing::warn!(
            "stderr is the journal (JOURNAL_STREAM) but journald's socket {} cannot be \
             reached ({e}): logging plain lines to stderr",
            journald::SOCKET
        );
    }
    Ok(ErrorLogHandle { sink, journal })
}

/// Writes app text (what a WSGI app writes to `wsgi.errors`: tracebacks, prints) to the error
/// log verbatim, in one `write(2)`: no prefix, no newline added. Goes to stderr before `init`.
pub fn write_raw(text: &str) -> io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    match ERROR_SINK.get() {
        Some(sink) => sink.write_all(text.as_bytes()),
        None => Sink::stderr().write_all(text.as_bytes()),
    }
}

/// The installed error log, kept to reopen its file on SIGUSR1.
#[derive(Clone, Debug)]
pub struct ErrorLogHandle {
    /// The file or stderr; stderr when the events go to the journal.
    sink: Arc<Sink>,
    /// Set when the events go to journald.
    journal: Option<Arc<ErrorJournal>>,
}

impl ErrorLogHandle {
    /// Reopens the error log file by its path (logrotate moved it away) and swaps it in for
    /// every writer at once; the old file is closed. A no-op for stderr and the journal. On
    /// error the log keeps going to the old file.
    pub fn reopen(&self) -> io::Result<()> {
        self.sink.reopen()
    }

    /// The error log's file descriptor (stderr when the log is the journal); stable across
    /// `reopen`.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.sink.raw_fd()
    }

    /// Call first thing in a forked worker: its journal entries then say `WORKER_PID=<pid>`.
    /// The line log needs nothing, it reads the pid at each line.
    pub fn enter_worker(&self) {
        if let Some(journal) = &self.journal {
            journal.enter_worker();
        }
    }

    /// Whether the events go to journald.
    #[cfg(test)]
    pub fn is_journal(&self) -> bool {
        self.journal.is_some()
    }

    /// The error log file, `None` when it is stderr.
    #[cfg(test)]
    pub fn path(&self) -> Option<&Path> {
        self.sink.path()
    }
}

/// gunicorn's level names, any case; `critical` maps to ERROR (the highest `tracing` level).
fn parse_level(loglevel: &str) -> Result<LevelFilter, Error> {
    match loglevel.to_ascii_lowercase().as_str() {
        "debug" => Ok(LevelFilter::DEBUG),
        "info" => Ok(LevelFilter::INFO),
        "warning" => Ok(LevelFilter::WARN),
        "error" | "critical" => Ok(LevelFilter::ERROR),
        _ => Err(Error::level(loglevel)),
    }
}

fn open(errorlog: &str) -> Result<Sink, Error> {
    if errorlog == "-" {
        return Ok(Sink::stderr());
    }
    Sink::file(Path::new(errorlog)).map_err(|source| Error::open(Log::Error, errorlog, source))
}

/// A `tracing` layer beside the error log's own: it sees the events at `loglevel` and above.
pub type Observer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber `init` installs: the journal's layer, or else the line layer, and the
/// observer.
fn subscriber(
    sink: Arc<Sink>,
    journal: Option<Arc<ErrorJournal>>,
    level: LevelFilter,
    critical_only: bool,
    observer: Option<Observer>,
) -> impl Subscriber + Send + Sync {
    let lines = match journal {
        Some(_) => None,
        None => Some(ErrorLayer {
            sink,
            now: SystemTime::now,
            critical_only,
        }),
    };
    // The level filter is global: the observer, first so that its type is fixed, sees only
    // the events it lets through.
    tracing_subscriber::registry()
        .with(observer)
        .with(level)
        .with(journal.map(|j| j.layer()))
        .with(lines)
}

/// Formats each event as one error log line and writes it.
struct ErrorLayer {
    sink: Arc<Sink>,
    /// The wall clock (a fixed time in tests).
    now: fn() -> SystemTime,
    /// `loglevel = "critical"`: only ERROR events marked `critical = true` are written
    /// (`tracing` has no level above ERROR).
    critical_only: bool,
}

/// Reused per thread so a line costs no allocation once warm.
#[derive(Default)]
struct Bufs {
    line: Vec<u8>,
    message: Vec<u8>,
    fields: Vec<u8>,
}

/// A line longer than this gives its buffers back after writing, so one huge traceback does
/// not pin memory in every thread for good.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

impl<S: Subscriber> Layer<S> for ErrorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let secs = clock::unix_secs((self.now)());
        let pid = std::process::id();
        let write = |bufs: &mut Bufs| {
            let critical = format_event(event, secs, pid, bufs);
            if self.critical_only && !critical {
                return;
            }
            // Nowhere to report a failed log write: the error log is where it would go.
            let _ = self.sink.write_all(&bufs.line);
            if bufs.line.capacity() > KEEP_CAPACITY {
                *bufs = Bufs::default();
            }
        };
        // A field's Debug impl that itself logs re-enters here with the buffers borrowed; that
        // line, and any during thread teardown, gets fresh buffers instead.
        let done = BUFS
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut bufs) => {
                    write(&mut bufs);
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        if !done {
            write(&mut Bufs::default());
        }
    }
}

/// Builds `[stamp] [pid] [LEVEL] message key=value...\n` into `bufs.line`; true when the
/// event is marked critical.
fn format_event(event: &Event<'_>, secs: i64, pid: u32, bufs: &mut Bufs) -> bool {
    bufs.message.clear();
    bufs.fields.clear();
    let mut visitor = Visitor {
        message: &mut bufs.message,
        fields: &mut bufs.fields,
    };
    event.record(&mut visitor);
    let critical = is_critical(event);

    let line = &mut bufs.line;
    line.clear();
    line.extend_from_slice(&clock::stamps(secs).error);
    let _ = write!(line, " [{pid}] [");
    line.extend_from_slice(level_name(*event.metadata().level(), critical));
    line.extend_from_slice(b"] ");
    line.extend_from_slice(&bufs.message);
    // Each field was written with a leading space; drop it when there is no message.
    let fields = match bufs.message.is_empty() {
        true => bufs.fields.strip_prefix(b" ").unwrap_or(&bufs.fields),
        false => &bufs.fields,
    };
    line.extend_from_slice(fields);
    line.push(b'\n');
    critical
}

/// gunicorn's level names. An ERROR event with the field `critical = true` prints as CRITICAL
/// (gunicorn logs e.g. worker timeouts at that level, and operators alert on it).
fn level_name(level: Level, critical: bool) -> &'static [u8] {
    match level {
        Level::ERROR if critical => b"CRITICAL",
        Level::ERROR => b"ERROR",
        Level::WARN => b"WARNING",
        Level::INFO => b"INFO",
        Level::DEBUG => b"DEBUG",
        Level::TRACE => b"TRACE",
    }
}

/// Whether the event has the field `critical = true` (gunicorn's CRITICAL level, which
/// `tracing` lacks); the journal gives it PRIORITY=2.
pub(super) fn is_critical(event: &Event<'_>) -> bool {
    struct Critical(bool);
    impl Visit for Critical {
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "critical" {
                self.0 = value;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }
    if event.metadata().fields().field("critical").is_none() {
        return false;
    }
    let mut critical = Critical(false);
    event.record(&mut critical);
    critical.0
}

/// Collects the message and the `key=value` fields of an event (not `critical`, which
/// `is_critical` reads and the line shows as the level).
struct Visitor<'a> {
    message: &'a mut Vec<u8>,
    fields: &'a mut Vec<u8>,
}

impl Visitor<'_> {
    fn key(&mut self, field: &Field) {
        self.fields.push(b' ');
        self.fields.extend_from_slice(field.name().as_bytes());
        self.fields.push(b'=');
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.extend_from_slice(value.as_bytes());
        } else {
            self.key(field);
            push_value(self.fields, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() != "critical" {
            self.key(field);
            let _ = write!(self.fields, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.fields, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.fields, "{value}");
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        // The whole chain on one line, as the top level prints errors (STYLE 6).
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        self.record_str(field, &text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // The message arrives as `format_args!`, whose Debug is its text.
            let _ = write!(self.message, "{value:?}");
        } else {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// A field value, bare when it is a plain token, else in double quotes with `"`, `\` and
/// control characters escaped, so a line always splits back into the same `key=value` pairs.
fn push_value(out: &mut Vec<u8>, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b > b' ' && b != b'"' && b != b'=' && b != 0x7f);
    if plain {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::temp_dir;
    use tracing::{debug, error, info, warn};

    /// 2026-11-27 14:30:01 UTC.
    fn sample_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_789_801)
    }

    fn stamp() -> String {
        String::from_utf8(clock::stamps(1_795_789_801).error.to_vec()).unwrap()
    }

    /// Runs `f` with a scoped error log writing to a fresh file; returns the file's text.
    fn capture(name: &str, level: &str, f: impl FnOnce()) -> String {
        let dir = temp_dir(name);
        let path = dir.join("error.log");
        let sink = Arc::new(Sink::file(&path).unwrap());
        let critical_only = level.eq_ignore_ascii_case("critical");
        let level = parse_level(level).unwrap();
        let sub = tracing_subscriber::registry().with(level).with(ErrorLayer {
            sink,
            now: sample_time,
            critical_only,
        });
        tracing::subscriber::with_default(sub, f);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        text
    }

    #[test]
    fn line_has_gunicorn_prefix_then_message_then_fields() {
        let text = capture("el-format", "info", || {
            info!(addr = "127.0.0.1:8000", fd = 3, "listening");
        });
        let pid = std::process::id();
        assert_eq!(
            text,
            format!(
                "{} [{pid}] [INFO] listening addr=127.0.0.1:8000 fd=3\n",
                stamp()
            )
        );
        // In UTC (this machine's and CI's zone) that is gunicorn's exact stamp.
        if clock::stamps(1_795_789_801).error.ends_with(b"+0000]") {
            assert!(text.starts_with("[2026-11-27 14:30:01 +0000] ["));
        }
    }

    #[test]
    fn level_names_and_critical() {
        let text = capture("el-levels", "debug", || {
            debug!("d");
            info!("i");
            warn!("w");
            error!("e");
            error!(critical = true, pid = 42, "WORKER TIMEOUT");
        });
        let levels: Vec<&str> = text
            .lines()
            .map(|l| l.split("] [").nth(2).unwrap())
            .collect();
        assert_eq!(
            levels,
            [
                "DEBUG] d",
                "INFO] i",
                "WARNING] w",
                "ERROR] e",
                "CRITICAL] WORKER TIMEOUT pid=42"
            ]
        );
    }

    #[test]
    fn level_filtering() {
        let text = capture("el-filter", "WARNING", || {
            debug!("no");
            info!("no");
            warn!("yes warn");
            error!("yes error");
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("[WARNING] yes warn"));
        assert!(text.contains("[ERROR] yes error"));

        let text = capture("el-filter-critical", "critical", || {
            warn!("no");
            error!("no, only an error");
            error!(critical = true, "yes");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn parse_level_accepts_gunicorn_names_only() {
        for ok in ["debug", "INFO", "Warning", "error", "critical"] {
            assert!(parse_level(ok).is_ok(), "{ok}");
        }
        let err = parse_level("verbose").unwrap_err();
        assert!(err.is_level());
        assert_eq!(
            err.to_string(),
            "invalid loglevel \"verbose\": use one of debug, info, warning, error, critical"
        );
        assert!(parse_level("warn").is_err());
    }

    #[test]
    fn field_values_are_quoted_when_needed() {
        let err = io::Error::other("disk full");
        let text = capture("el-quote", "info", || {
            info!(
                path = "/a b",
                empty = "",
                q = "say \"hi\"",
                eq = "a=b",
                nl = "x\ny",
                ok = true,
                neg = -5,
                dbg = ?Some(1),
                disp = %"shown",
                "m"
            );
            let e: &(dyn StdError + 'static) = &err;
            warn!(error = e, "write failed");
            info!(only = 1);
        });
        let lines: Vec<&str> = text.lines().collect();
        let body = |l: &str| l.splitn(4, "] ").nth(3).unwrap().to_owned();
        assert_eq!(
            body(lines[0]),
            r#"m path="/a b" empty="" q="say \"hi\"" eq="a=b" nl="x\ny" ok=true neg=-5 dbg=Some(1) disp=shown"#
        );
        assert_eq!(body(lines[1]), r#"write failed error="disk full""#);
        assert_eq!(body(lines[2]), "only=1");
    }

    #[test]
    fn error_chain_is_printed_whole() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot bind")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(io::Error::other("address in use"));
        let text = capture("el-chain", "info", || {
            let e: &(dyn StdError + 'static) = &e;
            error!(error = e, "boot");
        });
        assert!(
            text.ends_with("boot error=\"cannot bind: address in use\"\n"),
            "{text}"
        );
    }

    #[test]
    fn multiline_messages_are_kept_verbatim() {
        let text = capture("el-multiline", "info", || {
            error!("Traceback:\n  File \"app.py\"");
        });
        assert!(text.ends_with("[ERROR] Traceback:\n  File \"app.py\"\n"));
    }

    #[test]
    fn one_write_per_line_and_no_interleaving_between_threads() {
        let dir = temp_dir("el-threads");
        let path = dir.join("error.log");
        let sink = Arc::new(Sink::file(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let sub =
                        tracing_subscriber::registry()
                            .with(LevelFilter::INFO)
                            .with(ErrorLayer {
                                sink,
                                now: sample_time,
                                critical_only: false,
                            });
                    let payload = format!("{t}").repeat(2000);
                    tracing::subscriber::with_default(sub, || {
                        for i in 0..200 {
                            info!(thread = t, i, payload = payload.as_str(), "line");
                        }
                    });
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sink.write_calls(), 8 * 200);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 8 * 200);
        for line in text.lines() {
            let t = line.split("thread=").nth(1).unwrap().as_bytes()[0];
            let payload = line.split("payload=").nth(1).unwrap();
            assert_eq!(payload.len(), 2000);
            assert!(payload.bytes().all(|b| b == t), "interleaved: {line}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_forked_child_logs_its_own_pid() {
        let dir = temp_dir("el-fork");
        let path = dir.join("error.log");
        let sink = Arc::new(Sink::file(&path).unwrap());
        let sub = tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(ErrorLayer {
                sink,
                now: sample_time,
                critical_only: false,
            });
        tracing::subscriber::with_default(sub, || {
            info!("parent");
            // SAFETY: the child only formats and writes one line (the allocator is fork-safe in
            // glibc) and leaves with _exit, running no destructor or atexit handler that other
            // test threads' state could have left inconsistent.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    info!("child");
                    // SAFETY: _exit is async-signal-safe and ends the child at once.
                    unsafe { libc::_exit(0) };
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let status = nix::sys::wait::waitpid(child, None).unwrap();
                    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                    let text = std::fs::read_to_string(&path).unwrap();
                    let me = std::process::id();
                    assert_eq!(
                        text,
                        format!(
                            "{s} [{me}] [INFO] parent\n{s} [{child}] [INFO] child\n",
                            s = stamp()
                        )
                    );
                }
            }
        });
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The only test that installs the global subscriber (once per process).
    #[test]
    fn init_installs_global_log_write_raw_and_reopen() {
        let dir = temp_dir("el-init");
        let path = dir.join("error.log");
        let rotated = dir.join("error.log.1");

        let bad = init(dir.join("missing/x.log").to_str().unwrap(), "info", None).unwrap_err();
        assert!(bad.is_open());
        assert!(bad.to_string().starts_with("cannot open the error log "));
        assert!(bad.source().is_some());
        assert!(init("-", "loud", None).unwrap_err().is_level());

        let handle = init(path.to_str().unwrap(), "warning", None).unwrap();
        assert_eq!(handle.path(), Some(path.as_path()));
        assert!(!handle.is_journal());
        // From a fresh thread, so no scoped subscriber of another test is in the way.
        std::thread::spawn(|| {
            info!("filtered");
            warn!(worker = 7, "global");
            write_raw("Traceback (most recent call last):\n  boom\n").unwrap();
        })
        .join()
        .unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        handle.reopen().unwrap();
        std::thread::spawn(|| warn!("after reopen")).join().unwrap();

        let old = std::fs::read_to_string(&rotated).unwrap();
        let mut lines = old.lines();
        assert!(lines.next().unwrap().ends_with("[WARNING] global worker=7"));
        assert_eq!(lines.next(), Some("Traceback (most recent call last):"));
        assert_eq!(lines.next(), Some("  boom"));
        assert_eq!(lines.next(), None);
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(new.ends_with("[WARNING] after reopen\n"), "{new}");

        let again = init("-", "info", None).unwrap_err();
        assert!(!again.is_open() && !again.is_level());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
