//! The resolved settings: one field per gunicorn setting, named as gunicorn names it.
//!
//! This file holds only the data. Where each value comes from (defaults, config file,
//! `UNITCORN_CMD_ARGS`, command line) is decided in `config/mod.rs`.

use std::path::PathBuf;

/// Every setting unitcorn knows, resolved. Field names are gunicorn's setting names.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The WSGI app, `module:callable` (also the positional APP argument).
    pub wsgi_app: Option<String>,
    /// The config file that was read, if any.
    pub config: Option<PathBuf>,
    /// Addresses to listen on: `HOST`, `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`, `fd://N`.
    pub bind: Vec<String>,
    pub backlog: u32,
    pub workers: u32,
    pub worker_class: String,
    pub threads: u32,
    pub worker_connections: u32,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// Seconds.
    pub timeout: u64,
    /// Seconds.
    pub graceful_timeout: u64,
    /// Seconds a keep-alive connection may sit idle.
    pub keepalive: u64,
    pub limit_request_line: u32,
    pub limit_request_fields: u32,
    pub limit_request_field_size: u32,
    pub chdir: PathBuf,
    /// Comma-separated directories added to `sys.path`.
    pub pythonpath: Option<String>,
    /// A virtualenv whose packages the app imports (else `$VIRTUAL_ENV`).
    pub virtualenv: Option<PathBuf>,
    pub preload_app: bool,
    /// `KEY=VALUE` pairs put in the app's environment.
    pub raw_env: Vec<String>,
    pub pidfile: Option<PathBuf>,
    pub proc_name: Option<String>,
    pub forwarded_allow_ips: Vec<String>,
    pub loglevel: String,
    /// `-` is stderr.
    pub errorlog: String,
    /// `-` is stdout; `None` means no access log.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    pub check_config: bool,
    pub print_config: bool,
    // Accepted and stored for later issues (gunicorn's own config files set them).
    pub daemon: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: u32,
    pub reload: bool,
    pub spew: bool,
    pub tmp_upload_dir: Option<PathBuf>,
}
