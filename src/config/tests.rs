//! Tests of `load_from`: every setting's spellings and precedence, defaults and the
//! environment, repeatable flags, error messages, and the `--print-config` round trip.
//!
//! Config runs no Python: these tests hand `load_from` a runner that refuses (`NoPython`).
//! The Python config file's tests are with the interpreter that runs it
//! (`python/config.rs`), through `load_with`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::table::{Cli, Kind, Scope};
use super::value::Value;
use super::*;

/// A Python config runner for tests that must not reach one.
pub(crate) struct NoPython;

impl PythonConfigRunner for NoPython {
    fn run(
        &self,
        location: &str,
        _: &Path,
        _: Option<&Path>,
        _: Option<&Path>,
    ) -> Result<Ran, RunnerError> {
        Err(format!("config's own tests run no Python (asked for {location})").into())
    }
}

/// Runs `load_from` with `args` after the program name and exactly the environment `env`.
fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
    load_with(&NoPython, args, env)
}

/// `load`, with Python config files run by `python`.
pub(crate) fn load_with(
    python: &dyn PythonConfigRunner,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Command, ConfigError> {
    let args = std::iter::once("unitcorn")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let env = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    load_from(args, &env, python)
}

fn settings_env(args: &[&str], env: &[(&str, &str)]) -> Settings {
    match load(args, env) {
        Ok(Command::Serve(s) | Command::CheckConfig(s) | Command::PrintConfig(s)) => s,
        other => panic!("expected settings for {args:?}, got {other:?}"),
    }
}

/// Settings from `args`, with `app:app` appended so that serving has an app.
fn settings(args: &[&str]) -> Settings {
    let mut args = args.to_vec();
    args.push("app:app");
    settings_env(&args, &[])
}

fn err_env(args: &[&str], env: &[(&str, &str)]) -> String {
    match load(args, env) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("expected an error for {args:?}, got {c:?}"),
    }
}

fn err(args: &[&str]) -> String {
    err_env(args, &[])
}

/// A file in a directory of its own, removed when dropped.
pub(crate) struct TempFile {
    dir: PathBuf,
    pub(crate) path: PathBuf,
}

impl TempFile {
    pub(crate) fn new(name: &str, contents: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "unitcorn-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create a temp dir");
        let path = dir.join(name);
        fs::write(&path, contents).expect("write a temp file");
        TempFile { dir, path }
    }

    pub(crate) fn path(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn value_of(s: &Settings, name: &str) -> Value {
    (table::find(name).expect("a setting").get)(s)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ----- defaults

#[test]
fn defaults_are_gunicorns() {
    let s = settings_env(&["app:app"], &[]);
    let expected = Settings {
        wsgi_app: Some("app:app".into()),
        config: None,
        bind: strings(&["127.0.0.1:8000"]),
        backlog: 2048,
        workers: 1,
        worker_class: WorkerClass::Sync,
        threads: 1,
        worker_connections: 1000,
        response_buffer_size: 1 << 20,
        response_spool_max: 1 << 30,
        max_requests: 0,
        max_requests_jitter: 0,
        timeout: 30,
        graceful_timeout: 30,
        boot_timeout: 120,
        max_worker_lifetime: 0,
        max_worker_memory: 0,
        lifespan: "auto".into(),
        root_path: "".into(),
        websocket_max_message_size: 16 << 20,
        keepalive: 2,
        header_timeout: 10,
        body_timeout: 30,
        body_min_rate: 500,
        body_buffer_size: 64 * 1024,
        body_spool_size: 1 << 30,
        limit_request_line: 4094,
        limit_request_fields: 100,
        limit_request_field_size: 8190,
        limit_request_body: 0,
        permit_obsolete_folding: false,
        permit_unconventional_http_method: false,
        casefold_http_method: false,
        chdir: std::env::current_dir().unwrap(),
        pythonpath: None,
        virtualenv: None,
        preload_app: false,
        gc_freeze: false,
        raw_env: vec![],
        pidfile: None,
        proc_name: None,
        forwarded_allow_ips: strings(&["127.0.0.1", "::1"]),
        secure_scheme_headers: strings(&[
            "X-FORWARDED-PROTO=https",
            "X-FORWARDED-PROTOCOL=ssl",
            "X-FORWARDED-SSL=on",
        ]),
        forwarder_headers: strings(&["SCRIPT_NAME", "PATH_INFO"]),
        proxy_protocol: "off".into(),
        proxy_allow_ips: strings(&["127.0.0.1", "::1"]),
        loglevel: "info".into(),
        errorlog: "-".into(),
        accesslog: None,
        access_log_format: r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#.into(),
        check_config: false,
        print_config: false,
        daemon: false,
        user: None,
        group: None,
        initgroups: false,
        keep_capabilities: vec![],
        umask: 0,
        reload: false,
        spew: false,
        reload_engine: "auto".into(),
        reload_extra_files: vec![],
        statsd_host: None,
        statsd_prefix: "".into(),
        dogstatsd_tags: "".into(),
        tmp_upload_dir: None,
        worker_tmp_dir: None,
        extras: Default::default(),
        origins: Default::default(),
    };
    assert_eq!(s, expected);
}

#[test]
fn defaults_follow_the_environment_like_gunicorn() {
    let s = settings_env(
        &["app:app"],
        &[
            ("WEB_CONCURRENCY", "5"),
            ("PORT", "5000"),
            ("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.0/8"),
        ],
    );
    assert_eq!(s.workers, 5);
    assert_eq!(s.bind, strings(&["0.0.0.0:5000"]));
    assert_eq!(s.forwarded_allow_ips, strings(&["10.0.0.1", "10.0.0.0/8"]));

    // A setting given explicitly wins over the environment's default.
    let s = settings_env(
        &["app:app", "-w", "2", "-b", "unix:/run/a.sock"],
        &[("WEB_CONCURRENCY", "5"), ("PORT", "5000")],
    );
    assert_eq!(s.workers, 2);
    assert_eq!(s.bind, strings(&["unix:/run/a.sock"]));
}

#[test]
fn a_bad_environment_default_names_the_variable_only_when_used() {
    assert_eq!(
        err_env(&["app:app"], &[("WEB_CONCURRENCY", "lots")]),
        r#"environment variable WEB_CONCURRENCY: setting "workers" must be a positive integer, got "lots""#
    );
    assert_eq!(
        err_env(&["app:app"], &[("PORT", "http")]),
        r#"environment variable PORT: setting "bind": bind address "0.0.0.0:http" has a port "http" that is not a number from 0 to 65535"#
    );
    assert_eq!(
        err_env(&["app:app"], &[("FORWARDED_ALLOW_IPS", "proxy")]),
        r#"environment variable FORWARDED_ALLOW_IPS: setting "forwarded_allow_ips": "proxy" is not an IP address, a network like 10.0.0.0/8, or *"#
    );
    // Overridden: the bad default is never read.
    assert_eq!(
        settings_env(&["app:app", "-w", "3"], &[("WEB_CONCURRENCY", "lots")]).workers,
        3
    );
}

// ----- every setting's spellings

/// One command-line value for every setting with a flag, the value it reads as, and a
/// second value (different from the first) for precedence tests.
fn samples() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    let s = |v: &str| Value::Str(v.into());
    let l = |v: &[&str]| Value::List(strings(v));
    vec![
        (
            "bind",
            "unix:/run/app.sock",
            l(&["unix:/run/app.sock"]),
            "fd://3",
        ),
        ("backlog", "64", Value::Int(64), "128"),
        ("workers", "3", Value::Int(3), "7"),
        ("worker_class", "gthread", s("gthread"), "sync"),
        ("threads", "4", Value::Int(4), "2"),
        ("lifespan", "on", s("on"), "off"),
        ("root_path", "/api", s("/api"), "/v1"),
        (
            "websocket_max_message_size",
            "1024",
            Value::Int(1024),
            "2048",
        ),
        ("worker_connections", "50", Value::Int(50), "60"),
        ("response_buffer_size", "65536", Value::Int(65536), "4096"),
        ("response_spool_max", "0", Value::Int(0), "1048576"),
        ("max_requests", "1000", Value::Int(1000), "10"),
        ("max_requests_jitter", "50", Value::Int(50), "5"),
        ("timeout", "60", Value::Int(60), "0"),
        ("graceful_timeout", "10", Value::Int(10), "0"),
        ("boot_timeout", "300", Value::Int(300), "0"),
        ("max_worker_lifetime", "3600", Value::Int(3600), "60"),
        ("max_worker_memory", "512", Value::Int(512), "0"),
        ("keepalive", "5", Value::Int(5), "0"),
        ("header_timeout", "30", Value::Int(30), "1"),
        ("body_timeout", "60", Value::Int(60), "0"),
        ("body_min_rate", "1024", Value::Int(1024), "0"),
        ("body_buffer_size", "1048576", Value::Int(1048576), "0"),
        ("body_spool_size", "0", Value::Int(0), "4096"),
        ("chdir", "/srv/app", s("/srv/app"), "/tmp"),
        ("pythonpath", "/a,/b", s("/a,/b"), "/c"),
        ("virtualenv", "/srv/venv", s("/srv/venv"), "/opt/venv"),
        (
            "raw_env",
            "DJANGO_SETTINGS=prod",
            l(&["DJANGO_SETTINGS=prod"]),
            "A=",
        ),
        ("pidfile", "/run/app.pid", s("/run/app.pid"), "/tmp/a.pid"),
        ("user", "www-data", s("www-data"), "1000"),
        ("group", "www-data", s("www-data"), "1000"),
        (
            "keep_capabilities",
            "CAP_NET_BIND_SERVICE",
            l(&["CAP_NET_BIND_SERVICE"]),
            "CAP_CHOWN",
        ),
        ("umask", "0o27", Value::Int(0o27), "0x12"),
        ("worker_tmp_dir", "/dev/shm", s("/dev/shm"), "/tmp"),
        (
            "forwarded_allow_ips",
            "10.0.0.1,10.0.0.2",
            l(&["10.0.0.1", "10.0.0.2"]),
            "*",
        ),
        (
            "forwarder_headers",
            "SCRIPT_NAME",
            l(&["SCRIPT_NAME"]),
            "PATH_INFO",
        ),
        ("proxy_protocol", "v2", s("v2"), "auto"),
        ("proxy_allow_ips", "10.0.0.0/8", l(&["10.0.0.0/8"]), "*"),
        ("accesslog", "-", s("-"), "/var/log/a.log"),
        (
            "access_log_format",
            "%(h)s %(r)s",
            s("%(h)s %(r)s"),
            "%(s)s",
        ),
        (
            "errorlog",
            "/var/log/app.err",
            s("/var/log/app.err"),
            "journald",
        ),
        ("loglevel", "debug", s("debug"), "critical"),
        ("proc_name", "shop", s("shop"), "web"),
        ("limit_request_line", "8190", Value::Int(8190), "1"),
        ("limit_request_fields", "200", Value::Int(200), "32768"),
        ("limit_request_field_size", "0", Value::Int(0), "100"),
        ("limit_request_body", "1048576", Value::Int(1048576), "0"),
        ("reload_engine", "poll", s("poll"), "inotify"),
        (
            "reload_extra_files",
            "templates/**/*.html",
            l(&["templates/**/*.html"]),
            "conf.ini",
        ),
        (
            "statsd_host",
            "localhost:8125",
            s("localhost:8125"),
            "unix:/run/s.sock",
        ),
        ("statsd_prefix", "shop", s("shop"), "web."),
        ("dogstatsd_tags", "env:prod,app", s("env:prod,app"), "a:b"),
    ]
}

/// The spellings of one value for a setting: `-w 3`, `-w3`, `--workers=3`,
/// `--workers 3`, and each alias.
fn spellings(cli: Cli, value: &str) -> Vec<Vec<String>> {
    let Cli::Option {
        short,
        long,
        aliases,
        ..
    } = cli
    else {
        panic!("not an option: {cli:?}")
    };
    let mut out = Vec::new();
    if let Some(c) = short {
        out.push(vec![format!("-{c}"), value.to_owned()]);
        out.push(vec![format!("-{c}{value}")]);
    }
    for name in std::iter::once(long).chain(aliases.iter().copied()) {
        out.push(vec![format!("--{name}={value}")]);
        out.push(vec![format!("--{name}"), value.to_owned()]);
    }
    out
}

#[test]
fn every_option_reads_in_every_spelling() {
    for (name, raw, expected, _) in samples() {
        let setting = table::find(name).unwrap();
        for spelling in spellings(setting.cli, raw) {
            let args: Vec<&str> = spelling.iter().map(String::as_str).collect();
            let s = settings(&args);
            assert_eq!(value_of(&s, name), expected, "{args:?}");
            // The same words in UNITCORN_CMD_ARGS.
            let words = spelling
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" ");
            let s = settings_env(&["app:app"], &[("UNITCORN_CMD_ARGS", &words)]);
            assert_eq!(value_of(&s, name), expected, "UNITCORN_CMD_ARGS={words}");
        }
    }
}

#[test]
fn every_flag_has_a_sample_or_is_a_switch() {
    let sampled: Vec<&str> = samples().iter().map(|(n, _, _, _)| *n).collect();
    for setting in SETTINGS {
        match (setting.cli, setting.kind) {
            (Cli::Option { .. }, Kind::Flag) | (Cli::None | Cli::Positional { .. }, _) => {}
            _ if setting.name == "config" => {}
            _ => assert!(
                sampled.contains(&setting.name),
                "add {} to samples()",
                setting.name
            ),
        }
    }
}

#[test]
fn switches_read_in_every_spelling() {
    let cases = [
        (&["--preload"][..], "preload_app"),
        (&["-D"], "daemon"),
        (&["--daemon"], "daemon"),
        (&["--reload"], "reload"),
        (&["--spew"], "spew"),
        (&["--check-config"], "check_config"),
        (&["--print-config"], "print_config"),
    ];
    for (args, name) in cases {
        assert_eq!(
            value_of(&settings(args), name),
            Value::Bool(true),
            "{args:?}"
        );
        assert_eq!(value_of(&settings(&[]), name), Value::Bool(false), "{name}");
    }
    // Short switches bundle, as in gunicorn: -D plus -w 3.
    let s = settings(&["-Dw3"]);
    assert!(s.daemon);
    assert_eq!(s.workers, 3);
}

#[test]
fn gunicorn_spellings_that_differ_from_the_setting_name() {
    assert!(settings(&["--preload"]).preload_app);
    assert_eq!(settings(&["--keep-alive", "7"]).keepalive, 7);
    assert_eq!(
        settings(&["-e", "A=1", "--env", "B=2"]).raw_env,
        strings(&["A=1", "B=2"])
    );
    assert_eq!(
        settings(&["-p", "/run/x.pid"]).pidfile,
        Some(PathBuf::from("/run/x.pid"))
    );
    assert_eq!(settings(&["-n", "shop"]).proc_name.as_deref(), Some("shop"));
    assert_eq!(
        settings(&["--limit-request-field_size", "10"]).limit_request_field_size,
        10
    );
    assert_eq!(settings(&["--log-level", "WARNING"]).loglevel, "warning");
    assert_eq!(
        settings(&["--log-file", "/var/log/e"]).errorlog,
        "/var/log/e"
    );
    assert_eq!(settings(&["--log-file=-"]).errorlog, "-");
    assert_eq!(settings(&["--error-logfile", "-"]).errorlog, "-");
    assert_eq!(
        settings(&["--access-logfile", "-"]).accesslog.as_deref(),
        Some("-")
    );
    assert_eq!(
        settings_env(&["pkg.wsgi:make('x')"], &[])
            .wsgi_app
            .as_deref(),
        Some("pkg.wsgi:make('x')")
    );
}

#[test]
fn umask_takes_gunicorns_spellings() {
    for spelling in ["18", "0o22", "0022", "0x12", "022"] {
        assert_eq!(settings(&["-m", spelling]).umask, 18, "-m {spelling}");
    }
    assert_eq!(settings(&["--umask=0"]).umask, 0);
    assert_eq!(
        err(&["app:app", "-m", "0999"]),
        r#"command line: --umask must be a file mode mask from 0 to 0o777 (like 0o022 or "0022"), got "0999""#
    );
}

// ----- precedence: defaults < file < UNITCORN_CMD_ARGS < command line

#[test]
fn every_setting_obeys_file_then_env_then_command_line() {
    for (name, raw, first, raw2) in samples() {
        let setting = table::find(name).unwrap();
        let second = setting.kind.read_strs(&[raw2.to_owned()]).unwrap();
        assert_ne!(first, second, "{name}: the two samples must differ");
        let Cli::Option { long, .. } = setting.cli else {
            unreachable!("samples are options")
        };
        let flag1 = format!("--{long}={raw}");
        let flag2 = format!("--{long}={raw2}");
        let file = TempFile::new(
            "app.toml",
            &format!("{name} = {}\n", setting.kind.write_toml(&first)),
        );
        let c = file.path();
        // Quoted: values such as the log format hold spaces.
        let (quoted1, quoted2) = (format!("'{flag1}'"), format!("'{flag2}'"));
        let env1 = [("UNITCORN_CMD_ARGS", quoted1.as_str())];
        let env2 = [("UNITCORN_CMD_ARGS", quoted2.as_str())];

        // The file beats the default (samples differ from the defaults).
        assert_ne!(value_of(&settings(&[]), name), first, "{name}");
        assert_eq!(value_of(&settings(&["-c", c]), name), first, "{name}: file");
        // The env args beat the file.
        let s = settings_env(&["app:app", "-c", c], &env2);
        assert_eq!(value_of(&s, name), second, "{name}: env over file");
        // The command line beats the env args.
        let s = settings_env(&["app:app", "-c", c, &flag1], &env2);
        assert_eq!(value_of(&s, name), first, "{name}: command line over env");
        // The command line beats the file.
        let s = settings_env(&["app:app", "-c", c, &flag2], &[]);
        assert_eq!(value_of(&s, name), second, "{name}: command line over file");
        // The env args beat the default.
        let s = settings_env(&["app:app"], &env1);
        assert_eq!(value_of(&s, name), first, "{name}: env over default");
    }
}

#[test]
fn the_source_that_wins_is_the_origin() {
    let file = TempFile::new("app.toml", "workers = 2\n\nbind = \"127.0.0.1:1\"\n");
    let c = file.path();
    let bind = |s: &Settings| s.provenance("bind").to_string();
    assert_eq!(bind(&settings(&[])), "bind, the default");
    assert_eq!(
        bind(&settings_env(&["app:app"], &[("PORT", "9000")])),
        "bind, from the environment variable PORT"
    );
    assert_eq!(bind(&settings(&["-c", c])), format!("bind, from {c}:3"));
    assert_eq!(
        settings(&["-c", c]).provenance("workers").to_string(),
        format!("workers, from {c}:1")
    );
    let env = [("GUNICORN_CMD_ARGS", "-b 127.0.0.1:2")];
    assert_eq!(
        bind(&settings_env(&["app:app", "-c", c], &env)),
        "bind, from --bind in GUNICORN_CMD_ARGS"
    );
    assert_eq!(
        bind(&settings_env(
            &["app:app", "-c", c, "-b", "127.0.0.1:3"],
            &env
        )),
        "bind, from --bind"
    );
    // Where a value came from is no part of the configuration's equality.
    let from_env = settings_env(&["app:app"], &[("UNITCORN_CMD_ARGS", "-w 2")]);
    assert_eq!(settings(&["-w", "2"]), from_env);
}

#[test]
fn switches_obey_precedence_too() {
    let file = TempFile::new("app.toml", "preload_app = false\ndaemon = true\n");
    let s = settings(&["-c", file.path()]);
    assert!(!s.preload_app);
    assert!(s.daemon);
    let s = settings_env(
        &["app:app", "-c", file.path()],
        &[("UNITCORN_CMD_ARGS", "--preload")],
    );
    assert!(s.preload_app);
    assert!(settings(&["-c", file.path(), "--preload"]).preload_app);
}

#[test]
fn the_config_file_path_comes_from_the_command_line_or_the_env_args() {
    let a = TempFile::new("a.toml", "workers = 2\n");
    let b = TempFile::new("b.toml", "workers = 3\n");
    let s = settings_env(
        &["app:app"],
        &[("UNITCORN_CMD_ARGS", &format!("-c {}", b.path()))],
    );
    assert_eq!(
        (s.workers, s.config.as_deref()),
        (3, Some(b.path.as_path()))
    );
    let s = settings_env(
        &["app:app", "-c", a.path()],
        &[("UNITCORN_CMD_ARGS", &format!("-c {}", b.path()))],
    );
    assert_eq!(
        (s.workers, s.config.as_deref()),
        (2, Some(a.path.as_path()))
    );
}

#[test]
fn gunicorn_cmd_args_is_read_when_unitcorn_cmd_args_is_unset() {
    let s = settings_env(&["app:app"], &[("GUNICORN_CMD_ARGS", "-w 4 --bind=:9000")]);
    assert_eq!((s.workers, s.bind.clone()), (4, strings(&[":9000"])));
    let s = settings_env(
        &["app:app"],
        &[("GUNICORN_CMD_ARGS", "-w 4"), ("UNITCORN_CMD_ARGS", "-w 5")],
    );
    assert_eq!(s.workers, 5);
    // Set but empty still counts as set: GUNICORN_CMD_ARGS is then ignored.
    let s = settings_env(
        &["app:app"],
        &[("GUNICORN_CMD_ARGS", "-w 4"), ("UNITCORN_CMD_ARGS", "")],
    );
    assert_eq!(s.workers, 1);
}

#[test]
fn env_args_are_shell_split() {
    let s = settings_env(
        &["app:app"],
        &[(
            "UNITCORN_CMD_ARGS",
            r#"--access-logformat '%(h)s "%(r)s"' -n "my shop" -e A=1\ 2"#,
        )],
    );
    assert_eq!(s.access_log_format, r#"%(h)s "%(r)s""#);
    assert_eq!(s.proc_name.as_deref(), Some("my shop"));
    assert_eq!(s.raw_env, strings(&["A=1 2"]));
    assert_eq!(
        err_env(&["app:app"], &[("UNITCORN_CMD_ARGS", "-n 'shop")]),
        "UNITCORN_CMD_ARGS: a single quote (') is not closed"
    );
}

// ----- repeatable flags replace, the rest take the last value

#[test]
fn repeated_flags_replace_the_files_list() {
    let file = TempFile::new(
        "app.toml",
        "bind = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nraw_env = [\"A=1\", \"B=2\"]\n",
    );
    let c = file.path();
    let s = settings(&["-c", c]);
    assert_eq!(s.bind, strings(&["127.0.0.1:1", "127.0.0.1:2"]));
    assert_eq!(s.raw_env, strings(&["A=1", "B=2"]));

    let s = settings(&["-c", c, "-b", "127.0.0.1:3"]);
    assert_eq!(s.bind, strings(&["127.0.0.1:3"]));
    assert_eq!(s.raw_env, strings(&["A=1", "B=2"]), "untouched");

    let s = settings(&["-c", c, "-b", "127.0.0.1:3", "--bind=[::1]:4", "-e", "C=3"]);
    assert_eq!(s.bind, strings(&["127.0.0.1:3", "[::1]:4"]));
    assert_eq!(s.raw_env, strings(&["C=3"]));

    // The env args' list replaces the file's, and the command line's the env args'.
    let env = [("UNITCORN_CMD_ARGS", "-b 127.0.0.1:5 -b 127.0.0.1:6")];
    let s = settings_env(&["app:app", "-c", c], &env);
    assert_eq!(s.bind, strings(&["127.0.0.1:5", "127.0.0.1:6"]));
    let s = settings_env(&["app:app", "-c", c, "-b", "127.0.0.1:7"], &env);
    assert_eq!(s.bind, strings(&["127.0.0.1:7"]));
}

#[test]
fn single_valued_flags_take_the_last_value() {
    assert_eq!(settings(&["-w", "2", "--workers=5", "-w3"]).workers, 3);
    assert_eq!(
        settings(&[
            "--forwarded-allow-ips",
            "10.0.0.1",
            "--forwarded-allow-ips",
            "*"
        ])
        .forwarded_allow_ips,
        strings(&["*"])
    );
}

// ----- error messages name the source

#[test]
fn bad_command_line_values_name_the_flag() {
    assert_eq!(
        err(&["app:app", "-w", "four"]),
        r#"command line: --workers must be a positive integer, got "four""#
    );
    assert_eq!(
        err(&["app:app", "-w", "-1"]),
        r#"command line: --workers must be a positive integer, got "-1""#
    );
    assert_eq!(
        err(&["app:app", "--threads=0"]),
        r#"command line: --threads must be a positive integer, got "0""#
    );
    assert_eq!(
        err(&["app:app", "--limit-request-fields", "40000"]),
        r#"command line: --limit-request-fields must be an integer from 0 to 32768, got "40000""#
    );
    assert_eq!(
        err(&["app:app", "--log-level", "loud"]),
        r#"command line: --log-level: "loud" is not a log level; use one of debug, info, warning, error, critical"#
    );
    assert_eq!(
        err(&["app:app", "-b", "127.0.0.1:8000", "-b", "::1"]),
        r#"command line: --bind: bind address "::1" looks like an IPv6 address without brackets; write it as [ADDR]:PORT, e.g. [::1]:8000"#
    );
    assert_eq!(
        err(&["app:app", "--statsd-host", "localhost:http"]),
        r#"command line: --statsd-host: "localhost:http" has a port "http" that is not a number from 1 to 65535"#
    );
    assert_eq!(
        err(&["app:app", "--reload-engine", "watchdog"]),
        r#"command line: --reload-engine: "watchdog" is not a reload engine; use auto, poll or inotify"#
    );
    assert_eq!(
        err(&["app:app", "-e", "NOVALUE"]),
        r#"command line: --env: "NOVALUE" is not KEY=VALUE"#
    );
    assert_eq!(
        err(&["my-app:app"]),
        r#"command line: APP: app "my-app:app" has a module "my-app" that is not a dotted Python name (expected MODULE:NAME, e.g. app:app)"#
    );
    assert_eq!(
        err(&["app:app", "--pid="]),
        r#"command line: --pid must be a non-empty path, got """#
    );
    assert_eq!(
        err(&["app:app", "-k", ""]),
        "command line: --worker-class: an empty value is not allowed"
    );
}

#[test]
fn bad_env_args_values_name_the_variable_and_flag() {
    assert_eq!(
        err_env(&["app:app"], &[("UNITCORN_CMD_ARGS", "--workers four")]),
        r#"UNITCORN_CMD_ARGS: --workers must be a positive integer, got "four""#
    );
    assert_eq!(
        err_env(&["app:app"], &[("GUNICORN_CMD_ARGS", "-t x")]),
        r#"GUNICORN_CMD_ARGS: --timeout must be a non-negative integer, got "x""#
    );
    let e = err_env(&["app:app"], &[("UNITCORN_CMD_ARGS", "--wokers 2")]);
    assert!(
        e.starts_with("UNITCORN_CMD_ARGS: unexpected argument '--wokers'"),
        "{e}"
    );
    assert_eq!(
        err_env(&["app:app"], &[("UNITCORN_CMD_ARGS", "--version")]),
        "UNITCORN_CMD_ARGS: --version is not a setting; give it on the command line"
    );
}

#[test]
fn unknown_flags_are_usage_errors_with_a_hint() {
    let e = load(&["app:app", "--wokers", "3"], &[]).unwrap_err();
    assert!(e.is_usage());
    let msg = e.to_string();
    assert!(
        msg.starts_with("command line: unexpected argument '--wokers' found"),
        "{msg}"
    );
    assert!(msg.contains("'--workers'"), "clap suggests the flag: {msg}");
    let e = load(&["app:app", "-w"], &[]).unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("--workers <INT>"), "{e}");
    let e = load(&["app:app", "other:app"], &[]).unwrap_err();
    assert!(
        e.to_string().contains("unexpected argument 'other:app'"),
        "{e}"
    );
    assert!(!load(&["app:app", "-w", "x"], &[]).unwrap_err().is_usage());
}

#[test]
fn config_file_errors_name_the_file_and_line() {
    let file = TempFile::new("app.toml", "bind = \"127.0.0.1:80\"\n\nwokers = 3\n");
    assert_eq!(
        err(&["app:app", "-c", file.path()]),
        format!(
            r#"{}:3:1: unknown setting "wokers" (did you mean "workers"?)"#,
            file.path()
        )
    );
    let file = TempFile::new("app.toml", "# workers\n\n\n\nworkers = \"four\"\n");
    assert_eq!(
        err(&["app:app", "-c", file.path()]),
        format!(
            r#"{}:5:11: setting "workers" must be a positive integer, got "four""#,
            file.path()
        )
    );
    let file = TempFile::new("app.toml", "workers = 2\nbind = [\"a\"\n");
    let e = err(&["app:app", "-c", file.path()]);
    assert!(e.starts_with(&format!("{}:2:", file.path())), "{e}");
    assert!(e.contains("invalid TOML"), "{e}");
    // A bad file stops the start even when the command line overrides the setting.
    let file = TempFile::new("app.toml", "workers = 0\n");
    assert!(load(&["app:app", "-c", file.path(), "-w", "2"], &[]).is_err());
}

#[test]
fn missing_config_files_are_named() {
    let e = err(&["app:app", "-c", "/nonexistent/unitcorn.toml"]);
    assert!(
        e.starts_with("/nonexistent/unitcorn.toml: cannot read the config file: "),
        "{e}"
    );
}

// ----- modes

#[test]
fn help_and_version_come_back_before_anything_can_fail() {
    let version = format!("unitcorn (version {})", env!("CARGO_PKG_VERSION"));
    for args in [
        &["-v"][..],
        &["--version"],
        &["-w", "x", "-v"],
        &["--bogus", "--version"],
    ] {
        match load(args, &[("WEB_CONCURRENCY", "x")]) {
            Ok(Command::Version(v)) => assert_eq!(v, version),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    // Bundled: only clap sees it.
    assert!(matches!(load(&["-Dv"], &[]), Ok(Command::Version(v)) if v == version));
    match load(&["--help", "-c", "/nonexistent.toml"], &[]) {
        Ok(Command::Help(h)) => {
            assert!(h.contains("Usage: unitcorn [OPTIONS] [APP]\n       unitcorn reload PID"));
            assert!(h.contains("INT, TERM   immediate stop"));
            assert!(
                h.contains("[setting: keepalive]"),
                "--help is the long help"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(load(&["-h"], &[]), Ok(Command::Help(h)) if !h.contains("[setting:")));
}

#[test]
fn reload_and_config_convert_are_modes_only_in_their_exact_shapes() {
    // Nothing else is read for a mode: a bad environment and config file do not matter.
    let bad_env = [("WEB_CONCURRENCY", "x"), ("UNITCORN_CMD_ARGS", "--bogus")];
    assert!(matches!(
        load(&["reload", "123"], &bad_env),
        Ok(Command::Reload(123))
    ));
    match load(&["config", "convert", "f.py"], &bad_env) {
        Ok(Command::ConvertConfig(path)) => assert_eq!(path, Path::new("f.py")),
        other => panic!("{other:?}"),
    }
    // An app whose module is named reload (or config) is served.
    for (args, app) in [
        (&["reload:app"][..], "reload:app"),
        (&["reload"], "reload"),
        (&["config"], "config"),
        (&["-w", "2", "reload:app"], "reload:app"),
    ] {
        match load(args, &[]) {
            Ok(Command::Serve(s)) => assert_eq!(s.wsgi_app.as_deref(), Some(app), "{args:?}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    // A near miss is the server's command line, whose one APP leaves a word over.
    for args in [
        &["reload", "abc"][..],
        &["reload", "0"],
        &["reload", "1", "2"],
        &["-w", "2", "reload", "5"],
        &["config", "convert"],
    ] {
        match load(args, &[]) {
            Err(e) => assert!(
                e.is_usage() && e.to_string().contains("unexpected argument"),
                "{e}"
            ),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    // The modes are not settings: the env args cannot ask for them.
    assert!(
        load(&["app:app"], &[("UNITCORN_CMD_ARGS", "reload 5")])
            .unwrap_err()
            .is_usage()
    );
}

#[test]
fn serving_and_checking_need_an_app_printing_does_not() {
    assert_eq!(
        err(&["-w", "2"]),
        "no app to serve: pass APP (e.g. `unitcorn myproject.wsgi:application`) or set \
         wsgi_app in the config file"
    );
    assert!(err(&["--check-config"]).starts_with("no app to serve"));
    assert!(
        matches!(load(&["--print-config"], &[]), Ok(Command::PrintConfig(s)) if s.wsgi_app.is_none())
    );

    let file = TempFile::new("app.toml", "wsgi_app = \"shop.wsgi:application\"\n");
    match load(&["-c", file.path()], &[]) {
        Ok(Command::Serve(s)) => assert_eq!(s.wsgi_app.as_deref(), Some("shop.wsgi:application")),
        other => panic!("{other:?}"),
    }
    // APP on the command line beats the file's wsgi_app.
    let s = settings_env(&["-c", file.path(), "other:app"], &[]);
    assert_eq!(s.wsgi_app.as_deref(), Some("other:app"));
}

#[test]
fn check_config_wins_over_print_config_and_keeps_both_flags() {
    match load(&["app:app", "--check-config", "--print-config"], &[]) {
        Ok(Command::CheckConfig(s)) => assert!(s.check_config && s.print_config),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        load(&["app:app", "--check-config"], &[]),
        Ok(Command::CheckConfig(_))
    ));
    assert!(matches!(load(&["app:app"], &[]), Ok(Command::Serve(_))));
}

// ----- print-config

#[test]
fn print_config_round_trips_through_the_config_file() {
    let original = settings_env(
        &[
            "--print-config",
            "pkg.wsgi:create_app('prod')",
            "-b",
            "unix:/run/app.sock",
            "-b",
            "[::1]:8080",
            "-w",
            "4",
            "-k",
            "gthread",
            "--threads",
            "8",
            "--keep-alive",
            "5",
            "-t",
            "0",
            "--max-requests",
            "1000",
            "--chdir",
            "/srv/app",
            "--pythonpath",
            "/a,/b",
            "--virtualenv",
            "/srv/venv",
            "--preload",
            "-e",
            "QUOTE=it's \"quoted\" \\ back",
            "-e",
            "EMPTY=",
            "-p",
            "/run/app.pid",
            "-n",
            "shop",
            "--forwarded-allow-ips",
            "*",
            "--log-level",
            "error",
            "--access-logfile",
            "-",
            "--error-logfile",
            "/var/log/e.log",
            "-D",
            "-u",
            "www-data",
            "-g",
            "www-data",
            "-m",
            "0027",
            "--reload",
            "--spew",
            "--worker-tmp-dir",
            "/dev/shm",
            "--limit-request-line",
            "0",
        ],
        &[],
    );
    let text = to_toml(&original);
    let file = TempFile::new("printed.toml", &text);
    let reread = match load(&["-c", file.path()], &[]) {
        Ok(Command::Serve(s)) => s,
        other => panic!("{other:?}\n{text}"),
    };
    // Only the one-shot and command-line-only settings differ.
    let expected = Settings {
        config: Some(file.path.clone()),
        print_config: false,
        ..original.clone()
    };
    assert_eq!(reread, expected, "printed:\n{text}");
}

#[test]
fn print_config_lists_every_setting_by_gunicorn_name() {
    let empty = TempFile::new("a.toml", "");
    let text = to_toml(&settings(&["-c", empty.path()]));
    for setting in SETTINGS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{} = ", setting.name))
                    || l.starts_with(&format!("# {} ", setting.name))),
            "{} missing from:\n{text}",
            setting.name
        );
    }
    assert!(text.contains("\nworkers = 1\n"));
    assert!(text.contains("\nbind = [\"127.0.0.1:8000\"]\n"));
    assert!(text.contains("\numask = 0o000\n"));
    assert!(text.contains("\n# pidfile is unset\n"));
    assert!(text.contains("\n# print_config = false (command line only)\n"));
    assert!(text.contains("\n# ---- Server socket\n"));
}

// ----- the table itself

#[test]
fn every_setting_round_trips_through_its_field() {
    let s = settings(&[]);
    for setting in SETTINGS {
        let value = (setting.get)(&s);
        let rebuilt = Settings::from_values(|name| {
            if name == setting.name {
                value.clone()
            } else {
                (table::find(name).unwrap().get)(&s)
            }
        });
        assert_eq!(rebuilt, s, "{}", setting.name);
    }
}

#[test]
fn the_table_is_consistent() {
    let mut seen_sections = Vec::new();
    let mut names = Vec::new();
    let mut flags = Vec::new();
    for setting in SETTINGS {
        // Sections are contiguous, so --help and --print-config group them.
        if seen_sections.last() != Some(&setting.section) {
            assert!(
                !seen_sections.contains(&setting.section),
                "{}: section {:?} split in two",
                setting.name,
                setting.section
            );
            seen_sections.push(setting.section);
        }
        assert!(!names.contains(&setting.name), "{} twice", setting.name);
        names.push(setting.name);
        if let Cli::Option { long, aliases, .. } = setting.cli {
            for f in std::iter::once(long).chain(aliases.iter().copied()) {
                assert!(!flags.contains(&f), "--{f} twice");
                flags.push(f);
            }
        }
        // The doc of -h is one short line with no final period (clap adds none).
        assert!(
            !setting.doc.ends_with('.') && setting.doc.len() <= 60,
            "{}: doc {:?}",
            setting.name,
            setting.doc
        );
        // u32 fields must not accept more than u32 can hold.
        let field_is_u32 = matches!(
            setting.name,
            "backlog"
                | "workers"
                | "threads"
                | "worker_connections"
                | "limit_request_line"
                | "limit_request_fields"
                | "limit_request_field_size"
        );
        if let Kind::Int { max, .. } = setting.kind {
            assert!(
                !field_is_u32 || max <= u64::from(u32::MAX),
                "{}",
                setting.name
            );
        }
        assert_eq!(
            setting.scope == Scope::CommandLine,
            matches!(setting.name, "config" | "check_config" | "print_config"),
            "{}",
            setting.name
        );
    }
}

#[test]
fn the_seed_gunicorn_config_translated_to_toml_loads() {
    // /work/shared/seed/gunicorn_config.py, with Python's None lines left out.
    let file = TempFile::new(
        "gunicorn.toml",
        r#"
bind = '127.0.0.1:8000'
backlog = 2048
workers = 3
worker_class = 'gevent'
worker_connections = 1024
timeout = 30
keepalive = 2
spew = false
daemon = false
pidfile = '/run/gunicorn.pid'
umask = 0
user = 'natadmin'
group = 'natadmin'
reload = true
loglevel = 'info'
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
accesslog = "/var/log/gunicorn/access.log"
errorlog = '/var/log/gunicorn/error.log'
"#,
    );
    let s = settings_env(&["-D", "-c", file.path(), "app:app"], &[]);
    assert_eq!(s.bind, strings(&["127.0.0.1:8000"]));
    assert_eq!((s.workers, s.worker_connections), (3, 1024));
    assert_eq!(s.worker_class, WorkerClass::Gevent);
    assert_eq!(s.pidfile.as_deref(), Some(Path::new("/run/gunicorn.pid")));
    assert_eq!(
        (s.user.as_deref(), s.group.as_deref()),
        (Some("natadmin"), Some("natadmin"))
    );
    assert!(s.reload && s.daemon && !s.spew);
    assert_eq!(s.accesslog.as_deref(), Some("/var/log/gunicorn/access.log"));
    assert_eq!(s.errorlog, "/var/log/gunicorn/error.log");
    assert_eq!(s.access_log_format, settings::DEFAULT_ACCESS_LOG_FORMAT);
}

#[test]
fn secure_scheme_headers_is_a_table_like_gunicorns_dict() {
    let file = TempFile::new(
        "app.toml",
        "secure_scheme_headers = { \"X-Scheme\" = \"https\", \"X-SSL\" = \"on\" }\n",
    );
    assert_eq!(
        settings(&["-c", file.path()]).secure_scheme_headers,
        strings(&["X-SCHEME=https", "X-SSL=on"])
    );
    let empty = TempFile::new("empty.toml", "secure_scheme_headers = {}\n");
    assert!(
        settings(&["-c", empty.path()])
            .secure_scheme_headers
            .is_empty()
    );
    let bad = TempFile::new("bad.toml", "secure_scheme_headers = { \"X-SSL\" = 1 }\n");
    let message = err(&["-c", bad.path(), "app:app"]);
    assert!(
        message.contains("bad.toml:1:") && message.contains("secure_scheme_headers"),
        "{message}"
    );
}

#[test]
fn worker_class_takes_gunicorns_names_and_refuses_eventlet() {
    for (given, short) in [
        ("sync", "sync"),
        ("gunicorn.workers.sync.SyncWorker", "sync"),
        ("gthread", "gthread"),
        ("gunicorn.workers.gthread.ThreadWorker", "gthread"),
        ("gunicorn.workers.ggevent.GeventWorker", "gevent"),
        ("asgi", "asgi"),
        ("uvicorn.workers.UvicornWorker", "asgi"),
    ] {
        assert_eq!(
            settings(&["-k", given]).worker_class.name(),
            short,
            "{given}"
        );
    }
    let message = err(&["-k", "eventlet", "app:app"]);
    assert!(
        message.contains("eventlet is not supported") && message.contains("gevent"),
        "{message}"
    );
    let message = err(&["-k", "tornado", "app:app"]);
    assert!(
        message.contains("not a worker class unitcorn runs"),
        "{message}"
    );
}
