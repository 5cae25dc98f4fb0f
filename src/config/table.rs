//! The shape of one entry in the settings table: name, section, flags, kind, default, docs.
//!
//! The entries themselves live in `settings.rs`, next to the `Settings` struct they
//! generate. This file holds no setting; it only says what an entry is made of.

use std::fmt;

use super::settings::Settings;
use super::value::Value;

/// One setting, described once. `--help`, the TOML reader and `--print-config` all
/// read this description; nothing about a setting is written anywhere else.
#[derive(Debug)]
pub struct Setting {
    /// gunicorn's name: the TOML key and the `Settings` field.
    pub name: &'static str,
    /// The `--help` heading it appears under.
    pub section: Section,
    /// How it is spelled on the command line (and in `UNITCORN_CMD_ARGS`).
    pub cli: Cli,
    /// What values it takes, and how they are read and checked.
    pub kind: Kind,
    /// The value when no source sets it.
    pub default: DefaultValue,
    /// Where it may be set: a few settings only make sense for one run.
    pub scope: Scope,
    /// One line for `-h` (keep `-h` within 79 columns).
    pub doc: &'static str,
    /// The rest of the story, for `--help` and the generated TOML reference.
    pub long_doc: &'static str,
    /// Reads the resolved value back out of `Settings`, for `--print-config`.
    pub(crate) get: fn(&Settings) -> Value,
}

/// The `--help` headings, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    ServerSocket,
    WorkerProcesses,
    ServerMechanics,
    Logging,
    ProcessNaming,
    Security,
    Debugging,
    ConfigFile,
}

impl Section {
    /// The heading as printed; gunicorn's section names.
    pub fn title(self) -> &'static str {
        match self {
            Section::ServerSocket => "Server socket",
            Section::WorkerProcesses => "Worker processes",
            Section::ServerMechanics => "Server mechanics",
            Section::Logging => "Logging",
            Section::ProcessNaming => "Process naming",
            Section::Security => "Security",
            Section::Debugging => "Debugging",
            Section::ConfigFile => "Config file",
        }
    }
}

/// How a setting is spelled on the command line.
#[derive(Debug, Clone, Copy)]
pub enum Cli {
    /// Config-file only (gunicorn has no flag for it either).
    None,
    /// The positional argument (`APP`).
    Positional { value_name: &'static str },
    /// `-s`/`--long` (plus aliases). `value_name` is unused for `Kind::Flag`.
    Option {
        short: Option<char>,
        long: &'static str,
        aliases: &'static [&'static str],
        value_name: &'static str,
    },
}

impl Cli {
    /// A flag with a short and a long spelling, or only a long one.
    pub const fn opt(short: Option<char>, long: &'static str, value_name: &'static str) -> Cli {
        Cli::Option {
            short,
            long,
            aliases: &[],
            value_name,
        }
    }

    /// How an operator would name it in an error: `--workers`, or `APP`.
    pub fn display_name(&self) -> Option<String> {
        match self {
            Cli::None => None,
            Cli::Positional { value_name } => Some((*value_name).to_owned()),
            Cli::Option { long, .. } => Some(format!("--{long}")),
        }
    }
}

/// Where a setting may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Config file, `UNITCORN_CMD_ARGS` and command line.
    Anywhere,
    /// Command line and `UNITCORN_CMD_ARGS` only: the config file path itself, and the
    /// one-shot modes (`--check-config`, `--print-config`), which would otherwise turn a
    /// printed config into one that never serves.
    CommandLine,
}

/// Checks (and may normalise) one string value. The error is a clause that reads after
/// "setting "x": ", and quotes the offending value itself.
pub type Check = fn(&str) -> Result<String, String>;

/// What values a setting takes. Each kind maps to one Rust field type (see `value::Field`).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `bool`: a flag without value on the command line, `true`/`false` in the file.
    Flag,
    /// `u32` or `u64` in `min..=max`.
    Int { min: u64, max: u64 },
    /// `u32`: a file-mode mask. An integer, or a string read as gunicorn reads it
    /// (Python's `int(x, 0)`, plus a leading `0` meaning octal: "0022").
    Umask,
    /// `String`, with an optional check.
    Text(Option<Check>),
    /// `Option<String>`, unset by default.
    OptText(Option<Check>),
    /// `PathBuf`.
    Path,
    /// `Option<PathBuf>`.
    OptPath,
    /// `Vec<String>`: the flag is repeated, one item each (`-b A -b B`). The file takes a
    /// list or a single string.
    Repeated(Check),
    /// `Vec<String>`: one comma-separated string on the command line. The file takes a
    /// list or a comma-separated string.
    CommaList(Check),
    /// `Vec<String>` of `NAME=VALUE` (a Python dict in gunicorn): a table in the file
    /// (`{ "X-FORWARDED-PROTO" = "https" }`), comma-separated pairs as a string. Names
    /// are upper-cased, as gunicorn matches them.
    Pairs,
}

/// A default as data, so `--help` can say where it comes from.
#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    Const(Const),
    /// `$var` when set, read as the command line reads a value, after putting it in
    /// `format`'s `{}`; else `fallback`.
    Env {
        var: &'static str,
        format: &'static str,
        fallback: Const,
    },
    /// The working directory unitcorn was started in.
    Cwd,
}

/// A compile-time value.
#[derive(Debug, Clone, Copy)]
pub enum Const {
    Bool(bool),
    Int(u64),
    Str(&'static str),
    List(&'static [&'static str]),
    Unset,
}

impl Const {
    pub(crate) fn to_value(self) -> Value {
        match self {
            Const::Bool(b) => Value::Bool(b),
            Const::Int(n) => Value::Int(n),
            Const::Str(s) => Value::Str(s.to_owned()),
            Const::List(items) => Value::List(items.iter().map(|s| (*s).to_owned()).collect()),
            Const::Unset => Value::Unset,
        }
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Const::Bool(b) => write!(f, "{b}"),
            Const::Int(n) => write!(f, "{n}"),
            Const::Str(s) => write!(f, "{s}"),
            Const::List(items) => write!(f, "{}", items.join(", ")),
            Const::Unset => write!(f, "unset"),
        }
    }
}

impl fmt::Display for DefaultValue {
    /// The `[default: …]` text of `--help`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Const(c) => write!(f, "{c}"),
            DefaultValue::Env {
                var,
                format: "{}",
                fallback,
            } => write!(f, "${var} if set, else {fallback}"),
            DefaultValue::Env {
                var,
                format,
                fallback,
            } => write!(
                f,
                "{} if ${var} is set, else {fallback}",
                format.replace("{}", &format!("${var}"))
            ),
            DefaultValue::Cwd => write!(f, "the current directory"),
        }
    }
}

/// Finds a setting by its gunicorn name.
pub(crate) fn find(name: &str) -> Option<&'static Setting> {
    super::settings::SETTINGS.iter().find(|s| s.name == name)
}

/// The setting an unknown key was probably meant to be: a flag's spelling used as a key
/// (`keep-alive`, `log_level`), or a name a typo or two away (`wokers`).
pub(crate) fn suggest(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase().replace('-', "_");
    let candidates = || {
        super::settings::SETTINGS
            .iter()
            .filter(|s| s.scope == Scope::Anywhere)
    };

    let by_flag = candidates().find(|s| match s.cli {
        Cli::Option { long, aliases, .. } => std::iter::once(long)
            .chain(aliases.iter().copied())
            .any(|flag| flag.replace('-', "_") == key),
        _ => false,
    });
    if let Some(s) = by_flag.or_else(|| candidates().find(|s| s.name == key)) {
        return Some(s.name);
    }

    candidates()
        .map(|s| (edit_distance(&key, s.name), s.name))
        .filter(|&(d, name)| d <= (name.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("wokers", "workers"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
