//! The bind address reader (`-b`, `bind = …`): any text is an address or a message, and
//! an address reads back from how it is written (`Display`, as `--print-config` and the
//! log show it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api::bind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(addr) = bind::parse(text) {
        let written = addr.to_string();
        assert_eq!(
            bind::parse(&written),
            Ok(addr),
            "{text:?} written as {written:?}"
        );
    }
});
