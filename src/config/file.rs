//! Reading the config file (`-c FILE`): TOML whose keys are gunicorn's setting names.
//!
//! Every key must be a setting and every value must fit it; the first problem, in file
//! order, stops the load with its file:line:column. gunicorn's names that are not
//! unitcorn settings are read through `gunicorn.rs` (accepted at gunicorn's default,
//! else noted or refused with the reason); server hooks need a Python config file
//! (`python_file.rs`). Merging the file with other sources is `config/mod.rs`'s job.

use std::fs;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
use super::extras::Extras;
use super::gunicorn::{self, Loose, Verdict};
use super::origin::{FilePos, Origin};
use super::source::Read;
use super::table::{self, Scope};
#[cfg(any(test, feature = "fuzzing"))]
use super::{table::Setting, value::Value};

/// Reads and checks the TOML config file at `path`.
pub(crate) fn read(path: &Path) -> Result<Read, ConfigError> {
    let text = fs::read_to_string(path).map_err(|e| ConfigError::read(path, e))?;
    parse_all(path, &text)
}

/// Checks the TOML `text` of the file `path` (named in errors): the settings' values.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse(
    path: &Path,
    text: &str,
) -> Result<Vec<(&'static Setting, Value)>, ConfigError> {
    parse_all(path, text).map(|read| read.values.into_iter().map(|(s, v, _)| (s, v)).collect())
}

/// Checks the TOML `text` of the file `path`: values, and notes for gunicorn settings
/// accepted without effect.
fn parse_all(path: &Path, text: &str) -> Result<Read, ConfigError> {
    let table = DeTable::parse(text).map_err(|e| {
        let offset = e.span().map_or(text.len(), |span| span.start);
        ConfigError::syntax(FilePos::at(path, text, offset), e.message())
    })?;

    // The table is sorted by key; check in file order so the first error reported is
    // the first one the operator sees in the file.
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let mut values = Vec::with_capacity(entries.len());
    let mut extras = Extras::default();
    for (key, value) in entries {
        let name: &str = key.get_ref();
        if table::find(name).is_none() {
            let at = Origin::File(FilePos::at(path, text, key.span().start));
            if gunicorn::hook_args(name).is_some() {
                return Err(ConfigError::hook(
                    &at,
                    name,
                    format!(
                        "a Python function taking ({}); set it in a Python config file \
                         (-c gunicorn.conf.py), TOML cannot hold it",
                        gunicorn::hook_parameters(name)
                    ),
                ));
            }
            match gunicorn::verdict(name, &loose(value.get_ref())) {
                Some(Verdict::Accept) => continue,
                Some(Verdict::AcceptAndLog(why)) => {
                    extras.notes.push(format!(
                        "{at}: setting {name:?} has no effect in unitcorn: {why}"
                    ));
                    continue;
                }
                Some(Verdict::Refuse(why)) => {
                    return Err(ConfigError::not_supported(&at, name, why));
                }
                None => {}
            }
        }
        let Some(setting) = table::find(name) else {
            let at = FilePos::at(path, text, key.span().start);
            let is_table = value.get_ref().is_table();
            return Err(ConfigError::unknown_setting(
                at,
                name,
                table::suggest(name),
                is_table,
            ));
        };
        if setting.scope != Scope::Anywhere {
            let at = FilePos::at(path, text, key.span().start);
            let flag = setting.cli.display_name().unwrap_or_default();
            return Err(ConfigError::not_in_file(at, setting.name, flag));
        }
        match setting.kind.read_toml(value) {
            Ok(v) => {
                let at = Origin::File(FilePos::at(path, text, key.span().start));
                values.push((setting, v, at));
            }
            Err((problem, span)) => {
                let origin = Origin::File(FilePos::at(path, text, span.start));
                return Err(ConfigError::value(origin, setting.name, problem));
            }
        }
    }
    Ok(Read { values, extras })
}

/// A TOML value reduced for comparison with gunicorn's defaults.
fn loose<'a>(value: &'a DeValue<'_>) -> Loose<'a> {
    match value {
        DeValue::Boolean(b) => Loose::Bool(*b),
        DeValue::Integer(i) => {
            i128::from_str_radix(i.as_str(), i.radix()).map_or(Loose::Other, Loose::Int)
        }
        DeValue::String(s) => Loose::Str(s),
        DeValue::Array(items) if items.is_empty() => Loose::Empty,
        DeValue::Table(table) if table.is_empty() => Loose::Empty,
        _ => Loose::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/etc/app.toml"), text)
            .unwrap_err()
            .to_string()
    }

    fn values(text: &str) -> Vec<(&'static str, Value)> {
        parse(Path::new("/etc/app.toml"), text)
            .unwrap()
            .into_iter()
            .map(|(s, v)| (s.name, v))
            .collect()
    }

    #[test]
    fn reads_gunicorn_names_and_types() {
        let v = values(
            "workers = 4\nbind = \"unix:/run/app.sock\"\npreload_app = true\numask = 0o22\n\
             forwarded_allow_ips = \"10.0.0.1, 10.0.0.2\"\nraw_env = [\"A=1\", \"B=2\"]\n",
        );
        assert_eq!(
            v,
            vec![
                ("workers", Value::Int(4)),
                ("bind", Value::List(vec!["unix:/run/app.sock".into()])),
                ("preload_app", Value::Bool(true)),
                ("umask", Value::Int(0o22)),
                (
                    "forwarded_allow_ips",
                    Value::List(vec!["10.0.0.1".into(), "10.0.0.2".into()])
                ),
                ("raw_env", Value::List(vec!["A=1".into(), "B=2".into()])),
            ]
        );
    }

    #[test]
    fn unknown_setting_names_file_line_and_suggests() {
        assert_eq!(
            err("backlog = 64\n\nwokers = 3\n"),
            r#"/etc/app.toml:3:1: unknown setting "wokers" (did you mean "workers"?)"#
        );
        assert_eq!(
            err("keep-alive = 3\n"),
            r#"/etc/app.toml:1:1: unknown setting "keep-alive" (did you mean "keepalive"?)"#
        );
        assert_eq!(
            err("log_file = \"-\"\n"),
            r#"/etc/app.toml:1:1: unknown setting "log_file" (did you mean "errorlog"?)"#
        );
        assert_eq!(
            err("[server]\nworkers = 2\n"),
            r#"/etc/app.toml:1:2: unknown setting "server"; settings are top-level keys, not in a [table]"#
        );
        assert_eq!(
            err("frobnicate_everything = true\n"),
            r#"/etc/app.toml:1:1: unknown setting "frobnicate_everything"; `unitcorn --print-config` lists every setting"#
        );
    }

    #[test]
    fn ill_typed_setting_names_file_line_and_value() {
        assert_eq!(
            err("backlog = 64\n\n\n\nworkers = \"four\"\n"),
            r#"/etc/app.toml:5:11: setting "workers" must be a positive integer, got "four""#
        );
        assert_eq!(
            err("workers = 0\n"),
            r#"/etc/app.toml:1:11: setting "workers" must be a positive integer, got 0"#
        );
        assert_eq!(
            err("threads = -2\n"),
            r#"/etc/app.toml:1:11: setting "threads" must be a positive integer, got -2"#
        );
        assert_eq!(
            err("timeout = 2.5\n"),
            r#"/etc/app.toml:1:11: setting "timeout" must be a non-negative integer, got 2.5"#
        );
        assert_eq!(
            err("preload_app = \"yes\"\n"),
            r#"/etc/app.toml:1:15: setting "preload_app" must be true or false, got "yes""#
        );
        assert_eq!(
            err("limit_request_line = 9000\n"),
            r#"/etc/app.toml:1:22: setting "limit_request_line" must be an integer from 0 to 8190, got 9000"#
        );
        assert_eq!(
            err("loglevel = \"verbose\"\n"),
            r#"/etc/app.toml:1:12: setting "loglevel": "verbose" is not a log level; use one of debug, info, warning, error, critical"#
        );
        // A bad list item is pointed at, not the whole list.
        assert_eq!(
            err("bind = [\"127.0.0.1:80\",\n  \"localhost:http\"]\n"),
            r#"/etc/app.toml:2:3: setting "bind": bind address "localhost:http" has a port "http" that is not a number from 0 to 65535"#
        );
        assert_eq!(
            err("bind = [1]\n"),
            r#"/etc/app.toml:1:9: setting "bind" must be a string or a list of strings, got 1"#
        );
        assert_eq!(
            err("pidfile = { path = \"/run/x\" }\n"),
            r#"/etc/app.toml:1:11: setting "pidfile" must be a non-empty path, got a table"#
        );
        assert_eq!(
            err("umask = 0o1000\n"),
            r#"/etc/app.toml:1:9: setting "umask" must be a file mode mask from 0 to 0o777 (like 0o022 or "0022"), got 0o1000"#
        );
    }

    #[test]
    fn command_line_only_settings_are_refused() {
        assert_eq!(
            err("config = \"/etc/other.toml\"\n"),
            r#"/etc/app.toml:1:1: setting "config" cannot be set in a config file; give --config on the command line"#
        );
        assert!(err("print_config = true\n").contains("--print-config"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = err("workers = 3\nbind = \"x\n");
        assert!(e.starts_with("/etc/app.toml:2:"), "{e}");
        assert!(e.contains("invalid TOML"), "{e}");
        let e = err("workers = 3\nworkers = 4\n");
        assert!(e.starts_with("/etc/app.toml:2:"), "{e}");
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn gunicorn_settings_unitcorn_lacks_are_refused_or_noted_hooks_need_python() {
        assert_eq!(
            err("workers = 2\ncertfile = \"/etc/ssl/cert.pem\"\n"),
            "/etc/app.toml:2:1: setting \"certfile\" is not supported: TLS is terminated by \
             the proxy in front of unitcorn (nginx, a load balancer); unitcorn serves plain HTTP"
        );
        assert!(err("post_fork = \"hooks.post_fork\"\n").starts_with(
            "/etc/app.toml:1:1: setting \"post_fork\" (a server hook): a Python function \
             taking (server, worker); set it in a Python config file"
        ));
        // gunicorn's default asks for nothing; another value of an ignored one is noted.
        let read = parse_all(
            Path::new("/etc/app.toml"),
            "syslog = false\nreuse_port = true\n",
        )
        .unwrap();
        assert!(read.values.is_empty());
        assert_eq!(read.extras.notes.len(), 1);
        assert!(read.extras.notes[0].starts_with("/etc/app.toml:2:1: setting \"reuse_port\""));
    }

    #[test]
    fn missing_file_is_named() {
        let e = read(Path::new("/nonexistent/app.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/app.toml: cannot read the config file: "),
            "{e}"
        );
    }
}
