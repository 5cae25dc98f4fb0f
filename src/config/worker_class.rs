//! `worker_class`: where the app runs in a worker. The setting reads gunicorn's names
//! (`settings.rs`, `check_worker_class`) down to one of these; every other layer matches
//! on the enum, and the name is what `--print-config` and the hooks' `worker_class_str`
//! show, as gunicorn's short names.

use std::fmt;

use super::value::{Field, Value, mismatch};

/// The worker classes unitcorn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerClass {
    /// One request at a time per worker, or one per pool thread with `threads` above 1.
    Sync,
    /// One request per pool thread (`threads`); the same worker as `Sync`, as in gunicorn.
    Gthread,
    /// Greenlets on gevent's hub, the standard library monkey-patched.
    Gevent,
    /// An ASGI 3 app on an asyncio loop per worker.
    Asgi,
}

impl WorkerClass {
    /// Every class, in `--help`'s order.
    pub const ALL: [WorkerClass; 4] = [
        WorkerClass::Sync,
        WorkerClass::Gthread,
        WorkerClass::Gevent,
        WorkerClass::Asgi,
    ];

    /// gunicorn's short name.
    pub fn name(self) -> &'static str {
        match self {
            WorkerClass::Sync => "sync",
            WorkerClass::Gthread => "gthread",
            WorkerClass::Gevent => "gevent",
            WorkerClass::Asgi => "asgi",
        }
    }

    /// The class of a short name, exactly as `name` gives it.
    pub fn from_name(name: &str) -> Option<WorkerClass> {
        WorkerClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for WorkerClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Held in the table as its short name, which the setting's check has already made one of
/// `name`'s.
impl Field for WorkerClass {
    fn to_value(&self) -> Value {
        Value::Str(self.name().to_owned())
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::Str(s) => match WorkerClass::from_name(&s) {
                Some(class) => class,
                None => mismatch("WorkerClass", &Value::Str(s)),
            },
            other => mismatch("WorkerClass", &other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in WorkerClass::ALL {
            assert_eq!(WorkerClass::from_name(class.name()), Some(class));
            assert_eq!(class.to_string(), class.name());
            assert_eq!(WorkerClass::from_value(class.to_value()), class);
        }
        assert_eq!(WorkerClass::from_name("eventlet"), None);
    }
}
