//! `--check-config`: the settings parsed already; import the app as a worker would, and
//! serve nothing.

use crate::config::{self, Settings};

/// Print the settings first when `--print-config` is given too (as gunicorn does), then
/// import the app; the error is what to tell the operator.
pub fn check(settings: &Settings) -> Result<(), String> {
    if settings.print_config {
        print!("{}", config::to_toml(settings));
    }
    let mut settings = settings.clone();
    std::env::set_current_dir(&settings.chdir)
        .map_err(|e| format!("cannot chdir to {}: {e}", settings.chdir.display()))?;
    // Python resolves the app's directory after this chdir: give it the absolute path.
    if let Ok(absolute) = std::env::current_dir() {
        settings.chdir = absolute;
    }
    crate::python::load_app(&settings)
        .map(drop)
        .map_err(|e| format!("the app did not load\n{e}"))
}
