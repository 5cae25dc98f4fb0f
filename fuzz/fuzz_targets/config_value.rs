//! The value readers (src/config/value.rs), through every setting: a value read as the
//! command line reads it (`--name VALUE`, or the environment) and written back as TOML
//! (`--print-config`) must read back from the config file as the same value. So a config
//! printed from a command line serves the same way.
//!
//! Input: the setting's index in the table (first byte), then the command-line text.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api;

fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(fuzz_api::setting_names)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, raw)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let name = names()[which as usize % names().len()];
    let Some(Ok((value, toml))) = fuzz_api::read_cli(name, raw) else {
        return;
    };
    // Unset values are written as a comment; command-line-only settings are not in files.
    if toml.is_empty() || !fuzz_api::in_file(name) {
        return;
    }
    let file = format!("{name} = {toml}\n");
    match fuzz_api::read_file(Path::new("printed.toml"), &file) {
        Ok(values) => assert_eq!(
            values,
            vec![(name, value.clone())],
            "--{name} {raw:?} is {value}, printed as {file:?}"
        ),
        Err(message) => {
            panic!("--{name} {raw:?} is {value}, printed as {file:?}, which is refused: {message}")
        }
    }
});
