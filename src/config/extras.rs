//! What a config file gives beyond the settings' values: the server hooks of a Python
//! config file, and the notes the master logs at start (gunicorn settings accepted
//! without effect, names that look like misspelt settings).
//!
//! A hook here is a descriptor, plain data: which hook, where it is defined, and which
//! run of the config file bound it. The callable itself stays in
//! `python/` (`python::config::callable` finds it from the descriptor), so that the
//! settings hold no Python object.

use std::sync::Arc;

/// Carried in `Settings`, so that a reload (HUP) replaces the hooks with the settings
/// they came with, and the workers inherit both.
#[derive(Clone, Default, Debug)]
pub struct Extras {
    /// The hooks the config file set, in file order, one a name.
    pub hooks: Vec<Hook>,
    /// Warnings for the error log at start, one a line.
    pub notes: Vec<String>,
}

impl Extras {
    /// The hook `name`, when the config file set it.
    pub fn hook(&self, name: &str) -> Option<&Hook> {
        self.hooks.iter().find(|h| h.name == name)
    }
}

/// Two configurations are the same when they set the same hooks (by name and place)
/// and say the same things: a callable has no other equality, and which run of the
/// file bound it does not make it another hook.
impl PartialEq for Extras {
    fn eq(&self, other: &Self) -> bool {
        self.notes == other.notes
            && self.hooks.len() == other.hooks.len()
            && self
                .hooks
                .iter()
                .zip(&other.hooks)
                .all(|(a, b)| a.name == b.name && a.describe == b.describe)
    }
}

/// A server hook of a Python config file.
#[derive(Clone, Debug)]
pub struct Hook {
    /// gunicorn's name of the hook, which is also the module-level name the config file
    /// bound the callable to.
    pub name: &'static str,
    /// `name (file:line)` of the callable, for `--print-config` and messages. (Its arity
    /// is not kept: `python_file.rs` checks it as it reads the file, and nothing after
    /// needs it.)
    pub describe: String,
    /// The run of the config file that bound it: with `name`, where `python/` finds the
    /// callable again.
    pub run: ConfigRun,
}

/// One run of a Python config file in this process (the start, each HUP, a convert).
#[derive(Clone, Debug)]
pub struct ConfigRun {
    /// The file that ran (for `python:MODULE`, the module's file).
    pub path: String,
    /// Which run it was: a HUP runs the same file again, and settings kept for a
    /// rollback must still find their own run's callables.
    pub serial: u64,
    /// Held by every hook of the run: `python/` keeps the run's callables as long as one
    /// is alive (settings in use, or kept for a rollback), and frees them after.
    pub held: Arc<()>,
}

impl ConfigRun {
    pub fn new(path: String, serial: u64) -> ConfigRun {
        ConfigRun {
            path,
            serial,
            held: Arc::new(()),
        }
    }
}
