//! Which program this process is, as started: its arguments and how to start it again.
//!
//! unitcorn has two front doors onto one core: the packaged binary, which embeds the
//! interpreter it was built with, and the Python package, whose console script runs in the
//! app's own virtualenv and calls the core with `sys.argv`. A binary upgrade (USR2) starts
//! the new master the same way the old one was started, so this is recorded once, at entry.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// How this process was started.
#[derive(Debug, Clone)]
pub struct Program {
    /// The arguments, `args[0]` the program name; read once, before the process title
    /// writes over the argv memory.
    pub args: Vec<OsString>,
    /// What executes to start this program again.
    pub exe: PathBuf,
    /// What stands before `args[1..]` in a new start's argv: `[argv0]` for the binary,
    /// `[python, "-m", "unitcorn"]` for the Python package.
    pub argv_prefix: Vec<OsString>,
}

impl Program {
    /// The packaged binary: the process's own arguments and executable.
    pub fn binary() -> Program {
        let args: Vec<OsString> = std::env::args_os().collect();
        // /proc/self/exe, read now: a package upgrade replaces the file, and USR2 must
        // start the new one by the same path.
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/unitcorn"));
        let argv_prefix = vec![args.first().cloned().unwrap_or_else(|| "unitcorn".into())];
        Program {
            args,
            exe,
            argv_prefix,
        }
    }

    /// The Python package: `python` is `sys.executable` (the venv's own, not resolved
    /// through its symlink, so that a new start stays in the venv); `orig_argv` is
    /// `sys.orig_argv` (3.10+), the interpreter's own command line, so that a new start
    /// runs the same script with the same interpreter options (the console script, the
    /// .rpm's launcher and its `-s`); without it, `python -m unitcorn`.
    pub fn hosted(
        python: PathBuf,
        argv: Vec<OsString>,
        orig_argv: Option<Vec<OsString>>,
    ) -> Program {
        let tail = argv.len().saturating_sub(1);
        let argv_prefix = orig_argv
            .filter(|orig| {
                orig.len() > tail && orig[orig.len() - tail..] == argv[argv.len() - tail..]
            })
            .map(|mut orig| {
                orig.truncate(orig.len() - tail);
                orig
            })
            .unwrap_or_else(|| vec![python.clone().into(), "-m".into(), "unitcorn".into()]);
        let mut args = vec![OsString::from("unitcorn")];
        args.extend(argv.into_iter().skip(1));
        Program {
            argv_prefix,
            exe: python,
            args,
        }
    }

    /// The argv that starts this program again with the same arguments.
    pub fn relaunch_args(&self) -> Vec<OsString> {
        let mut argv = self.argv_prefix.clone();
        argv.extend(self.args.iter().skip(1).cloned());
        argv
    }
}

static PROGRAM: OnceLock<Program> = OnceLock::new();

/// Record how this process was started; the first call wins.
pub fn set(program: Program) {
    let _ = PROGRAM.set(program);
}

/// How this process was started (the binary's own arguments if nothing was recorded).
pub fn get() -> &'static Program {
    PROGRAM.get_or_init(Program::binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_hosted_restart_repeats_the_interpreters_own_command_line() {
        let p = Program::hosted(
            "/srv/v/bin/python".into(),
            strings(&["/usr/bin/unitcorn", "-w", "2", "app:app"]),
            Some(strings(&[
                "/usr/bin/python3",
                "-s",
                "/usr/bin/unitcorn",
                "-w",
                "2",
                "app:app",
            ])),
        );
        assert_eq!(
            p.relaunch_args(),
            strings(&[
                "/usr/bin/python3",
                "-s",
                "/usr/bin/unitcorn",
                "-w",
                "2",
                "app:app"
            ])
        );
        assert_eq!(p.args, strings(&["unitcorn", "-w", "2", "app:app"]));
    }

    #[test]
    fn without_orig_argv_a_hosted_restart_is_python_dash_m() {
        let p = Program::hosted("/srv/v/bin/python".into(), strings(&["x", "app:app"]), None);
        assert_eq!(
            p.relaunch_args(),
            strings(&["/srv/v/bin/python", "-m", "unitcorn", "app:app"])
        );
        // A command line that does not end with ours is not trusted either.
        let p = Program::hosted(
            "/srv/v/bin/python".into(),
            strings(&["x", "app:app"]),
            Some(strings(&["python", "other"])),
        );
        assert_eq!(p.relaunch_args()[1], "-m");
    }
}
