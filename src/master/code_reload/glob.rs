//! `reload_extra_files` patterns: shell globs (`*`, `?`, `[abc]`, `[!abc]`, `**` for any
//! number of directories), relative to `chdir`. As in Python's `glob`, a wildcard does not
//! match a name starting with a dot (an editor's `.app.py.swp` is not a template).

use std::path::{Component, Path, PathBuf};

/// How many directories a recursive pattern may cover (watched or scanned).
pub const MAX_DIRS: usize = 4096;

#[derive(Debug, Clone)]
pub struct Glob {
    /// The absolute pattern, one entry a path component.
    parts: Vec<String>,
    /// The deepest directory without a wildcard: where matches can appear.
    base: PathBuf,
    /// A wildcard before the last component: matches may be in subdirectories of `base`.
    recursive: bool,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Glob {
    pub fn new(pattern: &str, chdir: &Path) -> Glob {
        let full = chdir.join(pattern);
        let parts: Vec<String> = full
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let literal = parts.iter().take_while(|p| !has_wildcard(p)).count();
        // A pattern without wildcard is one file: its directory is the base.
        let base_len = literal.min(parts.len().saturating_sub(1));
        let base = std::iter::once("/".to_owned())
            .chain(parts[..base_len].iter().cloned())
            .collect();
        let recursive = parts.len() > base_len + 1;
        Glob {
            parts,
            base,
            recursive,
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn recursive(&self) -> bool {
        self.recursive
    }

    /// Whether `path` (absolute) matches.
    pub fn matches(&self, path: &Path) -> bool {
        let names: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let parts: Vec<&str> = self.parts.iter().map(String::as_str).collect();
        match_parts(&parts, &names)
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
            let name = name.to_string_lossy();
            !name.starts_with('.') && name != "__pycache__"
        })
        .map(|e| e.path())
        .collect()
}

fn match_parts(parts: &[&str], names: &[&str]) -> bool {
    match parts.split_first() {
        None => names.is_empty(),
        Some((&"**", rest)) => (0..=names.len()).any(|skip| {
            names[..skip].iter().all(|n| !n.starts_with('.')) && match_parts(rest, &names[skip..])
        }),
        Some((part, rest)) => match names.split_first() {
            Some((name, names)) => match_name(part, name) && match_parts(rest, names),
            None => false,
        },
    }
}

/// One path component against one pattern component.
fn match_name(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') && has_wildcard(pattern) {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fnmatch(&p, &n)
}

/// `*`, `?` and `[...]` against a whole name (iterative, with one backtrack point).
fn fnmatch(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(p, pi, n[ni]),
            Some(c) if *c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at `p[start]`: the index after it if `c` is in it, else None. An
/// unclosed `[` is a literal `[`.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let first = i;
    let mut found = false;
    while i < p.len() && (p[i] != ']' || i == first) {
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            found |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            found |= p[i] == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return (c == '[').then_some(start + 1);
    }
    (found != negated).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p, Path::new("/srv/app"))
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
        let g = Glob::new("/etc/app/*.toml", Path::new("/srv/app"));
        assert!(g.matches(Path::new("/etc/app/a.toml")));
        assert_eq!(g.base(), Path::new("/etc/app"));
    }

    #[test]
    fn star_backtracks() {
        let m = |p: &str, n: &str| {
            fnmatch(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*a*b", "xaxxab"));
        assert!(!m("*a*b", "xaxxa"));
        assert!(m("*", ""));
        assert!(m("a[", "a["));
    }
}
