//! `master::Error`: why the master could not start, or had to stop, worded for the
//! operator: what failed, on what, and where there is one, the next step.
//!
//! As hyper's error: one opaque type, a private [`Kind`], `is_*` predicates for the few
//! questions callers ask (the exit status: `lib.rs`), and a source chain. `Display` shows
//! one level; the top level prints the whole chain. The wording may change: match on the
//! predicates, never on the text. This file only words errors; it detects none.
//!
//! An error a setting's value caused carries the setting and where it was set
//! ([`Error::set_by`], config's `Provenance`), shown after what failed and before why:
//! `cannot listen on 127.0.0.1:80 (bind, from --bind): permission denied: ...`.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// What a source is: any error of a lower layer, or a Python traceback (text).
type Source = Box<dyn std::error::Error + Send + Sync>;

/// The master could not start, or stopped on a failure.
#[derive(Debug)]
pub struct Error {
    /// Boxed, as hyper's: the `Result`s of the start-up steps stay one word wide.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    source: Option<Source>,
    /// The setting whose value caused it, and where that value was set.
    set_by: Option<crate::config::Provenance>,
}

#[derive(Debug)]
enum Kind {
    /// `daemon`: daemon(3) failed.
    Daemonize,
    /// The directory unitcorn was started in cannot be read.
    StartDir,
    /// `chdir` cannot be entered.
    Chdir(PathBuf),
    /// A reload cannot go back to the directory unitcorn was started in.
    ReturnToStartDir(PathBuf),
    /// A reload's configuration cannot be used; transparent: its message says it all.
    Config(crate::config::ConfigError),
    /// A reload's command line is no longer one that serves.
    NoServer,
    /// A `raw_env` entry is not `KEY=VALUE`.
    RawEnv(String),
    /// A `keep_capabilities` entry is no capability.
    Capability(String),
    /// `group` is set and `user` is not.
    GroupWithoutUser(String),
    /// The passwd or group database cannot be read (`user = ` or `group = `, the name).
    UserDatabase { setting: &'static str, name: String },
    /// `user` names no user.
    NoSuchUser(String),
    /// `group` names no group.
    NoSuchGroup(String),
    /// A numeric `user` without a passwd entry, and no `group`.
    NoPrimaryGroup(String),
    /// A log file could not be opened to be given to `user`.
    LogFile(String),
    /// The access log cannot be opened, or its format does not compile; transparent:
    /// logging's message names the log.
    AccessLog(crate::logging::Error),
    /// chown of a file the master opened as root, to `user`.
    HandOver { path: PathBuf, user: String },
    /// A step of the switch to `user` failed.
    Switch {
        user: String,
        uid: u32,
        group: String,
        gid: u32,
        step: &'static str,
    },
    /// A `bind` entry is not an address.
    Bind(String),
    /// The listeners cannot be opened; transparent: its message names the address.
    Listen(crate::listeners::Error),
    /// The pid file names a running process.
    PidFileTaken { path: PathBuf, pid: i32 },
    /// The pid file cannot be written.
    PidFileWrite(PathBuf),
    /// The pid file cannot be renamed (`pidfile.2` to `pidfile`, after an upgrade).
    PidFileRename { from: PathBuf, to: PathBuf },
    /// A start hook (`on_starting`, `when_ready`) raised.
    Hook(&'static str),
    /// `preload_app`: the app did not import in the master.
    Preload,
    /// The signal handlers cannot be installed.
    Signals,
    /// The scoreboard cannot be mapped.
    Scoreboard,
    /// A listener cannot be duplicated for a new worker.
    ListenerCopy,
    /// The scoreboard is full.
    TooManyWorkers(usize),
    /// fork(2) failed.
    Fork,
    /// A worker of the first generation could not boot (gunicorn's `WORKER_BOOT_ERROR`).
    WorkerBoot(Pid),
    /// A worker of the first generation could not import the app (`APP_LOAD_ERROR`).
    AppLoad(Pid),
    /// A binary upgrade (USR2) could not start the new master; what failed.
    Upgrade(String),
}

impl Error {
    fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                source: None,
                set_by: None,
            }),
        }
    }

    /// Attach the lower layer's error, or a Python traceback, as the cause.
    fn with(mut self, source: impl Into<Source>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// The setting whose value caused this, and where it was set (`settings.provenance`).
    pub(super) fn set_by(mut self, provenance: crate::config::Provenance) -> Self {
        self.inner.set_by = Some(provenance);
        self
    }

    pub(super) fn daemonize(e: nix::Error) -> Self {
        Self::new(Kind::Daemonize).with(e)
    }

    pub(super) fn start_dir(e: std::io::Error) -> Self {
        Self::new(Kind::StartDir).with(e)
    }

    pub(super) fn chdir(dir: &Path, e: std::io::Error) -> Self {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such directory".to_owned(),
            std::io::ErrorKind::NotADirectory => "not a directory".to_owned(),
            _ => e.to_string(),
        };
        Self::new(Kind::Chdir(dir.to_path_buf())).with(why)
    }

    pub(super) fn return_to_start_dir(dir: &Path, e: std::io::Error) -> Self {
        Self::new(Kind::ReturnToStartDir(dir.to_path_buf())).with(e)
    }

    pub(super) fn config(e: crate::config::ConfigError) -> Self {
        Self::new(Kind::Config(e))
    }

    pub(super) fn no_server() -> Self {
        Self::new(Kind::NoServer)
    }

    pub(super) fn raw_env(pair: &str) -> Self {
        Self::new(Kind::RawEnv(pair.to_owned()))
    }

    pub(super) fn capability(name: &str) -> Self {
        Self::new(Kind::Capability(name.to_owned()))
    }

    pub(super) fn group_without_user(group: &str) -> Self {
        Self::new(Kind::GroupWithoutUser(group.to_owned()))
    }

    pub(super) fn user_database(setting: &'static str, name: &str, e: nix::Error) -> Self {
        Self::new(Kind::UserDatabase {
            setting,
            name: name.to_owned(),
        })
        .with(e)
    }

    pub(super) fn no_such_user(user: &str) -> Self {
        Self::new(Kind::NoSuchUser(user.to_owned()))
    }

    pub(super) fn no_such_group(group: &str) -> Self {
        Self::new(Kind::NoSuchGroup(group.to_owned()))
    }

    pub(super) fn no_primary_group(user: &str) -> Self {
        Self::new(Kind::NoPrimaryGroup(user.to_owned()))
    }

    pub(super) fn log_file(log: &str, e: std::io::Error) -> Self {
        Self::new(Kind::LogFile(log.to_owned())).with(e)
    }

    pub(super) fn access_log(e: crate::logging::Error) -> Self {
        Self::new(Kind::AccessLog(e))
    }

    pub(super) fn hand_over(path: &Path, user: &str, e: nix::Error) -> Self {
        Self::new(Kind::HandOver {
            path: path.to_path_buf(),
            user: user.to_owned(),
        })
        .with(e)
    }

    /// `who`: the user's name and uid, the group's name and gid.
    pub(super) fn switch(
        who: (&str, u32, &str, u32),
        step: &'static str,
        cause: impl Into<Source>,
    ) -> Self {
        let (user, uid, group, gid) = who;
        Self::new(Kind::Switch {
            user: user.to_owned(),
            uid,
            group: group.to_owned(),
            gid,
            step,
        })
        .with(cause)
    }

    pub(super) fn bind(entry: &str, e: impl Into<Source>) -> Self {
        Self::new(Kind::Bind(entry.to_owned())).with(e)
    }

    pub(super) fn listen(e: crate::listeners::Error) -> Self {
        Self::new(Kind::Listen(e))
    }

    pub(super) fn pidfile_taken(path: &Path, pid: i32) -> Self {
        Self::new(Kind::PidFileTaken {
            path: path.to_path_buf(),
            pid,
        })
    }

    pub(super) fn pidfile_write(path: &Path, e: std::io::Error) -> Self {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("the directory {} does not exist", dir.display())
            }
            std::io::ErrorKind::IsADirectory => format!(
                "it is a directory: name a file in it ({}/unitcorn.pid, say)",
                path.display()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "permission denied: the user unitcorn runs as cannot write in {}",
                dir.display()
            ),
            _ => e.to_string(),
        };
        Self::new(Kind::PidFileWrite(path.to_path_buf())).with(why)
    }

    pub(super) fn pidfile_rename(from: &Path, to: &Path, e: std::io::Error) -> Self {
        Self::new(Kind::PidFileRename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        })
        .with(e)
    }

    /// `traceback`: the Python text `python::hooks` returns (or its typed error).
    pub(super) fn hook(name: &'static str, traceback: impl Into<Source>) -> Self {
        Self::new(Kind::Hook(name)).with(traceback)
    }

    /// `why`: what `python::load_app` returns (or its typed error).
    pub(super) fn preload(why: impl Into<Source>) -> Self {
        Self::new(Kind::Preload).with(why)
    }

    pub(super) fn signals(e: impl Into<Source>) -> Self {
        Self::new(Kind::Signals).with(e)
    }

    pub(super) fn scoreboard(e: impl Into<Source>) -> Self {
        Self::new(Kind::Scoreboard).with(e)
    }

    pub(super) fn listener_copy(e: std::io::Error) -> Self {
        Self::new(Kind::ListenerCopy).with(e)
    }

    pub(super) fn too_many_workers(max: usize) -> Self {
        Self::new(Kind::TooManyWorkers(max))
    }

    pub(super) fn fork(e: nix::Error) -> Self {
        Self::new(Kind::Fork).with(e)
    }

    pub(super) fn worker_boot(pid: Pid) -> Self {
        Self::new(Kind::WorkerBoot(pid))
    }

    pub(super) fn app_load(pid: Pid) -> Self {
        Self::new(Kind::AppLoad(pid))
    }

    pub(super) fn upgrade(what: impl Into<String>, cause: impl Into<Source>) -> Self {
        Self::new(Kind::Upgrade(what.into())).with(cause)
    }

    /// A worker could not boot (bad listener, runtime, `post_fork` raised): the master
    /// stopped rather than respawn it forever.
    pub fn is_worker_boot(&self) -> bool {
        matches!(self.inner.kind, Kind::WorkerBoot(_))
    }

    /// A worker could not import the app: the master stopped rather than respawn it.
    pub fn is_app_load(&self) -> bool {
        matches!(self.inner.kind, Kind::AppLoad(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Daemonize => f.write_str("cannot daemonize (daemon)"),
            Kind::StartDir => f.write_str("cannot read the current directory"),
            Kind::Chdir(dir) => write!(f, "cannot chdir to {}", dir.display()),
            Kind::ReturnToStartDir(dir) => write!(f, "cannot chdir to {}", dir.display()),
            Kind::NoServer => f.write_str("the command line asks for no server"),
            Kind::RawEnv(pair) => write!(f, "{pair:?} is not KEY=VALUE"),
            Kind::Capability(name) => write!(f, "{name:?} is not a capability"),
            Kind::GroupWithoutUser(group) => write!(f, "group {group:?} is set without user"),
            Kind::UserDatabase { setting, name } => {
                write!(f, "cannot read the {setting} database to find {name:?}")
            }
            Kind::NoSuchUser(user) => write!(f, "no such user {user:?}"),
            Kind::NoSuchGroup(group) => write!(f, "no such group {group:?}"),
            Kind::NoPrimaryGroup(user) => {
                write!(f, "user {user:?} has no passwd entry, so no primary group")
            }
            Kind::LogFile(log) => write!(f, "cannot open the log file {log}"),
            Kind::HandOver { path, user } => {
                write!(f, "cannot give {} to user {user} (chown)", path.display())
            }
            Kind::Switch {
                user,
                uid,
                group,
                gid,
                step,
            } => write!(
                f,
                "cannot switch to user {user} (uid {uid}) and group {group} (gid {gid}): {step}"
            ),
            Kind::Bind(entry) => write!(f, "{entry:?} is not a bind address"),
            // Transparent: the lower layer's own error names the address or setting.
            Kind::Listen(e) => write!(f, "{e}"),
            Kind::AccessLog(e) => write!(f, "{e}"),
            Kind::Config(e) => write!(f, "{e}"),
            Kind::PidFileTaken { path, pid } => write!(
                f,
                "the pid file {} names process {pid}, which is running",
                path.display()
            ),
            Kind::PidFileWrite(path) => {
                write!(f, "cannot write the pid file {}", path.display())
            }
            Kind::PidFileRename { from, to } => write!(
                f,
                "cannot rename the pid file {} to {}",
                from.display(),
                to.display()
            ),
            Kind::Hook(name) => write!(f, "the {name} hook raised; stopping"),
            Kind::Preload => f.write_str("the app did not load (preload_app)"),
            Kind::Signals => f.write_str("cannot install signal handlers"),
            Kind::Scoreboard => f.write_str("cannot map the scoreboard"),
            Kind::ListenerCopy => f.write_str("cannot duplicate a listener for a worker"),
            Kind::TooManyWorkers(max) => write!(f, "cannot run more than {max} workers"),
            Kind::Fork => f.write_str("fork failed"),
            Kind::WorkerBoot(pid) | Kind::AppLoad(pid) => write!(
                f,
                "Worker (pid:{pid}) could not start; stopping: fix the error above and start \
                 again"
            ),
            Kind::Upgrade(what) => f.write_str(what),
        }?;
        if let Some(set_by) = &self.inner.set_by {
            write!(f, " ({set_by})")?;
        }
        if let Some(advice) = self.advice() {
            write!(f, ": {advice}")?;
        }
        if f.alternate() {
            // `{:#}`: the causes too, for the top level and the log.
            let mut next = std::error::Error::source(self);
            while let Some(cause) = next {
                write!(f, "{}", Cause(cause))?;
                next = cause.source();
            }
        }
        Ok(())
    }
}

impl Error {
    /// What to do, for the failures that have no cause of their own to show but a known
    /// fix; after the setting, so that the message reads what, where, what to do.
    fn advice(&self) -> Option<&'static str> {
        match &self.inner.kind {
            Kind::GroupWithoutUser(_) => {
                Some("set user too (the group applies when unitcorn switches to the user)")
            }
            Kind::NoSuchUser(_) => Some("name an existing user (`getent passwd` lists them)"),
            Kind::NoSuchGroup(_) => Some("name an existing group (`getent group` lists them)"),
            Kind::NoPrimaryGroup(_) => Some("set group"),
            Kind::Capability(_) => Some("use a name such as CAP_NET_BIND_SERVICE"),
            Kind::PidFileTaken { .. } => Some(
                "is unitcorn already running? Stop it, or remove the file if it is not unitcorn",
            ),
            _ => None,
        }
    }
}

/// One cause in a chain: after ": ", or on lines of its own when it has several (a
/// Python traceback).
pub struct Cause<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let text = text.trim_end();
        if text.contains('\n') {
            write!(f, "\n{text}")
        } else {
            write!(f, ": {text}")
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            // Transparent (see Display): the lower layer's own cause comes next.
            Kind::Listen(e) => e.source(),
            Kind::AccessLog(e) => e.source(),
            Kind::Config(e) => e.source(),
            _ => self
                .inner
                .source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(e) = next {
            out.push(e.to_string());
            next = e.source();
        }
        out
    }

    #[test]
    fn display_is_one_level_and_the_cause_is_the_source() {
        let e = Error::pidfile_write(
            Path::new("/run/app.pid"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            chain(&e),
            [
                "cannot write the pid file /run/app.pid",
                "permission denied: the user unitcorn runs as cannot write in /run"
            ]
        );
    }

    #[test]
    fn the_setting_comes_after_what_failed_and_before_what_to_do() {
        let settings = crate::config::Settings::for_tests();
        let e = Error::no_such_user("nosuchuser").set_by(settings.provenance("user"));
        assert_eq!(
            e.to_string(),
            "no such user \"nosuchuser\" (user, the default): name an existing user \
             (`getent passwd` lists them)"
        );
        let e = Error::pidfile_write(
            Path::new("/nonexistent/app.pid"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
        .set_by(settings.provenance("pidfile"));
        assert_eq!(
            format!("{e:#}"),
            "cannot write the pid file /nonexistent/app.pid (pidfile, the default): the \
             directory /nonexistent does not exist"
        );
    }

    #[test]
    fn a_hook_keeps_its_traceback_as_the_source() {
        let e = Error::hook("when_ready", "Traceback (most recent call last):\n  ...");
        assert_eq!(e.to_string(), "the when_ready hook raised; stopping");
        assert!(chain(&e)[1].starts_with("Traceback"));
        assert!(!e.is_worker_boot() && !e.is_app_load());
    }

    #[test]
    fn the_two_boot_failures_are_told_apart() {
        let pid = Pid::from_raw(42);
        assert!(Error::worker_boot(pid).is_worker_boot());
        assert!(!Error::worker_boot(pid).is_app_load());
        assert!(Error::app_load(pid).is_app_load());
        assert!(
            Error::app_load(pid)
                .to_string()
                .contains("(pid:42) could not start")
        );
    }
}
