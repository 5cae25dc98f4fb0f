//! What a config file gives beyond the settings' values: the server hooks of a Python
//! config file, and the notes the master logs at start (gunicorn settings accepted
//! without effect, names that look like misspelt settings).

use crate::python::config::Hook;

/// Carried in `Settings`, so that a reload (HUP) replaces the hooks with the settings
/// they came with, and the workers inherit both.
#[derive(Clone, Default, Debug)]
pub struct Extras {
    /// Hook name (gunicorn's) to callable, in file order.
    pub hooks: Vec<(&'static str, Hook)>,
    /// Warnings for the error log at start, one a line.
    pub notes: Vec<String>,
}

impl Extras {
    /// The hook `name`, when the config file set it.
    pub fn hook(&self, name: &str) -> Option<&Hook> {
        self.hooks.iter().find(|(n, _)| *n == name).map(|(_, h)| h)
    }
}

/// Two configurations are the same when they set the same hooks (by name and place)
/// and say the same things: a callable has no other equality.
impl PartialEq for Extras {
    fn eq(&self, other: &Self) -> bool {
        self.notes == other.notes
            && self.hooks.len() == other.hooks.len()
            && self
                .hooks
                .iter()
                .zip(&other.hooks)
                .all(|((a, ha), (b, hb))| a == b && ha.describe == hb.describe)
    }
}
