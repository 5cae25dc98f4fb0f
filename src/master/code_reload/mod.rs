//! `reload`: start a new generation of workers (as HUP does) when a source file of the app
//! or a `reload_extra_files` match changes.
//!
//! Which files: those of the modules the app's workers loaded from outside the standard
//! library and site-packages, as each worker reports them (`reload_report`): the master
//! never imports the app, and the workers know best what they loaded, lazily imported
//! modules included. Watched through their directories with inotify (`inotify.rs`), or by
//! comparing modification times every second (`poll.rs`, `reload_engine = "poll"`).
//!
//! A change waits for a short quiet time first, so an editor's burst of writes (backup,
//! write, rename, chmod) makes one reload.

mod glob;
mod inotify;
mod poll;

use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::reload_report::Receiver;
use glob::Glob;

/// A change is acted on once no other came for this long…
const QUIET: Duration = Duration::from_millis(200);
/// …or this long after the first of a burst, whichever is sooner.
const MAX_DELAY: Duration = Duration::from_secs(1);

enum Engine {
    Inotify(inotify::DirWatcher),
    Poll(poll::Scanner),
}

/// A change waiting for the burst to end.
struct Pending {
    first: Instant,
    last: Instant,
    path: PathBuf,
}

pub struct CodeReload {
    reports: Receiver,
    /// The app's module files, as workers reported them.
    modules: BTreeSet<PathBuf>,
    extra: Vec<Glob>,
    engine: Engine,
    pending: Option<Pending>,
    /// The settings this was set up from.
    made_from: (Vec<String>, String, PathBuf),
}

fn wanted(settings: &Settings) -> Option<(Vec<String>, String, PathBuf)> {
    settings.reload.then(|| {
        (
            settings.reload_extra_files.clone(),
            settings.reload_engine.clone(),
            settings.chdir.clone(),
        )
    })
}

/// Set up, change or drop the reloader as `settings` ask; called before each fork, so that
/// workers have the report channel from their start. A reloader that cannot start is
/// logged, and the server runs without it.
pub fn follow(slot: &mut Option<CodeReload>, settings: &Settings) {
    let Some(want) = wanted(settings) else {
        if slot.take().is_some() {
            tracing::info!("reload: off");
        }
        return;
    };
    if slot.as_ref().is_some_and(|r| r.made_from == want) {
        return;
    }
    // The channel and what the running workers reported carry over a change of settings.
    let (reports, modules) = match slot.take() {
        Some(old) => (Ok(old.reports), old.modules),
        None => (Receiver::open(), BTreeSet::new()),
    };
    let reports = match reports {
        Ok(reports) => reports,
        Err(e) => {
            tracing::error!("reload: cannot open the channel from the workers: {e}; reload is off");
            return;
        }
    };
    let engine = match want.1.as_str() {
        "poll" => Engine::Poll(poll::Scanner::new()),
        engine => match inotify::DirWatcher::new() {
            Ok(watcher) => Engine::Inotify(watcher),
            Err(e) if engine == "auto" => {
                tracing::info!("reload: inotify unavailable ({e}); polling every second");
                Engine::Poll(poll::Scanner::new())
            }
            Err(e) => {
                tracing::error!(
                    "reload: inotify unavailable ({e}); reload is off (reload_engine = \"poll\" \
                     would work)"
                );
                return;
            }
        },
    };
    let extra = want
        .0
        .iter()
        .filter_map(|p| {
            Glob::new(p, &want.2)
                .inspect_err(|e| {
                    tracing::error!("reload: reload_extra_files {p:?} is not a glob ({e}); ignored")
                })
                .ok()
        })
        .collect();
    let mut reload = CodeReload {
        reports,
        modules: BTreeSet::new(),
        extra,
        engine,
        pending: None,
        made_from: want,
    };
    for glob in reload.extra.clone() {
        reload.watch_glob(&glob);
    }
    for module in modules {
        reload.add_module(module);
    }
    tracing::info!(
        "reload: watching the app's modules{} ({})",
        if reload.extra.is_empty() {
            String::new()
        } else {
            format!(" and {}", reload.made_from.0.join(", "))
        },
        match reload.engine {
            Engine::Inotify(_) => "inotify",
            Engine::Poll(_) => "polling every second",
        }
    );
    *slot = Some(reload);
}

impl CodeReload {
    /// The descriptors the master's loop waits on besides its signals.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.reports.fd()];
        if let Engine::Inotify(w) = &self.engine {
            fds.push(w.fd());
        }
        fds
    }

    /// How long the master's loop may sleep before `poll` has something to do.
    pub fn until_due(&self) -> Option<Duration> {
        let pending = self.pending.as_ref().map(|p| {
            let now = Instant::now();
            (p.last + QUIET)
                .min(p.first + MAX_DELAY)
                .saturating_duration_since(now)
        });
        let scan = match &self.engine {
            Engine::Poll(scanner) => Some(scanner.until_due()),
            Engine::Inotify(_) => None,
        };
        [pending, scan].into_iter().flatten().min()
    }

    /// Take in the workers' reports and the file system's changes; the changed file, once
    /// a burst of changes is over.
    pub fn poll(&mut self) -> Option<PathBuf> {
        for path in self.reports.drain() {
            self.add_module(path);
        }
        let mut changed = Vec::new();
        match &mut self.engine {
            Engine::Inotify(watcher) => {
                let mut overflow = false;
                let mut new_dirs = Vec::new();
                for event in watcher.read() {
                    match event {
                        inotify::Event::Changed(path) => changed.push(path),
                        inotify::Event::NewDirectory(dir) => new_dirs.push(dir),
                        inotify::Event::Overflow => overflow = true,
                    }
                }
                for dir in new_dirs {
                    self.watch_new_directory(&dir);
                }
                changed.retain(|p| self.relevant(p));
                if overflow {
                    // Too much happened to tell what: reloading is the safe side.
                    changed.push(PathBuf::from("(many files: the inotify queue overflowed)"));
                }
            }
            Engine::Poll(scanner) => {
                if scanner.until_due().is_zero() {
                    let matched = self.extra.iter().flat_map(Glob::files).collect();
                    changed.extend(scanner.scan(matched));
                }
            }
        }
        let now = Instant::now();
        if let Some(path) = changed.into_iter().next() {
            match &mut self.pending {
                Some(pending) => pending.last = now,
                None => {
                    self.pending = Some(Pending {
                        first: now,
                        last: now,
                        path,
                    });
                }
            }
        }
        let due = self
            .pending
            .as_ref()
            .is_some_and(|p| now >= p.last + QUIET || now >= p.first + MAX_DELAY);
        if due {
            self.pending.take().map(|p| p.path)
        } else {
            None
        }
    }

    fn relevant(&self, path: &Path) -> bool {
        self.modules.contains(path) || self.extra.iter().any(|g| g.matches(path))
    }

    fn add_module(&mut self, path: PathBuf) {
        if self.modules.contains(&path) {
            return;
        }
        match &mut self.engine {
            Engine::Inotify(watcher) => {
                if let Some(dir) = path.parent() {
                    watcher.watch(dir);
                }
            }
            Engine::Poll(scanner) => scanner.add(&path),
        }
        self.modules.insert(path);
    }

    fn watch_glob(&mut self, glob: &Glob) {
        if let Engine::Inotify(watcher) = &mut self.engine {
            for dir in glob.directories() {
                watcher.watch(&dir);
            }
        }
    }

    /// A directory appeared in a watched one: watch it too if a pattern looks into it
    /// (files written into it before the watch are missed until the next change).
    fn watch_new_directory(&mut self, dir: &Path) {
        let Engine::Inotify(watcher) = &mut self.engine else {
            return;
        };
        for glob in &self.extra {
            if (glob.recursive() && dir.starts_with(glob.base())) || glob.base() == dir {
                watcher.watch(dir);
                for sub in glob::subdirectories(dir).into_iter().take(glob::MAX_DIRS) {
                    watcher.watch(&sub);
                }
            }
        }
    }
}
