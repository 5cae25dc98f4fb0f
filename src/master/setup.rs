//! What the master does once, before the first fork: working directory, the app's
//! environment (`raw_env`), the pid file.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::config::bind::BindAddr;

/// `chdir` and `raw_env` (`-e KEY=VALUE`), so every worker inherits them.
pub fn prepare_process(settings: &Settings) -> Result<(), String> {
    std::env::set_current_dir(&settings.chdir)
        .map_err(|e| format!("cannot chdir to {} (chdir): {e}", settings.chdir.display()))?;
    for pair in &settings.raw_env {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("raw_env: {pair:?} is not KEY=VALUE"));
        };
        // SAFETY: the master is single-threaded (no runtime, no helper thread) and no
        // worker exists yet, so nothing can read the environment concurrently.
        unsafe { std::env::set_var(key, value) };
    }
    Ok(())
}

/// The unix sockets the master bound itself, removed when it exits (as gunicorn does).
/// Inherited sockets (`fd://`) are never removed: they belong to whoever passed them.
pub struct SocketFiles {
    paths: Vec<PathBuf>,
}

impl SocketFiles {
    pub fn bound(binds: &[BindAddr]) -> SocketFiles {
        let paths = binds
            .iter()
            .filter_map(|b| match b {
                BindAddr::Unix(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        SocketFiles { paths }
    }
}

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The pid file, removed again when the master exits.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn write(path: &Path) -> Result<PidFile, String> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            format!(
                "cannot write the pid file {} (pidfile): {e}",
                path.display()
            )
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
