//! Giving up root once the listening sockets are bound (`process.user`,
//! `process.group`): the supplementary groups, the group, then the user,
//! in that order (after `setuid` the others are no longer allowed), and
//! a check that root cannot be taken back.
//!
//! nix calls the C library's `setgroups`, `setgid` and `setuid`, which
//! change every thread of the process (the raw system calls change only
//! the calling one, and the signal thread is already running by now).

use nix::unistd::{self, Gid, Group, Uid, User};
use proxy_core::config::Process;

/// Who the process runs as after [`drop_privileges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAs {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

impl std::fmt::Display for RunningAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (uid {}, gid {})",
            self.user, self.group, self.uid, self.gid
        )
    }
}

/// Switches to `process.user` and `process.group` if set; `Ok(None)` if
/// neither is. Fails, saying why, when the user or group does not exist
/// or the process may not switch (not started as root).
pub fn drop_privileges(process: &Process) -> Result<Option<RunningAs>, String> {
    let Some(user_name) = process.user.as_deref() else {
        return match &process.group {
            Some(_) => Err("process.group is set without process.user".into()),
            None => Ok(None),
        };
    };
    let user = lookup_user(user_name)?;
    let group = match process.group.as_deref() {
        Some(name) => lookup_group(name)?,
        None => Group::from_gid(user.gid)
            .ok()
            .flatten()
            .unwrap_or_else(|| unnamed_group(user.gid)),
    };
    let already = unistd::getuid() == user.uid
        && unistd::geteuid() == user.uid
        && unistd::getgid() == group.gid;
    if !already {
        if !unistd::geteuid().is_root() {
            return Err(format!(
                "cannot switch to user {user_name} (process.user): not started as root \
                 (running as uid {})",
                unistd::geteuid()
            ));
        }
        let fail = |what: &str, e: nix::Error| format!("cannot switch to {user_name}: {what}: {e}");
        unistd::setgroups(&[group.gid]).map_err(|e| fail("setgroups", e))?;
        unistd::setgid(group.gid).map_err(|e| fail("setgid", e))?;
        unistd::setuid(user.uid).map_err(|e| fail("setuid", e))?;
        if !user.uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(format!(
                "switched to {user_name}, but root could be taken back: refusing to run"
            ));
        }
    }
    Ok(Some(RunningAs {
        user: user.name,
        uid: user.uid.as_raw(),
        group: group.name,
        gid: group.gid.as_raw(),
    }))
}

/// [`drop_privileges`] for a binary's start-up: says on stderr whom it
/// now runs as, or why it cannot, in which case the process must not go
/// on (false).
pub fn drop_at_start(program: &str, process: &Process) -> bool {
    match drop_privileges(process) {
        Ok(Some(running)) => {
            eprintln!("running as {running}");
            true
        }
        Ok(None) => true,
        Err(e) => {
            eprintln!("{program}: {e}");
            false
        }
    }
}

/// A user by name, or by number (which need not have a name).
fn lookup_user(name: &str) -> Result<User, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map(|u| {
            Some(u.unwrap_or_else(|| User {
                name: uid.to_string(),
                passwd: Default::default(),
                uid: Uid::from_raw(uid),
                gid: Gid::from_raw(uid),
                gecos: Default::default(),
                dir: Default::default(),
                shell: Default::default(),
            }))
        }),
        Err(_) => User::from_name(name),
    };
    found
        .map_err(|e| format!("cannot look up user {name} (process.user): {e}"))?
        .ok_or_else(|| format!("no user {name} on this system (process.user)"))
}

fn lookup_group(name: &str) -> Result<Group, String> {
    let found = match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid))
            .map(|g| Some(g.unwrap_or_else(|| unnamed_group(Gid::from_raw(gid))))),
        Err(_) => Group::from_name(name),
    };
    found
        .map_err(|e| format!("cannot look up group {name} (process.group): {e}"))?
        .ok_or_else(|| format!("no group {name} on this system (process.group)"))
}

fn unnamed_group(gid: Gid) -> Group {
    Group {
        name: gid.to_string(),
        passwd: Default::default(),
        gid,
        mem: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_without_a_user() {
        assert_eq!(drop_privileges(&Process::default()), Ok(None));
    }

    #[test]
    fn a_group_alone_is_an_error() {
        let p = Process {
            user: None,
            group: Some("nogroup".into()),
            workers: None,
        };
        assert!(drop_privileges(&p)
            .unwrap_err()
            .contains("without process.user"));
    }

    #[test]
    fn unknown_names_say_which_key() {
        let p = Process {
            user: Some("no-such-user-here".into()),
            group: None,
            workers: None,
        };
        let e = drop_privileges(&p).unwrap_err();
        assert!(
            e.contains("no user no-such-user-here") && e.contains("process.user"),
            "{e}"
        );
        let current = unistd::getuid().as_raw().to_string();
        let p = Process {
            user: Some(current),
            group: Some("no-such-group-here".into()),
            workers: None,
        };
        let e = drop_privileges(&p).unwrap_err();
        assert!(e.contains("no group no-such-group-here"), "{e}");
    }

    /// Asking to be who the process already is works without root (and
    /// changes nothing), which is also how a test can call it safely.
    #[test]
    fn staying_as_the_current_user_is_allowed() {
        let uid = unistd::getuid().as_raw();
        let gid = unistd::getgid().as_raw();
        let p = Process {
            user: Some(uid.to_string()),
            group: Some(gid.to_string()),
            workers: None,
        };
        let running = drop_privileges(&p).unwrap().unwrap();
        assert_eq!((running.uid, running.gid), (uid, gid));
    }
}
