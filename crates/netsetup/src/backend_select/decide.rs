//! The `auto` policy as a pure function: what [`super::observe`] saw in, a [`Decision`] or a
//! [`Conflict`] out (the rules are in the module comment of [`crate::backend_select`]).

use std::fmt;

use super::Mode;
use crate::nft_backend;
use crate::rules::{COMMENT_ALLOW_TRAFFIC, COMMENT_SKIP_CONNTRACK};

/// One iptables mode's rules, both families together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XtablesState {
    /// `-A` lines.
    pub rules: usize,
    /// kubelet's `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY` chain exists.
    pub kubelet_chains: bool,
    /// Rules carrying node-cache's comments.
    pub ours: usize,
    /// Rules in kube-proxy's chains (`KUBE-*` but kubelet's): kube-proxy runs in this mode.
    pub kube_proxy_rules: usize,
}

/// kubelet's chains: they exist in every mode kubelet has seen, whatever kube-proxy does.
const KUBELET_CHAINS: [&str; 3] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY", "KUBE-FIREWALL"];

fn is_kube_proxy_rule(line: &str) -> bool {
    line.strip_prefix("-A ")
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|chain| chain.starts_with("KUBE-") && !KUBELET_CHAINS.contains(&chain))
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
                if is_kube_proxy_rule(line) {
                    self.kube_proxy_rules += 1;
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

/// The mode `auto` chose, by the sign that chose it; its `Display` is the reason for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// kube-proxy's nftables tables and no kube-proxy iptables rule in either mode (a CNI
    /// plugin's or kubelet's iptables rules do not count: they exist in every kube-proxy mode).
    KubeProxyNftables,
    /// kubelet's canary chains in `mode`; `also_legacy`: in iptables-legacy too.
    KubeletChains { mode: Mode, also_legacy: bool },
    /// No kubernetes sign; our rules are already there (a restart).
    OursAlready(Mode),
    /// No kubernetes sign; both iptables modes run, the one with more rules wins (legacy only
    /// when strictly more, as iptables-wrappers does).
    MoreRules { legacy: usize, nft: usize },
    /// No kubernetes sign; this is the only mode that runs.
    OnlyRuns(Mode),
}

impl Decision {
    pub fn mode(&self) -> Mode {
        match *self {
            Decision::KubeProxyNftables => Mode::Nftables,
            Decision::KubeletChains { mode, .. }
            | Decision::OursAlready(mode)
            | Decision::OnlyRuns(mode) => mode,
            Decision::MoreRules { legacy, nft } if legacy > nft => Mode::IptablesLegacy,
            Decision::MoreRules { .. } => Mode::IptablesNft,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NO_KUBE: &str = "no kubernetes rules seen";
        match self {
            Decision::KubeProxyNftables => f.write_str(
                "kube-proxy's nftables tables exist and no kube-proxy iptables rules do",
            ),
            Decision::KubeletChains { mode, also_legacy } => {
                write!(f, "kubelet's canary chains are in {mode}")?;
                if *also_legacy {
                    f.write_str(" (they are in iptables-legacy too, left from an earlier mode)")?;
                }
                Ok(())
            }
            Decision::OursAlready(mode) => {
                write!(f, "{NO_KUBE}; node-cache rules are already in {mode}")
            }
            Decision::MoreRules { legacy, nft } if legacy > nft => write!(
                f,
                "{NO_KUBE}; iptables-legacy has more rules ({legacy} vs {nft})"
            ),
            Decision::MoreRules { legacy, nft } => write!(
                f,
                "{NO_KUBE}; iptables-nft has as many rules or more ({nft} vs {legacy} in legacy)"
            ),
            Decision::OnlyRuns(Mode::Nftables) => f.write_str("no iptables command runs; nft does"),
            Decision::OnlyRuns(Mode::Iptables) => write!(f, "{NO_KUBE}; only plain iptables runs"),
            Decision::OnlyRuns(mode) => write!(f, "{NO_KUBE}; only {mode} runs"),
        }
    }
}

/// Why no mode is safe for `auto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Picking one place would leave the other copy behind, and teardown would not remove it.
    #[error("node-cache rules are in both {}; remove one copy, or pass -firewall-backend", places(.0))]
    OursTwice(Vec<Mode>),
    /// Following kubernetes would double our rules, keeping ours would split the node.
    #[error(
        "{kube}, so {} is the mode to use, but node-cache rules are in {}; \
         remove them, or pass -firewall-backend",
        .kube.mode(),
        places(&[*.ours])
    )]
    OursElsewhere { kube: Decision, ours: Mode },
    #[error("neither iptables nor nft can be run")]
    NoTool,
}

/// Where our rules are, for a message: our nft table by its name.
fn places(modes: &[Mode]) -> String {
    modes
        .iter()
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
}

/// The mode to use and why, or why none is safe.
pub fn decide(seen: &Observed) -> Result<Decision, Conflict> {
    let legacy = seen.legacy.clone().unwrap_or_default();
    let compat = seen.nft_compat.clone().unwrap_or_default();
    let nft = seen.nft.clone().unwrap_or_default();

    let ours: Vec<Mode> = [
        (legacy.ours > 0, Mode::IptablesLegacy),
        (compat.ours > 0, Mode::IptablesNft),
        (nft.ours, Mode::Nftables),
    ]
    .into_iter()
    .filter_map(|(there, mode)| there.then_some(mode))
    .collect();
    if ours.len() > 1 {
        return Err(Conflict::OursTwice(ours));
    }

    let kube = if nft.kube_proxy && legacy.kube_proxy_rules + compat.kube_proxy_rules == 0 {
        Some(Decision::KubeProxyNftables)
    } else if compat.kubelet_chains {
        Some(Decision::KubeletChains {
            mode: Mode::IptablesNft,
            also_legacy: legacy.kubelet_chains,
        })
    } else if legacy.kubelet_chains {
        Some(Decision::KubeletChains {
            mode: Mode::IptablesLegacy,
            also_legacy: false,
        })
    } else {
        None
    };

    match (kube, ours.first()) {
        (Some(kube), Some(&ours)) if ours != kube.mode() => {
            Err(Conflict::OursElsewhere { kube, ours })
        }
        (Some(kube), _) => Ok(kube),
        (None, Some(&mine)) => Ok(Decision::OursAlready(mine)),
        (None, None) => match (&seen.legacy, &seen.nft_compat) {
            (Some(_), Some(_)) => Ok(Decision::MoreRules {
                legacy: legacy.rules,
                nft: compat.rules,
            }),
            (Some(_), None) => Ok(Decision::OnlyRuns(Mode::IptablesLegacy)),
            (None, Some(_)) => Ok(Decision::OnlyRuns(Mode::IptablesNft)),
            (None, None) if seen.iptables => Ok(Decision::OnlyRuns(Mode::Iptables)),
            (None, None) if seen.nft.is_some() => Ok(Decision::OnlyRuns(Mode::Nftables)),
            (None, None) => Err(Conflict::NoTool),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xt(rules: usize, kubelet_chains: bool, ours: usize) -> Option<XtablesState> {
        Some(XtablesState {
            rules,
            kubelet_chains,
            ours,
            kube_proxy_rules: 0,
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
        decide(seen).unwrap_or_else(|e| panic!("{e}")).mode()
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
        let d = decide(&node(xt(5, true, 0), xt(3, true, 0), nft(false, false))).unwrap();
        assert_eq!(d.mode(), Mode::IptablesNft);
        let why = d.to_string();
        assert!(why.contains("iptables-legacy too"), "{why}");
    }

    #[test]
    fn kube_proxy_in_nftables_mode_with_no_iptables_rules_picks_nftables() {
        // kubelet's canary chains hold no rules; they do not count against nftables.
        assert_eq!(
            mode(&node(xt(0, false, 0), xt(0, true, 0), nft(true, false))),
            Mode::Nftables
        );
        // A CNI plugin's iptables rules beside it (a bridge's masquerade): still nftables,
        // where kube-proxy's DNAT is.
        assert_eq!(
            mode(&node(xt(0, false, 0), xt(8, true, 0), nft(true, false))),
            Mode::Nftables
        );
        // kube-proxy's own iptables rules (mid-switch, or not cleaned up): kubelet's mode.
        let mut kube_proxy_left = xt(40, true, 0);
        if let Some(x) = kube_proxy_left.as_mut() {
            x.kube_proxy_rules = 30;
        }
        assert_eq!(
            mode(&node(xt(0, false, 0), kube_proxy_left, nft(true, false))),
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
        .unwrap_err()
        .to_string();
        assert!(e.contains("iptables-legacy and iptables-nft"), "{e}");
        let e = decide(&node(xt(0, false, 0), xt(12, false, 12), nft(false, true)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("iptables-nft and nftables (table inet node-local-dns)"),
            "{e}"
        );
        // kubelet in iptables-nft, our rules in legacy.
        let e = decide(&node(xt(12, false, 12), xt(3, true, 0), nft(false, false)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("iptables-nft is the mode to use"), "{e}");
        assert!(e.contains("node-cache rules are in iptables-legacy"), "{e}");
    }

    #[test]
    fn saved_output_is_summed_per_mode() {
        let mut s = XtablesState::default();
        s.add_saved(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n\
             *raw\n-A OUTPUT -d 10.0.0.1/32 -p udp -m udp --dport 53 -m comment --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK\n\
             -A OUTPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n\
             *nat\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X\n-A KUBE-KUBELET-CANARY -j RETURN\nCOMMIT\n",
        );
        assert_eq!(
            s,
            XtablesState {
                rules: 4,
                kubelet_chains: true,
                ours: 1,
                kube_proxy_rules: 1,
            }
        );
    }
}
