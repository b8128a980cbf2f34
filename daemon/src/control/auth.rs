//! Who may use the control socket: peer credentials against the configured groups.
//!
//! Contract:
//! - An [`AccessPolicy`] is resolved once from the two group names of `[control]` (and again on
//!   every reload); a group that does not exist is not fatal: that tier is simply empty, and
//!   [`AccessPolicy::warnings`] says so in a sentence the daemon logs.
//! - [`AccessPolicy::access_for`] turns kernel-reported peer credentials (`SO_PEERCRED`) into an
//!   [`Access`]: uid 0 is admin; otherwise the peer's primary gid and supplementary groups are
//!   matched against the admin group first, then the read group. The supplementary groups come
//!   from `/proc/<pid>/status`; only when they cannot be read (or the pid no longer belongs to
//!   the peer's uid) is the group's member list, read from the group database at that moment,
//!   consulted instead.
//! - The decision itself is [`decide`], a pure function over numbers and names, so that it can
//!   be tested without touching `/etc/group` or `/proc`.
//! - [`AccessPolicy::refusal`] is the sentence a refused peer reads: who they are and which
//!   group to ask for.

use std::fmt;

use nix::unistd::{Group, Uid, User};

use super::protocol::Access;

/// A group resolved from the group database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub name: String,
    pub gid: u32,
    /// User names listed as members in the group database (not users whose primary group it is).
    pub members: Vec<String>,
}

/// Who is on the other end of a connection, as the kernel reports it at `connect` time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    /// The peer's pid at connect time; `None` when the kernel did not report one.
    pub pid: Option<i32>,
}

impl fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

/// What is known about a peer when the decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFacts<'a> {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the peer process; `None` when they could not be read.
    pub groups: Option<&'a [u32]>,
    /// The peer's user name, used only for the member-list fallback.
    pub user: Option<&'a str>,
}

/// The access decision, without any I/O.
///
/// When the supplementary groups are known they are the truth: a process that dropped its
/// groups (a sandboxed unit, `setpriv --clear-groups`) must not regain access through its user
/// name. Only when they are unknown does the group's member list stand in for them.
pub fn decide(
    facts: &PeerFacts<'_>,
    admin: Option<&GroupRef>,
    read: Option<&GroupRef>,
    root_is_admin: bool,
) -> Access {
    if root_is_admin && facts.uid == 0 {
        return Access::Admin;
    }
    let in_group = |group: &GroupRef| -> bool {
        if facts.gid == group.gid {
            return true;
        }
        match facts.groups {
            Some(groups) => groups.contains(&group.gid),
            None => facts
                .user
                .is_some_and(|user| group.members.iter().any(|m| m == user)),
        }
    };
    if admin.is_some_and(in_group) {
        return Access::Admin;
    }
    if read.is_some_and(in_group) {
        return Access::Read;
    }
    Access::None
}

/// The configured groups, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    admin: Option<GroupRef>,
    read: Option<GroupRef>,
    admin_name: String,
    read_name: String,
    /// Always true in production; tests that run as root switch it off to exercise the
    /// group tiers with their own credentials.
    root_is_admin: bool,
    warnings: Vec<String>,
}

impl AccessPolicy {
    /// Resolves both group names from the group database. Never fails: a missing group, or a
    /// group database that cannot be read, leaves that tier empty and adds a warning.
    pub fn from_names(admin_group: &str, read_group: &str) -> AccessPolicy {
        let mut warnings = Vec::new();
        let admin = lookup_group(
            admin_group,
            "nobody but root can change things",
            &mut warnings,
        );
        let read = lookup_group(
            read_group,
            "only root and the admin group can use certvakt",
            &mut warnings,
        );
        AccessPolicy {
            admin,
            read,
            admin_name: admin_group.to_owned(),
            read_name: read_group.to_owned(),
            root_is_admin: true,
            warnings,
        }
    }

    /// A policy from already resolved groups (the names are taken from them, or the defaults
    /// when a tier is empty). Used by tests and by callers that resolved groups themselves.
    pub fn from_groups(admin: Option<GroupRef>, read: Option<GroupRef>) -> AccessPolicy {
        let admin_name = admin
            .as_ref()
            .map_or_else(|| "certvakt-admin".to_owned(), |g| g.name.clone());
        let read_name = read
            .as_ref()
            .map_or_else(|| "certvakt".to_owned(), |g| g.name.clone());
        AccessPolicy {
            admin,
            read,
            admin_name,
            read_name,
            root_is_admin: true,
            warnings: Vec::new(),
        }
    }

    /// Test-only: let uid 0 be judged by its groups like anyone else, so that a test suite
    /// running as root can exercise the read tier and refusals.
    #[cfg(test)]
    pub(crate) fn without_root_rule(mut self) -> AccessPolicy {
        self.root_is_admin = false;
        self
    }

    /// Sentences about groups that could not be resolved, for the daemon to log.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// The configured admin group name.
    pub fn admin_name(&self) -> &str {
        &self.admin_name
    }

    /// The configured read group name.
    pub fn read_name(&self) -> &str {
        &self.read_name
    }

    /// The access that needs no lookup at all: root's. `None` means [`access_for`] must look
    /// the peer's groups up. Lets the control server admit root without waiting for the
    /// lookups of other peers.
    ///
    /// [`access_for`]: AccessPolicy::access_for
    pub fn access_without_lookup(&self, peer: &PeerCredentials) -> Option<Access> {
        (self.root_is_admin && peer.uid == 0).then_some(Access::Admin)
    }

    /// What this peer may do. Reads `/proc/<pid>/status` and, when needed, the user database;
    /// both can block (NSS may ask LDAP), so async callers run this on a blocking thread.
    pub fn access_for(&self, peer: &PeerCredentials) -> Access {
        if let Some(access) = self.access_without_lookup(peer) {
            return access;
        }
        let groups = peer.pid.and_then(|pid| supplementary_groups(pid, peer.uid));
        // The user name is only needed when the member lists stand in for unknown groups.
        let user = match groups {
            Some(_) => None,
            None => user_name(peer.uid),
        };
        let facts = PeerFacts {
            uid: peer.uid,
            gid: peer.gid,
            groups: groups.as_deref(),
            user: user.as_deref(),
        };
        // When the member lists stand in, read them now: a member added since the policy was
        // resolved (`usermod -aG`) must not wait for a reload.
        let (admin, read) = match groups {
            Some(_) => (None, None),
            None => (fresh(&self.admin), fresh(&self.read)),
        };
        decide(
            &facts,
            admin.as_ref().or(self.admin.as_ref()),
            read.as_ref().or(self.read.as_ref()),
            self.root_is_admin,
        )
    }

    /// The sentence a refused peer reads.
    pub fn refusal(&self, peer: &PeerCredentials) -> String {
        refusal_text(
            peer.uid,
            user_name(peer.uid).as_deref(),
            &self.read_name,
            &self.admin_name,
        )
    }

    /// Who may do what a request of `needs` requires, for "forbidden" messages:
    /// `root or group certvakt-admin`.
    pub fn who_may(&self, needs: Access) -> String {
        match needs {
            Access::Admin => format!("root or group {}", self.admin_name),
            Access::Read | Access::None => {
                format!("root or group {} or {}", self.read_name, self.admin_name)
            }
        }
    }
}

/// The refusal sentence, from numbers and names.
pub fn refusal_text(uid: u32, user: Option<&str>, read_name: &str, admin_name: &str) -> String {
    let who = match user {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    };
    format!(
        "{who} may not use certvakt: ask for membership of group {read_name} (read) or {admin_name} (change), then log in again"
    )
}

fn lookup_group(name: &str, consequence: &str, warnings: &mut Vec<String>) -> Option<GroupRef> {
    match Group::from_name(name) {
        Ok(Some(group)) => Some(GroupRef {
            name: group.name,
            gid: group.gid.as_raw(),
            members: group.mem,
        }),
        Ok(None) => {
            warnings.push(format!(
                "group {name} does not exist, so {consequence} through the control socket: create it with `groupadd --system {name}` or set another group in [control]"
            ));
            None
        }
        Err(errno) => {
            warnings.push(format!(
                "group {name} could not be looked up ({errno}), so {consequence} through the control socket until the next reload"
            ));
            None
        }
    }
}

/// The group as the group database lists it now; `None` if it cannot be read (the caller
/// keeps the list resolved before).
fn fresh(group: &Option<GroupRef>) -> Option<GroupRef> {
    let known = group.as_ref()?;
    let now = Group::from_gid(nix::unistd::Gid::from_raw(known.gid)).ok()??;
    Some(GroupRef {
        name: known.name.clone(),
        gid: known.gid,
        members: now.mem,
    })
}

fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The supplementary groups of `pid`, if that process still runs as `uid`.
///
/// `SO_PEERCRED` reports the pid at connect time; by the time we read `/proc` the peer may have
/// exited and the pid been reused. Checking that the process still has the peer's real or
/// effective uid keeps a reused pid of another user from lending us its groups.
fn supplementary_groups(pid: i32, uid: u32) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let status = parse_proc_status(&text)?;
    if !status.uids.contains(&uid) {
        return None;
    }
    Some(status.groups)
}

/// The parts of `/proc/<pid>/status` that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    /// Real, effective, saved and filesystem uid.
    pub uids: Vec<u32>,
    pub groups: Vec<u32>,
}

/// Parses the `Uid:` and `Groups:` lines; `None` if either is missing or malformed.
pub fn parse_proc_status(text: &str) -> Option<ProcStatus> {
    let mut uids = None;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uids = Some(parse_numbers(rest)?);
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = Some(parse_numbers(rest)?);
        }
    }
    Some(ProcStatus {
        uids: uids?,
        groups: groups?,
    })
}

fn parse_numbers(text: &str) -> Option<Vec<u32>> {
    text.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// The gid of the current process, for tests that need a group the test process is in.
#[cfg(test)]
pub(crate) fn current_gid() -> u32 {
    nix::unistd::Gid::current().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, gid: u32, members: &[&str]) -> GroupRef {
        GroupRef {
            name: name.into(),
            gid,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn facts<'a>(
        uid: u32,
        gid: u32,
        groups: Option<&'a [u32]>,
        user: Option<&'a str>,
    ) -> PeerFacts<'a> {
        PeerFacts {
            uid,
            gid,
            groups,
            user,
        }
    }

    #[test]
    fn root_is_admin_without_any_group() {
        assert_eq!(
            decide(&facts(0, 0, Some(&[]), None), None, None, true),
            Access::Admin
        );
        // With the rule off (tests only), root is judged by its groups.
        assert_eq!(
            decide(&facts(0, 0, Some(&[]), None), None, None, false),
            Access::None
        );
    }

    #[test]
    fn primary_gid_grants_the_tier() {
        let admin = group("certvakt-admin", 990, &[]);
        let read = group("certvakt", 991, &[]);
        assert_eq!(
            decide(
                &facts(1000, 990, Some(&[]), None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Admin
        );
        assert_eq!(
            decide(
                &facts(1000, 991, Some(&[]), None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Read
        );
        assert_eq!(
            decide(
                &facts(1000, 1000, Some(&[]), None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::None
        );
    }

    #[test]
    fn supplementary_groups_grant_the_tier_and_admin_wins() {
        let admin = group("certvakt-admin", 990, &[]);
        let read = group("certvakt", 991, &[]);
        assert_eq!(
            decide(
                &facts(1000, 1000, Some(&[27, 991]), None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Read
        );
        assert_eq!(
            decide(
                &facts(1000, 1000, Some(&[991, 990]), None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Admin
        );
    }

    #[test]
    fn member_lists_only_stand_in_for_unknown_groups() {
        let admin = group("certvakt-admin", 990, &["bob"]);
        let read = group("certvakt", 991, &["alice", "bob"]);
        // Groups unknown: the member lists decide.
        assert_eq!(
            decide(
                &facts(1000, 1000, None, Some("alice")),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Read
        );
        assert_eq!(
            decide(
                &facts(1001, 1001, None, Some("bob")),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::Admin
        );
        assert_eq!(
            decide(
                &facts(1002, 1002, None, Some("eve")),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::None
        );
        assert_eq!(
            decide(
                &facts(1002, 1002, None, None),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::None
        );
        // Groups known and without the group: the member list does not override them.
        assert_eq!(
            decide(
                &facts(1000, 1000, Some(&[27]), Some("alice")),
                Some(&admin),
                Some(&read),
                true
            ),
            Access::None
        );
    }

    #[test]
    fn missing_groups_leave_their_tier_empty() {
        let read = group("certvakt", 991, &[]);
        assert_eq!(
            decide(
                &facts(1000, 990, Some(&[990]), None),
                None,
                Some(&read),
                true
            ),
            Access::None
        );
        assert_eq!(
            decide(&facts(1000, 991, Some(&[]), None), None, Some(&read), true),
            Access::Read
        );
        assert_eq!(
            decide(&facts(1000, 991, Some(&[]), None), None, None, true),
            Access::None
        );
    }

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nFDSize:\t256\nGroups:\t4 24 27 991 \nNStgid:\t42\n";
        assert_eq!(
            parse_proc_status(text),
            Some(ProcStatus {
                uids: vec![1000, 1000, 1000, 1000],
                groups: vec![4, 24, 27, 991],
            })
        );
        // No supplementary groups at all is an empty list, not "unknown".
        let empty = "Uid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(
            parse_proc_status(empty),
            Some(ProcStatus {
                uids: vec![0, 0, 0, 0],
                groups: vec![],
            })
        );
        assert_eq!(parse_proc_status("Uid:\t1000\n"), None);
        assert_eq!(parse_proc_status("Uid:\tx\nGroups:\t1\n"), None);
    }

    #[test]
    fn refusal_names_user_and_groups() {
        assert_eq!(
            refusal_text(1000, Some("alice"), "certvakt", "certvakt-admin"),
            "uid 1000 (alice) may not use certvakt: ask for membership of group certvakt (read) or certvakt-admin (change), then log in again"
        );
        assert_eq!(
            refusal_text(4242, None, "r", "a"),
            "uid 4242 may not use certvakt: ask for membership of group r (read) or a (change), then log in again"
        );
    }

    #[test]
    fn missing_group_is_a_warning_not_an_error() {
        let policy = AccessPolicy::from_names(
            "certvakt-test-no-such-group-a",
            "certvakt-test-no-such-group-b",
        );
        let warnings = policy.warnings();
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("group certvakt-test-no-such-group-a does not exist"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with("group certvakt-test-no-such-group-b does not exist"),
            "{}",
            warnings[1]
        );
        let stranger = PeerCredentials {
            uid: 4_000_000,
            gid: 4_000_000,
            pid: None,
        };
        assert_eq!(policy.access_for(&stranger), Access::None);
        let root = PeerCredentials {
            uid: 0,
            gid: 0,
            pid: None,
        };
        assert_eq!(policy.access_for(&root), Access::Admin);
        // Root needs no lookup; anyone else does.
        assert_eq!(policy.access_without_lookup(&root), Some(Access::Admin));
        assert_eq!(policy.access_without_lookup(&stranger), None);
        assert_eq!(
            policy.without_root_rule().access_without_lookup(&root),
            None
        );
    }

    #[test]
    fn own_process_groups_are_read_from_proc() {
        // The current process is alive and runs as its own uid, so /proc must yield its groups.
        let pid = std::process::id() as i32;
        let uid = Uid::current().as_raw();
        assert!(supplementary_groups(pid, uid).is_some());
        // A uid the process does not have: treated as a reused pid, groups unknown.
        assert_eq!(supplementary_groups(pid, uid.wrapping_add(12_345)), None);
    }
}
