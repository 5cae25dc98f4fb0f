//! What the coverage-guided fuzz targets (fuzz/, cargo fuzz) reach of the parsers, behind
//! the `fuzzing` feature: the same items src/properties.rs uses from inside the crate.
//! Not an API: hidden from the docs, absent from every normal build, and shaped only for
//! the targets (plain strings and bytes where the crate's own types are private).

use std::path::Path;

/// The PROXY protocol header parser.
pub mod proxy_protocol {
    pub use crate::worker::proxy_protocol::{Header, Mode, Parsed, V1_MAX, V2_MAX, parse};
}

pub use crate::config::bind::{self, BindAddr};
pub use crate::logging::{AccessFormat, AccessRecord};
pub use crate::worker::strict::{Scanner, Verdict};

use crate::config::settings::SETTINGS;
use crate::config::table::Scope;

/// Every setting's name, in the table's order.
pub fn setting_names() -> Vec<&'static str> {
    SETTINGS.iter().map(|s| s.name).collect()
}

/// Whether the setting `name` may be given in the config file.
pub fn in_file(name: &str) -> bool {
    crate::config::table::find(name).is_some_and(|s| s.scope == Scope::Anywhere)
}

/// A value read as the command line reads it (`--name RAW`): the value (its Debug text)
/// and the TOML `key = …` right-hand side that `--print-config` would write for it; or
/// the operator's message.
pub fn read_cli(name: &str, raw: &str) -> Option<Result<(String, String), String>> {
    let setting = crate::config::table::find(name)?;
    Some(
        setting
            .kind
            .read_str(raw)
            .map(|v| (format!("{v:?}"), setting.kind.write_toml(&v)))
            .map_err(|p| format!("{p:?}")),
    )
}

/// The config file `text` read as the file `path`: each setting's name and value (its
/// Debug text), or the operator's message.
pub fn read_file(path: &Path, text: &str) -> Result<Vec<(&'static str, String)>, String> {
    crate::config::file::parse(path, text)
        .map(|values| {
            values
                .into_iter()
                .map(|(s, v)| (s.name, format!("{v:?}")))
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// Format one request through `format`, with the given request fields and headers.
pub fn access_line(
    format: &AccessFormat,
    method: &str,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
) -> Vec<u8> {
    let response = http::HeaderMap::new();
    let record = AccessRecord {
        remote_addr: "192.0.2.1",
        method,
        path,
        query,
        protocol: "HTTP/1.1",
        status: 200,
        body_bytes: 13,
        request_headers: headers,
        response_headers: &response,
        start: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30),
        duration: std::time::Duration::from_micros(1234),
        pid: 42,
        environ: &[("REMOTE_PORT", "40000")],
    };
    let mut out = Vec::new();
    format.format(&record, &mut out);
    out
}
