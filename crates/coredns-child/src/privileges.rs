//! What CoreDNS runs as: another user, with NET_BIND_SERVICE as its only capability (ambient,
//! so it survives exec for a non-root user), no way to gain more (no_new_privs), and only the
//! environment it needs. The supervisor keeps NET_ADMIN for the interface and the rules;
//! CoreDNS parses untrusted input (queries, answers, the Corefile) and needs neither.

use std::ffi::OsString;
use std::io;

/// The user and group CoreDNS runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildUser {
    pub uid: u32,
    pub gid: u32,
}

const CAP_NET_BIND_SERVICE: u32 = 10;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Drops to `user` keeping only NET_BIND_SERVICE. Runs between fork and exec, so it only makes
/// async-signal-safe system calls and never allocates.
///
/// Order matters: keep the permitted set across the uid change (KEEPCAPS), change groups then
/// ids, narrow the sets to NET_BIND_SERVICE, raise it as ambient (it must be permitted and
/// inheritable), then forbid any further gain.
#[allow(unsafe_code)]
pub(crate) fn drop_to(user: ChildUser) -> io::Result<()> {
    // SAFETY: each call below is a plain system call on integers or on stack memory we own,
    // valid for the duration of the call; none touches memory shared with the parent.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into())?;
        // Best effort: shrinking the bounding set needs CAP_SETPCAP, which a container with
        // `drop: [ALL]` lacks; no_new_privs below already stops any gain through exec.
        for cap in 0..64 {
            if cap != CAP_NET_BIND_SERVICE {
                libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
            }
        }
        check(libc::setgroups(0, std::ptr::null()).into())?;
        check(libc::setresgid(user.gid, user.gid, user.gid).into())?;
        check(libc::setresuid(user.uid, user.uid, user.uid).into())?;
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let bit = 1u32 << CAP_NET_BIND_SERVICE;
        let data = [
            CapData {
                effective: 0,
                permitted: bit,
                inheritable: bit,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        check(libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ))?;
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                CAP_NET_BIND_SERVICE as libc::c_ulong,
                0,
                0,
            )
            .into(),
        )?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
    }
    Ok(())
}

/// The environment an unprivileged CoreDNS gets: PATH, the Go runtime's knobs (`GO*`: the
/// GOMEMLIMIT we derive, GOGC, GODEBUG, GOMAXPROCS...), and the variables the Corefile itself
/// names (`{$NAME}` or `{%NAME%}`, CoreDNS's environment substitution). Nothing else of ours
/// (Service hosts, credentials a pod spec might inject) reaches the process that parses
/// network input.
pub fn minimal_env(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    corefile: &str,
) -> Vec<(OsString, OsString)> {
    let named = corefile_env_names(corefile);
    let mut env: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            name == "PATH" || name.starts_with("GO") || named.iter().any(|n| *n == name)
        })
        .collect();
    env.sort();
    env
}

/// The names in `{$NAME}` and `{%NAME%}` references.
fn corefile_env_names(corefile: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for (open, close) in [("{$", "}"), ("{%", "%}")] {
        let mut rest = corefile;
        while let Some(start) = rest.find(open) {
            rest = &rest[start + open.len()..];
            if let Some(end) = rest.find(close) {
                let name = &rest[..end];
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    names.push(name);
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn only_path_go_knobs_and_what_the_corefile_names_are_kept() {
        let inherited = vars(&[
            ("KUBE_DNS_SERVICE_HOST", "10.96.0.10"),
            ("PATH", "/usr/bin"),
            ("GOMEMLIMIT", "100MiB"),
            ("POD_IP", "10.0.0.7"),
            ("NODE_NAME", "n1"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("HOME", "/root"),
        ]);
        let corefile = ". {\n  bind {$POD_IP}\n  log {%NODE_NAME%}\n}\n";
        assert_eq!(
            minimal_env(inherited, corefile),
            vars(&[
                ("GOMEMLIMIT", "100MiB"),
                ("NODE_NAME", "n1"),
                ("PATH", "/usr/bin"),
                ("POD_IP", "10.0.0.7"),
            ])
        );
    }

    #[test]
    fn malformed_references_name_nothing() {
        assert!(corefile_env_names("{$} {$A B} {% %} {$unterminated").is_empty());
    }
}
