//! The PROXY protocol header parser (`proxy_protocol = v1 | v2 | auto`), in every mode:
//! - a header is decided by its own bytes: the same header from exactly its `len` bytes,
//!   and on no fewer (every shorter prefix is `Incomplete`);
//! - once decided, more bytes change nothing: each prefix of the input is `Incomplete`
//!   or decided the same way (the same header, or absent, or refused);
//! - `Incomplete` is bounded: never past the longest header (a client cannot make the
//!   worker buffer without end);
//! - `auto` reads a v1 or v2 header as the single-version mode does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api::proxy_protocol::{Mode, Parsed, V1_MAX, V2_MAX, parse};

fn same_kind(a: &Result<Parsed, String>, b: &Result<Parsed, String>) -> bool {
    match (a, b) {
        (Err(_), Err(_)) => true,
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(V2_MAX + 64)];
    for mode in [Mode::V1, Mode::V2, Mode::Auto] {
        let whole = parse(data, mode);
        match &whole {
            Ok(Parsed::Header { len, .. }) => {
                let len = *len;
                assert!(
                    len <= data.len() && len <= V1_MAX.max(V2_MAX),
                    "{mode:?}: len {len}"
                );
                assert_eq!(parse(&data[..len], mode), whole, "{mode:?}: its own bytes");
                for cut in 0..len {
                    assert_eq!(
                        parse(&data[..cut], mode),
                        Ok(Parsed::Incomplete),
                        "{mode:?}: decided on {cut} of its {len} bytes"
                    );
                }
                if mode == Mode::Auto {
                    let single = if data[0] == b'P' { Mode::V1 } else { Mode::V2 };
                    assert_eq!(parse(data, single), whole, "auto vs {single:?}");
                }
            }
            Ok(Parsed::Incomplete) => {
                assert!(
                    data.len() < V1_MAX.max(V2_MAX),
                    "{mode:?}: incomplete after {} bytes",
                    data.len()
                );
            }
            Ok(Parsed::Absent) | Err(_) => {}
        }
        for cut in 0..data.len() {
            let prefix = parse(&data[..cut], mode);
            assert!(
                prefix == Ok(Parsed::Incomplete) || same_kind(&prefix, &whole),
                "{mode:?}: {cut} bytes give {prefix:?}, all {} give {whole:?}",
                data.len()
            );
        }
    }
});
