//! The contract between the master and a worker it forks: what the worker is given, and
//! the exit codes by which it tells the master why it could not start.

use std::sync::Arc;

use crate::config::Settings;
use crate::listeners::Listener;
use crate::logging::ErrorLogHandle;
use crate::scoreboard::Scoreboard;

/// A worker that could not boot (bad listener, runtime): the master stops rather than
/// respawning forever, as gunicorn's `WORKER_BOOT_ERROR`.
pub const WORKER_BOOT_ERROR: i32 = 3;
/// The app could not be imported: the master stops, as gunicorn's `APP_LOAD_ERROR`.
pub const APP_LOAD_ERROR: i32 = 4;

/// Everything a freshly forked worker starts from.
#[derive(Debug)]
pub struct WorkerBoot {
    pub settings: Arc<Settings>,
    pub listeners: Vec<Listener>,
    /// The error log, reopened on SIGUSR1.
    pub error_log: ErrorLogHandle,
    pub scoreboard: Arc<Scoreboard>,
    /// This worker's slot in the scoreboard.
    pub slot: usize,
}

/// The function the master calls in a forked child; it never returns.
pub type WorkerMain = fn(WorkerBoot) -> !;
