//! Reading one setting's value from a command-line string or a TOML value, checking it
//! against its `Kind`, and writing it back as TOML.
//!
//! This file does not know where a value came from; the caller attaches the source
//! (flag, file:line) to a `Problem` to make the operator's message.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use super::table::{Check, Kind};

/// A setting's value between parsing and the `Settings` field: one shape per `Kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Bool(bool),
    Int(u64),
    Str(String),
    List(Vec<String>),
    /// `None` of an optional setting.
    Unset,
}

/// What is wrong with a value, without saying where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Wrong type or out of range: "must be {expected}, got {got}".
    Expected { expected: String, got: String },
    /// The setting's own check refused it; a clause quoting the value.
    Invalid(String),
}

/// Conversion between `Value` and a `Settings` field type. Which impl a setting uses is
/// fixed by its field type, which must agree with its `Kind`; a test walks the whole
/// table to prove they do.
pub(crate) trait Field: Sized {
    fn to_value(&self) -> Value;
    fn from_value(value: Value) -> Self;
}

/// The panic of a table entry whose `Kind` disagrees with its field type: a bug in
/// `settings.rs`, caught by `every_setting_round_trips_through_its_field` in tests.
pub(super) fn mismatch(want: &str, got: &Value) -> ! {
    panic!("settings table: a {want} field got {got:?}; its Kind does not match its type")
}

impl Field for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::Bool(b) => b,
            other => mismatch("bool", &other),
        }
    }
}

impl Field for u64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::Int(n) => n,
            other => mismatch("u64", &other),
        }
    }
}

impl Field for u32 {
    fn to_value(&self) -> Value {
        Value::Int(u64::from(*self))
    }
    fn from_value(value: Value) -> Self {
        match value {
            // A u32 setting's Kind caps it at u32::MAX (checked by a table test).
            Value::Int(n) => u32::try_from(n).unwrap_or_else(|_| mismatch("u32", &Value::Int(n))),
            other => mismatch("u32", &other),
        }
    }
}

impl Field for String {
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::Str(s) => s,
            other => mismatch("String", &other),
        }
    }
}

impl Field for PathBuf {
    fn to_value(&self) -> Value {
        Value::Str(self.to_string_lossy().into_owned())
    }
    fn from_value(value: Value) -> Self {
        PathBuf::from(String::from_value(value))
    }
}

impl Field for Vec<String> {
    fn to_value(&self) -> Value {
        Value::List(self.clone())
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::List(items) => items,
            other => mismatch("Vec<String>", &other),
        }
    }
}

impl<T: Field> Field for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Unset,
        }
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::Unset => None,
            other => Some(T::from_value(other)),
        }
    }
}

impl Kind {
    /// What a value must be, as the end of "setting "x" must be …".
    pub(crate) fn expected(&self) -> String {
        match *self {
            Kind::Flag => "true or false".into(),
            Kind::Int { min: 0, max } if max >= u64::from(u32::MAX) => {
                "a non-negative integer".into()
            }
            Kind::Int { min: 1, max } if max >= u64::from(u32::MAX) => "a positive integer".into(),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Umask => "a file mode mask from 0 to 0o777 (like 0o022 or \"0022\")".into(),
            Kind::Text(_) | Kind::OptText(_) => "a string".into(),
            Kind::Path | Kind::OptPath => "a non-empty path".into(),
            Kind::Repeated(_) => "a string or a list of strings".into(),
            Kind::CommaList(_) => "a comma-separated string or a list of strings".into(),
            Kind::Pairs => {
                "a table of names to strings (like { \"X-FORWARDED-PROTO\" = \"https\" })".into()
            }
        }
    }

    fn expected_got(&self, got: String) -> Problem {
        Problem::Expected {
            expected: self.expected(),
            got,
        }
    }

    /// Reads a value given as one string: a command-line value, or a default taken
    /// from the environment. `Kind::Flag` is read by the caller (a flag has no value).
    pub(crate) fn read_str(self, raw: &str) -> Result<Value, Problem> {
        match self {
            Kind::Flag => match raw.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(self.expected_got(quote(raw))),
            },
            Kind::Int { min, max } => {
                // Python's int() also takes surrounding blanks; so do we.
                match raw.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Value::Int(n)),
                    _ => Err(self.expected_got(quote(raw))),
                }
            }
            Kind::Umask => match parse_umask(raw) {
                Some(n) if n <= 0o777 => Ok(Value::Int(n)),
                _ => Err(self.expected_got(quote(raw))),
            },
            Kind::Text(check) | Kind::OptText(check) => match check {
                Some(check) => check(raw).map(Value::Str).map_err(Problem::Invalid),
                None => Ok(Value::Str(raw.to_owned())),
            },
            Kind::Path | Kind::OptPath => {
                if raw.is_empty() {
                    Err(self.expected_got(quote(raw)))
                } else {
                    Ok(Value::Str(raw.to_owned()))
                }
            }
            Kind::Repeated(check) => check_all(check, [raw]),
            Kind::CommaList(check) => check_all(check, split_commas(raw)),
            Kind::Pairs => split_commas(raw)
                .map(|pair| match pair.split_once('=') {
                    Some((name, value)) => pair_item(name, value),
                    None => Err(Problem::Invalid(format!("{pair:?} is not NAME=VALUE"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(sorted_pairs),
        }
    }

    /// Reads the values of a repeated flag (`-b A -b B`): they replace, as a whole, what
    /// a lower source gave.
    pub(crate) fn read_strs(self, raws: &[String]) -> Result<Value, Problem> {
        match self {
            Kind::Repeated(check) => check_all(check, raws.iter().map(String::as_str)),
            _ => match raws.last() {
                Some(last) => self.read_str(last),
                None => Err(self.expected_got("nothing".into())),
            },
        }
    }

    /// Reads a value from the config file. On error, also returns the span to point at
    /// (the list item at fault, or the whole value).
    pub(crate) fn read_toml(
        self,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Value, (Problem, Range<usize>)> {
        let span = value.span();
        let at = |p: Problem| (p, span.clone());
        match (self, value.get_ref()) {
            (Kind::Flag, DeValue::Boolean(b)) => Ok(Value::Bool(*b)),
            (Kind::Int { min, max }, DeValue::Integer(i)) => {
                match i128::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if n >= i128::from(min) && n <= i128::from(max) => {
                        // In range of u64 because max is a u64.
                        Ok(Value::Int(n as u64))
                    }
                    _ => Err(at(self.expected_got(i.to_string()))),
                }
            }
            (Kind::Umask, DeValue::Integer(i)) => {
                match u64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if n <= 0o777 => Ok(Value::Int(n)),
                    _ => Err(at(self.expected_got(i.to_string()))),
                }
            }
            (Kind::Umask, DeValue::String(s)) => self.read_str(s).map_err(at),
            (Kind::Text(_) | Kind::OptText(_) | Kind::Path | Kind::OptPath, DeValue::String(s)) => {
                self.read_str(s).map_err(at)
            }
            (Kind::Repeated(check), DeValue::String(s)) => check_all(check, [&**s]).map_err(at),
            (Kind::CommaList(check), DeValue::String(s)) => {
                check_all(check, split_commas(s)).map_err(at)
            }
            (Kind::Repeated(check) | Kind::CommaList(check), DeValue::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    let DeValue::String(s) = item.get_ref() else {
                        return Err((self.expected_got(describe(item.get_ref())), item.span()));
                    };
                    let s = s.trim();
                    out.push(check(s).map_err(|why| (Problem::Invalid(why), item.span()))?);
                }
                Ok(Value::List(out))
            }
            (Kind::Pairs, DeValue::String(s)) => self.read_str(s).map_err(at),
            (Kind::Pairs, DeValue::Table(table)) => {
                let mut out = Vec::with_capacity(table.len());
                for (name, value) in table.iter() {
                    let DeValue::String(s) = value.get_ref() else {
                        return Err((self.expected_got(describe(value.get_ref())), value.span()));
                    };
                    out.push(pair_item(name.get_ref(), s).map_err(|p| (p, value.span()))?);
                }
                sorted_pairs(out).map_err(at)
            }
            (_, other) => Err(at(self.expected_got(describe(other)))),
        }
    }

    /// Writes a value as a TOML value (the right-hand side of `key = …`).
    pub(crate) fn write_toml(self, value: &Value) -> String {
        match (self, value) {
            (Kind::Umask, Value::Int(n)) => format!("0o{n:03o}"),
            (Kind::Pairs, Value::List(items)) => {
                let pairs: Vec<String> = items
                    .iter()
                    .filter_map(|item| item.split_once('='))
                    .map(|(name, value)| format!("{} = {}", toml_key(name), toml_string(value)))
                    .collect();
                if pairs.is_empty() {
                    "{}".into()
                } else {
                    format!("{{ {} }}", pairs.join(", "))
                }
            }
            (_, Value::Bool(b)) => b.to_string(),
            (_, Value::Int(n)) => n.to_string(),
            (_, Value::Str(s)) => toml_string(s),
            (_, Value::List(items)) => {
                let items: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
                format!("[{}]", items.join(", "))
            }
            // The caller writes unset values as a comment; there is no TOML null.
            (_, Value::Unset) => String::new(),
        }
    }
}

/// A table has no order: keep the pairs sorted, so that equal tables compare equal. A name
/// given twice (after upper-casing) is refused: which one wins would be a guess, and a
/// TOML table cannot hold it (so `--print-config` could not write it).
pub(super) fn sorted_pairs(mut pairs: Vec<String>) -> Result<Value, Problem> {
    pairs.sort();
    let name = |pair: &str| pair.split_once('=').map_or(pair, |(n, _)| n).to_owned();
    if let Some(twice) = pairs.windows(2).find(|w| name(&w[0]) == name(&w[1])) {
        return Err(Problem::Invalid(format!(
            "{:?} is given twice",
            name(&twice[0])
        )));
    }
    Ok(Value::List(pairs))
}

/// One `NAME=VALUE` of a `Kind::Pairs`, the name upper-cased and not empty.
pub(super) fn pair_item(name: &str, value: &str) -> Result<String, Problem> {
    let name = name.trim();
    if name.is_empty() || name.contains('=') {
        return Err(Problem::Invalid(format!("{name:?} is not a valid name")));
    }
    Ok(format!("{}={}", name.to_ascii_uppercase(), value.trim()))
}

/// A TOML basic string, escaped by the toml crate so any text survives a round trip.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: a one-line basic string whatever the text (the toml crate writes a string
/// with a line end as a multi-line string, which is no key).
fn toml_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The items of a list setting, each trimmed (as gunicorn's validate_string strips it, and
/// as a TOML list's items are), then checked.
pub(super) fn check_all<'a>(
    check: Check,
    raws: impl IntoIterator<Item = &'a str>,
) -> Result<Value, Problem> {
    raws.into_iter()
        .map(|raw| check(raw.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::List)
        .map_err(Problem::Invalid)
}

/// gunicorn's comma lists: items are trimmed, empty items dropped ("a, b," is [a, b]).
fn split_commas(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A string value as it appears in a message: quoted, control characters escaped.
pub(crate) fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A TOML value as it appears in "got …".
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => quote(s),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "a list".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// Reads a umask as gunicorn does: Python's `int(x, 0)` ("18", "0o22", "0x12", "0b10010",
/// "0"), after turning a leading "0" followed by a digit into "0o" ("0022" is octal, as
/// it is in a shell's `umask`).
pub(crate) fn parse_umask(raw: &str) -> Option<u64> {
    let s = raw.trim();
    let lower = s.to_ascii_lowercase();
    let (digits, radix) = if let Some(rest) = lower.strip_prefix("0x") {
        (rest, 16)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (rest, 8)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (rest, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_name_with_a_line_end_prints_as_a_key_toml_reads() {
        // Found by fuzz/'s config_value target: the toml crate wrote the name "A\nB" as
        // a multi-line string, which no TOML reader takes as a key.
        let setting = crate::config::table::find("secure_scheme_headers").unwrap();
        let value = setting.kind.read_str("A\nB\"\\\u{1}=https").unwrap();
        let text = format!(
            "secure_scheme_headers = {}\n",
            setting.kind.write_toml(&value)
        );
        let read = crate::config::file::parse(std::path::Path::new("a.toml"), &text).unwrap();
        assert_eq!(read[0].1, value, "{text}");
    }

    #[test]
    fn a_pair_name_given_twice_is_refused() {
        // Found by fuzz/'s config_value target: "X=a,X=b" was taken on the command line,
        // then printed as a TOML table with a duplicate key, which the file refuses.
        let setting = crate::config::table::find("secure_scheme_headers").unwrap();
        for raw in ["X=a,X=b", "x=a, X=a"] {
            let refused = setting.kind.read_str(raw);
            assert!(
                matches!(&refused, Err(Problem::Invalid(why)) if why.contains("\"X\" is given twice")),
                "{raw}: {refused:?}"
            );
        }
        let text = "secure_scheme_headers = { \"x\" = \"a\", \"X\" = \"b\" }\n";
        assert!(crate::config::file::parse(std::path::Path::new("a.toml"), text).is_err());
        assert!(setting.kind.read_str("X=a,Y=b").is_ok());
    }

    #[test]
    fn a_repeated_value_reads_the_same_from_the_command_line_and_the_file() {
        // Found by fuzz/'s config_value target: `--reload-extra-files " 42 "` kept the
        // blanks, the file's `[" 42 "]` dropped them, so --print-config changed the value.
        let setting = crate::config::table::find("reload_extra_files").unwrap();
        let cli = setting.kind.read_str(" 42 ").unwrap();
        assert_eq!(cli, Value::List(vec!["42".into()]));
        for text in [
            "reload_extra_files = [\" 42 \"]\n",
            "reload_extra_files = \" 42 \"\n",
        ] {
            let read = crate::config::file::parse(std::path::Path::new("a.toml"), text).unwrap();
            assert_eq!(read[0].1, cli, "{text}");
        }
    }

    #[test]
    fn umask_reads_like_gunicorn() {
        assert_eq!(parse_umask("0"), Some(0));
        assert_eq!(parse_umask("18"), Some(18));
        assert_eq!(parse_umask("0o22"), Some(0o22));
        assert_eq!(parse_umask("0O22"), Some(0o22));
        assert_eq!(parse_umask("0022"), Some(0o22));
        assert_eq!(parse_umask("022"), Some(0o22));
        assert_eq!(parse_umask("0x12"), Some(18));
        assert_eq!(parse_umask("0b10010"), Some(18));
        assert_eq!(parse_umask(" 0o77 "), Some(0o77));
        assert_eq!(parse_umask("09"), None);
        assert_eq!(parse_umask("0o"), None);
        assert_eq!(parse_umask("-1"), None);
        assert_eq!(parse_umask("abc"), None);
        assert_eq!(parse_umask(""), None);
    }

    #[test]
    fn int_kind_checks_its_range() {
        let k = Kind::Int { min: 1, max: 10 };
        assert_eq!(k.read_str("3"), Ok(Value::Int(3)));
        assert_eq!(k.read_str(" 3 "), Ok(Value::Int(3)));
        assert_eq!(
            k.read_str("0"),
            Err(Problem::Expected {
                expected: "an integer from 1 to 10".into(),
                got: "\"0\"".into()
            })
        );
        assert!(k.read_str("11").is_err());
        assert!(k.read_str("-1").is_err());
        assert!(k.read_str("2.5").is_err());
    }

    #[test]
    fn comma_list_trims_and_drops_empty_items() {
        let k = Kind::CommaList(|s| Ok(s.to_owned()));
        assert_eq!(
            k.read_str(" a, b,,c "),
            Ok(Value::List(vec!["a".into(), "b".into(), "c".into()]))
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        let k = Kind::Text(None);
        for text in [
            "plain",
            "a\"b\\c",
            "it's",
            "'\"",
            "line\nbreak",
            "tab\t\u{7f}",
        ] {
            let written = format!("x = {}", k.write_toml(&Value::Str(text.into())));
            let table = toml::de::DeTable::parse(&written).unwrap();
            let read = table.get_ref().get("x").unwrap();
            assert_eq!(read.get_ref().as_str(), Some(text), "{written}");
        }
        assert_eq!(
            Kind::Umask.write_toml(&Value::Int(0o22)),
            "0o022",
            "umask is written in octal, as operators read it"
        );
    }
}
