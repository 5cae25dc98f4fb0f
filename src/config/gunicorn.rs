//! Every gunicorn setting, and what unitcorn does with it: ONE table.
//!
//! A name is either a unitcorn setting of the same name (honoured: `settings.rs`), a
//! server hook (called where gunicorn calls it: `python/hooks.rs`), accepted with no
//! effect (logged at start when set to anything but gunicorn's default), or refused at
//! start with the reason. A config file (TOML or Python) that gives one of gunicorn's
//! names is read through this table; nothing is silently ignored. The README's migration
//! guide is generated from it (`migration_table`), and a test walks gunicorn's own list.

use super::table::find;

/// What unitcorn does with one gunicorn setting.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    /// unitcorn's setting of the same name, honoured.
    Setting,
    /// A server hook: a callable taking `args` positional arguments, set in a Python
    /// config file.
    Hook { args: usize },
    /// Accepted without effect; a value other than gunicorn's default is logged at start.
    Ignored { default: Default, why: &'static str },
    /// Refused at start, unless the value is gunicorn's default (which asks for nothing).
    Refused { default: Default, why: &'static str },
}

/// gunicorn's default of a setting unitcorn does not have, to tell "asks for nothing"
/// from "asks for something unitcorn does not do".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    None,
    Bool(bool),
    Int(i64),
    Str(&'static str),
    /// An empty list, dict or string (or None).
    Empty,
    /// Any value at all is refused (a setting gunicorn deprecated).
    Nothing,
}

/// A config value reduced to what `Default` compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loose<'a> {
    None,
    Bool(bool),
    Int(i128),
    Str(&'a str),
    /// An empty list or table.
    Empty,
    Other,
}

impl Default {
    /// The value asks for what gunicorn does by default.
    pub fn matches(self, value: &Loose<'_>) -> bool {
        match (self, value) {
            (Default::Nothing, _) => false,
            (Default::None, Loose::None) => true,
            (Default::Bool(d), Loose::Bool(v)) => d == *v,
            (Default::Int(d), Loose::Int(v)) => i128::from(d) == *v,
            (Default::Str(d), Loose::Str(v)) => d == *v,
            (Default::Empty, Loose::None | Loose::Empty | Loose::Str("")) => true,
            _ => false,
        }
    }
}

/// What a config file's gunicorn name becomes, for a name that is not unitcorn's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// gunicorn's default, or a setting that does nothing here: accept.
    Accept,
    /// Accept and say at start that it has no effect.
    AcceptAndLog(&'static str),
    /// Stop the start: the reason.
    Refuse(&'static str),
}

/// How a config file's `name = value` is treated when `name` is no unitcorn setting:
/// `None` when gunicorn has no such setting either (or it is a hook, which the caller
/// handles).
pub fn verdict(name: &str, value: &Loose<'_>) -> Option<Verdict> {
    match status(name)? {
        Status::Ignored { default, .. } | Status::Refused { default, .. }
            if default.matches(value) =>
        {
            Some(Verdict::Accept)
        }
        Status::Ignored { why, .. } => Some(Verdict::AcceptAndLog(why)),
        Status::Refused { why, .. } => Some(Verdict::Refuse(why)),
        Status::Setting | Status::Hook { .. } => None,
    }
}

/// The status of gunicorn's setting `name`; `None` when gunicorn has none of that name.
/// A unitcorn setting of the same name always wins (another branch may add one).
pub fn status(name: &str) -> Option<Status> {
    let listed = GUNICORN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    match listed {
        Some(Status::Hook { args }) => Some(Status::Hook { args }),
        _ if find(name).is_some() => Some(Status::Setting),
        other => other,
    }
}

/// What the master logs at start about the configuration: gunicorn settings given that
/// have no effect here (the file's notes).
pub fn start_notes(settings: &super::Settings) -> Vec<String> {
    settings.extras.notes.clone()
}

/// The positional arguments of the hook `name`, if it is one unitcorn calls.
pub fn hook_args(name: &str) -> Option<usize> {
    match status(name)? {
        Status::Hook { args } => Some(args),
        _ => None,
    }
}

/// The arguments gunicorn passes to the hook `name`, as its docs name them.
pub fn hook_parameters(name: &str) -> &'static str {
    match name {
        "on_starting" | "on_reload" | "when_ready" | "pre_exec" | "on_exit" => "server",
        "pre_fork" | "post_fork" | "child_exit" | "worker_exit" => "server, worker",
        "post_worker_init" | "worker_int" | "worker_abort" => "worker",
        "pre_request" => "worker, req",
        "post_request" => "worker, req, environ, resp",
        "nworkers_changed" => "server, new_value, old_value",
        _ => "...",
    }
}

/// The hooks, in gunicorn's order.
pub fn hooks() -> impl Iterator<Item = &'static str> {
    GUNICORN
        .iter()
        .filter(|(_, s)| matches!(s, Status::Hook { .. }))
        .map(|(n, _)| *n)
}

const TLS: &str = "TLS is terminated by the proxy in front of unitcorn (nginx, a load \
                   balancer); unitcorn serves plain HTTP";
const SYSLOG: &str = "unitcorn does not write syslog; under systemd the error log goes to \
                      the journal (errorlog = \"journald\" or \"-\")";
const PYLOGGING: &str = "unitcorn's error log is not Python's logging module; set errorlog \
                         and loglevel (the app's own logging is untouched)";
const STATSD: &str = "the socket backlog is not measured; unitcorn's StatsD metrics are \
                      those of statsd_host";
const HTTP2: &str = "unitcorn serves HTTP/1.1; let the proxy speak HTTP/2 to clients";
const DIRTY: &str = "gunicorn's dirty arbiters have no counterpart in unitcorn";
const CONTROL: &str = "unitcorn has no control socket; use signals (HUP, TTIN, TTOU, USR2) or \
                       systemctl";

/// Every gunicorn setting, in gunicorn's order (gunicorn 23's list, then those added up
/// to 27; `tolerate_dangerous_framing` was 22's). Names that are unitcorn settings say
/// `Setting` here and are described in `settings.rs`.
pub static GUNICORN: &[(&str, Status)] = &[
    ("config", Status::Setting),
    ("wsgi_app", Status::Setting),
    ("bind", Status::Setting),
    ("backlog", Status::Setting),
    ("workers", Status::Setting),
    ("worker_class", Status::Setting),
    ("threads", Status::Setting),
    ("worker_connections", Status::Setting),
    ("max_requests", Status::Setting),
    ("max_requests_jitter", Status::Setting),
    ("timeout", Status::Setting),
    ("graceful_timeout", Status::Setting),
    ("keepalive", Status::Setting),
    ("limit_request_line", Status::Setting),
    ("limit_request_fields", Status::Setting),
    ("limit_request_field_size", Status::Setting),
    ("reload", Status::Setting),
    ("reload_engine", Status::Setting),
    ("reload_extra_files", Status::Setting),
    ("spew", Status::Setting),
    ("check_config", Status::Setting),
    ("print_config", Status::Setting),
    ("preload_app", Status::Setting),
    (
        "sendfile",
        Status::Ignored {
            default: Default::None,
            why: "unitcorn always reads regular files given to wsgi.file_wrapper itself \
                  (pread(2)), never through the iterable",
        },
    ),
    (
        "reuse_port",
        Status::Ignored {
            default: Default::Bool(false),
            why: "the master binds each address once and every worker accepts on it",
        },
    ),
    ("chdir", Status::Setting),
    ("daemon", Status::Setting),
    ("raw_env", Status::Setting),
    ("pidfile", Status::Setting),
    ("worker_tmp_dir", Status::Setting),
    ("user", Status::Setting),
    ("group", Status::Setting),
    ("umask", Status::Setting),
    ("initgroups", Status::Setting),
    ("tmp_upload_dir", Status::Setting),
    ("secure_scheme_headers", Status::Setting),
    ("forwarded_allow_ips", Status::Setting),
    ("accesslog", Status::Setting),
    (
        "disable_redirect_access_to_syslog",
        Status::Ignored {
            default: Default::Bool(false),
            why: SYSLOG,
        },
    ),
    ("access_log_format", Status::Setting),
    ("errorlog", Status::Setting),
    ("loglevel", Status::Setting),
    (
        "capture_output",
        Status::Refused {
            default: Default::Bool(false),
            why: "the app's stdout and stderr are not redirected to the error log file; \
                  under systemd they go to the journal",
        },
    ),
    (
        "logger_class",
        Status::Refused {
            default: Default::Str("gunicorn.glogging.Logger"),
            why: PYLOGGING,
        },
    ),
    (
        "logconfig",
        Status::Refused {
            default: Default::None,
            why: PYLOGGING,
        },
    ),
    (
        "logconfig_dict",
        Status::Refused {
            default: Default::Empty,
            why: PYLOGGING,
        },
    ),
    (
        "logconfig_json",
        Status::Refused {
            default: Default::None,
            why: PYLOGGING,
        },
    ),
    (
        "syslog_addr",
        Status::Refused {
            default: Default::Str("udp://localhost:514"),
            why: SYSLOG,
        },
    ),
    (
        "syslog",
        Status::Refused {
            default: Default::Bool(false),
            why: SYSLOG,
        },
    ),
    (
        "syslog_prefix",
        Status::Refused {
            default: Default::None,
            why: SYSLOG,
        },
    ),
    (
        "syslog_facility",
        Status::Refused {
            default: Default::Str("user"),
            why: SYSLOG,
        },
    ),
    (
        "enable_stdio_inheritance",
        Status::Ignored {
            default: Default::Bool(false),
            why: "a daemonized unitcorn keeps its stdout and stderr as they were given",
        },
    ),
    ("statsd_host", Status::Setting),
    ("dogstatsd_tags", Status::Setting),
    ("statsd_prefix", Status::Setting),
    (
        "enable_backlog_metric",
        Status::Refused {
            default: Default::Bool(false),
            why: STATSD,
        },
    ),
    ("proc_name", Status::Setting),
    (
        "default_proc_name",
        Status::Ignored {
            default: Default::Str("gunicorn"),
            why: "an internal gunicorn setting; unitcorn names its processes after \
                  proc_name, else the app",
        },
    ),
    ("pythonpath", Status::Setting),
    (
        "paste",
        Status::Refused {
            default: Default::None,
            why: "PasteDeploy apps are not supported; give APP as module:callable",
        },
    ),
    ("on_starting", Status::Hook { args: 1 }),
    ("on_reload", Status::Hook { args: 1 }),
    ("when_ready", Status::Hook { args: 1 }),
    ("pre_fork", Status::Hook { args: 2 }),
    ("post_fork", Status::Hook { args: 2 }),
    ("post_worker_init", Status::Hook { args: 1 }),
    ("worker_int", Status::Hook { args: 1 }),
    ("worker_abort", Status::Hook { args: 1 }),
    ("pre_exec", Status::Hook { args: 1 }),
    ("pre_request", Status::Hook { args: 2 }),
    ("post_request", Status::Hook { args: 4 }),
    ("child_exit", Status::Hook { args: 2 }),
    ("worker_exit", Status::Hook { args: 2 }),
    ("nworkers_changed", Status::Hook { args: 3 }),
    ("on_exit", Status::Hook { args: 1 }),
    (
        "ssl_context",
        Status::Refused {
            default: Default::None,
            why: TLS,
        },
    ),
    ("proxy_protocol", Status::Setting),
    ("proxy_allow_ips", Status::Setting),
    (
        "protocol",
        Status::Refused {
            default: Default::Str("http"),
            why: "unitcorn speaks HTTP only, not the uwsgi protocol",
        },
    ),
    (
        "uwsgi_allow_ips",
        Status::Ignored {
            default: Default::Str("127.0.0.1,::1"),
            why: "unitcorn speaks HTTP only, not the uwsgi protocol",
        },
    ),
    (
        "keyfile",
        Status::Refused {
            default: Default::None,
            why: TLS,
        },
    ),
    (
        "certfile",
        Status::Refused {
            default: Default::None,
            why: TLS,
        },
    ),
    (
        "ssl_version",
        Status::Refused {
            default: Default::Nothing,
            why: "deprecated in gunicorn (ssl_context replaces it), and TLS is terminated by \
                  the proxy in front of unitcorn",
        },
    ),
    (
        "cert_reqs",
        Status::Refused {
            default: Default::Int(0),
            why: TLS,
        },
    ),
    (
        "ca_certs",
        Status::Refused {
            default: Default::None,
            why: TLS,
        },
    ),
    (
        "suppress_ragged_eofs",
        Status::Refused {
            default: Default::Bool(true),
            why: TLS,
        },
    ),
    (
        "do_handshake_on_connect",
        Status::Refused {
            default: Default::Bool(false),
            why: TLS,
        },
    ),
    (
        "ciphers",
        Status::Refused {
            default: Default::None,
            why: TLS,
        },
    ),
    (
        "http_protocols",
        Status::Refused {
            default: Default::Str("h1"),
            why: HTTP2,
        },
    ),
    (
        "http2_cleartext",
        Status::Refused {
            default: Default::Str("off"),
            why: HTTP2,
        },
    ),
    (
        "http2_max_concurrent_streams",
        Status::Refused {
            default: Default::Int(100),
            why: HTTP2,
        },
    ),
    (
        "http2_initial_window_size",
        Status::Refused {
            default: Default::Int(65535),
            why: HTTP2,
        },
    ),
    (
        "http2_max_frame_size",
        Status::Refused {
            default: Default::Int(16384),
            why: HTTP2,
        },
    ),
    (
        "http2_max_header_list_size",
        Status::Refused {
            default: Default::Int(65536),
            why: HTTP2,
        },
    ),
    (
        "raw_paste_global_conf",
        Status::Refused {
            default: Default::Empty,
            why: "PasteDeploy apps are not supported; give APP as module:callable",
        },
    ),
    ("permit_obsolete_folding", Status::Setting),
    (
        "strip_header_spaces",
        Status::Refused {
            default: Default::Bool(false),
            why: "whitespace before a header's colon is always refused with 400 \
                  (request smuggling); gunicorn deprecated this switch",
        },
    ),
    ("permit_unconventional_http_method", Status::Setting),
    (
        "permit_unconventional_http_version",
        Status::Refused {
            default: Default::Bool(false),
            why: "unitcorn accepts HTTP/1.0 and HTTP/1.1 only",
        },
    ),
    ("casefold_http_method", Status::Setting),
    ("forwarder_headers", Status::Setting),
    (
        "header_map",
        Status::Refused {
            default: Default::Str("drop"),
            why: "headers with an underscore are always dropped (gunicorn's default \
                  \"drop\"), except forwarder_headers from trusted proxies",
        },
    ),
    (
        "tolerate_dangerous_framing",
        Status::Refused {
            default: Default::Bool(false),
            why: "ambiguous request framing is always refused with 400 (request smuggling)",
        },
    ),
    (
        "asgi_loop",
        Status::Ignored {
            default: Default::Str("auto"),
            why: "unitcorn's ASGI worker runs uvloop when the app's virtualenv has it, else \
                  asyncio's own loop",
        },
    ),
    (
        "asgi_lifespan",
        Status::Refused {
            default: Default::Str("auto"),
            why: "unitcorn's setting is lifespan (auto, on, off)",
        },
    ),
    (
        "asgi_disconnect_grace_period",
        Status::Refused {
            default: Default::Int(3),
            why: "an open request or WebSocket may finish within graceful_timeout; there is \
                  no separate grace period",
        },
    ),
    ("websocket_max_message_size", Status::Setting),
    (
        "http_parser",
        Status::Ignored {
            default: Default::Str("auto"),
            why: "unitcorn has one HTTP/1.1 parser (hyper, behind its own strict checks)",
        },
    ),
    ("root_path", Status::Setting),
    (
        "dirty_apps",
        Status::Refused {
            default: Default::Empty,
            why: DIRTY,
        },
    ),
    (
        "dirty_workers",
        Status::Refused {
            default: Default::Int(0),
            why: DIRTY,
        },
    ),
    (
        "dirty_timeout",
        Status::Refused {
            default: Default::Int(300),
            why: DIRTY,
        },
    ),
    (
        "dirty_threads",
        Status::Refused {
            default: Default::Int(1),
            why: DIRTY,
        },
    ),
    (
        "dirty_graceful_timeout",
        Status::Refused {
            default: Default::Int(30),
            why: DIRTY,
        },
    ),
    (
        "on_dirty_starting",
        Status::Refused {
            default: Default::None,
            why: DIRTY,
        },
    ),
    (
        "dirty_post_fork",
        Status::Refused {
            default: Default::None,
            why: DIRTY,
        },
    ),
    (
        "dirty_worker_init",
        Status::Refused {
            default: Default::None,
            why: DIRTY,
        },
    ),
    (
        "dirty_worker_exit",
        Status::Refused {
            default: Default::None,
            why: DIRTY,
        },
    ),
    (
        "control_socket",
        Status::Ignored {
            default: Default::None,
            why: CONTROL,
        },
    ),
    (
        "control_socket_mode",
        Status::Ignored {
            default: Default::Int(0o600),
            why: CONTROL,
        },
    ),
    (
        "control_socket_disable",
        Status::Ignored {
            default: Default::Bool(false),
            why: CONTROL,
        },
    ),
];

/// The migration guide's table (Markdown): one row a gunicorn setting that unitcorn does
/// not honour as gunicorn does, with what happens to it.
#[cfg(test)]
pub fn migration_table() -> String {
    let mut out = String::from("| gunicorn setting | in unitcorn |\n|---|---|\n");
    for (name, _) in GUNICORN {
        let Some(status) = status(name) else { continue };
        let text = match status {
            Status::Setting => continue,
            Status::Hook { .. } => "server hook, called as in gunicorn".to_owned(),
            Status::Ignored { why, .. } => format!("accepted, no effect (logged when set): {why}"),
            Status::Refused { default, why } => match default {
                Default::Nothing => format!("refused: {why}"),
                _ => format!("refused unless left at gunicorn's default: {why}"),
            },
        };
        out.push_str(&format!("| `{name}` | {text} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gunicorn's settings, hooks included: the list of
    /// https://docs.gunicorn.org/en/23.0.0/settings.html (gunicorn 23.0.0), then the
    /// ones https://github.com/benoitc/gunicorn/blob/master/gunicorn/config.py added up to
    /// 27.0.1 (KNOWN_SETTINGS of the gunicorn installed in the test venv), and 22.0's
    /// tolerate_dangerous_framing.
    const GUNICORN_23: &[&str] = &[
        // Config File
        "config",
        "wsgi_app",
        // Debugging
        "reload",
        "reload_engine",
        "reload_extra_files",
        "spew",
        "check_config",
        "print_config",
        // Logging
        "accesslog",
        "disable_redirect_access_to_syslog",
        "access_log_format",
        "errorlog",
        "loglevel",
        "capture_output",
        "logger_class",
        "logconfig",
        "logconfig_dict",
        "logconfig_json",
        "syslog_addr",
        "syslog",
        "syslog_prefix",
        "syslog_facility",
        "enable_stdio_inheritance",
        "statsd_host",
        "dogstatsd_tags",
        "statsd_prefix",
        "enable_backlog_metric",
        // Process Naming
        "proc_name",
        "default_proc_name",
        // SSL
        "keyfile",
        "certfile",
        "ssl_version",
        "cert_reqs",
        "ca_certs",
        "suppress_ragged_eofs",
        "do_handshake_on_connect",
        "ciphers",
        // Security
        "limit_request_line",
        "limit_request_fields",
        "limit_request_field_size",
        // Server Hooks
        "on_starting",
        "on_reload",
        "when_ready",
        "pre_fork",
        "post_fork",
        "post_worker_init",
        "worker_int",
        "worker_abort",
        "pre_exec",
        "pre_request",
        "post_request",
        "child_exit",
        "worker_exit",
        "nworkers_changed",
        "on_exit",
        "ssl_context",
        // Server Mechanics
        "preload_app",
        "sendfile",
        "reuse_port",
        "chdir",
        "daemon",
        "raw_env",
        "pidfile",
        "worker_tmp_dir",
        "user",
        "group",
        "umask",
        "initgroups",
        "tmp_upload_dir",
        "secure_scheme_headers",
        "forwarded_allow_ips",
        "pythonpath",
        "paste",
        "proxy_protocol",
        "proxy_allow_ips",
        "raw_paste_global_conf",
        "permit_obsolete_folding",
        "strip_header_spaces",
        "permit_unconventional_http_method",
        "permit_unconventional_http_version",
        "casefold_http_method",
        "forwarder_headers",
        "header_map",
        // Server Socket
        "bind",
        "backlog",
        // Worker Processes
        "workers",
        "worker_class",
        "threads",
        "worker_connections",
        "max_requests",
        "max_requests_jitter",
        "timeout",
        "graceful_timeout",
        "keepalive",
    ];

    const ADDED_UP_TO_27: &[&str] = &[
        "protocol",
        "uwsgi_allow_ips",
        "http_protocols",
        "http2_cleartext",
        "http2_max_concurrent_streams",
        "http2_initial_window_size",
        "http2_max_frame_size",
        "http2_max_header_list_size",
        "asgi_loop",
        "asgi_lifespan",
        "asgi_disconnect_grace_period",
        "websocket_max_message_size",
        "http_parser",
        "root_path",
        "dirty_apps",
        "dirty_workers",
        "dirty_timeout",
        "dirty_threads",
        "dirty_graceful_timeout",
        "on_dirty_starting",
        "dirty_post_fork",
        "dirty_worker_init",
        "dirty_worker_exit",
        "control_socket",
        "control_socket_mode",
        "control_socket_disable",
        "tolerate_dangerous_framing",
    ];

    #[test]
    fn every_gunicorn_setting_is_covered() {
        for name in GUNICORN_23.iter().chain(ADDED_UP_TO_27) {
            let listed = GUNICORN.iter().find(|(n, _)| n == name);
            assert!(
                listed.is_some(),
                "gunicorn's {name} is missing from the table"
            );
            match status(name).unwrap() {
                Status::Setting => assert!(
                    find(name).is_some(),
                    "{name} is marked as a unitcorn setting, but settings.rs has none"
                ),
                Status::Hook { .. } => assert!(find(name).is_none(), "{name}"),
                Status::Ignored { why, .. } | Status::Refused { why, .. } => {
                    assert!(!why.is_empty(), "{name} needs a reason");
                }
            }
        }
        assert_eq!(GUNICORN_23.len(), 94);
        assert_eq!(
            GUNICORN.len(),
            GUNICORN_23.len() + ADDED_UP_TO_27.len(),
            "the table lists gunicorn's names once each, and only those"
        );
    }

    #[test]
    fn every_unitcorn_setting_with_a_gunicorn_name_is_marked_so() {
        for (name, status) in GUNICORN {
            if find(name).is_some() {
                assert!(
                    matches!(status, Status::Setting),
                    "{name} is a unitcorn setting: mark it Setting"
                );
            }
        }
    }

    #[test]
    fn defaults_are_accepted_anything_else_gets_the_verdict() {
        assert_eq!(verdict("keyfile", &Loose::None), Some(Verdict::Accept));
        assert!(matches!(
            verdict("keyfile", &Loose::Str("/etc/key.pem")),
            Some(Verdict::Refuse(why)) if why.contains("TLS is terminated by the proxy")
        ));
        assert!(matches!(
            verdict("ssl_version", &Loose::Int(2)),
            Some(Verdict::Refuse(why)) if why.contains("deprecated")
        ));
        assert_eq!(
            verdict("syslog", &Loose::Bool(false)),
            Some(Verdict::Accept)
        );
        assert!(matches!(
            verdict("reuse_port", &Loose::Bool(true)),
            Some(Verdict::AcceptAndLog(_))
        ));
        assert_eq!(
            verdict("logconfig_dict", &Loose::Empty),
            Some(Verdict::Accept)
        );
        assert_eq!(verdict("workers", &Loose::Int(3)), None);
        assert_eq!(verdict("post_fork", &Loose::Other), None);
        assert_eq!(verdict("not_gunicorn", &Loose::Other), None);
    }

    #[test]
    fn the_readme_carries_the_generated_table() {
        let readme = include_str!("../../README.md");
        let table = migration_table();
        assert!(
            readme.contains(&table),
            "README.md's migration guide is out of date; paste this table there:\n{table}"
        );
    }

    #[test]
    fn the_hooks_are_gunicorns_fifteen() {
        assert_eq!(hooks().count(), 15);
        assert_eq!(hook_args("post_request"), Some(4));
        assert_eq!(hook_args("nworkers_changed"), Some(3));
        assert_eq!(hook_args("ssl_context"), None);
    }
}
