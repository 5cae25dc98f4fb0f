//! Where each setting's value came from: a line of the config file, a flag of the command
//! line or of `UNITCORN_CMD_ARGS`, an environment variable, or the default.
//!
//! The readers record it as they read (`file.rs`, `python_file.rs`, the argument lists in
//! `mod.rs`); config's own errors start with it, and `Settings` keeps it, so that a layer
//! that fails on a value (the master binding `bind`, logging opening `errorlog`) can say
//! which setting to fix and where it was set: `Settings::provenance`. Nothing here knows
//! what the values are used for.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::settings::Settings;

/// Which argument list a flag came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgsSource {
    CommandLine,
    /// `UNITCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS`.
    EnvArgs(&'static str),
}

impl fmt::Display for ArgsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsSource::CommandLine => f.write_str("command line"),
            ArgsSource::EnvArgs(var) => f.write_str(var),
        }
    }
}

/// Where a value came from. `Display` is the place as a config error starts with it
/// (`/etc/app.toml:3:11`, `command line`); `Provenance` words it for the other layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No source set it: the table's default.
    Default,
    /// A flag (`--workers`) or the positional `APP`.
    Args {
        source: ArgsSource,
        flag: String,
    },
    /// A default taken from an environment variable (`PORT`, `WEB_CONCURRENCY`, ...).
    EnvDefault {
        var: &'static str,
    },
    File(FilePos),
    /// A Python config file: the line of the statement that set the name, when known.
    PyFile {
        path: String,
        line: Option<usize>,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Args { source, .. } => write!(f, "{source}"),
            Origin::EnvDefault { var } => write!(f, "environment variable {var}"),
            Origin::File(at) => write!(f, "{at}"),
            Origin::PyFile {
                path,
                line: Some(line),
            } => write!(f, "{path}:{line}"),
            Origin::PyFile { path, line: None } => write!(f, "{path}"),
        }
    }
}

/// A place in the config file; `Display` is `path:line:column`, which editors jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePos {
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl FilePos {
    /// The position of byte `offset` of `text`; lines and columns count from 1, columns
    /// in characters.
    pub(crate) fn at(path: &Path, text: &str, offset: usize) -> FilePos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        FilePos {
            path: path.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for FilePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Where each setting of one `Settings` came from; a setting no source set is absent
/// (its origin is `Origin::Default`).
#[derive(Debug, Clone, Default)]
pub struct Origins(HashMap<&'static str, Origin>);

impl Origins {
    pub(crate) fn new(origins: HashMap<&'static str, Origin>) -> Origins {
        Origins(origins)
    }
}

/// Two configurations with the same values are the same, wherever the values came from: a
/// reload that moves a setting from the file to the command line changes nothing.
impl PartialEq for Origins {
    fn eq(&self, _: &Origins) -> bool {
        true
    }
}

impl Settings {
    /// Where the value of the setting `name` came from.
    pub fn origin(&self, name: &str) -> &Origin {
        debug_assert!(super::table::find(name).is_some(), "{name} is no setting");
        self.origins.0.get(name).unwrap_or(&Origin::Default)
    }

    /// The setting `name` and where its value came from, for the message of an error its
    /// value caused (`cannot listen on 127.0.0.1:80 (bind, from --bind): ...`).
    pub fn provenance(&self, name: &'static str) -> Provenance {
        Provenance {
            setting: name,
            origin: self.origin(name).clone(),
        }
    }
}

/// A setting and where its value came from. `Display`, the one wording every layer uses:
/// `bind, from unitcorn.toml:3`, `bind, from --bind`, `bind, from --bind in
/// UNITCORN_CMD_ARGS`, `bind, from the environment variable PORT`, `bind, the default`. An
/// error puts it in parentheses after what failed, before why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub setting: &'static str,
    pub origin: Origin,
}

impl Provenance {
    /// `error` with this provenance after its message: for a layer whose error type has no
    /// place for one (it cannot know the settings' sources).
    pub fn wrap<E>(self, error: E) -> FromSetting<E> {
        FromSetting {
            provenance: self,
            error,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let setting = self.setting;
        match &self.origin {
            Origin::Default => write!(f, "{setting}, the default"),
            Origin::Args {
                source: ArgsSource::CommandLine,
                flag,
            } if flag.starts_with('-') => write!(f, "{setting}, from {flag}"),
            // The positional APP.
            Origin::Args {
                source: ArgsSource::CommandLine,
                flag,
            } => write!(f, "{setting}, from {flag} on the command line"),
            Origin::Args {
                source: ArgsSource::EnvArgs(var),
                flag,
            } => write!(f, "{setting}, from {flag} in {var}"),
            Origin::EnvDefault { var } => {
                write!(f, "{setting}, from the environment variable {var}")
            }
            // The line is what an operator looks for; the column points into the value.
            Origin::File(at) => write!(f, "{setting}, from {}:{}", at.path.display(), at.line),
            Origin::PyFile {
                path,
                line: Some(line),
            } => write!(f, "{setting}, from {path}:{line}"),
            Origin::PyFile { path, line: None } => write!(f, "{setting}, from {path}"),
        }
    }
}

/// An error of another layer caused by a setting's value: its message, then `(setting,
/// from origin)`; its causes are the error's own.
#[derive(Debug)]
pub struct FromSetting<E> {
    provenance: Provenance,
    error: E,
}

impl<E: std::error::Error> fmt::Display for FromSetting<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.provenance)?;
        if f.alternate() {
            let mut next = self.error.source();
            while let Some(cause) = next {
                write!(f, ": {cause}")?;
                next = cause.source();
            }
        }
        Ok(())
    }
}

impl<E: std::error::Error> std::error::Error for FromSetting<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nwörkers = 2\n";
        let p = Path::new("/etc/app.toml");
        assert_eq!(FilePos::at(p, text, 0).to_string(), "/etc/app.toml:1:1");
        let off = text.find("= 2").unwrap();
        assert_eq!(FilePos::at(p, text, off).to_string(), "/etc/app.toml:2:9");
        // Past the end (an error at end of input) stays on the last line.
        assert_eq!(FilePos::at(p, text, 999).line, 3);
    }

    fn provenance(origin: Origin) -> String {
        Provenance {
            setting: "bind",
            origin,
        }
        .to_string()
    }

    #[test]
    fn a_provenance_names_the_setting_and_where_it_was_set() {
        let args = |source, flag: &str| Origin::Args {
            source,
            flag: flag.to_owned(),
        };
        let text = "workers = 2\nbind = \"x\"\n";
        let at = FilePos::at(Path::new("unitcorn.toml"), text, text.find("bind").unwrap());
        let cases = [
            (Origin::File(at), "bind, from unitcorn.toml:2"),
            (args(ArgsSource::CommandLine, "--bind"), "bind, from --bind"),
            (
                args(ArgsSource::EnvArgs("UNITCORN_CMD_ARGS"), "--bind"),
                "bind, from --bind in UNITCORN_CMD_ARGS",
            ),
            (
                Origin::EnvDefault { var: "PORT" },
                "bind, from the environment variable PORT",
            ),
            (
                Origin::PyFile {
                    path: "/srv/gunicorn.conf.py".into(),
                    line: Some(12),
                },
                "bind, from /srv/gunicorn.conf.py:12",
            ),
            (Origin::Default, "bind, the default"),
        ];
        for (origin, expected) in cases {
            assert_eq!(provenance(origin), expected);
        }
    }

    #[test]
    fn a_wrapped_error_keeps_its_causes_after_the_provenance() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot open the thing")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let provenance = Provenance {
            setting: "errorlog",
            origin: Origin::Default,
        };
        let e = provenance.wrap(Outer(std::io::Error::other("it is gone")));
        assert_eq!(
            e.to_string(),
            "cannot open the thing (errorlog, the default)"
        );
        assert_eq!(
            format!("{e:#}"),
            "cannot open the thing (errorlog, the default): it is gone"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
