//! The service manager's variables are the master's business: a worker removes them from
//! its environment before the app can see them (an app or library that notified systemd
//! itself, or took the listening sockets, would confuse it).

/// Variables for the master only.
const MASTER_ONLY: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Call in a freshly forked worker, before it starts any thread.
pub fn remove_master_only_vars() {
    for name in MASTER_ONLY {
        // SAFETY: called right after fork, before the worker starts its runtime or app
        // threads: no other thread can read the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    // A preloaded interpreter copied the environment into os.environ at its start.
    crate::python::forget_env(&MASTER_ONLY);
}
