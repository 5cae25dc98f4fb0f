//! Configuration: gunicorn's settings, resolved from defaults, the config file,
//! `UNITCORN_CMD_ARGS` and the command line (lowest to highest precedence).
//!
//! Parsing only validates and records; nothing is bound or imported here.

pub mod settings;

pub use settings::Settings;

/// What the command line asks unitcorn to do.
#[derive(Debug)]
pub enum Command {
    /// Serve the app (the normal case).
    Serve(Settings),
    /// `--check-config`: validate the settings, import the app, exit.
    CheckConfig(Settings),
    /// `--print-config`: print the resolved settings as TOML, exit.
    PrintConfig(Settings),
}

pub mod bind;

/// TEMPORARY: replaced by the config branch.
pub fn load() -> Result<Command, String> {
    let mut s = Settings {
        wsgi_app: None,
        config: None,
        bind: vec!["127.0.0.1:8000".into()],
        backlog: 2048,
        workers: 1,
        worker_class: "sync".into(),
        threads: 1,
        worker_connections: 1000,
        max_requests: 0,
        max_requests_jitter: 0,
        timeout: 30,
        graceful_timeout: 30,
        keepalive: 2,
        limit_request_line: 4094,
        limit_request_fields: 100,
        limit_request_field_size: 8190,
        chdir: std::env::current_dir().unwrap_or_default(),
        pythonpath: None,
        virtualenv: None,
        preload_app: false,
        raw_env: vec![],
        pidfile: None,
        proc_name: None,
        forwarded_allow_ips: vec![],
        loglevel: "info".into(),
        errorlog: "-".into(),
        accesslog: None,
        access_log_format: String::new(),
        check_config: false,
        print_config: false,
        daemon: false,
        user: None,
        group: None,
        umask: 0,
        reload: false,
        spew: false,
        tmp_upload_dir: None,
    };
    let mut args = std::env::args().skip(1);
    let mut binds = vec![];
    while let Some(a) = args.next() {
        match a.as_str() {
            "-w" => s.workers = args.next().unwrap_or_default().parse().map_err(|_| "-w")?,
            "--threads" => {
                s.threads = args
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|_| "--threads")?
            }
            "--keep-alive" => {
                s.keepalive = args.next().unwrap_or_default().parse().map_err(|_| "ka")?
            }
            "-b" => binds.push(args.next().unwrap_or_default()),
            "--chdir" => s.chdir = args.next().unwrap_or_default().into(),
            "--access-logfile" => s.accesslog = args.next(),
            _ => s.wsgi_app = Some(a),
        }
    }
    if !binds.is_empty() {
        s.bind = binds;
    }
    Ok(Command::Serve(s))
}
