//! Listening sockets: binding the configured addresses, taking inherited fds, and handing
//! them to workers across `fork()`.
//!
//! Binding happens once, in the master, before any worker exists.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::bind::{BindAddr, FdRef};

#[derive(Debug)]
pub enum Kind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A listening socket and what the environ says about it.
#[derive(Debug)]
pub struct Listener {
    pub fd: OwnedFd,
    pub kind: Kind,
    /// Its `FileDescriptorName=` when systemd (or the master before a binary upgrade)
    /// passed it; handed on at the next upgrade, so `fd://NAME` keeps working.
    pub name: Option<String>,
}

impl Listener {
    /// `SERVER_NAME` and `SERVER_PORT`; a unix socket has no port.
    pub fn server_name_port(&self) -> (String, Option<String>) {
        match &self.kind {
            Kind::Tcp(addr) => (addr.ip().to_string(), Some(addr.port().to_string())),
            Kind::Unix(path) => (path.display().to_string(), None),
        }
    }

    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(Listener {
            fd: self.fd.try_clone()?,
            kind: match &self.kind {
                Kind::Tcp(a) => Kind::Tcp(*a),
                Kind::Unix(p) => Kind::Unix(p.clone()),
            },
            name: self.name.clone(),
        })
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Tcp(SocketAddr::V6(a)) => write!(f, "http://[{}]:{}", a.ip(), a.port()),
            Kind::Tcp(a) => write!(f, "http://{a}"),
            Kind::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A socket systemd passed (socket activation), with its `FileDescriptorName=`.
#[derive(Debug)]
pub struct Passed {
    pub listener: Listener,
}

/// What systemd's socket activation variables say (`LISTEN_PID`, `LISTEN_FDS`,
/// `LISTEN_FDNAMES`); the master reads them, and removes them from its environment
/// (`master/environment.rs`).
#[derive(Debug, Default)]
pub struct Activation {
    /// `LISTEN_PID` is this process: the sockets are ours.
    pub for_us: bool,
    /// `LISTEN_FDS`: how many, from fd 3 on.
    pub count: i32,
    /// `LISTEN_FDNAMES`, colon-separated.
    pub names: String,
}

/// The sockets systemd passed to this process (`LISTEN_FDS` from fd 3 on, when
/// `LISTEN_PID` is our pid), with their names (`LISTEN_FDNAMES`).
pub fn passed_by_systemd(activation: &Activation) -> Result<Vec<Passed>, Error> {
    const SD_LISTEN_FDS_START: i32 = 3;
    if !activation.for_us {
        return Ok(Vec::new());
    }
    let mut names = activation.names.split(':');
    (0..activation.count)
        .map(|i| {
            let fd = SD_LISTEN_FDS_START + i;
            let mut listener = inherit(fd).map_err(|e| Error::passed(fd, e))?;
            let name = names
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("unknown")
                .to_owned();
            listener.name = Some(name);
            Ok(Passed { listener })
        })
        .collect()
}

impl Passed {
    /// This is the socket `bind` names: by name or fd number (`fd://`), or by address.
    fn serves(&self, bind: &BindAddr) -> bool {
        match (bind, &self.listener.kind) {
            (BindAddr::Fd(FdRef::Name(name)), _) => self.listener.name.as_ref() == Some(name),
            (BindAddr::Fd(FdRef::Num(fd)), _) => *fd == self.listener.fd.as_raw_fd(),
            (BindAddr::Tcp(host, port), Kind::Tcp(addr)) => {
                addr.port() == *port
                    && (host.as_str(), *port)
                        .to_socket_addrs()
                        .is_ok_and(|mut all| all.any(|a| a.ip() == addr.ip()))
            }
            (BindAddr::Unix(path), Kind::Unix(own)) => path == own,
            _ => false,
        }
    }
}

/// What `open_all` opened.
#[derive(Debug)]
pub struct Opened {
    pub listeners: Vec<Listener>,
    /// The unix socket files bound here (to remove at exit; a passed one is never
    /// removed: it belongs to whoever passed it).
    pub created: Vec<PathBuf>,
}

/// The listeners for `binds`: a socket systemd passed is used as it is (no second bind
/// or listen) when a bind names it; other binds are bound; passed sockets no bind names
/// are served too. The error names the address.
pub fn open_all(binds: &[BindAddr], backlog: u32, passed: Vec<Passed>) -> Result<Opened, Error> {
    let mut passed: Vec<Option<Passed>> = passed.into_iter().map(Some).collect();
    let mut out = Vec::new();
    let mut created = Vec::new();
    for bind in binds {
        let found = passed
            .iter_mut()
            .find(|p| p.as_ref().is_some_and(|p| p.serves(bind)))
            .and_then(Option::take);
        match (found, bind) {
            (Some(p), _) => out.push(p.listener),
            (None, BindAddr::Fd(FdRef::Name(name))) => return Err(Error::not_passed(name)),
            (None, bind) => {
                let listener = open(bind, backlog).map_err(|e| Error::listen(bind, e))?;
                if let BindAddr::Unix(path) = bind {
                    created.push(path.clone());
                }
                out.push(listener);
            }
        }
    }
    out.extend(passed.into_iter().flatten().map(|p| p.listener));
    Ok(Opened {
        listeners: out,
        created,
    })
}

fn open(bind: &BindAddr, backlog: u32) -> io::Result<Listener> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    match bind {
        BindAddr::Tcp(host, port) => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for host");
            for addr in addrs {
                match bind_tcp(addr, backlog) {
                    Ok(l) => return Ok(l),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        BindAddr::Unix(path) => bind_unix(path, backlog),
        BindAddr::Fd(FdRef::Num(n)) => inherit(*n),
        BindAddr::Fd(FdRef::Name(name)) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no socket named {name:?} was passed by systemd (LISTEN_FDNAMES)"),
        )),
    }
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?.as_socket().unwrap_or(addr);
    Ok(Listener {
        fd: socket.into(),
        kind: Kind::Tcp(local),
        name: None,
    })
}

fn bind_unix(path: &std::path::Path, backlog: i32) -> io::Result<Listener> {
    // Said here, with the numbers, rather than socket2's "shorter than SUN_LEN".
    let longest = std::mem::size_of::<libc::sockaddr_un>()
        - std::mem::offset_of!(libc::sockaddr_un, sun_path)
        - 1;
    let len = path.as_os_str().len();
    if len > longest {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the path is {len} bytes long, and a unix socket's path is at most {longest}: \
                 use a shorter one (under /run, say)"
            ),
        ));
    }
    // A socket file left by a previous run that is not listening any more would make
    // bind fail with EADDRINUSE; gunicorn removes it too. Never remove anything else.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err() {
            std::fs::remove_file(path)?;
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(Listener {
        fd: socket.into(),
        kind: Kind::Unix(path.to_path_buf()),
        name: None,
    })
}

/// `fd://N`: a socket already listening, inherited from whoever started us.
fn inherit(fd: RawFd) -> io::Result<Listener> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF for an fd
    // that is not open, which we report instead of adopting a closed number.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and was handed to this process to own
    // (fd://N); nothing else in unitcorn refers to it by number.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    if !socket.r#type().is_ok_and(|t| t == Type::STREAM) {
        std::mem::forget(socket);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a stream socket"),
        ));
    }
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let kind = match local.as_socket() {
        Some(addr) => Kind::Tcp(addr),
        None => Kind::Unix(
            local
                .as_pathname()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
        ),
    };
    let _ = socket.as_raw_fd();
    Ok(Listener {
        fd: socket.into(),
        kind,
        name: None,
    })
}

/// A listening socket could not be opened or taken over. `Display` shows one level (what,
/// on which address or fd); the source says why ([`Why`]).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<Why>,
}

/// Why an address could not be listened on: the OS's reason, and what to do about it
/// where that is known (a port below 1024, an address of another host, a missing
/// directory).
#[derive(Debug)]
pub struct Why {
    error: io::Error,
    hint: Option<String>,
}

impl Why {
    fn new(bind: &BindAddr, error: io::Error) -> Why {
        let hint = hint(bind, &error);
        Why { error, hint }
    }
}

/// What an operator can do about `error` on `bind`, for the errors whose fix is known.
fn hint(bind: &BindAddr, error: &io::Error) -> Option<String> {
    let dir = |path: &std::path::Path| {
        path.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| ".".to_owned(), |d| d.display().to_string())
    };
    match (bind, error.kind()) {
        (BindAddr::Tcp(_, port), io::ErrorKind::PermissionDenied) if *port < 1024 => Some(
            "ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities= in \
             the unit, or a port of 1024 or more behind a proxy)"
                .to_owned(),
        ),
        (BindAddr::Tcp(..), io::ErrorKind::AddrInUse) => {
            Some("is unitcorn, or another server, running there?".to_owned())
        }
        (BindAddr::Tcp(host, _), io::ErrorKind::AddrNotAvailable) => Some(format!(
            "{host} is not an address of this host (`ip addr` lists them; 0.0.0.0 listens \
             on all of them)"
        )),
        (BindAddr::Unix(path), io::ErrorKind::NotFound) => {
            Some(format!("the directory {} does not exist", dir(path)))
        }
        (BindAddr::Unix(path), io::ErrorKind::PermissionDenied) => Some(format!(
            "the user unitcorn runs as cannot create files in {}",
            dir(path)
        )),
        (BindAddr::Unix(path), io::ErrorKind::AddrInUse) => {
            Some(format!("another process listens on {}", path.display()))
        }
        _ => None,
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The OS's reason without its number: "address already in use".
        match self.error.raw_os_error() {
            Some(code) => {
                let desc = nix::errno::Errno::from_raw(code).desc();
                let mut chars = desc.chars();
                if let Some(first) = chars.next() {
                    write!(f, "{}{}", first.to_lowercase(), chars.as_str())?;
                }
            }
            None => write!(f, "{}", self.error)?,
        }
        match &self.hint {
            Some(hint) => write!(f, ": {hint}"),
            None => Ok(()),
        }
    }
}

/// Its message quotes the OS error: not repeated as a source.
impl std::error::Error for Why {}

#[derive(Debug)]
enum ErrorKind {
    /// Binding (or adopting `fd://N`) the address failed.
    Listen(String),
    /// `fd://NAME`: systemd passed no socket by that name.
    NotPassed(String),
    /// A socket systemd passed is not a listening stream socket.
    Passed(RawFd),
}

impl Error {
    fn listen(bind: &BindAddr, e: io::Error) -> Self {
        Error {
            kind: ErrorKind::Listen(bind.to_string()),
            source: Some(Why::new(bind, e)),
        }
    }

    fn not_passed(name: &str) -> Self {
        Error {
            kind: ErrorKind::NotPassed(name.to_owned()),
            source: None,
        }
    }

    fn passed(fd: RawFd, e: io::Error) -> Self {
        Error {
            kind: ErrorKind::Passed(fd),
            source: Some(Why {
                error: e,
                hint: None,
            }),
        }
    }

    /// Another socket is bound to the address already (another server, or unitcorn).
    #[cfg(test)]
    pub fn is_addr_in_use(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|why| why.error.kind() == io::ErrorKind::AddrInUse)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ErrorKind::Listen(bind) => write!(f, "cannot listen on {bind}"),
            ErrorKind::NotPassed(name) => write!(
                f,
                "cannot listen on fd://{name}: systemd passed no socket named {name:?} \
                 (FileDescriptorName= in the .socket unit)"
            ),
            ErrorKind::Passed(fd) => write!(
                f,
                "socket {fd} passed by systemd (LISTEN_FDS) is not usable"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_address_is_named_and_its_os_error_is_the_source() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let bind = BindAddr::Tcp("127.0.0.1".into(), port);
        let e = open_all(&[bind], 16, Vec::new()).unwrap_err();
        assert!(e.is_addr_in_use(), "{e:?}");
        assert_eq!(e.to_string(), format!("cannot listen on 127.0.0.1:{port}"));
        assert_eq!(
            why(&e),
            "address already in use: is unitcorn, or another server, running there?"
        );
    }

    fn why(e: &Error) -> String {
        std::error::Error::source(e).map_or_else(String::new, ToString::to_string)
    }

    #[test]
    fn the_failures_of_a_bind_say_what_to_do() {
        let fail = |bind: BindAddr| why(&open_all(&[bind], 16, Vec::new()).unwrap_err());
        // TEST-NET-1: never an address of this host.
        assert_eq!(
            fail(BindAddr::Tcp("192.0.2.1".into(), 8000)),
            "cannot assign requested address: 192.0.2.1 is not an address of this host \
             (`ip addr` lists them; 0.0.0.0 listens on all of them)"
        );
        let missing = PathBuf::from("/nonexistent-unitcorn-dir/app.sock");
        assert_eq!(
            fail(BindAddr::Unix(missing)),
            "no such file or directory: the directory /nonexistent-unitcorn-dir does not exist"
        );
        // Root may bind any port: the refusal an unprivileged start gets, as the OS says it.
        let denied = Why::new(
            &BindAddr::Tcp("127.0.0.1".into(), 80),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            denied.to_string(),
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE \
             (AmbientCapabilities= in the unit, or a port of 1024 or more behind a proxy)"
        );
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert_eq!(
            fail(BindAddr::Unix(long)),
            "the path is 125 bytes long, and a unix socket's path is at most 107: use a \
             shorter one (under /run, say)"
        );
    }

    #[test]
    fn an_fd_name_systemd_did_not_pass_is_named() {
        let bind = BindAddr::Fd(FdRef::Name("web".into()));
        let e = open_all(&[bind], 16, Vec::new()).unwrap_err();
        assert!(!e.is_addr_in_use());
        assert!(
            e.to_string()
                .contains("systemd passed no socket named \"web\"")
        );
    }
}
