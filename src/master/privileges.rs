//! Dropping root: `user`, `group`, `initgroups`, `keep_capabilities`. The master binds
//! (or receives) its sockets as whoever started it, then becomes the configured user
//! before it imports the app or forks a worker, so no code of the app ever runs as root.

use std::ffi::CString;
use std::path::Path;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};

use super::Error;
use crate::config::Settings;

/// Who the master becomes.
pub struct Target {
    pub uid: Uid,
    pub gid: Gid,
    name: String,
    group_name: String,
    initgroups: bool,
    keep: CapsHashSet,
}

/// The user and group the settings name, resolved; `None` when `user` is unset (then
/// `group` alone is refused: a process cannot sensibly change group and stay root). The
/// error names the setting that failed and where it was set.
pub fn resolve(settings: &Settings) -> Result<Option<Target>, Error> {
    let by = |setting| settings.provenance(setting);
    let keep = settings
        .keep_capabilities
        .iter()
        .map(|name| {
            name.parse::<Capability>()
                .map_err(|_| Error::capability(name).set_by(by("keep_capabilities")))
        })
        .collect::<Result<CapsHashSet, _>>()?;
    let Some(user) = &settings.user else {
        if let Some(group) = &settings.group {
            return Err(Error::group_without_user(group).set_by(by("group")));
        }
        return Ok(None);
    };
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    }
    .map_err(|e| Error::user_database("user", user, e).set_by(by("user")))?;
    let (uid, name, primary) = match (found, user.parse::<u32>()) {
        (Some(u), _) => (u.uid, u.name, Some(u.gid)),
        // A numeric uid without a passwd entry is valid (containers do that).
        (None, Ok(uid)) => (Uid::from_raw(uid), uid.to_string(), None),
        (None, Err(_)) => return Err(Error::no_such_user(user).set_by(by("user"))),
    };
    let gid = match &settings.group {
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) => {
                Group::from_name(group)
                    .map_err(|e| Error::user_database("group", group, e).set_by(by("group")))?
                    .ok_or_else(|| Error::no_such_group(group).set_by(by("group")))?
                    .gid
            }
        },
        None => primary.ok_or_else(|| Error::no_primary_group(user).set_by(by("user")))?,
    };
    let group_name = Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name);
    Ok(Some(Target {
        uid,
        gid,
        name,
        group_name,
        initgroups: settings.initgroups,
        keep,
    }))
}

/// Make files the master opened as root (the error log, unix sockets) the target's, so
/// that it can still reopen (USR1) or remove them after the drop, as gunicorn does.
pub fn hand_over_file(target: &Target, path: &Path) -> Result<(), Error> {
    nix::unistd::chown(path, Some(target.uid), Some(target.gid))
        .map_err(|e| Error::hand_over(path, &target.name, e))
}

/// Become `target` for good: supplementary groups, gid, uid (real, effective and saved),
/// every capability but `keep_capabilities` gone from every set, no_new_privs. Any step
/// that fails is an error: half-dropped privileges are never served with.
pub fn drop_to(target: &Target) -> Result<(), Error> {
    let already = Uid::current() == target.uid
        && Uid::effective() == target.uid
        && Gid::current() == target.gid
        && Gid::effective() == target.gid;
    if !already {
        switch_ids(target)?;
    }
    keep_only(target)?;
    log_identity(target);
    Ok(())
}

impl Target {
    /// The error for a step of the switch that failed.
    fn failed(&self, step: &'static str, e: &dyn std::fmt::Display) -> Error {
        let who = (
            self.name.as_str(),
            self.uid.as_raw(),
            self.group_name.as_str(),
            self.gid.as_raw(),
        );
        Error::switch(who, step, e.to_string())
    }
}

/// As root: shrink the bounding set, then groups, gid and uid.
fn switch_ids(target: &Target) -> Result<(), Error> {
    let fail = |step, e: &dyn std::fmt::Display| target.failed(step, e);
    if !Uid::effective().is_root() {
        let uid = format!("unitcorn runs as uid {}", Uid::effective());
        return Err(fail("not running as root", &uid));
    }
    // The bounding set can only shrink while we still hold CAP_SETPCAP (as root).
    for cap in caps::runtime::thread_all_supported() {
        if !target.keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| fail("dropping the bounding set", &e))?;
        }
    }
    if !target.keep.is_empty() {
        nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("PR_SET_KEEPCAPS", &e))?;
    }
    if target.initgroups {
        let name = CString::new(target.name.as_str()).map_err(|e| fail("user name", &e))?;
        nix::unistd::initgroups(&name, target.gid).map_err(|e| fail("initgroups", &e))?;
    } else {
        nix::unistd::setgroups(&[]).map_err(|e| fail("setgroups", &e))?;
    }
    nix::unistd::setresgid(target.gid, target.gid, target.gid)
        .map_err(|e| fail("setresgid", &e))?;
    nix::unistd::setresuid(target.uid, target.uid, target.uid)
        .map_err(|e| fail("setresuid", &e))?;
    if !target.keep.is_empty() {
        let _ = nix::sys::prctl::set_keepcaps(false);
    }
    Ok(())
}

/// Exactly `keep_capabilities` left, nothing inheritable, no_new_privs; then check that
/// the switch took.
fn keep_only(target: &Target) -> Result<(), Error> {
    let fail = |step, e: &dyn std::fmt::Display| target.failed(step, e);
    // setuid cleared the effective and permitted sets already unless keepcaps was on;
    // set them explicitly so that what stays is exactly `keep`, and nothing inheritable.
    caps::set(None, CapSet::Permitted, &target.keep)
        .map_err(|e| fail("setting the permitted capabilities", &e))?;
    caps::set(None, CapSet::Effective, &target.keep)
        .map_err(|e| fail("setting the effective capabilities", &e))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| fail("clearing the inheritable capabilities", &e))?;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| fail("clearing the ambient capabilities", &e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("PR_SET_NO_NEW_PRIVS", &e))?;
    let effective = caps::read(None, CapSet::Effective)
        .map_err(|e| fail("reading the capabilities back", &e))?;
    if Uid::effective() != target.uid || Gid::effective() != target.gid || effective != target.keep
    {
        let (uid, gid) = (Uid::effective(), Gid::effective());
        let now = format!("uid {uid} gid {gid} capabilities {effective:?}");
        return Err(fail("the switch did not take", &now));
    }
    Ok(())
}

fn log_identity(target: &Target) {
    let mut kept: Vec<String> = target.keep.iter().map(ToString::to_string).collect();
    kept.sort();
    tracing::info!(
        "running as user {} (uid {}), group {} (gid {}){}; capabilities: {}",
        target.name,
        target.uid,
        target.group_name,
        target.gid,
        if target.initgroups {
            " with its supplementary groups"
        } else {
            ""
        },
        if kept.is_empty() {
            "none".to_owned()
        } else {
            kept.join(", ")
        }
    );
}

/// Running as root with nobody to switch to: say so loudly, once, naming the fix.
pub fn warn_if_root() {
    if Uid::effective().is_root() {
        tracing::warn!(
            "unitcorn runs as root and so will the app, with every privilege of root: set \
             user (and group) to an unprivileged account, e.g. user = \"www-data\" in the \
             config or -u www-data (under systemd: User= in the unit)"
        );
    }
}
