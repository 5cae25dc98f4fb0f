//! `--print-config`: the resolved settings written as a TOML config file.
//!
//! The output lists every setting, in table order, and reads back through `-c` to the
//! same settings. It does not print anything itself; the caller does.

use std::fmt::Write as _;

use super::settings::{SETTINGS, Settings};
use super::table::Scope;
use super::value::Value;

/// Writes `settings` as a TOML config file. Settings that TOML cannot hold are written
/// as comments: unset optional ones (TOML has no null; leaving the key out gives the
/// same `None` back), the command-line-only ones (`config`, `check_config`,
/// `print_config`), which a config file may not set, and the server hooks of a Python
/// config file (with where they are defined).
pub fn to_toml(settings: &Settings) -> String {
    let mut out = String::from(
        "# unitcorn configuration, as resolved (unitcorn --print-config).\n\
         # Keys are gunicorn's setting names; read it back with `unitcorn -c FILE`.\n",
    );
    let mut section = None;
    for setting in SETTINGS {
        if section != Some(setting.section) {
            section = Some(setting.section);
            // Writing to a String cannot fail.
            let _ = write!(out, "\n# ---- {}\n", setting.section.title());
        }
        let value = (setting.get)(settings);
        let name = setting.name;
        let _ = writeln!(out, "\n# {}", setting.doc);
        let _ = match (setting.scope, &value) {
            (Scope::CommandLine, Value::Unset) => {
                writeln!(out, "# {name} is unset (command line only)")
            }
            (Scope::CommandLine, v) => writeln!(
                out,
                "# {name} = {} (command line only)",
                setting.kind.write_toml(v)
            ),
            (Scope::Anywhere, Value::Unset) => writeln!(out, "# {name} is unset"),
            (Scope::Anywhere, v) => writeln!(out, "{name} = {}", setting.kind.write_toml(v)),
        };
    }
    out.push_str("\n# ---- Server hooks (Python functions: set in a Python config file)\n\n");
    for name in super::gunicorn::hooks() {
        let _ = match settings.extras.hook(name) {
            Some(hook) => writeln!(out, "# {name} = {}", hook.describe),
            None => writeln!(out, "# {name} is unset"),
        };
    }
    if !settings.extras.notes.is_empty() {
        out.push_str("\n# ---- Notes\n\n");
        for note in &settings.extras.notes {
            let _ = writeln!(out, "# {note}");
        }
    }
    out
}
