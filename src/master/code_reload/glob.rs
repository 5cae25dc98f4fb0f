//! `reload_extra_files` patterns: shell globs (`*`, `?`, `[abc]`, `[!abc]`, `**` for any
//! number of directories), relative to `chdir`, matched by the `globset` crate. What is ours:
//! where matches can appear (the base directory, and its subdirectories for a recursive
//! pattern) and Python's `glob` rule that a wildcard does not match a name starting with a dot
//! (an editor's `.app.py.swp` is not a template), which globset does not have.
//!
//! globset also reads `{a,b}` as either name; a pattern it cannot read (`{a`, `[z-a]`) is an
//! error, for the caller to report.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// How many directories a recursive pattern may cover (watched or scanned).
pub const MAX_DIRS: usize = 4096;

#[derive(Debug, Clone)]
pub struct Glob {
    /// The whole absolute pattern.
    matcher: GlobMatcher,
    /// The pattern's components below `base` that start with a dot: the only ones that may
    /// match a hidden name.
    dotted: Vec<GlobMatcher>,
    /// The deepest directory without a wildcard: where matches can appear.
    base: PathBuf,
    /// A wildcard before the last component: matches may be in subdirectories of `base`.
    recursive: bool,
}

/// Whether a component is a pattern for globset (`{a,b}` included), not a literal name.
fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// One pattern as Python's `glob` reads it: `*` and `?` stop at `/`, a backslash is an
/// ordinary character, an unclosed `[` is a literal one.
fn compile(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(false)
        .allow_unclosed_class(true)
        .build()?
        .compile_matcher())
}

impl Glob {
    /// `pattern` relative to `chdir` (or absolute); `..` steps up from `chdir`.
    pub fn new(pattern: &str, chdir: &Path) -> Result<Glob, globset::Error> {
        let mut parts: Vec<String> = Vec::new();
        for c in chdir.join(pattern).components() {
            match c {
                Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        let literal = parts.iter().take_while(|p| !has_wildcard(p)).count();
        // A pattern without wildcard is one file: its directory is the base.
        let base_len = literal.min(parts.len().saturating_sub(1));
        let base = std::iter::once("/".to_owned())
            .chain(parts[..base_len].iter().cloned())
            .collect();
        let dotted = parts[base_len..]
            .iter()
            .filter(|p| p.starts_with('.'))
            .map(|p| compile(p))
            .collect::<Result<_, _>>()?;
        Ok(Glob {
            matcher: compile(&format!("/{}", parts.join("/")))?,
            dotted,
            base,
            recursive: parts.len() > base_len + 1,
        })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// Whether `path` (absolute) matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.matcher.is_match(path) && self.hidden_names_are_named(path)
    }

    /// Python's rule: a name below the base that starts with a dot matches only a pattern
    /// component that starts with one too (`.env`, `.*rc`), never `*`, `?`, `[...]` or `**`.
    fn hidden_names_are_named(&self, path: &Path) -> bool {
        let Ok(below) = path.strip_prefix(&self.base) else {
            return false;
        };
        below.components().all(|c| match c {
            Component::Normal(name) => {
                !is_hidden(name) || self.dotted.iter().any(|d| d.is_match(name))
            }
            _ => true,
        })
    }

    /// The directories where matches can appear: `base`, and its subdirectories (hidden
    /// ones and `__pycache__` left out) when the pattern is recursive; at most `MAX_DIRS`.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut out = vec![self.base.clone()];
        if !self.recursive {
            return out;
        }
        let mut next = 0;
        while next < out.len() && out.len() < MAX_DIRS {
            let dir = out[next].clone();
            next += 1;
            out.extend(subdirectories(&dir).into_iter().take(MAX_DIRS - out.len()));
        }
        out
    }

    /// The files matching now.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in self.directories() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| !t.is_dir()) && self.matches(&path) {
                    out.push(path);
                }
            }
        }
        out
    }
}

/// The subdirectories a recursive pattern looks into.
pub fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            !is_hidden(&name) && name != "__pycache__"
        })
        .map(|e| e.path())
        .collect()
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p, Path::new("/srv/app")).unwrap()
    }

    #[test]
    fn wildcards_match_one_name() {
        let g = glob("templates/*.html");
        assert!(g.matches(Path::new("/srv/app/templates/index.html")));
        assert!(!g.matches(Path::new("/srv/app/templates/index.htm")));
        assert!(!g.matches(Path::new("/srv/app/templates/sub/index.html")));
        assert!(!g.matches(Path::new("/srv/app/templates/.index.html")));
        assert_eq!(g.base(), Path::new("/srv/app/templates"));
        assert!(!g.recursive());
        assert!(glob("conf/app-?.[ty]ml").matches(Path::new("/srv/app/conf/app-1.yml")));
        assert!(!glob("conf/[!a]*").matches(Path::new("/srv/app/conf/a.ini")));
        assert!(glob("conf/[a-c]*").matches(Path::new("/srv/app/conf/b.ini")));
    }

    #[test]
    fn double_star_spans_directories() {
        let g = glob("templates/**/*.html");
        assert!(g.matches(Path::new("/srv/app/templates/index.html")));
        assert!(g.matches(Path::new("/srv/app/templates/a/b/index.html")));
        assert!(!g.matches(Path::new("/srv/app/templates/.git/x.html")));
        assert!(!g.matches(Path::new("/srv/app/static/x.html")));
        assert!(g.recursive());
        assert_eq!(g.base(), Path::new("/srv/app/templates"));
    }

    #[test]
    fn a_plain_path_is_one_file_and_absolute_patterns_stay() {
        let g = glob("settings.ini");
        assert!(g.matches(Path::new("/srv/app/settings.ini")));
        assert!(!g.matches(Path::new("/srv/app/other.ini")));
        assert_eq!(g.base(), Path::new("/srv/app"));
        let g = Glob::new("/etc/app/*.toml", Path::new("/srv/app")).unwrap();
        assert!(g.matches(Path::new("/etc/app/a.toml")));
        assert_eq!(g.base(), Path::new("/etc/app"));
    }

    #[test]
    fn star_backtracks() {
        let m = |p: &str, name: &str| glob(p).matches(&Path::new("/srv/app").join(name));
        assert!(m("*a*b", "xaxxab"));
        assert!(!m("*a*b", "xaxxa"));
        assert!(m("x*", "x"));
        assert!(m("a[", "a["));
    }

    #[test]
    fn hidden_names_match_only_a_pattern_that_starts_with_a_dot() {
        assert!(glob(".env").matches(Path::new("/srv/app/.env")));
        assert!(glob("conf/.*rc").matches(Path::new("/srv/app/conf/.toolrc")));
        assert!(!glob("conf/*rc").matches(Path::new("/srv/app/conf/.toolrc")));
        assert!(glob("**/.env").matches(Path::new("/srv/app/a/b/.env")));
        assert!(!glob("**/.env").matches(Path::new("/srv/app/.git/b/.env")));
        assert!(!glob("?env").matches(Path::new("/srv/app/.env")));
        // A hidden directory in the literal part is named by the pattern.
        let g = Glob::new("*.ini", Path::new("/srv/.app")).unwrap();
        assert!(g.matches(Path::new("/srv/.app/a.ini")));
    }

    #[test]
    fn pythons_reading_backslashes_and_parent_directories() {
        assert!(glob(r"a\*").matches(Path::new(r"/srv/app/a\b")));
        let g = glob("../shared/*.ini");
        assert_eq!(g.base(), Path::new("/srv/shared"));
        assert!(g.matches(Path::new("/srv/shared/a.ini")));
    }

    #[test]
    fn a_pattern_globset_cannot_read_is_an_error() {
        let err = Glob::new("conf/{a,b", Path::new("/srv/app")).unwrap_err();
        assert!(err.to_string().contains("{a,b"), "{err}");
        assert!(glob("conf/{a,b}.ini").matches(Path::new("/srv/app/conf/b.ini")));
        let g = glob("{conf,etc}/*.ini");
        assert_eq!(g.base(), Path::new("/srv/app"));
        assert!(g.recursive());
        assert!(g.matches(Path::new("/srv/app/etc/a.ini")));
    }
}
