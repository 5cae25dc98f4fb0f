//! Logging: gunicorn's error log (from `tracing` events) and access log, one `write(2)` a line
//! to a file or stdio, or one native entry an event to journald.
//!
//! Not here: log-level reloading.

mod access_format;
mod access_log;
pub(crate) mod clock;
pub(crate) mod error;
mod error_log;
mod journald;
mod sink;

pub use access_format::AccessFormat;
pub use access_log::{AccessLog, AccessRecord};
pub use error::Error;
pub use error_log::{ErrorLogHandle, Observer, init, write_raw};

/// A fresh, empty directory under the system temp dir for one test.
#[cfg(test)]
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("unitcorn-logging-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temp dir is writable");
    dir
}
