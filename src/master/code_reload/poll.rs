//! `reload_engine = "poll"`: compare modification times and sizes every second, as
//! gunicorn's polling reloader does. For file systems without inotify (some network and
//! container mounts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub const EVERY: Duration = Duration::from_secs(1);

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub struct Scanner {
    seen: HashMap<PathBuf, Stamp>,
    next: Instant,
    /// Files found by a pattern after the first scan are new files: a change.
    first_scan_done: bool,
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            seen: HashMap::new(),
            next: Instant::now(),
            first_scan_done: false,
        }
    }

    pub fn until_due(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Start watching a file as it is now (a module just reported: not a change).
    pub fn add(&mut self, path: &Path) {
        self.seen
            .entry(path.to_owned())
            .or_insert_with(|| stamp(path));
    }

    /// When due: the first file that changed, appeared (`matched` now, not before) or
    /// disappeared since the last scan.
    pub fn scan(&mut self, matched: Vec<PathBuf>) -> Option<PathBuf> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + EVERY;
        let mut changed = None;
        for path in matched {
            if !self.seen.contains_key(&path) {
                let now = stamp(&path);
                self.seen.insert(path.clone(), now);
                if self.first_scan_done {
                    changed.get_or_insert(path);
                }
            }
        }
        self.first_scan_done = true;
        for (path, before) in &mut self.seen {
            let now = stamp(path);
            if now != *before {
                *before = now;
                changed.get_or_insert_with(|| path.clone());
            }
        }
        changed
    }
}
