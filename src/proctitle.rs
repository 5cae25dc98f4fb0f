//! Process titles, so `ps` tells the master from the workers: `unitcorn: master [app:app]`.
//!
//! Linux shows `/proc/PID/cmdline`, which is the process's own argv memory; the title is
//! written over that area (never past it: a long title is cut). The short name (`comm`,
//! 15 bytes, what `top` and `ps -o comm` show) is set too. The original arguments must be
//! read before the first title is set (`std::env::args` reads the same memory).

use std::ffi::CString;

/// Set the title to `"{base}: {role} [{app}]"`; `base` is `proc_name` or "unitcorn".
pub fn set(base: Option<&str>, role: &str, app: Option<&str>) {
    let base = base.unwrap_or("unitcorn");
    let title = match app {
        Some(app) => format!("{base}: {role} [{app}]"),
        None => format!("{base}: {role}"),
    };
    let comm: String = format!("{base}-{role}").chars().take(15).collect();
    if let Ok(comm) = CString::new(comm) {
        let _ = nix::sys::prctl::set_name(&comm);
    }
    if let Some((start, end)) = argv_area() {
        write_argv(start, end, title.as_bytes());
    }
}

/// `arg_start` and `arg_end` of this process (fields 48 and 49 of /proc/self/stat).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its ')'.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_comm.split_whitespace().skip(48 - 3);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

fn write_argv(start: usize, end: usize, title: &[u8]) {
    let len = end - start;
    let n = title.len().min(len - 1);
    // SAFETY: [start, end) is this process's argv memory as the kernel reports it: mapped,
    // writable (it is on our stack) and ours. Nothing in unitcorn keeps references into it
    // (the arguments were read into owned Strings at start-up), and we write within it.
    unsafe {
        let area = start as *mut u8;
        std::ptr::copy_nonoverlapping(title.as_ptr(), area, n);
        std::ptr::write_bytes(area.add(n), 0, len - n);
    }
}
