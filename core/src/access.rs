//! Who may do what through the node's local control endpoint.
//!
//! Three grants, each given separately: `status` (read the node's status
//! and ledger), `submit` (run jobs, which spends the owner's bounty; a job
//! is cancelled by closing its connection), `admin` (decide join requests,
//! change the node). The node's own uid and root hold all three; the
//! members of one configured group hold what `control.group_may` lists.
//! The runtime learns the caller's uid and groups from the kernel (peer
//! credentials of the Unix socket) and asks [`AccessPolicy::check`]; this
//! module decides, it does no IO.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Read the node's status and its ledger.
    Status,
    /// Submit jobs (and so cancel them, by leaving).
    Submit,
    /// Approve or reject join requests; anything that changes the node.
    Admin,
}

impl Grant {
    pub const ALL: [Grant; 3] = [Grant::Status, Grant::Submit, Grant::Admin];

    /// The name used in config files and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Status => "status",
            Grant::Submit => "submit",
            Grant::Admin => "admin",
        }
    }

    /// What the grant lets a caller do, for "may not ..." messages.
    fn verb(self) -> &'static str {
        match self {
            Grant::Status => "read the status",
            Grant::Submit => "submit",
            Grant::Admin => "administer the node",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Grant::Status => 1,
            Grant::Submit => 2,
            Grant::Admin => 4,
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants(u8);

impl Grants {
    pub const NONE: Grants = Grants(0);
    pub const ALL: Grants = Grants(7);

    pub fn of(grants: &[Grant]) -> Grants {
        Grants(grants.iter().fold(0, |bits, g| bits | g.bit()))
    }

    pub fn allows(self, grant: Grant) -> bool {
        self.0 & grant.bit() != 0
    }

    /// The grants in the set, in the order of [`Grant::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Grant> {
        Grant::ALL.into_iter().filter(move |g| self.allows(*g))
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Grant::as_str).collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// A caller as the kernel identified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The group named in `control.group`, resolved to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGrant {
    pub name: String,
    pub gid: u32,
    /// What its members may do.
    pub may: Grants,
}

/// Who may do what on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The uid the node runs as.
    pub owner_uid: u32,
    pub group: Option<GroupGrant>,
}

/// A call refused; the message names the caller, the grant and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: uid {uid} may not {verb} (grant '{grant}' is for {holders})", verb = grant.verb())]
pub struct Denied {
    pub uid: u32,
    pub grant: Grant,
    /// Who holds the grant, in words.
    pub holders: String,
}

impl AccessPolicy {
    /// Whether `caller` is root or the node's own user: it may do anything,
    /// and act with the node's rights (a job with file inputs, which the
    /// node reads itself).
    pub fn is_owner(&self, caller: &Caller) -> bool {
        caller.uid == 0 || caller.uid == self.owner_uid
    }

    /// What `caller` may do: everything for root and the node's owner, the
    /// group's grants for its members, nothing for anyone else.
    pub fn grants(&self, caller: &Caller) -> Grants {
        if self.is_owner(caller) {
            return Grants::ALL;
        }
        match &self.group {
            Some(g) if caller.in_group(g.gid) => g.may,
            _ => Grants::NONE,
        }
    }

    /// Whether `caller` holds `grant`; the error says who does.
    pub fn check(&self, caller: &Caller, grant: Grant) -> Result<(), Denied> {
        if self.grants(caller).allows(grant) {
            return Ok(());
        }
        let owner = format!("the node's owner (uid {})", self.owner_uid);
        let holders = match &self.group {
            Some(g) if g.may.allows(grant) => format!("{owner} and group '{}'", g.name),
            Some(g) => format!("{owner} only; group '{}' may use {}", g.name, g.may),
            None => format!("{owner} only"),
        };
        Err(Denied {
            uid: caller.uid,
            grant,
            holders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: u32 = 1000;
    const LAB: u32 = 4242;

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    fn with_group(may: &[Grant]) -> AccessPolicy {
        AccessPolicy {
            owner_uid: OWNER,
            group: Some(GroupGrant {
                name: "lab".into(),
                gid: LAB,
                may: Grants::of(may),
            }),
        }
    }

    const OWNER_ONLY: AccessPolicy = AccessPolicy {
        owner_uid: OWNER,
        group: None,
    };

    #[test]
    fn the_owner_and_root_hold_every_grant_whatever_the_group() {
        for policy in [OWNER_ONLY, with_group(&[]), with_group(&[Grant::Status])] {
            assert_eq!(policy.grants(&caller(OWNER, 1, &[])), Grants::ALL);
            assert_eq!(policy.grants(&caller(0, 0, &[])), Grants::ALL);
            assert!(policy.is_owner(&caller(OWNER, 1, &[])));
            assert!(!policy.is_owner(&caller(2000, LAB, &[LAB])));
        }
    }

    #[test]
    fn without_a_group_another_uid_holds_nothing_even_in_the_owners_group() {
        let other = caller(65534, 65534, &[OWNER, LAB]);
        assert_eq!(OWNER_ONLY.grants(&other), Grants::NONE);
        let err = OWNER_ONLY.check(&other, Grant::Submit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: uid 65534 may not submit (grant 'submit' is for the node's owner (uid 1000) only)"
        );
    }

    #[test]
    fn a_member_by_primary_or_supplementary_group_holds_what_the_group_may() {
        let policy = with_group(&[Grant::Status, Grant::Submit]);
        for member in [caller(2000, LAB, &[]), caller(2000, 100, &[7, LAB])] {
            assert!(policy.check(&member, Grant::Status).is_ok());
            assert!(policy.check(&member, Grant::Submit).is_ok());
            let err = policy.check(&member, Grant::Admin).unwrap_err();
            assert_eq!(
                err.to_string(),
                "permission denied: uid 2000 may not administer the node (grant 'admin' is for the node's owner (uid 1000) only; group 'lab' may use status, submit)"
            );
        }
        let outsider = caller(3000, 100, &[7]);
        let err = policy.check(&outsider, Grant::Status).unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: uid 3000 may not read the status (grant 'status' is for the node's owner (uid 1000) and group 'lab')"
        );
    }

    #[test]
    fn each_grant_is_given_on_its_own() {
        for may in [
            vec![Grant::Status],
            vec![Grant::Submit],
            vec![Grant::Admin],
            vec![Grant::Submit, Grant::Admin],
        ] {
            let member = caller(2000, LAB, &[]);
            let policy = with_group(&may);
            for g in Grant::ALL {
                assert_eq!(
                    policy.check(&member, g).is_ok(),
                    may.contains(&g),
                    "{may:?} {g}"
                );
            }
        }
        assert_eq!(
            with_group(&[]).grants(&caller(2000, LAB, &[])),
            Grants::NONE
        );
    }

    #[test]
    fn grants_read_and_print_by_name() {
        #[derive(Deserialize)]
        struct Listed {
            may: Vec<Grant>,
        }
        let l: Listed = toml::from_str(r#"may = ["status", "admin"]"#).unwrap();
        assert_eq!(Grants::of(&l.may).to_string(), "status, admin");
        assert!(toml::from_str::<Listed>(r#"may = ["root"]"#).is_err());
        assert_eq!(Grants::NONE.to_string(), "nothing");
    }
}
