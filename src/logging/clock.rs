//! Wall-clock stamps for log lines, in local time like gunicorn's `strftime`, formatted once a
//! second per thread.
//!
//! Not here: reading the clock for durations (the worker measures those with `Instant`).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of `[27/Nov/2026:14:30:01 +0000]`, the access log's `%(t)s`.
pub(crate) const ACCESS_LEN: usize = 28;
/// Length of `[2026-11-27 14:30:01 +0000]`, the error log's time prefix.
pub(crate) const ERROR_LEN: usize = 27;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// One second of wall-clock time, broken down in some time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    year: i64,
    /// 1..=12
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// Seconds east of UTC (`%z`).
    offset: i64,
}

impl Civil {
    /// `secs` since the epoch in UTC, computed by hand (days-to-civil, proleptic Gregorian): the
    /// fallback when the C library cannot convert, and the reference the tests check against.
    /// `YYYY-MM-DD` (the man pages' date).
    #[cfg(test)]
    pub(crate) fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    pub(crate) fn utc(secs: i64) -> Civil {
        Civil::shifted(secs, 0)
    }

    /// `secs` since the epoch, as UTC plus `offset` seconds.
    fn shifted(secs: i64, offset: i64) -> Civil {
        let local = secs + offset;
        let days = local.div_euclid(86_400);
        let of_day = local.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days: eras of 400 years starting on 1 March.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month: month as u8,
            day: day as u8,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
            offset,
        }
    }

    /// `secs` since the epoch in the process's local time zone (TZ, else /etc/localtime), as
    /// gunicorn's `time.strftime` prints it.
    pub(crate) fn local(secs: i64) -> Civil {
        match local_offset(secs) {
            Some(offset) => Civil::shifted(secs, offset),
            None => Civil::utc(secs),
        }
    }

    /// `[27/Nov/2026:14:30:01 +0000]` (Apache's `%t`).
    fn access_stamp(&self) -> [u8; ACCESS_LEN] {
        let mut s = *b"[dd/Mon/yyyy:hh:mm:ss +zzzz]";
        put2(&mut s[1..3], self.day);
        s[4..7].copy_from_slice(MONTHS[usize::from(self.month - 1)]);
        put4(&mut s[8..12], self.year);
        put2(&mut s[13..15], self.hour);
        put2(&mut s[16..18], self.minute);
        put2(&mut s[19..21], self.second);
        put_offset(&mut s[22..27], self.offset);
        s
    }

    /// `[2026-11-27 14:30:01 +0000]` (gunicorn's error log `datefmt`).
    fn error_stamp(&self) -> [u8; ERROR_LEN] {
        let mut s = *b"[yyyy-mm-dd hh:mm:ss +zzzz]";
        put4(&mut s[1..5], self.year);
        put2(&mut s[6..8], self.month);
        put2(&mut s[9..11], self.day);
        put2(&mut s[12..14], self.hour);
        put2(&mut s[15..17], self.minute);
        put2(&mut s[18..20], self.second);
        put_offset(&mut s[21..26], self.offset);
        s
    }
}

fn put2(dst: &mut [u8], v: u8) {
    dst[0] = b'0' + v / 10 % 10;
    dst[1] = b'0' + v % 10;
}

/// Four digits; a year outside 0..=9999 is clamped rather than widening the fixed-size stamp.
fn put4(dst: &mut [u8], year: i64) {
    let y = year.clamp(0, 9999) as u16;
    dst[0] = b'0' + (y / 1000) as u8;
    dst[1] = b'0' + (y / 100 % 10) as u8;
    dst[2] = b'0' + (y / 10 % 10) as u8;
    dst[3] = b'0' + (y % 10) as u8;
}

/// `%z`: `+hhmm` / `-hhmm`; the seconds of historical offsets are dropped, as strftime does.
fn put_offset(dst: &mut [u8], offset: i64) {
    dst[0] = if offset < 0 { b'-' } else { b'+' };
    let a = offset.unsigned_abs();
    put2(&mut dst[1..3], (a / 3600 % 100) as u8);
    put2(&mut dst[3..5], (a / 60 % 60) as u8);
}

/// The local zone's offset from UTC at `secs`, from the C library (which follows TZ and
/// /etc/localtime, as Python does), or `None` when it cannot convert that time.
fn local_offset(secs: i64) -> Option<i64> {
    // time_t and tm_gmtoff are 64-bit on the 64-bit Linux targets unitcorn is built for.
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals for the duration of the call; localtime_r writes
    // only into `tm` and is thread-safe. It reads TZ (getenv) only on its first call, which
    // `prime` makes happen while the process is still single-threaded.
    let ok = unsafe { libc::localtime_r(&t, &mut tm) };
    if ok.is_null() {
        None
    } else {
        Some(tm.tm_gmtoff)
    }
}

/// Loads the time zone now. Call while the process is single-threaded (logging set-up in the
/// master, before the first fork): glibc reads TZ with getenv on the first conversion only, and
/// that read must not race a `setenv` from another thread (e.g. Python's `os.environ`).
pub(crate) fn prime() {
    let _ = local_offset(unix_secs(SystemTime::now()));
}

/// Whole seconds since the epoch (floor, so times before 1970 stay in their own second).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// Both stamps of one second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamps {
    secs: i64,
    /// `[27/Nov/2026:14:30:01 +0000]`
    pub(crate) access: [u8; ACCESS_LEN],
    /// `[2026-11-27 14:30:01 +0000]`
    pub(crate) error: [u8; ERROR_LEN],
}

thread_local! {
    // Per thread rather than shared so that a log line never waits on a lock (and so no lock can
    // be held at fork); a thread formats a new second at most once.
    static LAST: Cell<Option<Stamps>> = const { Cell::new(None) };
}

/// The stamps of the second `secs` (since the epoch), local time, cached for repeated calls.
pub(crate) fn stamps(secs: i64) -> Stamps {
    let cached = LAST.try_with(Cell::get).ok().flatten();
    if let Some(s) = cached.filter(|s| s.secs == secs) {
        return s;
    }
    let c = Civil::local(secs);
    let s = Stamps {
        secs,
        access: c.access_stamp(),
        error: c.error_stamp(),
    };
    // Fails only while the thread is being torn down; the stamp is still right, just uncached.
    let _ = LAST.try_with(|last| last.set(Some(s)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2026-11-27 14:30:01 UTC.
    const SAMPLE: i64 = 1_795_789_801;

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn utc_breakdown_matches_known_dates() {
        assert_eq!(
            text(&Civil::utc(SAMPLE).access_stamp()),
            "[27/Nov/2026:14:30:01 +0000]"
        );
        assert_eq!(
            text(&Civil::utc(SAMPLE).error_stamp()),
            "[2026-11-27 14:30:01 +0000]"
        );
        assert_eq!(
            text(&Civil::utc(0).error_stamp()),
            "[1970-01-01 00:00:00 +0000]"
        );
        // A leap day, and the last second before 2000.
        assert_eq!(
            text(&Civil::utc(951_782_400).access_stamp()),
            "[29/Feb/2000:00:00:00 +0000]"
        );
        assert_eq!(
            text(&Civil::utc(946_684_799).access_stamp()),
            "[31/Dec/1999:23:59:59 +0000]"
        );
        assert_eq!(
            text(&Civil::utc(-1).error_stamp()),
            "[1969-12-31 23:59:59 +0000]"
        );
    }

    #[test]
    fn offsets_print_as_strftime_z() {
        let east = Civil::shifted(SAMPLE, 5 * 3600 + 30 * 60);
        assert_eq!(text(&east.error_stamp()), "[2026-11-27 20:00:01 +0530]");
        let west = Civil::shifted(SAMPLE, -8 * 3600);
        assert_eq!(text(&west.access_stamp()), "[27/Nov/2026:06:30:01 -0800]");
    }

    #[test]
    fn local_time_agrees_with_utc_shifted_by_the_c_library_offset() {
        // Independent of the machine's zone: localtime_r's fields must be UTC plus its offset.
        let offset = local_offset(SAMPLE).expect("localtime_r converts 2026");
        let mut tm = Civil::local(SAMPLE);
        assert_eq!(tm.offset, offset);
        tm.offset = 0;
        assert_eq!(tm, Civil::utc(SAMPLE + offset));
    }

    #[test]
    fn stamps_are_cached_per_second_and_change_with_it() {
        let a = stamps(SAMPLE);
        let b = stamps(SAMPLE);
        assert_eq!(a.access, b.access);
        let c = stamps(SAMPLE + 1);
        assert_ne!(a.access, c.access);
        assert_eq!(c.access, Civil::local(SAMPLE + 1).access_stamp());
    }

    #[test]
    fn unix_secs_floors() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(1)), -1);
    }
}
