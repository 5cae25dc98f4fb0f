//! The settings table: every setting defined once (gunicorn name, flags, kind, default,
//! docs), and the `Settings` struct generated from it, one field per setting.
//!
//! This file holds only data. Where each value comes from (defaults, config file,
//! `UNITCORN_CMD_ARGS`, command line) is decided in `config/mod.rs`; `--help` is built
//! from this table in `cli.rs`, `--print-config` in `config/print.rs`.

use std::net::IpAddr;
use std::path::PathBuf;

use super::table::{Cli, Const, DefaultValue, Kind, Scope, Section, Setting};
use super::value::{Field, Value};
use super::worker_class::WorkerClass;
use super::{app_spec, bind, statsd_address};

/// gunicorn's default access log format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The log levels `loglevel` takes, as gunicorn names them.
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warning", "error", "critical"];

/// Declares the table and the struct together, so a setting cannot be in one and not
/// the other. Each entry: `name: FieldType { section, cli, kind, default, [scope,] doc,
/// long_doc }`; the field's type must match its `kind` (see `table::Kind`).
macro_rules! settings {
    ($(
        $name:ident: $ty:ty {
            section: $section:ident,
            cli: $cli:expr,
            kind: $kind:expr,
            default: $default:expr,
            $(scope: $scope:ident,)?
            doc: $doc:literal,
            long_doc: $long:literal $(,)?
        }
    )*) => {
        /// Every setting unitcorn knows, resolved. Field names are gunicorn's setting
        /// names; field order is the table's order.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $(
                #[doc = $doc]
                #[doc = ""]
                #[doc = $long]
                pub $name: $ty,
            )*
            /// What the config file gives beyond values: server hooks, notes for the
            /// start. Not a setting: no flag, no key of its own.
            pub extras: super::extras::Extras,
            /// Where each value came from, for the errors a value causes
            /// (`Settings::provenance`). Not a setting either.
            pub origins: super::origin::Origins,
        }

        /// The settings table, in `--help` order, grouped by section.
        pub static SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                section: Section::$section,
                cli: $cli,
                kind: $kind,
                default: $default,
                scope: settings!(@scope $($scope)?),
                doc: $doc,
                long_doc: $long,
                get: |s| Field::to_value(&s.$name),
            },
        )*];

        impl Settings {
            /// Builds the struct from one resolved value a setting, asked by name.
            pub(crate) fn from_values(mut value: impl FnMut(&'static str) -> Value) -> Settings {
                Settings {
                    $( $name: Field::from_value(value(stringify!($name))), )*
                    extras: super::extras::Extras::default(),
                    origins: super::origin::Origins::default(),
                }
            }
        }
    };
    (@scope) => { Scope::Anywhere };
    (@scope $scope:ident) => { Scope::$scope };
}

const U32: u64 = u32::MAX as u64;

settings! {
    // ----- Server socket
    bind: Vec<String> {
        section: ServerSocket,
        cli: Cli::opt(Some('b'), "bind", "ADDRESS"),
        kind: Kind::Repeated(bind::check),
        default: DefaultValue::Env {
            var: "PORT",
            format: "0.0.0.0:{}",
            fallback: Const::List(&["127.0.0.1:8000"]),
        },
        doc: "An address to listen on; repeat for more",
        long_doc: "HOST, HOST:PORT, [IPv6]:PORT, unix:PATH (or unix://PATH), or fd://N or \
fd://NAME for a socket inherited from systemd. A HOST without a port listens on port 8000. \
Repeat -b to listen on several addresses; the addresses given on the command line replace \
those of the config file. When $PORT is set, the default is 0.0.0.0:$PORT.",
    }
    backlog: u32 {
        section: ServerSocket,
        cli: Cli::opt(None, "backlog", "INT"),
        kind: Kind::Int { min: 1, max: U32 },
        default: DefaultValue::Const(Const::Int(2048)),
        doc: "Pending connections the kernel queues",
        long_doc: "The listen(2) backlog. Past it, new clients get errors; it only matters \
under heavy load. Generally 64 to 2048.",
    }

    // ----- Worker processes
    workers: u32 {
        section: WorkerProcesses,
        cli: Cli::opt(Some('w'), "workers", "INT"),
        kind: Kind::Int { min: 1, max: U32 },
        default: DefaultValue::Env {
            var: "WEB_CONCURRENCY",
            format: "{}",
            fallback: Const::Int(1),
        },
        doc: "Number of worker processes",
        long_doc: "How many worker processes serve requests; generally 2 to 4 per CPU core. \
TTIN and TTOU change it while running.",
    }
    worker_class: WorkerClass {
        section: WorkerProcesses,
        cli: Cli::opt(Some('k'), "worker-class", "STRING"),
        kind: Kind::Text(Some(check_worker_class)),
        default: DefaultValue::Const(Const::Str("sync")),
        doc: "sync, gthread, gevent or asgi",
        long_doc: "sync serves one request at a time per worker, gthread one per thread \
(threads); sync with threads above 1 is gthread, as in gunicorn. gevent runs up to \
worker_connections requests at once in greenlets, with the standard library monkey-patched \
before the app is imported (gevent must be installed in the app's virtualenv). asgi runs an \
ASGI 3 app on an asyncio loop per worker; an app whose call is a coroutine function (async \
def app(scope, receive, send), a Starlette or FastAPI app) is served as ASGI whatever the \
class. gunicorn's class paths (gunicorn.workers.sync.SyncWorker, ...) are read as their \
short names; uvicorn.workers.UvicornWorker is asgi.",
    }
    threads: u32 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "threads", "INT"),
        kind: Kind::Int { min: 1, max: U32 },
        default: DefaultValue::Const(Const::Int(1)),
        doc: "Threads a worker serves requests with",
        long_doc: "The number of requests one worker serves at once, each on its own thread.",
    }
    worker_connections: u32 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "worker-connections", "INT"),
        kind: Kind::Int { min: 1, max: U32 },
        default: DefaultValue::Const(Const::Int(1000)),
        doc: "Most simultaneous clients a worker holds",
        long_doc: "The maximum number of open client connections in one worker, idle \
keep-alive connections included; with gevent also the most requests it runs at once.",
    }
    response_buffer_size: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "response-buffer", "BYTES"),
        kind: Kind::Int { min: 1024, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(1024 * 1024)),
        doc: "Memory a response holds for a slow client",
        long_doc: "sync and gthread workers: the app's iterable is walked ahead of the \
client, and its app thread freed as soon as it is done, however slowly the client reads. Up \
to this many bytes of a response wait in memory, the rest in a temporary file (see \
response_spool_max). A body given whole that fits goes out as it is. A worker's memory for \
responses is at most this plus hyper's buffer (the largest request head allowed, about 800 \
KiB by default) per connection (worker_connections). A unitcorn setting, like nginx's \
proxy_buffers.",
    }
    response_spool_max: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "response-spool", "BYTES"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(1024 * 1024 * 1024)),
        doc: "Disk one response may spool (0: none)",
        long_doc: "sync and gthread workers: the most bytes of one response kept in a \
temporary file (in worker_tmp_dir, else $TMPDIR or /tmp; unlinked from the start) once \
response_buffer_size is full. Past it, the app's iteration waits for the client and holds \
its app thread (back-pressure). 0 keeps responses in memory only. A unitcorn setting, like \
nginx's proxy_max_temp_file_size.",
    }
    max_requests: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "max-requests", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(0)),
        doc: "Requests before a worker restarts (0: never)",
        long_doc: "A simple guard against memory leaks in the app: a worker that has served \
this many requests exits after its last response, and a fresh one replaces it.",
    }
    max_requests_jitter: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "max-requests-jitter", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(0)),
        doc: "Up to N requests added to max-requests",
        long_doc: "Each worker's limit is max_requests plus a random number from 0 to this, \
so that the workers do not all restart at once.",
    }
    timeout: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(Some('t'), "timeout", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(30)),
        doc: "Kill a worker stuck N seconds (0: never)",
        long_doc: "A worker that misses its heartbeat, or whose oldest request has run longer \
than this, is sent SIGABRT (its Python traceback goes to the error log), then SIGKILL.",
    }
    graceful_timeout: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "graceful-timeout", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(30)),
        doc: "Seconds to finish on a graceful stop",
        long_doc: "On QUIT, HUP, WINCH or TTOU, workers stop accepting and finish their \
requests; those still busy after this many seconds are killed.",
    }
    boot_timeout: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "boot-timeout", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(120)),
        doc: "Seconds a worker may take to boot (0: none)",
        long_doc: "A worker that has not imported the app and started accepting within this \
many seconds is killed and replaced (with back-off). Separate from timeout, which bounds \
requests.",
    }
    max_worker_lifetime: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "max-worker-lifetime", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(0)),
        doc: "Replace a worker this old (0: never)",
        long_doc: "A worker older than this is replaced: its replacement starts first, then \
it finishes its requests and exits. unitcorn's own setting.",
    }
    max_worker_memory: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "max-worker-memory", "MIB"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(0)),
        doc: "Replace a worker above this RSS (0: never)",
        long_doc: "A worker whose resident memory grows past this many MiB is replaced: its \
replacement starts first, then it finishes its requests and exits. unitcorn's own setting.",
    }
    lifespan: String {
        section: WorkerProcesses,
        cli: Cli::opt(None, "lifespan", "MODE"),
        kind: Kind::Text(Some(check_lifespan)),
        default: DefaultValue::Const(Const::Str("auto")),
        doc: "ASGI lifespan protocol: auto, on or off",
        long_doc: "ASGI apps only. Each worker runs the app's startup before it serves and its \
shutdown on a graceful stop. auto runs it and carries on when the app does not support it; \
on makes any failure fatal; off skips it. A startup that fails stops the worker in every \
mode.",
    }
    root_path: String {
        section: WorkerProcesses,
        cli: Cli::opt(None, "root-path", "PATH"),
        kind: Kind::Text(None),
        default: DefaultValue::Env {
            var: "SCRIPT_NAME",
            format: "{}",
            fallback: Const::Str(""),
        },
        doc: "ASGI root_path: where the app is mounted",
        long_doc: "ASGI apps only: the scope's root_path (uvicorn's --root-path), by default \
$SCRIPT_NAME as on the WSGI side. A request path that does not start with it is prefixed \
with it (the proxy stripped the prefix); a trusted proxy's SCRIPT_NAME header overrides it.",
    }
    websocket_max_message_size: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "ws-max-size", "BYTES"),
        kind: Kind::Int { min: 1, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(16 * 1024 * 1024)),
        doc: "Largest WebSocket message taken (bytes)",
        long_doc: "ASGI apps only: a client message (or frame) larger than this closes the \
WebSocket with code 1009 (message too big), and the app gets websocket.disconnect. The \
flag is uvicorn's.",
    }
    keepalive: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "keep-alive", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(2)),
        doc: "Seconds to wait for a keep-alive request",
        long_doc: "How long an idle connection waits for a request: the next one on a \
keep-alive connection, counted from the end of the previous response, and the first one on a \
new connection. A head once begun has header_timeout to finish. 0 closes the connection \
after each response. Generally 1 to 5 behind a proxy.",
    }
    header_timeout: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "header-timeout", "INT"),
        kind: Kind::Int { min: 1, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(10)),
        doc: "Seconds a client may take to send a head",
        long_doc: "From the first byte of a request head to the end of its headers, on every \
request of a connection; a client still sending its head after that is disconnected without \
an answer, so slow clients cannot hold connections. The wait for that first byte is a clock \
of its own: keepalive (on a new connection too), or header_timeout when keepalive is 0. A \
unitcorn setting (nginx's client_header_timeout, counted from the head's first byte).",
    }
    body_timeout: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "body-timeout", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(30)),
        doc: "Seconds a request body may go without data",
        long_doc: "A client that sends no byte of its request body for this long, or falls \
this many seconds behind body_min_rate, is answered 408 and disconnected when the app has not \
been called yet; when the app is reading the body, its read raises (wsgi.input) or it gets \
http.disconnect (ASGI). 0: no limit, and no minimum rate. gunicorn bounds these reads with \
timeout; unitcorn keeps the two apart (nginx's client_body_timeout). A unitcorn setting.",
    }
    body_min_rate: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "body-min-rate", "BYTES"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(500)),
        doc: "Slowest request body taken, in bytes/s",
        long_doc: "Measured over the time spent waiting for the client's bytes (not the time \
the app takes between reads), as a leaky bucket: a client may fall behind this rate by at \
most body_timeout seconds, and what it gains by sending faster counts up to body_timeout too. \
So a body trickled a byte at a time is cut off (408) after about body_timeout, however \
regular its bytes. 0: no minimum, only body_timeout between bytes. Apache mod_reqtimeout's \
MinRate, with body_timeout as its grace. A unitcorn setting.",
    }
    body_buffer_size: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "body-buffer-size", "BYTES"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(64 * 1024)),
        doc: "Request body bytes held in memory",
        long_doc: "A request body up to this size is read whole into memory before the app is \
called (an ASGI app gets it whole in its first http.request, when it has a Content-Length). \
A larger WSGI body is spooled to a temporary file (body_spool_size). nginx's \
client_body_buffer_size. A unitcorn setting.",
    }
    body_spool_size: u64 {
        section: WorkerProcesses,
        cli: Cli::opt(None, "body-spool-size", "BYTES"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(1 << 30)),
        doc: "Largest request body read before a WSGI app",
        long_doc: "A WSGI app is called once its request body has arrived, up to this size: \
past body_buffer_size it goes to an unlinked temporary file in tmp_upload_dir, which \
wsgi.input reads. A slow client then holds a connection, never an app thread, and a sync \
worker serves on. Of a larger body (declared or chunked) this much is spooled, then the app \
is called and reads the rest as it arrives, holding its thread meanwhile; a \
limit_request_body of at most this refuses such bodies (413) instead. 0: nothing spooled \
(past body_buffer_size the app reads the body as it arrives, as in gunicorn). A body sent \
after Expect: 100-continue always reaches the app as it reads (the client waits for the \
app's go-ahead); ASGI apps receive their bodies as they arrive. A unitcorn setting.",
    }

    // ----- Server mechanics
    chdir: PathBuf {
        section: ServerMechanics,
        cli: Cli::opt(None, "chdir", "DIR"),
        kind: Kind::Path,
        default: DefaultValue::Cwd,
        doc: "Directory to load the app from",
        long_doc: "unitcorn changes to it before loading the app.",
    }
    pythonpath: Option<String> {
        section: ServerMechanics,
        cli: Cli::opt(None, "pythonpath", "STRING"),
        kind: Kind::OptText(None),
        default: DefaultValue::Const(Const::Unset),
        doc: "Comma list of dirs to add to sys.path",
        long_doc: "For example '/home/djangoprojects/myproject,/home/python/mylibrary'.",
    }
    virtualenv: Option<PathBuf> {
        section: ServerMechanics,
        cli: Cli::opt(None, "virtualenv", "DIR"),
        kind: Kind::OptPath,
        default: DefaultValue::Const(Const::Unset),
        doc: "The virtualenv of the app's packages",
        long_doc: "A venv made with the Python unitcorn links (python3 -m venv). When unset, \
$VIRTUAL_ENV is used if set. A unitcorn setting; gunicorn has none.",
    }
    preload_app: bool {
        section: ServerMechanics,
        cli: Cli::opt(None, "preload", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Load the app before forking workers",
        long_doc: "Workers then share the loaded app's memory copy-on-write and start faster. \
A reload (HUP) imports the app again in the master first (the modules under chdir and \
pythonpath are re-read). The app must not start threads at import: they would run in the \
master only.",
    }
    gc_freeze: bool {
        section: ServerMechanics,
        cli: Cli::opt(None, "gc-freeze", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "gc.freeze() the preloaded app at fork",
        long_doc: "Moves every object the preloaded app created into the garbage collector's \
permanent generation, so that collections in the workers do not touch (and copy) the pages \
they share with the master. A unitcorn setting.",
    }
    raw_env: Vec<String> {
        section: ServerMechanics,
        cli: Cli::opt(Some('e'), "env", "KEY=VALUE"),
        kind: Kind::Repeated(check_env),
        default: DefaultValue::Const(Const::List(&[])),
        doc: "Set KEY=VALUE in the app's environment",
        long_doc: "Repeat -e for more. The variables given on the command line replace those of \
the config file.",
    }
    pidfile: Option<PathBuf> {
        section: ServerMechanics,
        cli: Cli::opt(Some('p'), "pid", "FILE"),
        kind: Kind::OptPath,
        default: DefaultValue::Const(Const::Unset),
        doc: "Write the master's pid to this file",
        long_doc: "No pid file is written when unset.",
    }
    daemon: bool {
        section: ServerMechanics,
        cli: Cli::opt(Some('D'), "daemon", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Detach and run in the background",
        long_doc: "Detaches from the terminal. Not needed under systemd or supervisord, which \
keep unitcorn in the foreground.",
    }
    user: Option<String> {
        section: ServerMechanics,
        cli: Cli::opt(Some('u'), "user", "USER"),
        kind: Kind::OptText(Some(non_empty)),
        default: DefaultValue::Const(Const::Unset),
        doc: "Run as this user after binding",
        long_doc: "A user name or uid. The master binds (or receives) the sockets, then \
switches to it before forking workers. Unchanged when unset.",
    }
    group: Option<String> {
        section: ServerMechanics,
        cli: Cli::opt(Some('g'), "group", "GROUP"),
        kind: Kind::OptText(Some(non_empty)),
        default: DefaultValue::Const(Const::Unset),
        doc: "Run as this group after binding",
        long_doc: "A group name or gid, switched to with the user. When unset and user is \
set, the user's primary group.",
    }
    initgroups: bool {
        section: ServerMechanics,
        cli: Cli::opt(None, "initgroups", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Also take the user's supplementary groups",
        long_doc: "With user set: the process gets every group /etc/group lists the user in \
(initgroups(3)). Without it, it has the group alone.",
    }
    keep_capabilities: Vec<String> {
        section: ServerMechanics,
        cli: Cli::opt(None, "keep-capability", "CAP"),
        kind: Kind::Repeated(check_capability),
        default: DefaultValue::Const(Const::List(&[])),
        doc: "Keep a capability after switching user",
        long_doc: "Every capability is dropped (effective, permitted and bounding sets) when \
unitcorn switches to user, except those named here, such as CAP_NET_BIND_SERVICE. Repeat for \
more. A unitcorn setting.",
    }
    umask: u32 {
        section: ServerMechanics,
        cli: Cli::opt(Some('m'), "umask", "INT"),
        kind: Kind::Umask,
        default: DefaultValue::Const(Const::Int(0)),
        doc: "File mode mask, e.g. 0o022",
        long_doc: "It also sets the mode of unix sockets. Read as gunicorn reads it: \"18\", \"0o22\", \"0x12\" and \"0022\" (a \
leading 0 means octal) are the same mask.",
    }
    worker_tmp_dir: Option<PathBuf> {
        section: ServerMechanics,
        cli: Cli::opt(None, "worker-tmp-dir", "DIR"),
        kind: Kind::OptPath,
        default: DefaultValue::Const(Const::Unset),
        doc: "Directory for workers' temporary files",
        long_doc: "Where sync and gthread workers spool the responses slow clients have not \
read yet (response_spool_max); $TMPDIR or /tmp when unset. unitcorn's workers report to \
the master through shared memory, not a temporary file.",
    }
    tmp_upload_dir: Option<PathBuf> {
        section: ServerMechanics,
        cli: Cli::None,
        kind: Kind::OptPath,
        default: DefaultValue::Const(Const::Unset),
        doc: "Directory for temporary request data (config file only)",
        long_doc: "Where request bodies past body_buffer_size are spooled (body_spool_size), as \
unlinked temporary files; unset: $TMPDIR, else /tmp. Point it at a disk where /tmp is a \
tmpfs (memory). gunicorn's setting of the same name.",
    }
    forwarded_allow_ips: Vec<String> {
        section: ServerMechanics,
        cli: Cli::opt(None, "forwarded-allow-ips", "STRING"),
        kind: Kind::CommaList(check_ip),
        default: DefaultValue::Env {
            var: "FORWARDED_ALLOW_IPS",
            format: "{}",
            fallback: Const::List(&["127.0.0.1", "::1"]),
        },
        doc: "Proxies trusted with X-Forwarded-*",
        long_doc: "Peers trusted to set X-Forwarded-* headers: IP addresses or networks (10.0.0.0/8), comma-separated, or * to trust \
every peer. Only requests from these peers may set the scheme (secure_scheme_headers) and \
forwarder_headers. Clients of a unix socket are trusted (the proxy is local).",
    }
    secure_scheme_headers: Vec<String> {
        section: ServerMechanics,
        cli: Cli::None,
        kind: Kind::Pairs,
        default: DefaultValue::Const(Const::List(&[
            "X-FORWARDED-PROTO=https",
            "X-FORWARDED-PROTOCOL=ssl",
            "X-FORWARDED-SSL=on",
        ])),
        doc: "Headers a trusted proxy marks HTTPS with",
        long_doc: "A table of header names to the value that means HTTPS. From a trusted \
peer (forwarded_allow_ips), a request carrying one of them has wsgi.url_scheme https if the \
value matches, http if not; headers that disagree get 400.",
    }
    proxy_protocol: String {
        section: ServerMechanics,
        cli: Cli::opt(None, "proxy-protocol", "MODE"),
        kind: Kind::Text(Some(check_proxy_protocol)),
        default: DefaultValue::Const(Const::Str("off")),
        doc: "PROXY protocol: off, v1, v2 or auto",
        long_doc: "Connections from proxy_allow_ips start with HAProxy's PROXY header (v1 \
text, v2 binary; auto takes either, or none), whose client address becomes REMOTE_ADDR. \
gunicorn's true means auto. A malformed or missing header drops the connection.",
    }
    proxy_allow_ips: Vec<String> {
        section: ServerMechanics,
        cli: Cli::opt(None, "proxy-allow-from", "STRING"),
        kind: Kind::CommaList(check_ip),
        default: DefaultValue::Const(Const::List(&["127.0.0.1", "::1"])),
        doc: "Peers that send a PROXY header",
        long_doc: "IP addresses or networks, comma-separated, or *. Other peers (and any \
client when proxy_protocol is off) speak plain HTTP. Unix-socket clients count as allowed.",
    }
    forwarder_headers: Vec<String> {
        section: ServerMechanics,
        cli: Cli::opt(None, "forwarder-headers", "STRING"),
        kind: Kind::CommaList(check_forwarder_header),
        default: DefaultValue::Const(Const::List(&["SCRIPT_NAME", "PATH_INFO"])),
        doc: "Environ keys a trusted proxy may set",
        long_doc: "Headers with an underscore in their name are dropped, except these, from \
a trusted peer: a SCRIPT_NAME header sets the app's mount point, PATH_INFO its path.",
    }

    // ----- Logging
    accesslog: Option<String> {
        section: Logging,
        cli: Cli::opt(None, "access-logfile", "FILE"),
        kind: Kind::OptText(Some(non_empty)),
        default: DefaultValue::Const(Const::Unset),
        doc: "Access log file, '-' (stdout) or 'journald'",
        long_doc: "No access log is written when unset. 'journald' sends each request to the \
                   journal as one entry (SYSLOG_IDENTIFIER=unitcorn-access) with the line as \
                   MESSAGE and the fields REQUEST_METHOD, REQUEST_PATH, REQUEST_QUERY, STATUS, \
                   DURATION_US, REMOTE_ADDR, RESPONSE_BYTES, USER_AGENT, WORKER_PID; '-' does \
                   the same when stdout is the journal (JOURNAL_STREAM).",
    }
    access_log_format: String {
        section: Logging,
        cli: Cli::opt(None, "access-logformat", "STRING"),
        kind: Kind::Text(None),
        default: DefaultValue::Const(Const::Str(DEFAULT_ACCESS_LOG_FORMAT)),
        doc: "The access log format (gunicorn's atoms)",
        long_doc: "h remote address, l '-', u user, t date, r request line, s status, \
b response length, f referer, a user agent, and gunicorn's other atoms.",
    }
    errorlog: String {
        section: Logging,
        cli: Cli::Option {
            short: None,
            long: "error-logfile",
            aliases: &["log-file"],
            value_name: "FILE",
        },
        kind: Kind::Text(Some(non_empty)),
        default: DefaultValue::Const(Const::Str("-")),
        doc: "Error log file, '-' (stderr) or 'journald'",
        long_doc: "--log-file is another name for this flag. 'journald' sends each event to \
                   the journal as one entry (SYSLOG_IDENTIFIER=unitcorn, PRIORITY from the \
                   level, UNITCORN_ROLE, WORKER_PID); '-' does the same when stderr is the \
                   journal (JOURNAL_STREAM), else writes lines.",
    }
    loglevel: String {
        section: Logging,
        cli: Cli::opt(None, "log-level", "LEVEL"),
        kind: Kind::Text(Some(check_loglevel)),
        default: DefaultValue::Const(Const::Str("info")),
        doc: "debug, info, warning, error or critical",
        long_doc: "The least severe messages that go to the error log.",
    }
    // StatsD (gunicorn's instrumentation): see the statsd module.
    statsd_host: Option<String> {
        section: Logging,
        cli: Cli::opt(None, "statsd-host", "ADDR"),
        kind: Kind::OptText(Some(statsd_address::check)),
        default: DefaultValue::Const(Const::Unset),
        doc: "Send StatsD metrics to HOST:PORT (UDP)",
        long_doc: "HOST:PORT, HOST (port 8125), [IPv6]:PORT, or unix:PATH for a datagram unix \
socket. Workers send gunicorn.requests, gunicorn.request.duration (ms) and \
gunicorn.request.status.CODE for each request, the master gunicorn.workers; every process counts \
gunicorn.log.critical/error/warning/exception. Sending never blocks nor fails a request. Unset: \
nothing is measured.",
    }
    statsd_prefix: String {
        section: Logging,
        cli: Cli::opt(None, "statsd-prefix", "PREFIX"),
        kind: Kind::Text(None),
        default: DefaultValue::Const(Const::Str("")),
        doc: "Prefix of every StatsD metric name",
        long_doc: "Joined to the name with one dot, as gunicorn does: \"app\" and \"app.\" both \
give app.gunicorn.requests.",
    }
    dogstatsd_tags: String {
        section: Logging,
        cli: Cli::opt(None, "dogstatsd-tags", "TAGS"),
        kind: Kind::Text(None),
        default: DefaultValue::Const(Const::Str("")),
        doc: "DogStatsD tags added to every metric",
        long_doc: "Comma-separated tags, e.g. env:prod,app:shop, appended to each metric as \
|#env:prod,app:shop (Datadog's format).",
    }

    // ----- Process naming
    proc_name: Option<String> {
        section: ProcessNaming,
        cli: Cli::opt(Some('n'), "name", "STRING"),
        kind: Kind::OptText(None),
        default: DefaultValue::Const(Const::Unset),
        doc: "The process name shown by ps and top",
        long_doc: "Tells several unitcorn instances apart; the app name when unset.",
    }

    // ----- Security
    limit_request_line: u32 {
        section: Security,
        cli: Cli::opt(None, "limit-request-line", "INT"),
        kind: Kind::Int { min: 0, max: 8190 },
        default: DefaultValue::Const(Const::Int(4094)),
        doc: "Max request line length in bytes",
        long_doc: "Limits the method, URI and version line, against denial of service; a longer \
one is answered 414. At most 8190; 0 means no limit of unitcorn's own.",
    }
    limit_request_fields: u32 {
        section: Security,
        cli: Cli::opt(None, "limit-request-fields", "INT"),
        kind: Kind::Int { min: 0, max: 32768 },
        default: DefaultValue::Const(Const::Int(100)),
        doc: "Max header fields in a request",
        long_doc: "Against denial of service; at most 32768.",
    }
    limit_request_field_size: u32 {
        section: Security,
        cli: Cli::opt(None, "limit-request-field_size", "INT"),
        kind: Kind::Int { min: 0, max: U32 },
        default: DefaultValue::Const(Const::Int(8190)),
        doc: "Max header field size in bytes",
        long_doc: "A header line counts with its name, value and CRLF, as gunicorn counts it; \
0 means the default 8190, as in gunicorn. The flag keeps gunicorn's spelling, with an underscore.",
    }
    limit_request_body: u64 {
        section: Security,
        cli: Cli::opt(None, "limit-request-body", "INT"),
        kind: Kind::Int { min: 0, max: u64::MAX },
        default: DefaultValue::Const(Const::Int(0)),
        doc: "Max request body in bytes (0: none)",
        long_doc: "A larger declared Content-Length is answered 413 before the app runs; a \
chunked body that grows past it is refused the same way, or makes wsgi.input raise if the \
app is already reading. A unitcorn setting; gunicorn has none.",
    }
    permit_obsolete_folding: bool {
        section: Security,
        cli: Cli::opt(None, "permit-obsolete-folding", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Allow obsolete header line folding",
        long_doc: "Obsolete line folding (RFC 9112 5.2) is refused with 400 unless set; when \
set, a folded value is joined with spaces. Folded Content-Length or Transfer-Encoding lines \
are refused either way.",
    }
    permit_unconventional_http_method: bool {
        section: Security,
        cli: Cli::opt(None, "permit-unconventional-http-method", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Allow lowercase/odd-length methods",
        long_doc: "By default a method must be 3 to 20 characters, without lowercase letters or \
'#', as gunicorn requires (400 otherwise); any RFC 9110 token is accepted when set.",
    }
    casefold_http_method: bool {
        section: Security,
        cli: Cli::opt(None, "casefold-http-method", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Uppercase the method for the app",
        long_doc: "Methods are case-sensitive; this only matters together with \
permit_unconventional_http_method, which lets lowercase methods in.",
    }

    // ----- Debugging
    reload: bool {
        section: Debugging,
        cli: Cli::opt(None, "reload", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Restart workers when the code changes",
        long_doc: "For development. A change to a Python file of the app (a module it \
imported from outside the standard library and site-packages) or to reload_extra_files starts a \
new generation of workers, as HUP does: the old one serves until the new one does, and keeps \
serving if the new code does not load (the error log says why).",
    }
    spew: bool {
        section: Debugging,
        cli: Cli::opt(None, "spew", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        doc: "Trace every line of Python the server runs",
        long_doc: "The nuclear option: very noisy. Each line is printed to stdout as \
module:line: source, from the thread that imports the app on (with one thread per worker, \
the app's calls too) and the threads the app starts.",
    }
    // Code reloading (`reload`): see master::code_reload.
    reload_engine: String {
        section: Debugging,
        cli: Cli::opt(None, "reload-engine", "ENGINE"),
        kind: Kind::Text(Some(check_reload_engine)),
        default: DefaultValue::Const(Const::Str("auto")),
        doc: "Change detection: auto, poll or inotify",
        long_doc: "inotify asks the kernel; poll compares modification times every second; \
auto is inotify when the kernel allows it, else poll.",
    }
    reload_extra_files: Vec<String> {
        section: Debugging,
        cli: Cli::opt(None, "reload-extra-file", "GLOB"),
        kind: Kind::Repeated(non_empty),
        default: DefaultValue::Const(Const::List(&[])),
        doc: "More files whose change reloads (globs)",
        long_doc: "With reload: a path or a glob (*, ?, [abc], ** for any depth), relative to \
chdir, e.g. templates/**/*.html; a change to a matching file reloads like a change to the app's \
code.",
    }
    check_config: bool {
        section: Debugging,
        cli: Cli::opt(None, "check-config", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        scope: CommandLine,
        doc: "Check the settings and the app, then exit",
        long_doc: "Exits 0 when the configuration is valid and the app imports.",
    }
    print_config: bool {
        section: Debugging,
        cli: Cli::opt(None, "print-config", ""),
        kind: Kind::Flag,
        default: DefaultValue::Const(Const::Bool(false)),
        scope: CommandLine,
        doc: "Print the resolved settings as TOML, exit",
        long_doc: "The output is a valid config file: feed it back with -c.",
    }

    // ----- Config file
    config: Option<PathBuf> {
        section: ConfigFile,
        cli: Cli::opt(Some('c'), "config", "CONFIG"),
        kind: Kind::OptPath,
        default: DefaultValue::Const(Const::Unset),
        scope: CommandLine,
        doc: "The config file: TOML, or gunicorn's Python file",
        long_doc: "Keys are gunicorn's setting names (workers = 4, bind = [\"unix:/run/app.sock\"]). \
A .py file (or python:MODULE) is run as gunicorn runs it: its module-level names are the \
settings, its functions the server hooks. Without -c, ./gunicorn.conf.py is read if it exists.",
    }
    wsgi_app: Option<String> {
        section: ConfigFile,
        cli: Cli::Positional { value_name: "APP" },
        kind: Kind::OptText(Some(app_spec::check)),
        default: DefaultValue::Const(Const::Unset),
        doc: "The WSGI app: MODULE:NAME, e.g. myproject.wsgi:application",
        long_doc: "Also MODULE:factory() or MODULE alone (the name is then 'application'). \
Given as APP on the command line.",
    }
}

/// Refuses "" for settings where it can only be a mistake (a user, a log file).
fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("an empty value is not allowed".into())
    } else {
        Ok(s.to_owned())
    }
}

/// `reload_engine`: gunicorn's names.
fn check_reload_engine(s: &str) -> Result<String, String> {
    match s {
        "auto" | "poll" | "inotify" => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a reload engine; use auto, poll or inotify"
        )),
    }
}

/// `loglevel`: one of gunicorn's levels, in any case (gunicorn lower-cases it too).
fn check_loglevel(s: &str) -> Result<String, String> {
    let level = s.to_ascii_lowercase();
    if LOG_LEVELS.contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(format!(
            "{s:?} is not a log level; use one of {}",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// `raw_env`: `KEY=VALUE` with a non-empty key (the value may be empty).
fn check_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(s.to_owned()),
        Some(_) => Err(format!("{s:?} has an empty KEY (expected KEY=VALUE)")),
        None => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `forwarder_headers`: an environ key a header may set (gunicorn takes only these two).
fn check_forwarder_header(s: &str) -> Result<String, String> {
    match s.to_ascii_uppercase().as_str() {
        name @ ("SCRIPT_NAME" | "PATH_INFO") => Ok(name.to_owned()),
        _ => Err(format!("{s:?} is not SCRIPT_NAME or PATH_INFO")),
    }
}

/// `worker_class`: the short name of a worker unitcorn runs, from gunicorn's short names
/// or class paths; the others are refused with what to use instead.
fn check_worker_class(s: &str) -> Result<String, String> {
    let name = non_empty(s)?;
    let name = name.trim();
    let short = match name.rsplit_once('.') {
        Some((_, class)) => match class {
            "SyncWorker" => "sync",
            "ThreadWorker" => "gthread",
            "GeventWorker" | "GeventPyWSGIWorker" => "gevent",
            "EventletWorker" => "eventlet",
            "TornadoWorker" => "tornado",
            "UvicornWorker" | "UvicornH11Worker" => "asgi",
            _ => name,
        },
        None => name,
    };
    match short {
        _ if WorkerClass::from_name(short).is_some() => Ok(short.to_owned()),
        "eventlet" => Err(format!(
            "{s:?}: eventlet is not supported (gunicorn 26 removed it too); use gevent for \
             greenlets, or gthread"
        )),
        _ => Err(format!(
            "{s:?} is not a worker class unitcorn runs (sync, gthread, gevent, asgi)"
        )),
    }
}

/// `lifespan`: uvicorn's modes.
fn check_lifespan(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        mode @ ("auto" | "on" | "off") => Ok(mode.to_owned()),
        _ => Err(format!("{s:?} is not auto, on or off")),
    }
}

/// `proxy_protocol`: off/v1/v2/auto, or gunicorn's boolean spelled as text.
fn check_proxy_protocol(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" | "false" | "0" | "no" => Ok("off".into()),
        "auto" | "true" | "1" | "yes" => Ok("auto".into()),
        mode @ ("v1" | "v2") => Ok(mode.into()),
        _ => Err(format!("{s:?} is not off, v1, v2 or auto")),
    }
}

/// `keep_capabilities`: a capability name as capabilities(7) spells it.
fn check_capability(s: &str) -> Result<String, String> {
    let canonical = s.trim().to_ascii_uppercase();
    let canonical = if canonical.starts_with("CAP_") {
        canonical
    } else {
        format!("CAP_{canonical}")
    };
    canonical
        .parse::<caps::Capability>()
        .map(|_| canonical.clone())
        .map_err(|_| format!("{s:?} is not a capability (capabilities(7): CAP_NET_BIND_SERVICE…)"))
}

/// `forwarded_allow_ips`: `*`, an IP address, or a network `ADDR/PREFIX`, as gunicorn's
/// `ipaddress.ip_network` check takes them.
fn check_ip(s: &str) -> Result<String, String> {
    let valid = s == "*"
        || match s.split_once('/') {
            None => s.parse::<IpAddr>().is_ok(),
            Some((addr, prefix)) => match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
                (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
                (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
                _ => false,
            },
        };
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an IP address, a network like 10.0.0.0/8, or *"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_accept_and_refuse() {
        assert_eq!(check_loglevel("WARNING"), Ok("warning".into()));
        assert_eq!(
            check_loglevel("verbose"),
            Err(
                r#""verbose" is not a log level; use one of debug, info, warning, error, critical"#
                    .into()
            )
        );
        assert_eq!(check_env("A=b=c"), Ok("A=b=c".into()));
        assert_eq!(check_env("A="), Ok("A=".into()));
        assert!(check_env("=b").unwrap_err().contains("empty KEY"));
        assert!(check_env("AB").unwrap_err().contains("not KEY=VALUE"));
        for ok in ["*", "127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8"] {
            assert_eq!(check_ip(ok), Ok(ok.to_owned()));
        }
        for bad in ["10.0.0.x", "10.0.0.0/33", "::1/129", "", "localhost"] {
            assert!(check_ip(bad).is_err(), "{bad} should be refused");
        }
        assert!(non_empty("").is_err());
    }
}
