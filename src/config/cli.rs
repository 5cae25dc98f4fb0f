//! The command line, a config source: gunicorn's flags, built with clap from the settings table, the
//! `--help` text, and the shell-splitting of `UNITCORN_CMD_ARGS`.
//!
//! This is syntax only. Values come back as the strings the operator typed; checking
//! them, and deciding which source wins, is `config`'s job.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ColorChoice, error::ErrorKind};

use super::SETTINGS;
use super::table::{Cli, Const, DefaultValue, Kind, Setting};

/// What `--version` prints, in gunicorn's shape.
pub fn version() -> String {
    format!("unitcorn (version {})", env!("CARGO_PKG_VERSION"))
}

const ABOUT: &str = "unitcorn: a prefork HTTP server for Python WSGI apps, a drop-in for gunicorn.";

const AFTER_HELP: &str = "\
Settings come from, lowest to highest precedence: the defaults; the config file
(-c FILE: TOML, keys are gunicorn's setting names); UNITCORN_CMD_ARGS (else
GUNICORN_CMD_ARGS), split like a shell command line; the command line. A flag
replaces the config file's value, lists (-b, -e) included.

Signals to the master follow the contract of the deployment unitcorn replaces.
TERM is an immediate stop, unlike gunicorn, whose TERM is graceful:
  QUIT        graceful stop: stop accepting, finish in-flight requests, exit
  INT, TERM   immediate stop: workers are killed, the master exits
  HUP         reload: re-read the config, start new workers, stop the old ones
  TTIN, TTOU  one worker more, one worker fewer
  USR1        reopen the log files
  USR2        upgrade: start a new master that inherits the sockets
  WINCH       gracefully stop all workers, keep the master and its sockets

Besides serving, two modes, each only in exactly the shape of its usage line
(so reload:app, a lone reload, or reload after options is an APP named reload):
  reload PID           tell systemd a reload starts (a unit's ExecReload=, with
                       NotifyAccess=exec), then send HUP to the master PID:
                       systemctl reload then returns once the new workers
                       serve, on systemd 252 as well
  config convert FILE  print the Python config file FILE as a TOML config
                       file, its server hooks (TOML cannot hold them) as
                       comments";

/// The command's forms, one usage line each: `--help` shows them and the man page's
/// SYNOPSIS is made from them, so that the modes cannot go missing from either.
pub const USAGE: [&str; 3] = [
    "unitcorn [OPTIONS] [APP]",
    "unitcorn reload PID",
    "unitcorn config convert FILE",
];

/// Help is wrapped (by clap) to the terminal's width, and to no more than this: a narrow
/// terminal gets narrow help, a pipe or a wide terminal the 79 columns of a man page.
const MAX_HELP_WIDTH: usize = 79;
/// `--help` indents each flag's long help by this much.
const LONG_HELP_INDENT: usize = 10;

/// The clap command, one argument per setting that has a flag, in table order.
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("unitcorn")
        .about(ABOUT)
        .after_help(AFTER_HELP)
        // clap would show only the server's form; "Usage: " is 7 columns wide.
        .override_usage(USAGE.join("\n       "))
        // Help and errors end up in strings handed back to main, not straight on a
        // terminal, so no escape codes.
        .color(ColorChoice::Never)
        .max_term_width(MAX_HELP_WIDTH)
        // gunicorn (argparse) lets the last of `-w 2 -w 3` win.
        .args_override_self(true)
        // `-v` is gunicorn's, and the text is gunicorn's shape: our own flag below.
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Print the version and exit"),
        );
    for (order, setting) in SETTINGS.iter().enumerate() {
        if let Some(arg) = arg(setting, order) {
            cmd = cmd.arg(arg);
        }
    }
    cmd
}

fn arg(setting: &'static Setting, order: usize) -> Option<Arg> {
    let mut arg = Arg::new(setting.name).display_order(order);
    arg = match setting.cli {
        Cli::None => return None,
        Cli::Positional { value_name } => arg.value_name(value_name).index(1),
        Cli::Option {
            short,
            long,
            aliases,
            value_name,
        } => {
            let arg = arg
                .long(long)
                .aliases(aliases.iter().copied())
                .help_heading(setting.section.title());
            let arg = match short {
                Some(c) => arg.short(c),
                None => arg,
            };
            match setting.kind {
                Kind::Flag => arg.action(ArgAction::SetTrue),
                _ => arg.value_name(value_name),
            }
        }
    };
    arg = match setting.kind {
        Kind::Flag => arg,
        Kind::Repeated(_) => arg.action(ArgAction::Append),
        // So that `-w -1` reaches our range check instead of "unexpected argument '-1'".
        Kind::Int { .. } | Kind::Umask => arg.action(ArgAction::Set).allow_negative_numbers(true),
        _ => arg.action(ArgAction::Set),
    };

    // `-h` stays one short line a flag (within 79 columns); the default and the
    // setting's name are in `--help`.
    let mut long_help = format!("{}.\n{}", setting.doc, setting.long_doc);
    let default = match (setting.kind, setting.default) {
        (Kind::Flag, _) | (_, DefaultValue::Const(Const::Unset | Const::List(&[]))) => None,
        (_, d) => Some(d),
    };
    // A line of their own, so that clap's wrapping never splits "[setting:" from the
    // name: both on one line when they fit in the widest long help, else one line each.
    let tag = format!("[setting: {}]", setting.name);
    let tags = match default {
        Some(d) if format!("[default: {d}] {tag}").len() <= MAX_HELP_WIDTH - LONG_HELP_INDENT => {
            format!("[default: {d}] {tag}")
        }
        Some(d) => format!("[default: {d}]\n{tag}"),
        None => tag,
    };
    long_help.push('\n');
    long_help.push_str(&tags);
    Some(arg.help(setting.doc).long_help(long_help))
}

/// What is answered before the settings are parsed: a mode other than serving, help or
/// the version.
#[derive(Debug, PartialEq, Eq)]
pub enum Special {
    Help(String),
    Version(String),
    /// `reload PID`.
    Reload(i32),
    /// `config convert FILE`.
    ConvertConfig(PathBuf),
}

/// The modes first, and only in exactly their shapes, `reload PID` and `config convert
/// FILE`: any other word list is the server's, so that an app whose module is named
/// `reload` or `config` still serves (`reload:app`, `reload` alone, `-w 2 reload 5`, which
/// clap then refuses for its extra word, as it refuses `reload 0`). Then `-h`, `--help`,
/// `-v` or `--version` anywhere before `--` (the first one wins), so that they work even
/// next to a flag clap would refuse, as in gunicorn.
pub fn special(args: &[OsString]) -> Option<Special> {
    match args {
        [_, reload, pid] if reload == "reload" => {
            if let Some(pid) = pid.to_str().and_then(|p| p.parse().ok()).filter(|p| *p > 0) {
                return Some(Special::Reload(pid));
            }
        }
        [_, config, convert, file] if config == "config" && convert == "convert" => {
            return Some(Special::ConvertConfig(PathBuf::from(file)));
        }
        _ => {}
    }
    for arg in args.iter().skip(1) {
        match arg.to_str() {
            Some("--") => return None,
            Some("-h") => return Some(Special::Help(trimmed(command().render_help()))),
            Some("--help") => return Some(Special::Help(trimmed(command().render_long_help()))),
            Some("-v" | "--version") => return Some(Special::Version(version())),
            _ => {}
        }
    }
    None
}

fn trimmed(help: clap::builder::StyledStr) -> String {
    help.to_string().trim_end().to_owned()
}

/// What an argument list set: each setting given, with the strings it was given.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Settings in table order. A `Kind::Flag` has no strings.
    pub values: Vec<(&'static Setting, Vec<String>)>,
    /// `-v`/`--version` was given (inside a bundle such as `-Dv`, which `special`
    /// does not look into).
    pub version: bool,
}

/// Why an argument list did not parse.
#[derive(Debug)]
pub enum ParseError {
    /// `-h`/`--help` found by clap (inside a bundle such as `-Dh`): the text to print.
    Help(String),
    /// Unknown flag, missing value, …: clap's message, with its usage line.
    Usage(String),
}

/// Parses `args` (`args[0]` is the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, ParseError> {
    let matches = command()
        .try_get_matches_from(args)
        .map_err(|e| match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ParseError::Help(trimmed(e.render()))
            }
            _ => ParseError::Usage(e.render().to_string()),
        })?;

    let mut parsed = Parsed {
        version: matches.get_flag("version"),
        values: Vec::new(),
    };
    for setting in SETTINGS {
        if matches!(setting.cli, Cli::None)
            || matches.value_source(setting.name) != Some(ValueSource::CommandLine)
        {
            continue;
        }
        let strings = match setting.kind {
            Kind::Flag => Vec::new(),
            _ => matches
                .get_many::<String>(setting.name)
                .map(|values| values.cloned().collect())
                .unwrap_or_default(),
        };
        parsed.values.push((setting, strings));
    }
    Ok(parsed)
}

/// Splits `s` into words as Python's `shlex.split` does (POSIX rules, no comments),
/// which is how gunicorn reads `GUNICORN_CMD_ARGS`. The error says what is unclosed.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Tracked apart from `word.is_empty()` so that '' gives an empty word.
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote (') is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash only escapes " and \.
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote (\") is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote (\") is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("it ends with a backslash that escapes nothing".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        shell_split(s).unwrap()
    }

    #[test]
    fn shell_split_follows_shlex() {
        assert_eq!(
            split("  -w 3\t--bind=0.0.0.0:80 "),
            ["-w", "3", "--bind=0.0.0.0:80"]
        );
        assert_eq!(
            split(r#"--access-logformat '%(h)s "%(r)s"' -n "my app""#),
            ["--access-logformat", r#"%(h)s "%(r)s""#, "-n", "my app"]
        );
        assert_eq!(
            split(r#"a\ b "c\"d" "e\f" 'g\h'"#),
            ["a b", "c\"d", r"e\f", r"g\h"]
        );
        assert_eq!(split("x'' '' a\"b\"c"), ["x", "", "abc"]);
        assert_eq!(split(""), Vec::<String>::new());
        assert!(shell_split("-n 'app").unwrap_err().contains("single quote"));
        assert!(
            shell_split("-n \"app")
                .unwrap_err()
                .contains("double quote")
        );
        assert!(shell_split("-n app\\").unwrap_err().contains("backslash"));
    }

    #[test]
    fn clap_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn help_lists_sections_in_table_order_and_states_the_signal_contract() {
        let help = command().render_long_help().to_string();
        let pos = |s: &str| help.find(s).unwrap_or_else(|| panic!("{s:?} not in help"));
        assert!(pos("Server socket:") < pos("Worker processes:"));
        assert!(pos("Worker processes:") < pos("Server mechanics:"));
        assert!(pos("Server mechanics:") < pos("Logging:"));
        assert!(pos("--workers") < pos("--worker-class"));
        assert!(help.contains("QUIT        graceful stop"));
        assert!(help.contains("INT, TERM   immediate stop"));
        assert!(help.contains("unlike gunicorn, whose TERM is graceful"));
        for signal in ["HUP", "TTIN", "TTOU", "USR1", "USR2", "WINCH"] {
            assert!(help.contains(signal), "{signal} missing from --help");
        }
        assert!(help.contains("[default: 0.0.0.0:$PORT if $PORT is set, else 127.0.0.1:8000]"));
        assert!(help.contains("[setting: keepalive]"));
    }

    #[test]
    fn short_help_is_one_line_a_flag_within_79_columns() {
        let help = command().render_help().to_string();
        let line = help
            .lines()
            .find(|l| l.contains("--workers"))
            .expect("--workers in -h");
        assert!(line.contains("Number of worker processes"), "{line}");
        for line in help.lines() {
            assert!(line.chars().count() <= 79, "too wide for -h: {line:?}");
        }
    }

    #[test]
    fn special_flags_win_before_parsing() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            special(&args(&["unitcorn", "--bogus", "-v"])),
            Some(Special::Version(version()))
        );
        assert!(matches!(
            special(&args(&["unitcorn", "-w", "x", "--help"])),
            Some(Special::Help(h)) if h.contains("Signals")
        ));
        assert_eq!(special(&args(&["unitcorn", "--", "-v"])), None);
        assert_eq!(special(&args(&["-v"])), None, "args[0] is the program");
        assert_eq!(
            version(),
            format!("unitcorn (version {})", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn the_modes_are_exactly_their_shapes() {
        let special = |v: &[&str]| special(&v.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(
            special(&["unitcorn", "reload", "42"]),
            Some(Special::Reload(42))
        );
        for server in [
            &["unitcorn", "reload"][..],
            &["unitcorn", "reload", "0"],
            &["unitcorn", "reload", "-5"],
            &["unitcorn", "reload", "app"],
            &["unitcorn", "-w", "2", "reload"],
            &["unitcorn", "reload:app", "1"],
            &["unitcorn", "reload", "1", "2"],
            &["unitcorn", "config", "convert"],
            &["unitcorn", "config", "convert", "a.py", "b.py"],
            &["unitcorn", "convert", "config", "a.py"],
        ] {
            assert_eq!(special(server), None, "{server:?}");
        }
        assert_eq!(
            special(&["unitcorn", "config", "convert", "g.conf.py"]),
            Some(Special::ConvertConfig("g.conf.py".into()))
        );
        // The shapes come first, as they did when each mode had its own matcher.
        assert_eq!(
            special(&["unitcorn", "config", "convert", "-h"]),
            Some(Special::ConvertConfig("-h".into()))
        );
        assert!(matches!(
            special(&["unitcorn", "reload", "-h"]),
            Some(Special::Help(_))
        ));
    }

    #[test]
    fn help_shows_every_form_as_a_usage_line() {
        for help in [command().render_help(), command().render_long_help()] {
            let help = help.to_string();
            assert!(
                help.contains(
                    "Usage: unitcorn [OPTIONS] [APP]\n       unitcorn reload PID\n       \
                     unitcorn config convert FILE\n"
                ),
                "{help}"
            );
        }
        let help = command().render_long_help().to_string();
        assert!(help.contains("reload:app, a lone reload"), "{help}");
    }
}
