//! Which interpreter serves the app, and bringing it up.
//!
//! The Python package runs in the venv's own interpreter, started already. The packaged
//! binary embeds the interpreter it was built with, and starts it from an explicit program
//! path: the virtualenv's `bin/python` (so `sys.executable`, `sys.prefix`, `site` and
//! `sysconfig` are the venv's, as its own interpreter gives them) or the build's Python.
//! Never from a search of `PATH`: CPython's default program name is `python3`, looked up
//! on `PATH`, and another `python3` of the same minor version there would lend the
//! embedded interpreter its prefix and so a foreign standard library.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use pyo3::ffi;

use super::Error;

/// The interpreter the binary was built with (`sys.executable` at build time).
pub const BUILT_WITH: &str = env!("UNITCORN_BUILD_PYTHON");

/// The `major.minor` of the interpreter in this process (linked into the binary, or the
/// one hosting the Python package).
pub fn version() -> (u32, u32) {
    // SAFETY: Py_GetVersion may be called before Py_Initialize; it returns a pointer to a
    // static NUL-terminated string ("3.11.2 (main, ...)").
    let text = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    parse_version(&text).unwrap_or((0, 0))
}

/// `3.11` of `3.11.2 (main...)` or of `3.11.2`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A virtualenv the configuration names, and which setting named it.
#[derive(Debug, Clone, Copy)]
pub struct NamedVenv<'a> {
    pub path: &'a Path,
    /// `virtualenv` (a setting) or `VIRTUAL_ENV` (the environment).
    pub named_by: VenvSource<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenvSource<'a> {
    /// The setting, and where it was set when that is known (not yet while the Python
    /// config file is read).
    Setting(Option<&'a crate::config::Provenance>),
    Environment,
}

impl NamedVenv<'_> {
    fn describe(&self) -> String {
        match self.named_by {
            VenvSource::Setting(Some(set_by)) => {
                format!("virtualenv {} ({set_by})", self.path.display())
            }
            VenvSource::Setting(None) => format!("virtualenv = \"{}\"", self.path.display()),
            VenvSource::Environment => format!("VIRTUAL_ENV={}", self.path.display()),
        }
    }

    /// The venv's interpreter, checked: it exists, is a venv, and is of the Python that
    /// runs here (`serving` is that interpreter, for the message).
    pub fn check(&self, serving: &str) -> Result<PathBuf, Error> {
        let what = self.describe();
        let fail = |message: String| Err(Error::virtualenv(message));
        if !self.path.is_dir() {
            return fail(match self.named_by {
                VenvSource::Setting(_) => format!(
                    "{what}: no such directory: point the setting at the app's virtualenv, or \
                     remove it"
                ),
                VenvSource::Environment => format!(
                    "{what}: no such directory: unset VIRTUAL_ENV, or point it at the app's \
                     virtualenv"
                ),
            });
        }
        let cfg = self.path.join("pyvenv.cfg");
        let text = match std::fs::read_to_string(&cfg) {
            Ok(text) => text,
            Err(_) => {
                return fail(format!(
                    "{what}: not a virtualenv (no pyvenv.cfg): make one with `python3 -m venv {}`",
                    self.path.display()
                ));
            }
        };
        let theirs = text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            matches!(key.trim(), "version" | "version_info")
                .then(|| parse_version(value.trim()))
                .flatten()
        });
        let ours = version();
        if let Some(theirs) = theirs
            && theirs != ours
        {
            return fail(format!(
                "{what} is Python {}.{}, but this unitcorn serves Python {}.{} ({serving}): \
                 install unitcorn into that virtualenv ({venv}/bin/pip install unitcorn) and \
                 start {venv}/bin/unitcorn, or recreate the virtualenv with `{serving} -m venv`",
                theirs.0,
                theirs.1,
                ours.0,
                ours.1,
                venv = self.path.display(),
            ));
        }
        Ok(self.path.join("bin").join("python"))
    }
}

/// Whether an interpreter runs in this process already (the Python package's case, or a
/// second call).
pub fn is_initialized() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time, with or without the GIL.
    unsafe { ffi::Py_IsInitialized() != 0 }
}

/// Start the embedded interpreter as `program` would start (its home, prefix and venv
/// come from that path), then release the GIL as the rest of the core expects.
#[cfg(not(feature = "abi3"))]
pub fn initialize(program: &Path) -> Result<(), Error> {
    use std::ffi::CString;
    use std::mem::MaybeUninit;
    use std::os::unix::ffi::OsStrExt;

    let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| {
        Error::start(format!(
            "cannot start Python as {}: the path has a NUL byte",
            program.display()
        ))
    })?;
    let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
    let c = config.as_mut_ptr();
    // SAFETY: PyConfig_InitPythonConfig fills every field of `config` before any is read;
    // each PyConfig_SetBytesString copies `path` into memory the config owns, freed by
    // PyConfig_Clear once Py_InitializeFromConfig has read it. This runs on one thread,
    // before any other Python call in this process.
    let status = unsafe {
        ffi::PyConfig_InitPythonConfig(c);
        // The master and the workers install their own handlers (signals.rs).
        (*c).install_signal_handlers = 0;
        (*c).parse_argv = 0;
        let mut status = ffi::PyConfig_SetBytesString(c, &raw mut (*c).program_name, path.as_ptr());
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::PyConfig_SetBytesString(c, &raw mut (*c).executable, path.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(c);
        }
        ffi::PyConfig_Clear(c);
        status
    };
    // SAFETY: reads the status Python returned; its strings are static.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 {
        let text = |p: *const std::ffi::c_char| {
            if p.is_null() {
                return String::new();
            }
            // SAFETY: a non-null PyStatus string is a static NUL-terminated C string.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        return Err(Error::start(format!(
            "cannot start Python as {}: {} {}",
            program.display(),
            text(status.err_msg),
            text(status.func)
        )));
    }
    // SAFETY: the interpreter is initialised and this thread holds the GIL; release it,
    // as PyO3's own initialisation does, so that `Python::attach` takes it where needed.
    unsafe { ffi::PyEval_SaveThread() };
    Ok(())
}

/// The Python package is built against the stable ABI only: it never embeds.
#[cfg(feature = "abi3")]
pub fn initialize(program: &Path) -> Result<(), Error> {
    Err(Error::start(format!(
        "this build of unitcorn is the Python package: it runs inside an interpreter and \
         cannot start {} itself; run it as `python -m unitcorn`",
        program.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_python_writes_them() {
        assert_eq!(parse_version("3.11.2 (main, Mar 13 2023)"), Some((3, 11)));
        assert_eq!(parse_version("3.13.0"), Some((3, 13)));
        assert_eq!(parse_version("3.9"), Some((3, 9)));
        assert_eq!(parse_version("garbage"), None);
    }
}
