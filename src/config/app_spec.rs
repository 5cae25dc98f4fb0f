//! The app to serve, as gunicorn names it: `module:callable`, `module:factory()`,
//! `module:factory('arg')`, or `pkg.module` (the object is then `application`).
//!
//! This only parses. Importing the module and evaluating the object (a factory call
//! included) is the Python layer's job; the object is checked just enough to catch typos.

use std::fmt;
use std::str::FromStr;

/// The object gunicorn looks up when the spec names only a module.
pub const DEFAULT_OBJECT: &str = "application";

/// A parsed app spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// A dotted module path, e.g. `myproject.wsgi`.
    pub module: String,
    /// The expression to evaluate in that module: a name, or a call of a name.
    pub object: String,
}

impl AppSpec {
    /// Parses `module[:object]`. The error quotes the spec and says what is wrong.
    pub fn parse(s: &str) -> Result<AppSpec, String> {
        let bad = |why: &str| format!("app {s:?} {why} (expected MODULE:NAME, e.g. app:app)");
        let (module, object) = match s.split_once(':') {
            Some((module, object)) => (module, object),
            None => (s, DEFAULT_OBJECT),
        };
        if module.is_empty() {
            return Err(bad("names no module"));
        }
        if !module.split('.').all(is_identifier) {
            return Err(bad(&format!(
                "has a module {module:?} that is not a dotted Python name"
            )));
        }
        if object.is_empty() {
            return Err(bad("names no object after ':'"));
        }
        // gunicorn accepts a name or a call of a name with literal arguments; Python
        // checks the arguments when it evaluates the call.
        let name = match object.split_once('(') {
            Some((name, _)) if object.ends_with(')') => name,
            Some(_) => return Err(bad("has a call with no closing ')'")),
            None => object,
        };
        if !is_identifier(name.trim_end()) {
            return Err(bad(&format!(
                "has an object {object:?} that is neither a name nor a call like factory()"
            )));
        }
        Ok(AppSpec {
            module: module.to_owned(),
            object: object.to_owned(),
        })
    }
}

impl FromStr for AppSpec {
    type Err = String;

    /// Same as [`AppSpec::parse`].
    fn from_str(s: &str) -> Result<AppSpec, String> {
        AppSpec::parse(s)
    }
}

impl fmt::Display for AppSpec {
    /// `module:object`, which `parse` reads back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.module, self.object)
    }
}

/// A Python identifier (Unicode letters and digits allowed, as Python allows them).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The settings table's check for `wsgi_app`: the spec must parse; it is kept as written.
pub(crate) fn check(s: &str) -> Result<String, String> {
    AppSpec::parse(s).map(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(module: &str, object: &str) -> AppSpec {
        AppSpec {
            module: module.into(),
            object: object.into(),
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(AppSpec::parse("app:app"), Ok(spec("app", "app")));
        assert_eq!(
            AppSpec::parse("myproject.wsgi"),
            Ok(spec("myproject.wsgi", "application"))
        );
        assert_eq!(
            AppSpec::parse("pkg.mod:create_app()"),
            Ok(spec("pkg.mod", "create_app()"))
        );
        assert_eq!(
            AppSpec::parse("app:create_app('prod', debug=False)"),
            Ok(spec("app", "create_app('prod', debug=False)"))
        );
        assert_eq!(AppSpec::parse("_m2:_App1"), Ok(spec("_m2", "_App1")));
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        assert!(AppSpec::parse("").unwrap_err().contains("no module"));
        assert!(AppSpec::parse(":app").unwrap_err().contains("no module"));
        assert!(AppSpec::parse("app:").unwrap_err().contains("no object"));
        assert_eq!(
            AppSpec::parse("my-app:app").unwrap_err(),
            r#"app "my-app:app" has a module "my-app" that is not a dotted Python name (expected MODULE:NAME, e.g. app:app)"#
        );
        assert!(
            AppSpec::parse("pkg..mod:app")
                .unwrap_err()
                .contains("dotted")
        );
        assert!(AppSpec::parse("1app:app").unwrap_err().contains("dotted"));
        assert!(
            AppSpec::parse("app/wsgi.py")
                .unwrap_err()
                .contains("dotted")
        );
        assert!(AppSpec::parse("app:make(").unwrap_err().contains("')'"));
        assert!(AppSpec::parse("app:a.b").unwrap_err().contains("neither"));
        assert!(AppSpec::parse("app:1x").unwrap_err().contains("neither"));
    }

    #[test]
    fn display_reads_back() {
        let s = spec("pkg.mod", "make('x')");
        assert_eq!(s.to_string(), "pkg.mod:make('x')");
        assert_eq!(s.to_string().parse::<AppSpec>(), Ok(s));
    }
}
