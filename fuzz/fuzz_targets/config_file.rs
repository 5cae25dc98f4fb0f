//! The TOML config file reader (`-c unitcorn.toml`): any text is settings or a message
//! that names the file (the operator must learn which file is wrong).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/unitcorn/fuzz.toml");
    if let Err(message) = fuzz_api::read_file(path, text) {
        assert!(message.contains("/etc/unitcorn/fuzz.toml"), "{message}");
    }
});
