//! `reload`, the worker's part: tell the master which of the app's source files are loaded
//! (see `reload_report`), once the app is imported and again whenever `sys.modules` grows
//! (Django, for one, imports its views at the first request).

use std::collections::HashSet;
use std::time::Duration;

/// How often `sys.modules` is looked at (gunicorn's reloader looks every second).
const EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ModuleReport {
    /// Files the master was told about.
    sent: HashSet<String>,
    /// `len(sys.modules)` at the last look.
    modules: usize,
}

impl ModuleReport {
    /// Report the files not reported yet, if `sys.modules` changed.
    pub fn report(&mut self) {
        let (count, files) = match crate::python::app_module_files(self.modules) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("reload: cannot list the app's modules: {e}");
                return;
            }
        };
        let new: Vec<String> = files
            .into_iter()
            .filter(|f| !self.sent.contains(f))
            .collect();
        let sent = crate::reload_report::report(&new);
        // What did not fit in the master's queue goes at the next look.
        self.modules = if sent == new.len() { count } else { 0 };
        self.sent.extend(new.into_iter().take(sent));
    }

    /// Keep reporting for the life of the worker (on its I/O loop).
    pub async fn keep_reporting(mut self) {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.report();
        }
    }
}
