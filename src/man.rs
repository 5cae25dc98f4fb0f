//! The man pages, generated so that they never drift from the code: `man/unitcorn.1` from
//! the clap command (`cli::command`, rendered by clap_mangen) and `man/unitcorn.toml.5`
//! from the settings table, each filled into its hand-written template (`man/*.in`).
//!
//! Test-only (clap_mangen is a dev-dependency): `man_pages_are_current` fails when a
//! committed page differs from what the code generates, and rewrites the pages when
//! `UNITCORN_UPDATE_MAN=1`:
//!
//!     UNITCORN_UPDATE_MAN=1 cargo test --release man::
//!
//! The `.TH` date is the day the page's content last changed: a rewrite keeps the
//! committed date when only the date would differ, and otherwise takes `SOURCE_DATE_EPOCH`
//! (else today, UTC). So the pages, and the packages built from them, are reproducible.

use std::path::{Path, PathBuf};

use roff::{Roff, bold, italic, roman};

use crate::config::SETTINGS;
use crate::config::cli;
use crate::config::table::{Cli, Const, DefaultValue, Kind, Scope, Section, Setting};

/// What roff::Roff::render puts first; the templates carry it once, at the top.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// One generated page: its file under `man/`, and how it is made from a date.
struct Page {
    file: &'static str,
    render: fn(&str) -> String,
}

const PAGES: &[Page] = &[
    Page {
        file: "unitcorn.1",
        render: unitcorn_1,
    },
    Page {
        file: "unitcorn.toml.5",
        render: unitcorn_toml_5,
    },
];

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// The template `man/NAME.in`, its placeholders filled: `@DATE@` and `@VERSION@` anywhere,
/// and each line that is exactly a key of `blocks`.
fn fill(name: &str, template: &str, date: &str, blocks: &[(&str, String)]) -> String {
    let mut out = String::from(PREAMBLE);
    out.push_str(&format!(
        ".\\\" Generated from man/{name}.in by src/man.rs: edit those, not this file.\n"
    ));
    for line in template.lines() {
        // The template's own comments (how to regenerate) are not the page's.
        if line.starts_with(".\\\"") {
            continue;
        }
        match blocks.iter().find(|(key, _)| *key == line) {
            Some((_, block)) => out.push_str(block),
            None => {
                out.push_str(
                    &line
                        .replace("@DATE@", date)
                        .replace("@VERSION@", env!("CARGO_PKG_VERSION")),
                );
                out.push('\n');
            }
        }
    }
    out
}

/// Roff rendered by the roff crate, without the preamble it starts with.
fn body(rendered: String) -> String {
    rendered
        .strip_prefix(PREAMBLE)
        .map(str::to_owned)
        .unwrap_or(rendered)
}

/// unitcorn(1): the options as clap_mangen renders them, each `--help` heading a
/// subsection of OPTIONS.
fn unitcorn_1(date: &str) -> String {
    let man = clap_mangen::Man::new(cli::command());
    let mut options = Vec::new();
    man.render_options_section(&mut options)
        .expect("writing to a Vec");
    let options = body(String::from_utf8(options).expect("roff is UTF-8"));
    let headings: Vec<String> = SETTINGS
        .iter()
        .map(|s| s.section.title().to_owned())
        .collect();
    let mut block = String::new();
    for line in options.lines() {
        match line.strip_prefix(".SH ") {
            Some(h) if h != "OPTIONS" => {
                let title = headings
                    .iter()
                    .find(|t| t.to_uppercase() == h.trim_matches('"'))
                    .unwrap_or_else(|| panic!("clap heading {h} is no settings section"));
                block.push_str(&format!(".SS \"{title}\"\n"));
            }
            _ => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    fill(
        "unitcorn.1",
        include_str!("../man/unitcorn.1.in"),
        date,
        &[("@SYNOPSIS@", synopsis()), ("@OPTIONS@", block)],
    )
}

/// SYNOPSIS: `--help`'s usage lines (`cli::USAGE`), in the man page's type faces: words
/// to type as they are in bold, the ones to replace (upper case) in italics.
fn synopsis() -> String {
    let mut roff = Roff::new();
    for (i, form) in cli::USAGE.iter().enumerate() {
        if i > 0 {
            roff.control("br", []);
        }
        let mut line = Vec::new();
        for (j, word) in form.split(' ').enumerate() {
            if j > 0 {
                line.push(roman(" "));
            }
            // `[APP]`: the brackets say optional, in roman like the spaces.
            let open = word.len() - word.trim_start_matches('[').len();
            let close = word.trim_end_matches(']').len();
            let bare = &word[open..close];
            line.push(roman(&word[..open]));
            line.push(if bare.chars().all(|c| c.is_ascii_uppercase()) {
                italic(bare)
            } else {
                bold(bare)
            });
            line.push(roman(&word[close..]));
        }
        roff.text(line);
    }
    body(roff.render())
}

/// unitcorn.toml(5): every setting of the table, under its section's heading.
fn unitcorn_toml_5(date: &str) -> String {
    let mut roff = Roff::new();
    let mut section: Option<Section> = None;
    for setting in SETTINGS {
        if section != Some(setting.section) {
            section = Some(setting.section);
            roff.control("SS", [setting.section.title()]);
        }
        setting_entry(&mut roff, setting);
    }
    fill(
        "unitcorn.toml.5",
        include_str!("../man/unitcorn.toml.5.in"),
        date,
        &[("@SETTINGS@", body(roff.render()))],
    )
}

fn setting_entry(roff: &mut Roff, s: &Setting) {
    roff.control("TP", []);
    roff.text([bold(s.name), roman(" = "), italic(kind_name(s.kind))]);
    roff.text([roman(format!("{}.", s.doc))]);
    if !s.long_doc.is_empty() {
        roff.text([roman(s.long_doc)]);
    }
    roff.control("IP", []);
    roff.text([roman(format!("Default: {}.", default_text(s)))]);
    roff.control("br", []);
    let mut cli = vec![roman("Command line: ")];
    match s.cli {
        Cli::None => cli.push(roman("none, in this file only.")),
        Cli::Positional { value_name } => {
            cli.extend([roman("the "), italic(value_name), roman(" argument.")]);
        }
        Cli::Option {
            short,
            long,
            aliases,
            value_name,
        } => {
            if let Some(c) = short {
                cli.extend([bold(format!("-{c}")), roman(", ")]);
            }
            cli.push(bold(format!("--{long}")));
            for alias in aliases {
                cli.extend([roman(", "), bold(format!("--{alias}"))]);
            }
            if !matches!(s.kind, Kind::Flag) {
                cli.extend([roman(" "), italic(value_name)]);
            }
            cli.push(roman("."));
        }
    }
    if s.scope == Scope::CommandLine {
        cli.push(roman(
            " Only on the command line and in UNITCORN_CMD_ARGS, never in this file.",
        ));
    }
    roff.text(cli);
    roff.control("br", []);
    // gunicorn's names come from one table (config/gunicorn.rs), so the page cannot drift.
    let gunicorn_has = crate::config::gunicorn::GUNICORN
        .iter()
        .any(|(name, _)| *name == s.name);
    if !gunicorn_has {
        roff.text([roman("unitcorn only: gunicorn has no such setting.")]);
    } else {
        roff.text([
            roman("gunicorn: "),
            bold(s.name),
            roman(", the same setting."),
        ]);
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Flag => "boolean",
        Kind::Int { .. } => "integer",
        Kind::Umask => "integer or string",
        Kind::Text(_) | Kind::OptText(_) => "string",
        Kind::Path | Kind::OptPath => "path",
        Kind::Repeated(_) | Kind::CommaList(_) => "list of strings",
        Kind::Pairs => "table",
    }
}

fn default_text(s: &Setting) -> String {
    let range = match s.kind {
        Kind::Int { min, max } if max == u64::MAX => format!("; at least {min}"),
        Kind::Int { min, max } => format!("; {min} to {max}"),
        Kind::Umask => "; an octal string such as \"0o22\" or \"0022\" is read as octal".into(),
        Kind::CommaList(_) => "; a string is split at commas".into(),
        Kind::Pairs => "; a string is read as NAME=VALUE pairs split at commas".into(),
        _ => String::new(),
    };
    let default = match s.default {
        DefaultValue::Const(Const::List(&[])) => "none (an empty list)".to_owned(),
        DefaultValue::Const(Const::Str("")) => "empty".to_owned(),
        // As TOML writes it: a literal string when it holds a double quote.
        DefaultValue::Const(Const::Str(text)) if text.contains('"') => format!("'{text}'"),
        DefaultValue::Const(Const::Str(text)) => format!("\"{text}\""),
        d => d.to_string(),
    };
    format!("{default}{range}")
}

/// The committed page, with the `.TH` date put back to `@DATE@`.
fn without_date(page: &str) -> String {
    page.lines()
        .map(|line| {
            if line.starts_with(".TH ") {
                let fields: Vec<&str> = line.split('"').collect();
                if fields.len() > 1 {
                    return line.replacen(fields[1], "@DATE@", 1);
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// YYYY-MM-DD of `SOURCE_DATE_EPOCH`, else of now (UTC).
fn today() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    crate::logging::clock::Civil::utc(secs).date()
}

#[test]
fn man_pages_are_current() {
    let update = std::env::var_os("UNITCORN_UPDATE_MAN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for page in PAGES {
        let path = man_dir().join(page.file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let committed_text = without_date(&committed);
        let generated = (page.render)("@DATE@");
        if committed_text == generated.trim_end_matches('\n') {
            continue;
        }
        if update {
            std::fs::write(&path, (page.render)(&today())).expect("write the man page");
            eprintln!("rewrote {}", path.display());
        } else {
            stale.push(page.file);
        }
    }
    assert!(
        stale.is_empty(),
        "man/{} differ from what the code generates (a flag, setting or template changed); \
         regenerate them with: UNITCORN_UPDATE_MAN=1 cargo test --release man::",
        stale.join(", man/")
    );
}

#[test]
fn every_setting_and_flag_is_in_the_pages() {
    let one = unitcorn_1("2000-01-01");
    let five = unitcorn_toml_5("2000-01-01");
    for s in SETTINGS {
        assert!(
            five.contains(&format!(".TP\n\\fB{}\\fR = ", s.name.replace('-', "\\-"))),
            "{} missing from unitcorn.toml(5)",
            s.name
        );
        if let Cli::Option { long, .. } = s.cli {
            assert!(
                one.contains(&format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"))),
                "--{long} missing from unitcorn(1)"
            );
        }
    }
    // The modes are in SYNOPSIS, as in --help's usage lines.
    assert!(one.contains("\\fBunitcorn\\fR \\fBreload\\fR \\fIPID\\fR\n"));
    assert!(one.contains("\\fBconfig\\fR \\fBconvert\\fR \\fIFILE\\fR\n"));
    for section in ["SIGNALS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"] {
        assert!(one.contains(&format!("\n.SH {section}\n")), "{section}");
    }
    assert_eq!(today().len(), 10);
}
