//! Choosing the packet-filter backend from a flag value (`auto`, `iptables`, `nftables`).
//!
//! `iptables` is upstream's behaviour: the `iptables` / `ip6tables` commands on PATH, whatever
//! mode they run in. `nftables` is our own table ([`crate::NftBackend`]). `auto` looks at the
//! node the way kubernetes-sigs/iptables-wrappers does, so our rules land where kube-proxy's
//! are; [`decide`] holds the whole policy as a pure function of what [`observe`] saw:
//!
//! 1. Our rules in more than one place (iptables-legacy, iptables-nft, our nft table): error.
//!    Picking one would leave the other copy behind, and teardown would not remove it.
//! 2. kube-proxy's nftables tables (`ip`/`ip6 kube-proxy`) and no iptables rule in either
//!    mode (kubelet's empty canary chains allowed): nftables. The node runs kube-proxy in
//!    nftables mode and nothing else uses iptables; we would be the only iptables user.
//! 3. kubelet's canary chains (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`) in iptables-nft,
//!    else in iptables-legacy: that mode (nft first, as the wrapper checks it first; chains in
//!    both are named in the reason).
//! 4. No sign of kubernetes: where our rules already are (a restart after SIGKILL), else the
//!    mode with more rules (legacy only when strictly more, as the wrapper does), else
//!    nftables when no iptables command runs at all.
//!
//! Whenever a kubernetes mode is found (2, 3) and our rules are elsewhere, that is an error too:
//! following kubernetes would double our rules, keeping ours would split the node.

use std::fmt;
use std::net::IpAddr;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use crate::dual_stack::DualStack;
use crate::filter::{FilterError, PacketFilter};
use crate::iptables_backend::IptablesBackend;
use crate::nft_backend::{self, NftBackend};
use crate::rules::{COMMENT_ALLOW_TRAFFIC, COMMENT_SKIP_CONNTRACK};

/// The value of `-firewall-backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Iptables,
    Nftables,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid -firewall-backend {value:?}: want auto, iptables or nftables")]
pub struct UnknownBackend {
    value: String,
}

impl FromStr for BackendChoice {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "iptables" => Ok(BackendChoice::Iptables),
            "nftables" => Ok(BackendChoice::Nftables),
            _ => Err(UnknownBackend {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Iptables => "iptables",
            BackendChoice::Nftables => "nftables",
        })
    }
}

/// The backend and, for the log, why it was chosen.
pub struct Selected {
    pub filter: Arc<dyn PacketFilter>,
    pub reason: String,
}

/// Where rules can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `iptables` / `ip6tables` on PATH, in whatever mode they run.
    Iptables,
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

impl Mode {
    /// (IPv4 command, IPv6 command, both as one name) for the iptables modes.
    fn commands(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Mode::Iptables => Some(("iptables", "ip6tables", "iptables+ip6tables")),
            Mode::IptablesLegacy => Some((
                "iptables-legacy",
                "ip6tables-legacy",
                "iptables-legacy+ip6tables-legacy",
            )),
            Mode::IptablesNft => Some((
                "iptables-nft",
                "ip6tables-nft",
                "iptables-nft+ip6tables-nft",
            )),
            Mode::Nftables => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Iptables => "iptables",
            Mode::IptablesLegacy => "iptables-legacy",
            Mode::IptablesNft => "iptables-nft",
            Mode::Nftables => "nftables",
        })
    }
}

/// One iptables mode's rules, both families together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XtablesState {
    /// `-A` lines.
    pub rules: usize,
    /// kubelet's `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY` chain exists.
    pub kubelet_chains: bool,
    /// Rules carrying node-cache's comments.
    pub ours: usize,
}

impl XtablesState {
    /// Adds up `iptables-save` output.
    pub fn add_saved(&mut self, saved: &str) {
        for line in saved.lines() {
            if line.starts_with("-A ") {
                self.rules += 1;
                if line.contains(COMMENT_SKIP_CONNTRACK) || line.contains(COMMENT_ALLOW_TRAFFIC) {
                    self.ours += 1;
                }
            } else if line.starts_with(":KUBE-IPTABLES-HINT ")
                || line.starts_with(":KUBE-KUBELET-CANARY ")
            {
                self.kubelet_chains = true;
            }
        }
    }
}

/// nftables tables that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NftState {
    /// `ip kube-proxy` or `ip6 kube-proxy`: kube-proxy runs in nftables mode.
    pub kube_proxy: bool,
    /// Our `inet node-local-dns`.
    pub ours: bool,
}

/// What auto-detection saw; `None` where the tool could not run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `iptables-legacy-save` and `ip6tables-legacy-save`.
    pub legacy: Option<XtablesState>,
    /// `iptables-nft-save` and `ip6tables-nft-save`.
    pub nft_compat: Option<XtablesState>,
    /// Plain `iptables` runs (on hosts without the `-legacy`/`-nft` variants).
    pub iptables: bool,
    /// `nft list tables`.
    pub nft: Option<NftState>,
}

/// The mode to use and why; an `Err` says why none is safe.
pub fn decide(seen: &Observed) -> Result<(Mode, String), String> {
    let legacy = seen.legacy.clone().unwrap_or_default();
    let compat = seen.nft_compat.clone().unwrap_or_default();
    let nft = seen.nft.clone().unwrap_or_default();

    let mut ours = Vec::new();
    if legacy.ours > 0 {
        ours.push(Mode::IptablesLegacy);
    }
    if compat.ours > 0 {
        ours.push(Mode::IptablesNft);
    }
    if nft.ours {
        ours.push(Mode::Nftables);
    }
    let where_ours = |m: &[Mode]| {
        m.iter()
            .map(|m| match m {
                Mode::Nftables => format!(
                    "nftables (table {} {})",
                    nft_backend::FAMILY,
                    nft_backend::TABLE
                ),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" and ")
    };
    if ours.len() > 1 {
        return Err(format!(
            "node-cache rules are in both {}; remove one copy, or pass -firewall-backend",
            where_ours(&ours)
        ));
    }

    let kube = if nft.kube_proxy && legacy.rules + compat.rules == 0 {
        Some((
            Mode::Nftables,
            "kube-proxy's nftables tables exist and no iptables rules do".to_string(),
        ))
    } else if compat.kubelet_chains {
        let also = if legacy.kubelet_chains {
            " (they are in iptables-legacy too, left from an earlier mode)"
        } else {
            ""
        };
        Some((
            Mode::IptablesNft,
            format!("kubelet's canary chains are in iptables-nft{also}"),
        ))
    } else if legacy.kubelet_chains {
        Some((
            Mode::IptablesLegacy,
            "kubelet's canary chains are in iptables-legacy".to_string(),
        ))
    } else {
        None
    };

    match (kube, ours.first()) {
        (Some((mode, why)), Some(&mine)) if mine != mode => Err(format!(
            "{why}, so {mode} is the mode to use, but node-cache rules are in {}; \
             remove them, or pass -firewall-backend",
            where_ours(&ours)
        )),
        (Some((mode, why)), _) => Ok((mode, why)),
        (None, Some(&mine)) => Ok((
            mine,
            format!("no kubernetes rules seen; node-cache rules are already in {mine}"),
        )),
        (None, None) => match (&seen.legacy, &seen.nft_compat) {
            (Some(_), Some(_)) if legacy.rules > compat.rules => Ok((
                Mode::IptablesLegacy,
                format!(
                    "no kubernetes rules seen; iptables-legacy has more rules ({} vs {})",
                    legacy.rules, compat.rules
                ),
            )),
            (Some(_), Some(_)) => Ok((
                Mode::IptablesNft,
                format!(
                    "no kubernetes rules seen; iptables-nft has as many rules or more ({} vs {} in legacy)",
                    compat.rules, legacy.rules
                ),
            )),
            (Some(_), None) => Ok((
                Mode::IptablesLegacy,
                "no kubernetes rules seen; only iptables-legacy runs".to_string(),
            )),
            (None, Some(_)) => Ok((
                Mode::IptablesNft,
                "no kubernetes rules seen; only iptables-nft runs".to_string(),
            )),
            (None, None) if seen.iptables => Ok((
                Mode::Iptables,
                "no kubernetes rules seen; only plain iptables runs".to_string(),
            )),
            (None, None) if seen.nft.is_some() => Ok((
                Mode::Nftables,
                "no iptables command runs; nft does".to_string(),
            )),
            (None, None) => Err("neither iptables nor nft can be run".to_string()),
        },
    }
}

/// Runs `cmd args`; its stdout when it ran and succeeded.
fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Both families' `-save` output of one mode; `None` when the IPv4 one cannot run (the IPv6
/// one may be missing on an IPv4-only host). No `-t`: legacy `-t mangle` would create the
/// table, changing what the next look sees.
fn observe_xtables(v4_save: &str, v6_save: &str) -> Option<XtablesState> {
    let mut state = XtablesState::default();
    state.add_saved(&output_of(v4_save, &[])?);
    if let Some(v6) = output_of(v6_save, &[]) {
        state.add_saved(&v6);
    }
    Some(state)
}

/// Gathers the facts [`decide`] needs, from this network namespace. Changes nothing.
pub fn observe() -> Observed {
    let nft = output_of("nft", &["-j", "list", "tables"]).map(|json| {
        let names = nft_backend::table_names(&json).unwrap_or_default();
        NftState {
            kube_proxy: names
                .iter()
                .any(|(f, n)| (f == "ip" || f == "ip6") && n == "kube-proxy"),
            ours: names
                .iter()
                .any(|(f, n)| f == nft_backend::FAMILY && n == nft_backend::TABLE),
        }
    });
    Observed {
        legacy: observe_xtables("iptables-legacy-save", "ip6tables-legacy-save"),
        nft_compat: observe_xtables("iptables-nft-save", "ip6tables-nft-save"),
        iptables: output_of("iptables", &["--version"]).is_some(),
        nft,
    }
}

/// The filter for `mode`, touching only the families `local_ips` has.
fn build(mode: Mode, local_ips: &[IpAddr]) -> Result<(Arc<dyn PacketFilter>, String), FilterError> {
    let Some((v4_cmd, v6_cmd, both)) = mode.commands() else {
        let nft = NftBackend::new()?;
        let table = format!("table {} {}", nft_backend::FAMILY, nft_backend::TABLE);
        return Ok((Arc::new(nft), table));
    };
    let backend = |ipv6: bool| {
        let cmd = if ipv6 { v6_cmd } else { v4_cmd };
        if mode == Mode::Iptables {
            IptablesBackend::new(ipv6)
        } else {
            IptablesBackend::with_command(cmd)
        }
    };
    let has_v6 = local_ips.iter().any(IpAddr::is_ipv6);
    let has_v4 = local_ips.iter().any(IpAddr::is_ipv4);
    Ok(match (has_v4, has_v6) {
        (true, true) => (
            Arc::new(DualStack::new(
                both,
                Box::new(backend(false)?),
                Box::new(backend(true)?),
            )),
            format!("{v4_cmd} for IPv4, {v6_cmd} for IPv6"),
        ),
        (false, true) => (
            Arc::new(backend(true)?),
            format!("{v6_cmd} (IPv6 local IPs)"),
        ),
        _ => (
            Arc::new(backend(false)?),
            format!("{v4_cmd} (IPv4 local IPs)"),
        ),
    })
}

/// The backend for `-firewall-backend=choice`.
pub fn select(choice: BackendChoice, local_ips: &[IpAddr]) -> Result<Selected, FilterError> {
    let (mode, why) = match choice {
        BackendChoice::Iptables => (Mode::Iptables, "asked for".to_string()),
        BackendChoice::Nftables => (Mode::Nftables, "asked for".to_string()),
        BackendChoice::Auto => {
            decide(&observe()).map_err(|reason| FilterError::Conflict { reason })?
        }
    };
    let (filter, what) = build(mode, local_ips)?;
    Ok(Selected {
        filter,
        reason: format!("-firewall-backend={choice}: {what}: {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xt(rules: usize, kubelet_chains: bool, ours: usize) -> Option<XtablesState> {
        Some(XtablesState {
            rules,
            kubelet_chains,
            ours,
        })
    }

    fn nft(kube_proxy: bool, ours: bool) -> Option<NftState> {
        Some(NftState { kube_proxy, ours })
    }

    fn node(
        legacy: Option<XtablesState>,
        compat: Option<XtablesState>,
        nft: Option<NftState>,
    ) -> Observed {
        Observed {
            legacy,
            nft_compat: compat,
            iptables: true,
            nft,
        }
    }

    fn mode(seen: &Observed) -> Mode {
        decide(seen).unwrap_or_else(|e| panic!("{e}")).0
    }

    #[test]
    fn the_flag_parses_and_names_the_choices_when_wrong() {
        assert_eq!(
            "auto".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert_eq!(
            "iptables".parse::<BackendChoice>().unwrap(),
            BackendChoice::Iptables
        );
        assert_eq!(
            "nftables".parse::<BackendChoice>().unwrap(),
            BackendChoice::Nftables
        );
        let e = "nft".parse::<BackendChoice>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid -firewall-backend \"nft\": want auto, iptables or nftables"
        );
        for c in [
            BackendChoice::Auto,
            BackendChoice::Iptables,
            BackendChoice::Nftables,
        ] {
            assert_eq!(c.to_string().parse::<BackendChoice>().unwrap(), c);
        }
    }

    #[test]
    fn kubelet_chains_pick_their_mode_nft_first() {
        assert_eq!(
            mode(&node(xt(0, true, 0), xt(0, false, 0), nft(false, false))),
            Mode::IptablesLegacy
        );
        assert_eq!(
            mode(&node(xt(50, false, 0), xt(3, true, 0), nft(false, false))),
            Mode::IptablesNft
        );
        let (m, why) = decide(&node(xt(5, true, 0), xt(3, true, 0), nft(false, false))).unwrap();
        assert_eq!(m, Mode::IptablesNft);
        assert!(why.contains("iptables-legacy too"), "{why}");
    }

    #[test]
    fn kube_proxy_in_nftables_mode_with_no_iptables_rules_picks_nftables() {
        // kubelet's canary chains hold no rules; they do not count against nftables.
        assert_eq!(
            mode(&node(xt(0, false, 0), xt(0, true, 0), nft(true, false))),
            Mode::Nftables
        );
        // A CNI plugin's iptables rules beside it: stay with iptables, in kubelet's mode.
        assert_eq!(
            mode(&node(xt(0, false, 0), xt(8, true, 0), nft(true, false))),
            Mode::IptablesNft
        );
    }

    #[test]
    fn without_kubernetes_the_rule_counts_decide_like_the_wrapper() {
        assert_eq!(
            mode(&node(xt(3, false, 0), xt(2, false, 0), nft(false, false))),
            Mode::IptablesLegacy
        );
        assert_eq!(
            mode(&node(xt(2, false, 0), xt(2, false, 0), nft(false, false))),
            Mode::IptablesNft
        );
        assert_eq!(mode(&node(None, xt(0, false, 0), None)), Mode::IptablesNft);
        assert_eq!(
            mode(&node(xt(0, false, 0), None, None)),
            Mode::IptablesLegacy
        );
        let plain = Observed {
            iptables: true,
            ..Observed::default()
        };
        assert_eq!(mode(&plain), Mode::Iptables);
        let nft_only = Observed {
            nft: nft(false, false),
            ..Observed::default()
        };
        assert_eq!(mode(&nft_only), Mode::Nftables);
        assert!(decide(&Observed::default()).is_err());
    }

    #[test]
    fn our_rules_already_in_place_are_kept_where_nothing_else_says() {
        assert_eq!(
            mode(&node(
                xt(12, false, 12),
                xt(40, false, 0),
                nft(false, false)
            )),
            Mode::IptablesLegacy
        );
        assert_eq!(
            mode(&node(xt(5, false, 0), xt(0, false, 0), nft(false, true))),
            Mode::Nftables
        );
        // And where kubernetes agrees.
        assert_eq!(
            mode(&node(xt(0, false, 0), xt(30, true, 12), nft(false, false))),
            Mode::IptablesNft
        );
    }

    #[test]
    fn mixed_states_are_errors_naming_both_places() {
        let e = decide(&node(
            xt(12, false, 12),
            xt(12, false, 12),
            nft(false, false),
        ))
        .unwrap_err();
        assert!(e.contains("iptables-legacy and iptables-nft"), "{e}");
        let e = decide(&node(xt(0, false, 0), xt(12, false, 12), nft(false, true))).unwrap_err();
        assert!(
            e.contains("iptables-nft and nftables (table inet node-local-dns)"),
            "{e}"
        );
        // kubelet in iptables-nft, our rules in legacy.
        let e = decide(&node(xt(12, false, 12), xt(3, true, 0), nft(false, false))).unwrap_err();
        assert!(e.contains("iptables-nft is the mode to use"), "{e}");
        assert!(e.contains("node-cache rules are in iptables-legacy"), "{e}");
    }

    #[test]
    fn saved_output_is_summed_per_mode() {
        let mut s = XtablesState::default();
        s.add_saved(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n\
             *raw\n-A OUTPUT -d 10.0.0.1/32 -p udp -m udp --dport 53 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n\
             -A OUTPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        );
        assert_eq!(
            s,
            XtablesState {
                rules: 2,
                kubelet_chains: true,
                ours: 1
            }
        );
    }
}
