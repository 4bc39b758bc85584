//! The user a check's commands run as (`[checks] command_user`, or a
//! command check's `user`), resolved once, when the config is loaded, from
//! the machine's `/etc/passwd` and `/etc/group` as the [`Host`] reads
//! them: the live machine's, or with `[node] host_root` the host's own
//! files under it (the commands run in the host's tree, so its ids are the
//! ones that count).
//!
//! Only these local files are read, not NSS (LDAP, SSSD, systemd's
//! dynamic users): the agent in a container could not ask the host's NSS,
//! and a user for running checks is a local system account anyway.
//! Supplementary groups are those `initgroups` would give: the primary
//! group plus every group of `/etc/group` that lists the user.

use super::Host;

/// Most bytes read of `/etc/passwd` or `/etc/group`.
const ACCOUNT_FILE_LIMIT: usize = 8 << 20;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The name as configured.
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group the commands run with: the primary group first, then
    /// the supplementary groups, without repeats.
    pub groups: Vec<u32>,
    /// The home directory (`HOME` of the commands).
    pub home: String,
}

/// Why a user name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: &'static str, reason: String },
    #[error(
        "no user `{name}` in {path} (users are looked up in the local files only, not in LDAP or other NSS sources)"
    )]
    Unknown { name: String, path: &'static str },
    #[error("`{0}` is not a user name")]
    BadName(String),
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Resolve `name` (a user name, or a numeric uid listed in `/etc/passwd`)
/// on `host`.
pub fn resolve_account(host: &dyn Host, name: &str) -> Result<Account, AccountError> {
    if name.is_empty() || name.contains([':', ',', '\n']) || name.trim() != name {
        return Err(AccountError::BadName(name.to_string()));
    }
    let passwd =
        host.read_file(PASSWD, ACCOUNT_FILE_LIMIT)
            .map_err(|e| AccountError::Unreadable {
                path: PASSWD,
                reason: e.to_string(),
            })?;
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == name);
    let by_uid = || {
        let uid: u32 = name.parse().ok()?;
        entries.iter().find(|f| f[2].parse() == Ok(uid))
    };
    let unknown = || AccountError::Unknown {
        name: name.to_string(),
        path: PASSWD,
    };
    let entry = by_name.or_else(by_uid).ok_or_else(unknown)?;
    let (Ok(uid), Ok(gid)) = (entry[2].parse::<u32>(), entry[3].parse::<u32>()) else {
        return Err(unknown());
    };
    let user = entry[0];
    // A missing /etc/group leaves the primary group only.
    let group = host
        .read_file(GROUP, ACCOUNT_FILE_LIMIT)
        .unwrap_or_default();
    let mut groups = vec![gid];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || !f[3].split(',').any(|m| m.trim() == user) {
            continue;
        }
        if let Ok(g) = f[2].parse::<u32>() {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(Account {
        name: name.to_string(),
        uid,
        gid,
        groups,
        home: entry[5].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixtureHost;

    fn host(passwd: &str, group: &str) -> (tempfile::TempDir, FixtureHost) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        let h = FixtureHost::new(dir.path());
        (dir, h)
    }

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        patrol:x:990:990:Patrol:/var/lib/patrol:/usr/sbin/nologin\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP_TEXT: &str = "root:x:0:\nadm:x:4:syslog,patrol\n\
        systemd-journal:x:101:patrol\npatrol:x:990:patrol\nnogroup:x:65534:\n";

    #[test]
    fn a_user_resolves_with_its_primary_and_supplementary_groups() {
        let (_d, h) = host(PASSWD_TEXT, GROUP_TEXT);
        assert_eq!(
            resolve_account(&h, "patrol"),
            Ok(Account {
                name: "patrol".into(),
                uid: 990,
                gid: 990,
                groups: vec![990, 4, 101],
                home: "/var/lib/patrol".into(),
            })
        );
        let nobody = resolve_account(&h, "nobody").unwrap();
        assert_eq!((nobody.uid, nobody.groups), (65534, vec![65534]));
        // A numeric uid listed in the file resolves too.
        assert_eq!(resolve_account(&h, "990").unwrap().home, "/var/lib/patrol");
    }

    #[test]
    fn an_unknown_or_malformed_user_is_an_error_saying_where_it_looked() {
        let (_d, h) = host(PASSWD_TEXT, GROUP_TEXT);
        let err = resolve_account(&h, "nosuchuser").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no user `nosuchuser` in /etc/passwd (users are looked up in the local files only, not in LDAP or other NSS sources)"
        );
        assert!(resolve_account(&h, "4242").is_err());
        assert_eq!(
            resolve_account(&h, "root:root"),
            Err(AccountError::BadName("root:root".into()))
        );
        let empty = FixtureHost::new("/nonexistent");
        assert!(resolve_account(&empty, "root")
            .unwrap_err()
            .to_string()
            .starts_with("cannot read /etc/passwd"));
    }
}
