//! The strict HTTP/1.1 scanner in front of hyper (src/worker/strict.rs), on any bytes:
//! - the verdict does not depend on how the bytes arrive: the stream scanned whole, byte
//!   by byte, and in pieces cut where the input says, gives the same verdict at the same
//!   index (without folding, which is allowed to refuse a fold split across reads);
//! - a refusal points into the bytes scanned;
//! - with `permit_obsolete_folding`, folds are joined in place, and what the join leaves
//!   is strict: the rewritten stream passes the scanner without folding. A stream without
//!   folds gets the same verdict either way.
//!
//! Input: the byte stream itself (seeds are gunicorn's request corpus); the cut points
//! are derived from it, so the corpus stays plain HTTP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unitcorn::fuzz_api::{Scanner, Verdict};

fn scan_pieces(stream: &[u8], bounds: &[usize], folding: bool) -> (Verdict, Vec<u8>) {
    let mut scanner = Scanner::new(folding);
    let mut out = stream.to_vec();
    for pair in bounds.windows(2) {
        match scanner.scan(&mut out[pair[0]..pair[1]]) {
            Verdict::Pass => {}
            Verdict::RefuseHead(at, why) => {
                assert!(pair[0] + at < pair[1], "refusal outside the piece");
                return (Verdict::RefuseHead(pair[0] + at, why), out);
            }
            Verdict::BreakBody(at, why) => {
                assert!(pair[0] + at < pair[1], "break outside the piece");
                return (Verdict::BreakBody(pair[0] + at, why), out);
            }
        }
    }
    (Verdict::Pass, out)
}

fuzz_target!(|data: &[u8]| {
    let n = data.len();
    let whole_bounds = [0, n];
    let (whole, _) = scan_pieces(data, &whole_bounds, false);

    let bytewise: Vec<usize> = (0..=n).collect();
    let (one_by_one, _) = scan_pieces(data, &bytewise, false);
    assert_eq!(whole, one_by_one, "whole vs byte by byte");

    // Cuts after every byte whose value is odd: spread over the input, and the fuzzer
    // can move them by changing bytes.
    let mut cuts: Vec<usize> = vec![0];
    cuts.extend((1..n).filter(|&i| data[i - 1] % 2 == 1));
    cuts.push(n);
    let (pieces, _) = scan_pieces(data, &cuts, false);
    assert_eq!(whole, pieces, "whole vs pieces at {cuts:?}");

    let (folded, rewritten) = scan_pieces(data, &whole_bounds, true);
    assert_eq!(rewritten.len(), n);
    let has_fold = data
        .windows(2)
        .any(|w| w[0] == b'\n' && matches!(w[1], b' ' | b'\t'));
    if !has_fold {
        assert_eq!(folded, whole, "no fold, yet folding changes the verdict");
        assert_eq!(rewritten, data, "no fold, yet the bytes changed");
    }
    if folded == Verdict::Pass {
        let (strict, _) = scan_pieces(&rewritten, &whole_bounds, false);
        assert_eq!(
            strict,
            Verdict::Pass,
            "the joined folds are not strict: {:?}",
            String::from_utf8_lossy(&rewritten)
        );
    }
});
