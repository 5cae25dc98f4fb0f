//! Watching directories with inotify, from the master's own loop: no thread (the master
//! forks, so it stays single-threaded; the `notify` crate runs its watchers on a thread of
//! their own, which is why this talks to inotify through nix instead).
//!
//! Directories, not files: editors often save by writing a new file and renaming it over
//! the old one, which a watch on the old file's inode would miss.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Event batches read a call at most: the master's loop comes back for the rest.
const READ_BATCH: usize = 64;

/// Something happened to an entry of a watched directory.
pub enum Event {
    /// A file was written, created, moved, removed or touched.
    Changed(PathBuf),
    /// A directory appeared (for recursive patterns to watch).
    NewDirectory(PathBuf),
    /// The kernel's queue overflowed: anything may have changed.
    Overflow,
}

pub struct DirWatcher {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    watched: HashSet<PathBuf>,
    /// The watch limit was reported once already.
    warned: bool,
}

impl DirWatcher {
    pub fn new() -> nix::Result<Self> {
        Ok(DirWatcher {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            dirs: HashMap::new(),
            watched: HashSet::new(),
            warned: false,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Watch `dir` (once); a directory that does not exist is skipped.
    pub fn watch(&mut self, dir: &Path) {
        if self.watched.contains(dir) {
            return;
        }
        let mask = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_ONLYDIR;
        match self.inotify.add_watch(dir, mask) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_owned());
                self.watched.insert(dir.to_owned());
            }
            Err(nix::errno::Errno::ENOSPC) if !self.warned => {
                self.warned = true;
                tracing::warn!(
                    "reload: the inotify watch limit is reached ({} watched); changes in {} \
                     and others go unnoticed: raise fs.inotify.max_user_watches or use \
                     reload_engine = \"poll\"",
                    self.watched.len(),
                    dir.display()
                );
            }
            Err(e) => tracing::debug!("reload: cannot watch {}: {e}", dir.display()),
        }
    }

    /// What happened since the last call.
    pub fn read(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        for _ in 0..READ_BATCH {
            let Ok(events) = self.inotify.read_events() else {
                break;
            };
            if events.is_empty() {
                break;
            }
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    out.push(Event::Overflow);
                    continue;
                }
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The directory is gone; a new one by that name needs a new watch.
                    if let Some(dir) = self.dirs.remove(&event.wd) {
                        self.watched.remove(&dir);
                    }
                    continue;
                }
                let (Some(dir), Some(name)) = (self.dirs.get(&event.wd), event.name) else {
                    continue;
                };
                let path = dir.join(name);
                let is_dir = event.mask.contains(AddWatchFlags::IN_ISDIR);
                if is_dir
                    && event
                        .mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    out.push(Event::NewDirectory(path));
                } else if !is_dir {
                    out.push(Event::Changed(path));
                }
            }
        }
        out
    }
}
