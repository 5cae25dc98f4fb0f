//! `unitcorn config convert FILE`: a gunicorn Python config file written as the
//! equivalent TOML config file, on stdout. Server hooks and settings without effect are
//! listed as comments: they have no TOML form.

use std::fmt::Write as _;
use std::path::Path;

use super::ConfigError;
use super::python_file::{self, PythonConfigRunner};
use super::value::Value;

/// The TOML text equivalent to the Python config file at `location`, run by `python`.
pub fn convert(location: &str, python: &dyn PythonConfigRunner) -> Result<String, ConfigError> {
    let cwd = std::env::current_dir().map_err(ConfigError::cwd)?;
    let venv = std::env::var_os("VIRTUAL_ENV");
    let read = python_file::read(python, location, &cwd, None, venv.as_deref().map(Path::new))?;
    let mut out = format!(
        "# unitcorn configuration converted from {location} (unitcorn config convert).\n\
         # Keys are gunicorn's setting names; use it with `unitcorn -c FILE`.\n"
    );
    for (setting, value, _) in &read.values {
        // Writing to a String cannot fail.
        let _ = match value {
            Value::Unset => writeln!(out, "# {} is unset (None)", setting.name),
            value => writeln!(out, "{} = {}", setting.name, setting.kind.write_toml(value)),
        };
    }
    if !read.extras.hooks.is_empty() {
        out.push_str(
            "\n# Server hooks are Python functions: TOML cannot hold them. Keep the Python\n\
             # file (unitcorn runs it with -c) to keep them:\n",
        );
        for hook in &read.extras.hooks {
            let _ = writeln!(out, "# {} = {}", hook.name, hook.describe);
        }
    }
    if !read.extras.notes.is_empty() {
        out.push_str("\n# Not converted:\n");
        for note in &read.extras.notes {
            let _ = writeln!(out, "# {note}");
        }
    }
    Ok(out)
}
