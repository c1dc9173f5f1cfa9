//! The Go-style command line.
//!
//! Input: the arguments after the program name, separated by NUL, as raw bytes (so not
//! necessarily UTF-8).
//!
//! Invariants, beyond "no panic":
//! - parsing is deterministic: the same arguments twice, the same result;
//! - a usage error is one non-empty line and exits 2; help is the usage text and exits 0;
//! - an accepted command line has at least one local IP (unless `-version`/`-plugins`/
//!   `-checkready`), none
//!   twice, a kernel-valid interface name, non-zero ports, a non-empty
//!   `-upstreamsvc`, TLS off (unless informational), and CoreDNS arguments that can be built.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use node_cache::flags::{parse, usage, Config, FlagError};

pub fn check(data: &[u8]) {
    let args: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    let first = parse(args.clone());
    let second = parse(args);
    assert_eq!(first, second, "parsing is not deterministic");
    match first {
        Ok(config) => check_config(&config),
        Err(e @ FlagError::Usage(_)) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
            assert_eq!(e.exit_code(), 2);
        }
        Err(e @ FlagError::Help(_)) => {
            assert_eq!(e.to_string(), usage());
            assert_eq!(e.exit_code(), 0);
        }
    }
}

fn check_config(config: &Config) {
    let informational = config.show_version || config.list_plugins || config.check_ready;
    assert!(informational || !config.local_ips.is_empty(), "{config:?}");
    let unique: HashSet<_> = config.local_ips.iter().collect();
    assert_eq!(
        unique.len(),
        config.local_ips.len(),
        "{:?}",
        config.local_ips
    );
    let name = &config.interface_name;
    assert!((1..=15).contains(&name.len()), "{name:?}");
    assert!(name != "." && name != "..", "{name:?}");
    assert!(
        !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace()),
        "{name:?}"
    );
    assert_ne!(config.health_port, 0);
    assert_ne!(config.dns_port, 0);
    assert!(!config.sync_interval.is_zero());
    assert!(!config.upstream_svc.is_empty());
    assert!(informational || !config.tls.enabled);
    let child_args = config.child_args();
    assert!(child_args.iter().any(|a| a == "-conf"), "{child_args:?}");
}
